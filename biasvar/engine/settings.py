"""Settings of a run: memory sizes, the parameters to differentiate and their layout, the problem copy."""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Sequence

import torch

from biasvar.errors import SpecError
from biasvar.problems.base import Problem

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def parse_memory(text: str | int | None) -> int | None:
    """``"4GB"``, ``"512MiB"``, ``"1.5g"`` or a number of bytes -> bytes (binary units)."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise SpecError(f"cannot read memory size {text!r}; expected e.g. 4GB, 512MB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[unit])


def select_params(problem: Problem, pattern: str | None = None) -> list[str]:
    """Names of the parameters matching ``pattern``, in the problem's layout order.

    Args:
        pattern: a glob on parameter names (``encoder.0.*``), several separated by commas, or
            None / ``"*"`` for all parameters.
    """
    names = list(problem.params)
    if pattern is None or pattern.strip() in ("", "*"):
        return names
    globs = [g.strip() for g in pattern.split(",") if g.strip()]
    chosen = [k for k in names if any(fnmatch.fnmatchcase(k, g) for g in globs)]
    if not chosen:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise SpecError(f"no parameter matches --params {pattern!r}; the parameters are: {shown}")
    return chosen


def params_glob(pattern: str | None) -> str:
    """The canonical form of a parameter glob stored in run files ("*" for all)."""
    if pattern is None or pattern.strip() in ("", "*"):
        return "*"
    return ",".join(g.strip() for g in pattern.split(",") if g.strip())


def prepare(problem: Problem, *, device: torch.device | str | None = None,
            dtype: torch.dtype | None = None) -> Problem:
    """A shallow copy of ``problem`` on ``device``/``dtype`` with detached parameters (the
    caller's problem is left as it is)."""
    out = copy.copy(problem)
    out.params = {k: v.detach() for k, v in problem.params.items()}
    if device is None:
        device = next(iter(out.params.values())).device if out.params else "cpu"
    return out.to(device, dtype)


def selected_layout(problem: Problem, names: Sequence[str]) -> list[tuple[str, tuple[int, ...], int]]:
    """``(name, shape, offset)`` of the selected parameters in the flat gradient vector."""
    out, offset = [], 0
    for k in names:
        p = problem.params[k]
        out.append((k, tuple(p.shape), offset))
        offset += p.numel()
    return out


__all__ = ["params_glob", "parse_memory", "prepare", "select_params", "selected_layout"]
