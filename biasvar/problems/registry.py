"""Problem kinds by name, imported lazily: ``make_problem("vae", config)``.

Every problem class is built as ``cls(**config)`` (fresh parameters seeded by ``config["seed"]``
where it has one); a snapshot then sets ``params`` and ``batch``.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

from biasvar.errors import UnsupportedError
from biasvar.problems.base import Problem

PROBLEMS = MappingProxyType(
    {
        "toy-cat": "biasvar.problems.toy:ToyCat",
        "vae": "biasvar.problems.vae:VAE",
        "hvae": "biasvar.problems.hvae:HVAE",
        "quant-unit": "biasvar.problems.quant:QuantUnit",
        "qnet": "biasvar.problems.qnet:QNet",
    }
)


def problem_class(kind: str) -> type[Problem]:
    target = PROBLEMS.get(kind)
    if target is None:
        raise UnsupportedError(f"unknown problem kind {kind!r}; expected one of: {', '.join(PROBLEMS)}")
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UnsupportedError(f"problem kind {kind!r} is not available in this version ({e})") from None


def make_problem(kind: str, config: dict[str, Any] | None = None) -> Problem:
    """A fresh problem of ``kind`` built from its config."""
    return problem_class(kind)(**(config or {}))
