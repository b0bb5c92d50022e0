"""Student's t with Welch-Satterthwaite degrees of freedom: the one place every method (and the
paired contrasts of :mod:`biasvar.stats.contrast`) takes its t quantile from.

A variance that is a sum of independent parts, each estimated from ``nb - 1`` block deviations, has
about ``nu = (sum v)^2 / sum(v^2 / (nb - 1))`` degrees of freedom; as with a mean from few clusters,
quantiles of Student's t with ``nu`` replace the normal ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats


def welch_t(parts: Sequence[tuple[np.ndarray | float, int]], prob: float) -> tuple[np.ndarray, np.ndarray]:
    """``(t_prob(nu), nu)`` for the variance ``sum v`` of independent parts ``(v, nb)``.

    Parts of fewer than 2 blocks are left out. Where the denominator is 0 (no spread), ``nu`` is
    infinite and the normal quantile is used; ``nu`` is held at 1 or more.

    >>> q, nu = welch_t([(1.0, 11), (1.0, 11)], 0.975)
    >>> float(nu), round(float(q), 4)
    (20.0, 2.086)
    """
    parts = [(v, n) for v, n in parts if n > 1]
    var = sum(v for v, _ in parts)
    den = sum(v * v / (n - 1) for v, n in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(np.asarray(den) > 0, var * var / den, np.inf)
    q = np.where(np.isfinite(nu), scipy.stats.t.ppf(prob, np.maximum(nu, 1.0)), scipy.stats.norm.ppf(prob))
    return q, nu


def t_over_z(parts: Sequence[tuple[np.ndarray | float, int]], alpha: float) -> np.ndarray:
    """``t_{1-alpha}(nu) / z_{1-alpha}``: how much Student's t widens a term whose spread the normal
    quantile ``z`` would take (1 without spread)."""
    return welch_t(parts, 1 - alpha)[0] / scipy.stats.norm.ppf(1 - alpha)


__all__ = ["t_over_z", "welch_t"]
