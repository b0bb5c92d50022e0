"""Plug-in estimators: the user's own ``(logits, noise) -> y``, by registered name or import path.

A *factory* ``factory(**params)`` returns a :class:`UserEstimator` (or a bare callable
``(logits, noise) -> y``, read as ``UserEstimator(fn)``). A spec names it like a built-in family:

* an import path, ``mypkg.est:make(t=0.5)`` or ``path/to/est.py:make(t=0.5)``;
* a name registered in this process, ``biasvar.register_estimator("annealed-st", make)``, then
  ``annealed-st(t=0.5)``.

The spec grammar (:mod:`biasvar.spec`) parses these without importing anything; this module resolves
the factory, calls it with the spec's parameters and checks what it returns. Every failure (a module
that cannot be imported, a missing attribute, a factory that raises or returns something else, a
noise request of an unknown kind) is one :class:`~biasvar.errors.UnsupportedError` line naming the
spec. :func:`source_record` is what a run file records of the code that made it (the import path,
the file and its SHA-256).

This module imports nothing of the package but its errors and the importer, so the grammar can ask
it about plug-in specs without a cycle.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biasvar.errors import UnsupportedError
from biasvar.userimport import call_factory, file_sha256, import_factory

#: noise kinds a plug-in may ask for (drawn from the counter stream like the built-ins' noise)
NOISE_KINDS = ("gumbel", "exponential", "uniform")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")

NoiseSpec = Mapping[str, str | tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class UserEstimator:
    """What a plug-in factory returns.

    Args:
        fn: ``(logits [..., K], noise {name: Tensor}) -> y [..., K]``: the value is the forward
            sample (one-hot unless ``relaxed``), its gradient in the logits is the estimator.
        noise: name -> kind (``"gumbel"``, ``"exponential"``, ``"uniform"``; shape = the logits'),
            or name -> ``(kind, (M,))`` for ``M`` such tensors (shape ``(M, *logits.shape)``).
            Default ``{"G": "gumbel"}``: the hard sample is ``argmax(log_softmax(logits) + G)``.
        cost: forward passes of the model per gradient sample.
        unbiased: the claim that ``E[gradient]`` is the true gradient (checked by
            ``biasvar check-estimator``; required of a ``--reference``).
        y_fn: optional, the same estimator as a function ``(logits, onehot) -> y`` of the outcome
            alone, which makes its expectation exact by enumeration.
        relaxed: the value itself is relaxed (not one-hot), like Gumbel-Softmax.
        summary: one line for tables.
    """

    fn: Callable[..., Any]
    noise: NoiseSpec | None = None
    cost: int = 1
    unbiased: bool = False
    y_fn: Callable[..., Any] | None = None
    relaxed: bool = False
    summary: str = ""

    def requests(self, logits_shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
        """name -> (shape, kind) of one draw's noise for logits of ``logits_shape``."""
        shape = tuple(int(s) for s in logits_shape)
        out = {}
        for name, entry in (self.noise or {"G": "gumbel"}).items():
            kind, lead = (entry, ()) if isinstance(entry, str) else (entry[0], tuple(int(m) for m in entry[1]))
            out[str(name)] = ((*lead, *shape), kind)
        return out


_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
    """Register ``factory`` under ``name`` (checked against the built-in names by the caller)."""
    if not NAME_RE.match(name or ""):
        raise UnsupportedError(f"estimator name {name!r}: expected lower-case letters, digits, '-' or '_'")
    if not callable(factory):
        raise UnsupportedError(f"estimator {name}: the factory is a {type(factory).__name__}, not a callable")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise UnsupportedError(f"estimator {name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[name] = factory


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def is_import_path(name: str) -> bool:
    """``module:function`` or ``file.py:function``."""
    module, sep, attr = name.rpartition(":")
    return bool(sep and module and attr)


def factory_of(name: str) -> Callable[..., Any]:
    """The factory a plug-in name names (registered, else imported); one-line errors."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if not is_import_path(name):
        raise UnsupportedError(f"unknown estimator {name!r}: not built in, not registered, not module:function")
    return import_factory(name, "estimator")


def make(name: str, params: Mapping[str, Any], shown: str | None = None) -> UserEstimator:
    """Call the factory with ``params`` and check what it returns (``shown``: the spec, for errors)."""
    shown = shown or name
    factory = factory_of(name)
    label = f"estimator factory {shown}"
    made = call_factory(factory, dict(params), name=label, called=label, returns="an estimator")
    if not isinstance(made, UserEstimator):
        if not callable(made):
            raise UnsupportedError(f"estimator factory {shown} returned {type(made).__name__}, not a "
                                   f"biasvar.UserEstimator or a callable (logits, noise) -> y")
        made = UserEstimator(made)
    _check(made, shown)
    return made


def _check(est: UserEstimator, shown: str) -> None:
    if not callable(est.fn):
        raise UnsupportedError(f"estimator {shown}: fn is a {type(est.fn).__name__}, not a callable")
    if isinstance(est.cost, bool) or not isinstance(est.cost, int) or est.cost < 1:
        raise UnsupportedError(f"estimator {shown}: cost must be an integer >= 1 (forward passes), got {est.cost!r}")
    try:
        reqs = est.requests((2, 3))
    except (TypeError, ValueError, IndexError) as e:
        raise UnsupportedError(f"estimator {shown}: noise must map names to a kind or (kind, (M,)) ({e})") from None
    for key, (_, kind) in reqs.items():
        if kind not in NOISE_KINDS:
            raise UnsupportedError(f"estimator {shown}: noise {key!r} has kind {kind!r}; expected one of: "
                                   f"{', '.join(NOISE_KINDS)}")


def source_record(name: str) -> dict[str, str]:
    """What a run file records of a plug-in's code: ``import`` (module:function), ``file`` and
    ``sha256`` of the file that defines the factory (where there is one)."""
    factory = factory_of(name)
    if name in _REGISTRY:
        target = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', type(factory).__name__)}"
    else:
        target = name
    try:
        path = inspect.getsourcefile(factory)
    except TypeError:  # a built-in or a callable object without a source file
        path = None
    file = Path(path).resolve() if path else None
    out = {"import": target, "file": str(file) if file else "none"}
    digest = file_sha256(file)
    if digest:
        out["sha256"] = digest
    return out
