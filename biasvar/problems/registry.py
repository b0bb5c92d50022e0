"""Problems by name or import path: ``make_problem("vae", config)``, ``make_problem("mypkg.models:make", config)``.

A *factory* is any callable ``factory(**config) -> Problem`` named ``module:attribute`` (a module on
``sys.path``, the current directory included, or a file ``path/to/file.py:attribute``). The built-in
problems are registered the same way: :data:`PROBLEMS` maps their short names to their factories
(the classes themselves, built as ``cls(**config)``, fresh parameters seeded by ``config["seed"]``
where they take one); a snapshot then sets ``params`` and ``batch``.

A problem made from an import path gets ``kind`` = that path and ``config`` = the options, which
is what a snapshot records to rebuild it. The factory runs with torch's global generator seeded by
``config["seed"]`` (0 without one), so default initialisations (``nn.Linear``) are reproducible and
the same command measures the same weights. Every failure (a module that cannot be imported, a
missing attribute, options the factory refuses, a return value that is not a
:class:`~biasvar.problems.base.Problem`) is one :class:`~biasvar.errors.UnsupportedError` line.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch

from biasvar.errors import UnsupportedError
from biasvar.problems.base import Problem
from biasvar.userimport import call_factory, import_factory

PROBLEMS = MappingProxyType(
    {
        "toy-cat": "biasvar.problems.toy:ToyCat",
        "vae": "biasvar.problems.vae:VAE",
        "hvae": "biasvar.problems.hvae:HVAE",
        "quant-unit": "biasvar.problems.quant:QuantUnit",
        "qnet": "biasvar.problems.qnet:QNet",
    }
)


def is_import_path(kind: str) -> bool:
    """True for ``module:attribute`` (or ``file.py:attribute``), False for a built-in name."""
    return kind not in PROBLEMS and ":" in kind


def problem_factory(kind: str) -> Callable[..., Problem]:
    """The callable that builds problems of ``kind`` (a built-in name or ``module:attribute``)."""
    target = PROBLEMS.get(kind)
    if target is None:
        if ":" not in kind:
            raise UnsupportedError(f"unknown model {kind!r}; expected one of: {', '.join(PROBLEMS)}, "
                                   f"or your own problem factory as module:function")
        target = kind
    module, _, name = target.rpartition(":")
    if not module or not name:
        raise UnsupportedError(f"problem factory {kind!r}: expected module:function, e.g. mypkg.models:make")
    if kind in PROBLEMS:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise UnsupportedError(f"problem kind {kind!r} is not available in this version ({e})") from None
    return import_factory(kind, "problem")


problem_class = problem_factory  # the name this function had when problems were classes only


def make_problem(kind: str, config: dict[str, Any] | None = None) -> Problem:
    """A fresh problem of ``kind`` built from its config (a built-in name, or ``module:function``)."""
    config = dict(config or {})
    factory = problem_factory(kind)
    if kind in PROBLEMS:
        return factory(**config)
    try:
        json.dumps(config, sort_keys=True)
    except (TypeError, ValueError):
        raise UnsupportedError(f"problem factory {kind}: options must be JSON values (numbers, strings, "
                               f"lists), got {config!r}") from None
    seed = config.get("seed", 0)
    with torch.random.fork_rng(devices=[]):  # torch's default inits (nn.Linear) reproducible per seed
        torch.manual_seed(seed if isinstance(seed, int) and not isinstance(seed, bool) else 0)
        problem = call_factory(factory, config, name=f"problem factory {kind}",
                               called=f"problem factory {kind}({_options(config)})", returns="a Problem")
    if not isinstance(problem, Problem):
        raise UnsupportedError(f"problem factory {kind} returned {type(problem).__name__}, not a biasvar Problem "
                               f"(wrap a model with biasvar.problem_from_module or biasvar.UserProblem)")
    problem.kind = kind  # what a snapshot records to rebuild it
    problem.config = config
    return problem


def _options(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())
