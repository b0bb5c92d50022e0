"""Bootstrap replicates over blocks: the statistics scipy resamples, and scipy's bootstrap itself.

Blocks are the resampling unit; the blocks of the reference R and of the tested run T are
resampled independently (``scipy.stats.bootstrap``, two samples of block indices, vectorized),
each replicate evaluated through the Gram matrices of :mod:`biasvar.stats.gram`: the plain Eq. 16
statistic, or the pivot's terms (:func:`pivot_terms`, from the block deviations :class:`PivotParts`
that the pivot and gauss-eb methods share); and the reference's own share of b2's interval
(:func:`reference_share`): the share of the bootstrap variance that comes from R alone (T's blocks held
fixed) and the width of the interval R alone would give.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.stats

from biasvar.stats.gram import PairGram, bilinear, eq16, weights
from biasvar.stats.intervals.base import Bootstrap, PairIntervals, finite_or_none, wants_share


@dataclass(frozen=True)
class PivotParts:
    """Block deviations of the pair, for the pivot bootstrap (layers k, as in :class:`PairGram`).

    ``dev_b = C_b - n_b m`` are each run's block sums about its own mean; ``m = mu_T - c`` is T's
    offset from the centre (R's mean or the exact gradient), i.e. ``-(mu_R - mu_T)``.
    """

    d_rr: np.ndarray  # [K, nbR, nbR]  dev_R . dev_R
    d_rt: np.ndarray  # [K, nbR, nbT]  dev_R . dev_T
    d_tt: np.ndarray  # [K, nbT, nbT]  dev_T . dev_T
    p_r: np.ndarray  # [K, nbR]        dev_R . m
    p_t: np.ndarray  # [K, nbT]        dev_T . m
    mm: np.ndarray  # [K]              ||m||^2


def pivot_parts(pg: PairGram) -> PivotParts:
    """Deviation Gram matrices from the centred ones: ``dev = (I - n 1' / N) C``."""
    def proj(count: np.ndarray) -> np.ndarray:
        nb = len(count)
        return np.eye(nb) - np.outer(count, np.ones(nb)) / count.sum() if nb else np.zeros((0, 0))

    p_r, p_t = proj(pg.ref_count), proj(pg.test_count)
    ones_t = np.ones(len(pg.test_count)) / pg.test_count.sum()
    d_tt = p_t @ pg.tt @ p_t.T
    d_rt = p_r @ pg.rt @ p_t.T
    d_rr = p_r @ pg.rr @ p_r.T
    return PivotParts(d_rr, d_rt, d_tt, (p_r @ pg.rt) @ ones_t, (p_t @ pg.tt) @ ones_t,
                      np.einsum("i,kij,j->k", ones_t, pg.tt, ones_t))


def _offdiag(w: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``w' (G - diag G) w`` per layer: [..., nb], [K, nb, nb] -> [..., K]."""
    return bilinear(w, gram, w) - (w * w) @ np.einsum("kii->ki", gram).T


def pivot_terms(pg: PairGram, parts: PivotParts, w_ref: np.ndarray | None,
                w_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pivot method's bootstrap replicate of ``b2``, ``lam^2 ||m||^2/d + lam lin + quad``.

    The replicate is ``||lam m + a_T e_T - a_R e_R||^2 / d`` without the products of a block with
    itself, where ``e = sum_b w_b dev_b / N*`` are the resampled means' errors and ``lam`` scales
    T's offset so that the bootstrap world's squared bias is the one under test. Dropping the
    same-block products plays the part of Eq. 16's ``- V/n`` terms but removes the
    ``w_b^2 ||dev_b||^2`` terms exactly: their fluctuation (the block bootstrap's artefact, of
    relative order ``nb^-1/2`` instead of ``dim^-1/2``) would otherwise swamp the interval when
    ``dim`` is large. ``a = sqrt(nb/(nb-1))`` restores the variance the block bootstrap loses.

    Returns:
        ``(lin_t, lin_r, quad)``, each [..., K], with ``lin = lin_t - lin_r`` (T's and R's parts);
        the constant ``lam^2 ||m||^2 / d`` is left out.
    """
    dims = pg.dims.astype(np.float64)
    nbt = len(pg.test_count)
    a_t = math.sqrt(nbt / (nbt - 1))
    n_t = (w_test @ pg.test_count)[..., None]  # [..., 1]
    lin_t = 2 * a_t * (w_test @ parts.p_t.T) / n_t
    lin_r = np.zeros_like(lin_t)
    quad = a_t**2 * _offdiag(w_test, parts.d_tt) / n_t**2
    if not pg.exact:
        nbr = len(pg.ref_count)
        a_r = math.sqrt(nbr / (nbr - 1))
        n_r = (w_ref @ pg.ref_count)[..., None]
        lin_r = 2 * a_r * (w_ref @ parts.p_r.T) / n_r
        e_r_t = bilinear(w_ref, parts.d_rt, w_test) / (n_r * n_t)
        quad = quad + a_r**2 * _offdiag(w_ref, parts.d_rr) / n_r**2 - 2 * a_r * a_t * e_r_t
    return lin_t / dims, lin_r / dims, quad / dims


# ---------------------------------------------------------------------------------------------
# resampling statistics (vectorized over resamples; scipy passes block-index arrays)


@dataclass(frozen=True)
class Resample:
    """The bootstrap statistic of a pair for resampled block indices ``(idx_R, idx_T)`` or ``(idx_T,)``.

    ``pivot``: rows ``[lin_t, lin_r, quad, V]`` (4K); otherwise ``[b2, V]`` (2K), or ``b2 + V`` (K)
    with ``mse``.
    """

    pg: PairGram
    parts: PivotParts | None
    mse: bool = False

    def __call__(self, *idx: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis  # always the last axis
        pg = self.pg
        w_r = weights(idx[0], len(pg.ref_count)) if not pg.exact else None
        w_t = weights(idx[-1], len(pg.test_count))
        b, v, _ = eq16(pg, w_r, w_t)
        if self.parts is not None:
            return np.moveaxis(np.concatenate([*pivot_terms(pg, self.parts, w_r, w_t), v], axis=-1), -1, 0)
        if self.mse:
            return np.moveaxis(b + v, -1, 0)
        return np.moveaxis(np.concatenate([b, v], axis=-1), -1, 0)


@dataclass(frozen=True)
class ResampleRef:
    """b2 (all parameters) when only the reference's blocks are resampled (T's held fixed)."""

    pg: PairGram
    parts: PivotParts | None
    lam: np.ndarray | None

    def __call__(self, idx_r: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis
        pg = self.pg
        w_r = weights(idx_r, len(pg.ref_count))
        w_t = np.broadcast_to(np.ones(len(pg.test_count)), w_r.shape[:-1] + (len(pg.test_count),))
        if self.parts is not None:
            lt, lr, qd = pivot_terms(pg, self.parts, w_r, w_t)
            return (self.lam * (lt - lr) + qd)[..., -1]
        return eq16(pg, w_r, w_t)[0][..., -1]


def block_data(pg: PairGram) -> tuple[np.ndarray, ...]:
    """The samples scipy resamples: block indices of R and T (of T alone against an exact gradient)."""
    nbt = np.arange(len(pg.test_count))
    return (nbt,) if pg.exact else (np.arange(len(pg.ref_count)), nbt)


def scipy_bootstrap(data: tuple, stat: Callable, boot: Bootstrap, method: str, rng: np.random.Generator) -> Any:
    """``scipy.stats.bootstrap`` of a vectorized block statistic with ``boot``'s resamples and level."""
    with warnings.catch_warnings():  # BCa: NaN ends (reported as None) when z0 is infinite
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        return scipy.stats.bootstrap(data, stat, n_resamples=int(boot.n_resamples), vectorized=True,
                                     method=method, confidence_level=boot.confidence_level, rng=rng)




# ---------------------------------------------------------------------------------------------
# the reference's own share of the interval


def reference_share(pg: PairGram, dev_b: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                    parts: PivotParts | None = None, lam: np.ndarray | None = None) -> tuple[float | None, float]:
    """The reference's own contribution to b2's interval (all parameters).

    Args:
        dev_b: [K, B] b2's bootstrap replicates (or deviations) when both runs are resampled.
        parts, lam: the pivot method's pieces (None: the plain Eq. 16 statistic).

    Returns:
        ``(share, width)``: the share of b2's bootstrap variance when only R's blocks are resampled,
        and the width of that interval.
    """
    res_r = scipy_bootstrap((np.arange(len(pg.ref_count)),), ResampleRef(pg, parts, lam), boot, "percentile", rng)
    d_r = res_r.bootstrap_distribution
    var_all = float(np.var(dev_b[-1]))
    share = finite_or_none(float(np.var(d_r)) / var_all) if var_all > 0 else None
    lo_r, hi_r = np.quantile(d_r, [boot.alpha, 1 - boot.alpha])
    return share, float(hi_r - lo_r)


def with_bootstrap_share(out: PairIntervals, pg: PairGram, dev_b: np.ndarray, boot: Bootstrap,
                         rng: np.random.Generator, parts: PivotParts | None = None, lam: np.ndarray | None = None,
                         *, with_b2: bool, share: bool) -> PairIntervals:
    """``out`` with :func:`reference_share` added where a method is asked for it (resampling R last)."""
    if not wants_share(pg, with_b2=with_b2, share=share):
        return out
    ref_share, width = reference_share(pg, dev_b, boot, rng, parts, lam)
    return replace(out, ref_share=ref_share, ref_only_width=width)


__all__ = ["PivotParts", "Resample", "ResampleRef", "block_data", "pivot_parts", "pivot_terms", "reference_share",
           "scipy_bootstrap", "with_bootstrap_share"]
