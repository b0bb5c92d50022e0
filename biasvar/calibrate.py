"""The calibrated choice of vmap or loop (:mod:`biasvar.engine.calibration`), as functions on the
process-wide :data:`~biasvar.engine.calibration.PROCESS` calibration.

Kept for the callers of ``calibrate.calibrated_method`` / ``calibration`` / ``clear``; it imports
the engine (never the other way round), and times the engine's ``vmap_gradients`` and
``loop_gradients`` as the package :mod:`biasvar.engine` names them at call time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from biasvar import engine
from biasvar.engine.calibration import CALIBRATION_DRAW, CUDA_DRAWS, LOOP_DRAWS, MARGIN, MAX_DRAWS, PROCESS, Calibration


def calibrated_method(problem: Any, est: Any, names: Sequence[str], device: torch.device, *,
                      chunk: int = 8, rounds: int = 2) -> str:
    """``"vmap"`` or ``"loop"`` (see :meth:`Calibration.method`), remembered per process."""
    paths = {"vmap": engine.vmap_gradients, "loop": engine.loop_gradients}
    return PROCESS.method(problem, est, names, device, chunk=chunk, rounds=rounds, paths=paths)


def calibration(problem: Any, spec: str, names: Sequence[str], device: torch.device) -> dict[str, Any] | None:
    """The process's measurement behind a choice (seconds per draw of each path), for reports."""
    return PROCESS.measurement(problem, spec, names, device)


def clear() -> None:
    """Forget every calibration of this process (tests)."""
    PROCESS.clear()


__all__ = ["CALIBRATION_DRAW", "CUDA_DRAWS", "LOOP_DRAWS", "MARGIN", "MAX_DRAWS", "Calibration", "calibrated_method",
           "calibration", "clear"]
