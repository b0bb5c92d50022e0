"""The ``pivot`` interval: an inverted bootstrap test with a plug-in nuisance direction.

This package's own construction, not a published interval. Since Eq. 16 (and V, MSE) are exactly
unbiased, the bootstrap is used only for the *shape* of the estimate's error: replicates
``||lam m + a_T e_T - a_R e_R||^2 / dim`` without same-block products (``e`` the resampled means'
errors from block deviations, ``m = mu_T - mu_R`` the observed direction, ``a = sqrt(nb / (nb - 1))``
an ad-hoc inflation; :func:`biasvar.stats.intervals.resample.pivot_terms`), centred on their own
mean (basic-bootstrap quantiles). The interval is the set of ``theta`` for which ``b2 - theta`` lies
within the central 95% of those errors when the bootstrap world's squared bias is ``theta``
(``lam^2 ||m||^2 / dim = theta``), found by inverting over ``theta`` (:func:`invert`); the linear
term is widened by ``t_nu / z`` with Welch-Satterthwaite degrees of freedom
(:mod:`biasvar.stats.intervals.welch`). Each step is a heuristic; its coverage rests on the studies
alone. V's interval is the basic bootstrap's; MSE's inverts the same way with V's deviations added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from biasvar.stats.gram import PairGram
from biasvar.stats.intervals.base import Bootstrap, LayerEstimates, PairIntervals
from biasvar.stats.intervals.resample import (
    PivotParts,
    Resample,
    block_data,
    pivot_parts,
    scipy_bootstrap,
    with_bootstrap_share,
)
from biasvar.stats.intervals.roots import crossing
from biasvar.stats.intervals.welch import t_over_z


def invert(est: np.ndarray, lin: np.ndarray, quad: np.ndarray, scale: np.ndarray, shift: np.ndarray,
           alpha: float, grid: int = 32, rounds: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Interval ends by inverting the pivot over the squared bias of the bootstrap world.

    The interval holds every ``theta`` for which ``est - theta`` lies within the central
    ``1 - 2 alpha`` of the bootstrap deviations ``lam(theta) lin + quad`` (centred), where
    ``lam(theta) = sqrt(max(theta - shift, 0) / scale)``. Each end is the crossing of a monotone
    function, found on successively finer grids (``grid ** rounds`` resolution).

    Args:
        est: [K] the estimates; lin, quad: [K, B] bootstrap terms (quad may include V's deviations).
        scale: [K] ``||m||^2 / d``; shift: [K] the part of ``theta`` that is not squared bias (V for MSE).
    """
    lin = lin - lin.mean(-1, keepdims=True)
    quad = quad - quad.mean(-1, keepdims=True)

    def q(theta: np.ndarray, level: float) -> np.ndarray:  # theta [K, J] -> [K, J]
        with np.errstate(over="ignore"):
            lam = np.minimum(np.sqrt(np.maximum(theta - shift[:, None], 0.0) / scale[:, None]), 1e150)
        return np.quantile(lam[..., None] * lin[:, None] + quad[:, None], level, axis=-1)

    est2 = est[:, None]
    q_lo, q_hi = q(est2, alpha)[:, 0], q(est2, 1 - alpha)[:, 0]
    # Upper end: the largest theta with theta + q_lo(theta) <= est.
    upper = crossing(lambda th: th + q(th, alpha) - est2 > 0, est.copy(), est - q_lo, grid, rounds)
    # Lower end: the smallest theta with theta + q_hi(theta) >= est.
    lower = crossing(lambda th: th + q(th, 1 - alpha) - est2 > 0, est - q_hi, est.copy(), grid, rounds)
    return lower, upper


@dataclass(frozen=True)
class PivotBootstrap:
    """The pivot's intervals and the pieces gauss-eb and the reference's share build on.

    Attributes:
        intervals: b2, V and MSE with the pivot's intervals (no reference share).
        dev_b: [K, B] b2's bootstrap deviations.
        parts: the block deviations of the pair.
        lam: [K] the scale of T's offset in the bootstrap world.
    """

    intervals: PairIntervals
    dev_b: np.ndarray
    parts: PivotParts
    lam: np.ndarray


def pivot_bootstrap(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                    *, with_b2: bool = True) -> PivotBootstrap:
    """The pivot's bootstrap and intervals (module docstring)."""
    K, alpha = len(pg.dims), boot.alpha
    nbt, nbr = len(pg.test_count), len(pg.ref_count)
    parts = pivot_parts(pg)
    scale = np.where(parts.mm > 0, parts.mm / pg.dims, 1.0)  # ||mu_R - mu_T||^2 / d per layer
    lam = np.sqrt(np.maximum(b2, 0.0) / scale)
    dist = scipy_bootstrap(block_data(pg), Resample(pg, parts), boot, "percentile",
                           rng).bootstrap_distribution  # [4K, B]
    # Eq. 16, V and MSE are unbiased: the bootstrap gives the shape of their errors (centred),
    # and the b2 / MSE intervals invert it over the squared bias of the bootstrap world.
    a_t = math.sqrt(nbt / (nbt - 1))
    lin_t, lin_r, quad = dist[:K], dist[K:2 * K], dist[2 * K:3 * K]
    lin = t_over_z([(lin_t.var(-1), nbt), (lin_r.var(-1), nbr)], alpha)[:, None] * (lin_t - lin_r)
    dev_v = a_t * (dist[3 * K:] - dist[3 * K:].mean(-1, keepdims=True))
    dev_b = lam[:, None] * lin + quad
    b2_lo = b2_hi = mse_lo = mse_hi = None
    if with_b2:
        b2_lo, b2_hi = invert(b2, lin, quad, scale, np.zeros(K), alpha)
        mse_lo, mse_hi = invert(b2 + v_t, lin, quad + dev_v, scale, v_t, alpha)
    q_lo, q_hi = np.quantile(dev_v, [alpha, 1.0 - alpha], axis=-1)
    out = PairIntervals(
        b2=LayerEstimates(b2, b2_lo, b2_hi, dev_b.std(-1, ddof=1)),
        variance=LayerEstimates(v_t, v_t - q_hi, v_t - q_lo, dev_v.std(-1, ddof=1)),
        mse=LayerEstimates(b2 + v_t, mse_lo, mse_hi, (dev_b + dev_v).std(-1, ddof=1)),
    )
    return PivotBootstrap(out, dev_b, parts, lam)


def pivot_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                    *, with_b2: bool = True, share: bool = True) -> PairIntervals:
    """The ``pivot`` method (:class:`~biasvar.stats.intervals.base.IntervalMethod`)."""
    pb = pivot_bootstrap(pg, b2, v_t, boot, rng, with_b2=with_b2)
    return with_bootstrap_share(pb.intervals, pg, pb.dev_b, boot, rng, pb.parts, pb.lam, with_b2=with_b2, share=share)


__all__ = ["PivotBootstrap", "invert", "pivot_bootstrap", "pivot_intervals"]
