"""Importing the user's own code named by an import path: ``module:attribute`` (a module on
``sys.path``, the current directory included) or ``path/to/file.py:attribute``.

Shared by problem factories (:mod:`biasvar.problems.registry`) and plug-in estimators
(:mod:`biasvar.plugins`). Every failure is one :class:`~biasvar.errors.UnsupportedError` line that
names the module or file and says what it was meant to provide (``what``: "problem", "estimator").
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from biasvar.errors import BiasvarError, UnsupportedError


def is_file_module(module: str) -> bool:
    """True for a file path (``x.py``, or a path with a separator), False for a dotted module name."""
    return module.endswith(".py") or os.sep in module or "/" in module


def import_user_module(module: str, what: str = "problem") -> ModuleType:
    """The module ``module`` (dotted name or file path); one-line errors naming it."""
    if is_file_module(module):
        path = Path(module)
        if not path.is_file():
            raise UnsupportedError(f"cannot import {what} file {module}: no such file")
        name = "biasvar_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except (Exception, SystemExit) as e:  # the user's file: one line, whatever it raised
            del sys.modules[name]
            raise UnsupportedError(f"cannot import {what} file {module}: {type(e).__name__}: {e}") from None
        return mod
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # like `python -m`: a module beside you is importable
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise UnsupportedError(f"cannot import module {module!r} of {_a(what)} factory ({e})") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's module: one line, whatever it raised
        raise UnsupportedError(f"importing module {module!r} failed: {type(e).__name__}: {e}") from None


def import_factory(target: str, what: str = "problem") -> Callable[..., Any]:
    """The callable ``module:attribute`` names (``target``); one-line errors naming it."""
    module, _, name = target.rpartition(":")
    mod = import_user_module(module, what)
    factory = getattr(mod, name, None)
    if factory is None:
        raise UnsupportedError(f"module {module!r} has no attribute {name!r} (the {what} factory {target})")
    if not callable(factory):
        raise UnsupportedError(f"{what} factory {target} is a {type(factory).__name__}, not a callable")
    return factory


def call_factory(factory: Callable[..., Any], kwargs: dict[str, Any], *, name: str, called: str,
                 returns: str) -> Any:
    """``factory(**kwargs)`` with whatever it raises as one line: ``name`` labels a library error,
    ``called`` (the factory with its options) the others; a ``sys.exit`` is said, not obeyed."""
    try:
        return factory(**kwargs)
    except BiasvarError as e:
        raise UnsupportedError(f"{name}: {e}") from None
    except SystemExit as e:  # the user's factory ended the process: said, not obeyed silently
        raise UnsupportedError(f"{called} called sys.exit({e.code!r}); a factory must return {returns} "
                               "or raise") from None
    except Exception as e:  # noqa: BLE001 - the user's factory: one line, whatever it raised
        raise UnsupportedError(f"{called} failed: {type(e).__name__}: {e}") from None


def file_sha256(path: Path | None) -> str | None:
    """The SHA-256 of a file's bytes (None where there is no readable file)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _a(what: str) -> str:
    return f"an {what}" if what[:1] in "aeiou" else f"a {what}"
