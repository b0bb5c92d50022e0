"""The one root finder of the interval methods: a vectorised, bracketed crossing search.

Interval ends are where a monotone test statistic of ``theta`` (the squared bias under test) crosses
the estimate; the statistic is a quantile of simulated or resampled errors, evaluated for many
``theta`` at once. ``scipy.optimize.brentq`` would take one scalar at a time, and its answer would
differ (within its tolerance) from the grids the committed results were computed on; this search
keeps them: ``grid - 1`` new points per round, ``rounds`` rounds (``grid=2`` is bisection).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def crossing(above: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, grid: int,
             rounds: int) -> np.ndarray:
    """Where ``above`` turns True, per row, between ``lo`` (False) and ``hi`` (True).

    Args:
        above: ``theta [K, J] -> bool [K, J]``, False below the crossing and True above it.
        lo, hi: [K] a first bracket; widened (by doubling steps) where it does not hold the crossing.
        grid, rounds: each round cuts the bracket into ``grid`` parts; resolution ``grid ** -rounds``.

    Returns:
        [K] the midpoints of the final brackets.
    """
    step = np.maximum(hi - lo, 1e-300)
    for _ in range(60):
        ends = above(np.stack([lo, hi], axis=1))
        bad_lo, bad_hi = ends[:, 0], ~ends[:, 1]
        if not (bad_lo.any() or bad_hi.any()):
            break
        lo, hi, step = np.where(bad_lo, lo - step, lo), np.where(bad_hi, hi + step, hi), 2 * step
    t = np.linspace(0.0, 1.0, grid + 1)
    rows = np.arange(len(lo))
    for _ in range(rounds):
        thetas = lo[:, None] + (hi - lo)[:, None] * t  # [K, grid + 1]
        pos = np.ones(thetas.shape, dtype=bool)  # the ends are known: lo below, hi above
        pos[:, 0] = False
        pos[:, 1:-1] = above(thetas[:, 1:-1])
        j = pos.argmax(axis=1)  # the first grid point above
        lo, hi = thetas[rows, j - 1], thetas[rows, j]
    return (lo + hi) / 2


__all__ = ["crossing"]
