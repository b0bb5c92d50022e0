"""Which gradient path is faster here: a short measurement of vmap against the per-draw loop,
remembered by a :class:`Calibration` object.

``method="auto"`` asks :meth:`Calibration.method` once per (problem, estimator family, parameters,
device, dtype, thread count, chunk size): the estimators of one family (``gr-mc`` at every t and M)
share one measurement where their chunk (which follows the memory budget and the estimator's noise
per draw) is the same, so a sweep of a family's grid calibrates once. It times one chunk of the
size the engine will use through vmap
and a few draws (at most :data:`LOOP_DRAWS`) through the loop, interleaved, on draw indices no run
uses, and answers ``"loop"`` only when the loop's time per draw is lower by more than
:data:`MARGIN` (so a tie stays on vmap, whose chunks are the engine's default). Both paths compute
the same gradients of the same noise, so the choice changes speed only, never the numbers beyond
float rounding.

The measurements live in the :class:`Calibration` a caller owns (a sweep makes one for its runs);
:data:`PROCESS` is the one shared by the calls that bring none (``biasvar sample``, the studies),
so a process calibrates each case once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from biasvar import rng
from biasvar.engine import gradients
from biasvar.problems.base import noise_requests

MARGIN = 0.10  # loop must beat vmap by this fraction to be chosen
CALIBRATION_DRAW = 1 << 62  # draw indices used for timing only (runs start at 0)
MAX_DRAWS = 4096  # largest vmap chunk timed (the CPU's largest chunk)
LOOP_DRAWS = 4  # draws per timed loop round
CUDA_DRAWS = 64  # vmap chunk timed on CUDA, whose chunk sizer grows from 1 draw

Paths = Mapping[str, Callable[..., torch.Tensor]]


def family(spec: Any) -> str:
    """The family an estimator spec (or its canonical string) belongs to: the part before ``(``
    (``gr-mc(M=100,t=0.1)`` -> ``gr-mc``; a plug-in's import path or registered name)."""
    return str(spec).split("(", 1)[0]


def _key(problem: Any, fam: str, names: Sequence[str], device: torch.device, dtype: torch.dtype,
         m: int) -> tuple:
    try:
        desc = json.dumps(problem.describe(), sort_keys=True, default=str)
    except Exception:  # noqa: BLE001 - an undescribable problem is keyed by its type and size
        desc = type(problem).__name__
    return (desc, int(problem.dim), fam, tuple(names), str(device), str(dtype), torch.get_num_threads(), m)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Calibration:
    """The measured choice of vmap or loop per case; each case is timed once per object
    (:attr:`timed` counts the measurements made)."""

    def __init__(self) -> None:
        self._found: dict[tuple, tuple[str, dict[str, float]]] = {}
        self._lock = threading.Lock()
        self.timed = 0

    def method(self, problem: Any, est: Any, names: Sequence[str], device: torch.device, *, chunk: int = 8,
               rounds: int = 2, paths: Paths | None = None) -> str:
        """``"vmap"`` or ``"loop"``, whichever takes less time per draw (measured once per case).

        ``chunk``: the chunk size the engine will use on the CPU (vmap is timed at it). ``paths``: the
        two gradient functions timed (default :data:`biasvar.engine.gradients.METHODS`). Any failure
        while timing (out of memory, an unsupported op under vmap) answers ``"vmap"``, the engine's
        default, and leaves the engine to report it.
        """
        paths = paths or gradients.METHODS
        # on the CPU the chunk the engine will use; elsewhere the sizer grows it from 1, so time a full one
        m = max(1, min(int(chunk), MAX_DRAWS)) if device.type == "cpu" else CUDA_DRAWS
        dtype = problem.params[names[0]].dtype
        spec = str(est.spec)
        key = _key(problem, family(spec), names, device, dtype, m)
        with self._lock:
            if key not in self._found:
                self._found[key] = _measure(problem, est, names, device, dtype, spec, m, rounds, paths)
                self.timed += 1
            return self._found[key][0]

    def measurement(self, problem: Any, spec: str, names: Sequence[str],
                    device: torch.device) -> dict[str, Any] | None:
        """The measurement behind a choice (seconds per draw of each path, measured on the first
        estimator of ``spec``'s family asked about), for reports."""
        for key, (choice, best) in self._found.items():
            if key[1:4] == (int(problem.dim), family(spec), tuple(names)) and key[4] == str(device):
                return {"choice": choice, "vmap_s": best["vmap"], "loop_s": best["loop"], "chunk": key[-1]}
        return None

    def clear(self) -> None:
        """Forget every measurement."""
        with self._lock:
            self._found.clear()


def _measure(problem: Any, est: Any, names: Sequence[str], device: torch.device, dtype: torch.dtype, spec: str,
             m: int, rounds: int, paths: Paths) -> tuple[str, dict[str, float]]:
    draws = torch.arange(CALIBRATION_DRAW, CALIBRATION_DRAW + m, device=device)
    noise = rng.draw_noise(noise_requests(problem, est), rng.stream_key(0, spec), draws, dtype=dtype, device=device)
    k = min(m, LOOP_DRAWS)
    few = {node: {name: t[:k] for name, t in d.items()} for node, d in noise.items()}
    timed = (("vmap", paths["vmap"], noise, m), ("loop", paths["loop"], few, k))
    best = {"vmap": float("inf"), "loop": float("inf")}  # seconds per draw
    try:
        for _, fn, nz, _ in timed:  # warm-up (first calls compile and allocate)
            fn(problem, est, names, nz)
        for _ in range(rounds):
            for name, fn, nz, count in timed:
                _sync(device)
                t0 = time.perf_counter()
                fn(problem, est, names, nz)
                _sync(device)
                best[name] = min(best[name], (time.perf_counter() - t0) / count)
    except (RuntimeError, torch.cuda.OutOfMemoryError):
        return "vmap", best
    return ("loop" if best["loop"] < (1 - MARGIN) * best["vmap"] else "vmap"), best


#: The calibration of the calls that bring none of their own (one per process).
PROCESS = Calibration()

__all__ = ["CALIBRATION_DRAW", "CUDA_DRAWS", "LOOP_DRAWS", "MARGIN", "MAX_DRAWS", "PROCESS", "Calibration", "family"]
