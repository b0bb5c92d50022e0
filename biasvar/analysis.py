"""Squared bias (Eq. 16), variance, MSE and bootstrap intervals, from run files only.

The analysis never samples: it reads the block statistics that the engine stored (per block:
the float32 sum of its finite draws, the float64 sum of squared deviations from the block mean
per parameter group, and its count) and combines them.

**Estimates.** For a tested run T against a reference run R of the same snapshot and parameter
set (``dim`` parameters), with sample means ``mu`` and per-parameter average sample variances
``V`` (denominator ``n - 1``), Eq. 16 of the paper is

    b2 = ||mu_R - mu_T||^2 / dim - V_R / n_R - V_T / n_T,

unbiased for ``||E X - E Y||^2 / dim`` when the two runs are independent. With an exact
reference ``g*`` (problems that enumerate) it is ``||g* - mu_T||^2 / dim - V_T / n_T``. The
variance is ``V_T``, and ``MSE = b2 + V_T``. ``b2`` can be negative; it is reported as
measured. Every number is available per parameter group (one group per parameter tensor).

**Block moments.** :class:`Moments` are the sufficient statistics ``(n, mean, m2)``; blocks
merge by the parallel formula of Chan et al. (``m2 = m2_a + m2_b + n_a n_b / n ||mean_a -
mean_b||^2``), in float64, never through raw sums of squares (variances here are small next to
``mean^2``).

**Bootstrap.** Blocks are the resampling unit; the blocks of R and of T are resampled
independently (``scipy.stats.bootstrap``, two samples of block indices, vectorized). Nothing of
size ``dim`` is materialised per resample: every resample's ``||mu_R* - mu_T*||^2`` and ``V*`` is
a quadratic form in its block counts of the Gram matrices of the block sums, computed once per
run in one float64 pass over the data (BLAS syrk; :class:`PairGram`). A report over 50 Fig. 1
runs (dim 1.24M, 34 blocks each, 1000 resamples) takes about 40 s on 2 loaded CPU cores.

**Which interval.** Three facts make the textbook intervals dishonest here (coverage study in
``tests/test_analysis.py``; e.g. at dim 2000 the ``percentile`` and ``basic`` intervals covered the
true b2 in 0 of 200 repetitions, the ``pivot`` one in 191):

1. The bootstrap distribution of Eq. 16 is shifted from ``b2`` by a fraction ~``1/nb`` of
   ``V_R/n_R + V_T/n_T`` (a block bootstrap's variance of a mean is ``(nb - 1)/nb`` of the real
   one). In high dimension the interval is far narrower than that shift.
2. Its spread is dominated, in high dimension, by the products of a resampled block with itself
   (``w_b^2 ||dev_b||^2``), whose fluctuation is of relative order ``nb^-1/2``; the real
   estimate's fluctuation is of order ``dim^-1/2``. Intervals come out far too wide.
3. The cross term ``2 (mu_T - mu_R) . e`` is spread around the *observed* difference, whose
   squared norm exceeds the true one by ``~ dim (V_R/n_R + V_T/n_T)``: near ``b2 = 0``
   intervals are too wide again.

The default ``method="pivot"`` handles all three. Since Eq. 16 (and V, MSE) are exactly
unbiased, the bootstrap is used only for the *shape* of the estimate's error: replicates
``||lam m + a_T e_T - a_R e_R||^2 / dim`` without same-block products (``e`` the resampled means'
errors from block deviations, ``m = mu_T - mu_R``, ``a = sqrt(nb / (nb - 1))``), centred on their
own mean. The interval is the set of ``theta`` for which ``b2 - theta`` lies within the central
95% of those errors when the bootstrap world's squared bias is ``theta`` (``lam^2 ||m||^2 / dim
= theta``), found by inverting over ``theta`` (:func:`_invert`); the linear term is widened by
``t_nu / z`` for the few blocks its spread rests on (:func:`_t_factor`). Per group likewise.
``V``'s interval is the reflected (basic) one around ``V``, scaled by ``a``. scipy's raw
``percentile`` (the design's first choice), ``basic`` and ``bca`` intervals of the plain Eq. 16
statistic remain available for comparison; BCa is often undefined (NaN ends, reported as None)
because ``b2`` lies outside its own bootstrap distribution.

The reference's own contribution to the interval is the share of the bootstrap variance of
``b2`` that comes from resampling R alone (T's blocks held fixed) and that interval's width.

**Pareto front.** Tested runs not dominated in ``(max(b2, 0), V)``: a negative estimate means
"no detectable bias" (the true b2 is >= 0), so among those only the lowest variance is on it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.linalg.blas
import scipy.stats

import biasvar
from biasvar.errors import AnalysisError, StoreError
from biasvar.spec import FAMILIES, parse_spec

Method = Literal["pivot", "percentile", "basic", "bca"]
METHODS: tuple[str, ...] = ("pivot", "percentile", "basic", "bca")
REPORT_SCHEMA = 1
_CHUNK = 1 << 16  # columns converted to float64 at a time


# ---------------------------------------------------------------------------------------------
# Moments: sufficient statistics, streaming merge (the slow, obviously correct twin)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a set of gradient draws.

    Attributes:
        n: number of draws.
        mean: float64 [dim], their mean.
        m2: float64 [G], per parameter group, ``sum_i ||x_i - mean||^2`` over the group's entries.
        group_sizes: int64 [G], entries per group (sums to dim); group g is a contiguous slice.
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    group_sizes: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


def _offsets(group_sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(group_sizes, dtype=np.int64))])


def _group_sq(x: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """Per group sum of squares of the last axis of ``x`` ([..., dim] -> [..., G])."""
    off = _offsets(group_sizes)
    parts = [np.square(x[..., a:b]).sum(-1) for a, b in zip(off[:-1], off[1:], strict=True)]
    return np.stack(parts, axis=-1)


def moments(x: np.ndarray, group_sizes: Sequence[int] | np.ndarray | None = None) -> Moments:
    """One-shot moments of draws ``x`` [n, dim] (float64), the reference for streaming merges.

    >>> m = moments(np.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> m.n, m.mean.tolist(), m.m2.tolist()
    (2, [1.0, 2.0], [4.0])
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise AnalysisError(f"moments: expected draws of shape [n, dim], got {list(x.shape)}")
    gs = np.array([x.shape[1]] if group_sizes is None else group_sizes, dtype=np.int64)
    if gs.sum() != x.shape[1]:
        raise AnalysisError(f"moments: group sizes sum to {int(gs.sum())}, draws have dim {x.shape[1]}")
    mean = x.mean(0) if len(x) else np.zeros(x.shape[1])
    return Moments(len(x), mean, _group_sq(x - mean, gs).sum(0), gs)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Merge two sets of moments by the parallel formula (Chan, Golub & LeVeque 1979).

    ``m2 = m2_a + m2_b + n_a n_b / n * ||mean_b - mean_a||^2`` per group; exact in float64 and
    free of the cancellation of ``sum x^2 - n mean^2``. Associative up to rounding.
    """
    if a.dim != b.dim or not np.array_equal(a.group_sizes, b.group_sizes):
        raise AnalysisError(f"merge_moments: parameter sets differ (dim {a.dim} vs {b.dim}, "
                            f"groups {a.group_sizes.tolist()} vs {b.group_sizes.tolist()})")
    if a.n == 0:
        return b
    if b.n == 0:
        return a
    n = a.n + b.n
    delta = b.mean - a.mean  # [dim]
    mean = a.mean + delta * (b.n / n)
    m2 = a.m2 + b.m2 + _group_sq(delta, a.group_sizes) * (a.n * b.n / n)
    return Moments(n, mean, m2, a.group_sizes)


def block_moments(count: np.ndarray, block_sum: np.ndarray, block_m2: np.ndarray,
                  group_sizes: np.ndarray) -> Moments:
    """Moments of all draws of a run from its per-block statistics (the parallel formula).

    Args:
        count: int [nb], finite draws per block.
        block_sum: float32/64 [nb, dim], sum of each block's finite draws.
        block_m2: float64 [nb, G], per group ``sum_i ||x_i - mean_block||^2`` within the block.
        group_sizes: int [G].

    Returns:
        ``mean = sum_b S_b / n``, ``m2 = sum_b m2_b + sum_b n_b ||S_b / n_b - mean||^2`` (per group).
    """
    count = np.asarray(count, dtype=np.int64)
    gs = np.asarray(group_sizes, dtype=np.int64)
    keep = count > 0
    n = int(count.sum())
    dim = block_sum.shape[1]
    mean = np.zeros(dim)
    m2 = np.asarray(block_m2, dtype=np.float64)[keep].sum(0) if keep.any() else np.zeros(len(gs))
    if n == 0:
        return Moments(0, mean, m2, gs)
    cnt = count[keep].astype(np.float64)
    sums = block_sum[keep]
    off = _offsets(gs)
    for g, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True)):
        for lo in range(a, b, _CHUNK):
            hi = min(b, lo + _CHUNK)
            s = sums[:, lo:hi].astype(np.float64)  # [nb, c]
            mu = s.sum(0) / n
            mean[lo:hi] = mu
            m2[g] += (np.square(s / cnt[:, None] - mu) * cnt[:, None]).sum()
    return Moments(n, mean, m2, gs)


def variance(m: Moments) -> float:
    """Per-parameter average sample variance ``sum_g m2_g / ((n - 1) dim)`` (the V of Eq. 16)."""
    if m.n < 2:
        raise AnalysisError(f"variance needs at least 2 draws, got {m.n}")
    return float(m.m2.sum() / ((m.n - 1) * m.dim))


def group_variance(m: Moments) -> np.ndarray:
    """Per group, the per-parameter average sample variance [G]."""
    if m.n < 2:
        raise AnalysisError(f"variance needs at least 2 draws, got {m.n}")
    return m.m2 / ((m.n - 1) * m.group_sizes)


def squared_bias(ref: Moments, test: Moments) -> float:
    """Unbiased estimate of the per-parameter squared bias b^2 (Eq. 16).

    Args:
        ref: moments of the reference estimator (e.g. rf(M=4)), n_R draws, shape [dim].
        test: moments of the tested estimator, n_T draws, independent of ref.

    Returns:
        ``||mu_R - mu_T||^2 / dim - V_R / n_R - V_T / n_T``. Can be negative; report as measured.
    """
    if ref.dim != test.dim:
        raise AnalysisError(f"squared_bias: dims differ (reference {ref.dim}, test {test.dim})")
    d2 = float(np.square(ref.mean - test.mean).sum())
    return d2 / test.dim - variance(ref) / ref.n - variance(test) / test.n


def squared_bias_exact(exact: np.ndarray, test: Moments) -> float:
    """Eq. 16 against the exact gradient: ``||g* - mu_T||^2 / dim - V_T / n_T`` (unbiased)."""
    exact = np.asarray(exact, dtype=np.float64)
    if exact.shape != test.mean.shape:
        raise AnalysisError(f"squared_bias_exact: exact gradient {list(exact.shape)} "
                            f"vs mean {list(test.mean.shape)}")
    return float(np.square(exact - test.mean).sum()) / test.dim - variance(test) / test.n


def run_moments(run: Any) -> Moments:
    """Moments of a run (a ``store.RunData`` with its block sums loaded)."""
    if run.block_sum is None:
        raise AnalysisError(f"{run.path}: block sums were not loaded; read it with load_sums=True")
    return block_moments(run.block_count, run.block_sum, run.block_m2, run.group_sizes)


# ---------------------------------------------------------------------------------------------
# Gram matrices of block sums: every bootstrap resample in O(nb^2)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairGram:
    """What Eq. 16 needs for every block resample of a (reference, test) pair, in O(nb^2) numbers.

    Block sums are centred at a common point ``c`` (the reference mean, or the exact gradient),
    ``C_b = S_b - n_b c``; layer ``k < G`` is parameter group k and layer ``G`` all parameters.
    With block weights ``w`` (resample counts), ``N = w.n`` and
    ``||mu_R* - mu_T*||^2 = w_R' RR w_R / N_R^2 - 2 w_R' RT w_T / (N_R N_T) + w_T' TT w_T / N_T^2``.

    Attributes:
        dims: int64 [K], entries per layer (K = G + 1).
        ref_count, test_count: float64 [nbR], [nbT], draws per block (nbR = 0: exact reference).
        ref_m2, test_m2: float64 [nbR, K], [nbT, K], within-block sums of squared deviations.
        rr, rt, tt: float64 [K, nbR, nbR], [K, nbR, nbT], [K, nbT, nbT], Gram matrices.
        exact: whether the reference is the exact gradient (no reference blocks).
    """

    dims: np.ndarray
    ref_count: np.ndarray
    test_count: np.ndarray
    ref_m2: np.ndarray
    test_m2: np.ndarray
    rr: np.ndarray
    rt: np.ndarray
    tt: np.ndarray
    exact: bool


def _with_total(per_group: np.ndarray, axis: int) -> np.ndarray:
    """Append the sum over groups along ``axis`` as one more layer."""
    return np.concatenate([per_group, per_group.sum(axis=axis, keepdims=True)], axis=axis)


def _kept(run: Any) -> np.ndarray:
    """Indices of the blocks with at least one finite draw."""
    return np.flatnonzero(np.asarray(run.block_count) > 0)


def _syrk(x: np.ndarray) -> np.ndarray:
    """Upper triangle of ``x x'`` for x [m, k] float64 (BLAS syrk: stays fast on a loaded machine)."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        return np.zeros((x.shape[0], x.shape[0]))
    return scipy.linalg.blas.dsyrk(1.0, np.ascontiguousarray(x).T, trans=1)


def _symmetric(upper: np.ndarray) -> np.ndarray:
    """Full symmetric matrices from upper triangles [..., m, m]."""
    return np.triu(upper) + np.swapaxes(np.triu(upper, 1), -1, -2)


def _raw_grams(blocks: Sequence[tuple[np.ndarray, np.ndarray]], center: np.ndarray,
               group_sizes: np.ndarray) -> np.ndarray:
    """Per group Gram matrix [G, m + 1, m + 1] of the rows ``[S_b (b in each block list); c]``.

    One pass over the block sums: each column chunk is converted to float64 once and fed to syrk.
    ``blocks`` are ``(block_sum [nb, dim], kept block indices)`` pairs (m rows in all); the last row
    is ``center`` [dim]. Centring happens afterwards (:func:`_centre`): in float64 the cancellation
    it saves is far below the float32 rounding already in the stored sums.
    """
    m = sum(len(idx) for _, idx in blocks)
    off = _offsets(group_sizes)
    buf = np.empty((m + 1, min(_CHUNK, int(max(group_sizes, default=1)))))
    out = np.zeros((len(group_sizes), m + 1, m + 1))
    for g, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True)):
        for lo in range(a, b, _CHUNK):
            hi = min(b, lo + _CHUNK)
            x = buf[:, : hi - lo]
            r = 0
            for sums, idx in blocks:
                if len(idx) == sums.shape[0]:
                    np.copyto(x[r:r + len(idx)], sums[:, lo:hi], casting="unsafe")
                else:
                    x[r:r + len(idx)] = sums[idx, lo:hi]
                r += len(idx)
            x[m] = center[lo:hi]
            out[g] += _syrk(x)
    return _symmetric(out)


def _centre(raw: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Gram [G, m, m] of ``C_b = S_b - n_b c`` from the raw Gram of ``[S; c]`` [G, m + 1, m + 1]."""
    m = len(count)
    sc, cc = raw[:, :m, m], raw[:, m, m]  # S_b . c  [G, m],  c . c  [G]
    return (raw[:, :m, :m] - sc[:, :, None] * count[None, None, :] - count[None, :, None] * sc[:, None, :]
            + cc[:, None, None] * np.outer(count, count)[None])


def gram_self(sums: np.ndarray, count: np.ndarray, center: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """Per group Gram matrix [G, nb, nb] of the block sums centred at ``center`` (float64, chunked)."""
    count = np.asarray(count, dtype=np.float64)
    return _centre(_raw_grams([(sums, np.arange(len(count)))], center, group_sizes), count)


def _block_mean(sums: np.ndarray, idx: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Mean of all draws, float64 [dim], from the kept block sums (chunked conversion)."""
    out = np.zeros(sums.shape[1])
    n = float(np.sum(count))
    for lo in range(0, sums.shape[1], _CHUNK):
        out[lo:lo + _CHUNK] = sums[idx, lo:lo + _CHUNK].astype(np.float64).sum(0) / n
    return out


def _eq16(pg: PairGram, w_ref: np.ndarray | None, w_test: np.ndarray) -> tuple[np.ndarray, ...]:
    """Eq. 16 for block weights (resample counts) ``w_ref`` [..., nbR], ``w_test`` [..., nbT].

    Returns:
        ``(b2, V_T, V_R)``, each [..., K] (``V_R`` is zero for an exact reference).
    """
    dims = pg.dims.astype(np.float64)

    def side(w: np.ndarray, count: np.ndarray, m2: np.ndarray, gram: np.ndarray):
        n = w @ count  # [...]
        q = _bilinear(w, gram, w)  # [..., K]
        diag = np.einsum("kii->ki", gram) / count  # [K, nb]
        ss = w @ m2 + w @ diag.T - q / n[..., None]  # within + between blocks
        return n, q, ss / ((n[..., None] - 1.0) * dims)

    n_t, q_tt, v_t = side(w_test, pg.test_count, pg.test_m2, pg.tt)
    if pg.exact:
        b2 = q_tt / (n_t[..., None] ** 2 * dims) - v_t / n_t[..., None]
        return b2, v_t, np.zeros_like(v_t)
    n_r, q_rr, v_r = side(w_ref, pg.ref_count, pg.ref_m2, pg.rr)
    q_rt = _bilinear(w_ref, pg.rt, w_test)
    nr, nt = n_r[..., None], n_t[..., None]
    dist2 = q_rr / nr**2 - 2.0 * q_rt / (nr * nt) + q_tt / nt**2
    b2 = dist2 / dims - v_r / nr - v_t / nt
    return b2, v_t, v_r


def _weights(idx: np.ndarray, nb: int) -> np.ndarray:
    """Resampled block indices [..., m] -> block counts [..., nb] (float64)."""
    idx = np.asarray(idx).astype(np.int64)
    lead = idx.shape[:-1]
    flat = idx.reshape(-1, idx.shape[-1]) + nb * np.arange(math.prod(lead))[:, None]
    return np.bincount(flat.ravel(), minlength=nb * math.prod(lead)).reshape(*lead, nb).astype(np.float64)


def _bilinear(w1: np.ndarray, gram: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """``w1' G_k w2`` for every layer k: [..., n1], [K, n1, n2], [..., n2] -> [..., K] (BLAS)."""
    lead = np.broadcast_shapes(w1.shape[:-1], w2.shape[:-1])
    K, n1, n2 = gram.shape
    a = np.broadcast_to(w1, lead + (n1,)).reshape(-1, n1)
    b = np.broadcast_to(w2, lead + (n2,)).reshape(-1, n2)
    ag = (a @ gram.transpose(1, 0, 2).reshape(n1, K * n2)).reshape(-1, K, n2)  # [M, K, n2]
    return np.einsum("mkj,mj->mk", ag, b).reshape(lead + (K,))


@dataclass(frozen=True)
class _PivotParts:
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


def _pivot_parts(pg: PairGram) -> _PivotParts:
    """Deviation Gram matrices from the centred ones: ``dev = (I - n 1' / N) C``."""
    def proj(count: np.ndarray) -> np.ndarray:
        nb = len(count)
        return np.eye(nb) - np.outer(count, np.ones(nb)) / count.sum() if nb else np.zeros((0, 0))

    p_r, p_t = proj(pg.ref_count), proj(pg.test_count)
    ones_t = np.ones(len(pg.test_count)) / pg.test_count.sum()
    d_tt = p_t @ pg.tt @ p_t.T
    d_rt = p_r @ pg.rt @ p_t.T
    d_rr = p_r @ pg.rr @ p_r.T
    return _PivotParts(d_rr, d_rt, d_tt, (p_r @ pg.rt) @ ones_t, (p_t @ pg.tt) @ ones_t,
                       np.einsum("i,kij,j->k", ones_t, pg.tt, ones_t))


def _offdiag(w: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``w' (G - diag G) w`` per layer: [..., nb], [K, nb, nb] -> [..., K]."""
    return _bilinear(w, gram, w) - (w * w) @ np.einsum("kii->ki", gram).T


def _pivot_terms(pg: PairGram, parts: _PivotParts, w_ref: np.ndarray | None,
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
        e_r_t = _bilinear(w_ref, parts.d_rt, w_test) / (n_r * n_t)
        quad = quad + a_r**2 * _offdiag(w_ref, parts.d_rr) / n_r**2 - 2 * a_r * a_t * e_r_t
    return lin_t / dims, lin_r / dims, quad / dims


def _t_factor(var_t: np.ndarray, var_r: np.ndarray, nbt: int, nbr: int, alpha: float) -> np.ndarray:
    """``t_{1-alpha}(nu) / z_{1-alpha}``: widens the linear (cross) term for the few blocks it rests on.

    The bootstrap spread of ``2 m . e`` is a variance estimated from ``nb - 1`` block deviations
    per run; as with a mean from few clusters, quantiles of Student's t with the Welch-Satterthwaite
    degrees of freedom ``nu`` replace the normal ones (without it coverage falls to ~0.93 at
    nb = 20 when this term dominates).
    """
    num = (var_t + var_r) ** 2
    den = var_t**2 / max(nbt - 1, 1) + (var_r**2 / (nbr - 1) if nbr > 1 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(den > 0, num / den, np.inf)
    z = scipy.stats.norm.ppf(1 - alpha)
    return np.where(np.isfinite(nu), scipy.stats.t.ppf(1 - alpha, np.maximum(nu, 1.0)) / z, 1.0)


def _invert(est: np.ndarray, lin: np.ndarray, quad: np.ndarray, scale: np.ndarray, shift: np.ndarray,
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

    def crossing(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Where f goes from <= 0 (at lo) to > 0 (at hi), per layer; the bracket widens as needed."""
        step = np.maximum(hi - lo, 1e-300)
        for _ in range(60):
            ends = f(np.stack([lo, hi], axis=1))
            bad_lo, bad_hi = ends[:, 0] > 0, ends[:, 1] <= 0
            if not (bad_lo.any() or bad_hi.any()):
                break
            lo, hi, step = np.where(bad_lo, lo - step, lo), np.where(bad_hi, hi + step, hi), 2 * step
        t = np.linspace(0.0, 1.0, grid + 1)
        for _ in range(rounds):
            thetas = lo[:, None] + (hi - lo)[:, None] * t  # [K, grid + 1]
            pos = f(thetas) > 0
            pos[:, -1] = True
            j = np.maximum(pos.argmax(axis=1), 1)  # first grid point above zero
            rows = np.arange(len(lo))
            lo, hi = thetas[rows, j - 1], thetas[rows, j]
        return (lo + hi) / 2

    est2 = est[:, None]
    q_lo, q_hi = q(est2, alpha)[:, 0], q(est2, 1 - alpha)[:, 0]
    # Upper end: the largest theta with theta + q_lo(theta) <= est.
    upper = crossing(lambda th: th + q(th, alpha) - est2, est.copy(), est - q_lo)
    # Lower end: the smallest theta with theta + q_hi(theta) >= est.
    lower = crossing(lambda th: th + q(th, 1 - alpha) - est2, est - q_hi, est.copy())
    return lower, upper


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval (None where it cannot be formed)."""

    value: float
    low: float | None = None
    high: float | None = None
    se: float | None = None  # bootstrap standard error


@dataclass(frozen=True)
class GroupResult:
    """Eq. 16 restricted to one parameter group (one parameter tensor)."""

    name: str
    dim: int
    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None


@dataclass(frozen=True)
class Comparison:
    """A tested run against a reference (Eq. 16), or one run alone (``b2 is None``)."""

    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None
    ref_share: float | None  # share of b2's bootstrap variance due to resampling the reference
    ref_only_width: float | None  # width of b2's interval when only the reference is resampled
    cosine: float | None  # between the mean gradients of test and reference (or exact)
    groups: tuple[GroupResult, ...]


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _check_bootstrap_args(n_resamples: Any, method: str, confidence_level: float) -> None:
    if method not in METHODS:
        raise AnalysisError(f"unknown bootstrap method {method!r}; expected one of: {', '.join(METHODS)}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 0:
        raise AnalysisError(f"n_resamples must be a non-negative integer, got {n_resamples!r}")
    if not 0.0 < confidence_level < 1.0:
        raise AnalysisError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")


def bootstrap_pair(pg: PairGram, *, n_resamples: int = 1000, method: str = "pivot",
                   confidence_level: float = 0.95, rng: np.random.Generator,
                   with_b2: bool = True) -> dict[str, Any]:
    """Point estimates and bootstrap intervals of b2, V_T and MSE for every layer of ``pg``.

    Args:
        pg: the pair's Gram matrices (:func:`pair_gram`).
        n_resamples: bootstrap resamples (0: point estimates only).
        method: ``pivot`` (default, honest; see the module docstring), or scipy's ``percentile``,
            ``basic``, ``bca`` on the plain Eq. 16 statistic.
        confidence_level: e.g. 0.95.
        rng: the randomness of the resampling.
        with_b2: False for a run alone (variance only).

    Returns:
        dict with arrays [K] ``b2, v, mse`` (point), ``b2_ci, v_ci, mse_ci`` (pairs of [K] arrays or
        None), ``b2_se, v_se, mse_se``, and ``ref_share, ref_only_width`` (floats or None, all params).
    """
    _check_bootstrap_args(n_resamples, method, confidence_level)
    nbr, nbt = len(pg.ref_count), len(pg.test_count)
    ones_r, ones_t = np.ones(nbr), np.ones(nbt)
    b2, v_t, _ = _eq16(pg, ones_r, ones_t)
    K = len(pg.dims)
    out: dict[str, Any] = {"b2": b2, "v": v_t, "mse": b2 + v_t, "b2_ci": None, "v_ci": None, "mse_ci": None,
                           "b2_se": None, "v_se": None, "mse_se": None, "ref_share": None,
                           "ref_only_width": None}
    if n_resamples == 0 or nbt < 2 or (not pg.exact and nbr < 2):
        return out
    two = not pg.exact
    pivot = method == "pivot"
    if pivot:
        parts = _pivot_parts(pg)
        scale = np.where(parts.mm > 0, parts.mm / pg.dims, 1.0)  # ||mu_R - mu_T||^2 / d per layer
        lam = np.sqrt(np.maximum(b2, 0.0) / scale)

    def stat(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis  # always the last axis
        w_r = _weights(idx[0], nbr) if two else None
        w_t = _weights(idx[-1], nbt)
        b, v, _ = _eq16(pg, w_r, w_t)
        if pivot:  # [4K, ...]: lin_t, lin_r, quad, V
            return np.moveaxis(np.concatenate([*_pivot_terms(pg, parts, w_r, w_t), v], axis=-1), -1, 0)
        return np.moveaxis(np.concatenate([b, v], axis=-1), -1, 0)  # [2K, ...]

    data = (np.arange(nbr), np.arange(nbt)) if two else (np.arange(nbt),)
    alpha = (1.0 - confidence_level) / 2
    with warnings.catch_warnings():  # BCa: NaN ends (reported as None) when z0 is infinite
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        res = scipy.stats.bootstrap(data, stat, n_resamples=int(n_resamples), vectorized=True,
                                    method="percentile" if pivot else method,
                                    confidence_level=confidence_level, rng=rng)
        if not pivot:  # scipy's intervals of the plain Eq. 16 statistic, MSE = b2 + V as a statistic too
            def stat_mse(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
                b_v = stat(*idx, axis=axis)
                return b_v[:K] + b_v[K:]

            res_m = scipy.stats.bootstrap(data, stat_mse, n_resamples=int(n_resamples), vectorized=True,
                                          method=method, confidence_level=confidence_level, rng=rng)
    dist = res.bootstrap_distribution  # [2K, B] or [3K, B]
    if pivot:
        # Eq. 16, V and MSE are unbiased: the bootstrap gives the shape of their errors (centred),
        # and the b2 / MSE intervals invert it over the squared bias of the bootstrap world.
        a_t = math.sqrt(nbt / (nbt - 1))
        lin_t, lin_r, quad = dist[:K], dist[K:2 * K], dist[2 * K:3 * K]
        lin = _t_factor(lin_t.var(-1), lin_r.var(-1), nbt, nbr, alpha)[:, None] * (lin_t - lin_r)
        dev_v = a_t * (dist[3 * K:] - dist[3 * K:].mean(-1, keepdims=True))
        if with_b2:
            out["b2_ci"] = _invert(b2, lin, quad, scale, np.zeros(K), alpha)
            out["mse_ci"] = _invert(b2 + v_t, lin, quad + dev_v, scale, v_t, alpha)
        q_lo, q_hi = np.quantile(dev_v, [alpha, 1.0 - alpha], axis=-1)
        out["v_ci"] = (v_t - q_hi, v_t - q_lo)
        dev_b = lam[:, None] * lin + quad
        out["b2_se"], out["v_se"] = dev_b.std(-1, ddof=1), dev_v.std(-1, ddof=1)
        out["mse_se"] = (dev_b + dev_v).std(-1, ddof=1)
    else:
        lo, hi = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
        se = np.asarray(res.standard_error)
        out["b2_ci"], out["v_ci"] = (lo[:K], hi[:K]), (lo[K:], hi[K:])
        out["b2_se"], out["v_se"] = se[:K], se[K:]
        ci_m = res_m.confidence_interval
        out["mse_ci"] = (np.asarray(ci_m.low), np.asarray(ci_m.high))
        out["mse_se"] = np.asarray(res_m.standard_error)
    if two and with_b2:
        # The reference's own contribution: resample R only, T's blocks held fixed.
        def stat_r(idx_r: np.ndarray, axis: int = -1) -> np.ndarray:
            del axis
            w_r = _weights(idx_r, nbr)
            w_t = np.broadcast_to(ones_t, w_r.shape[:-1] + (nbt,))
            if pivot:
                lt, lr, qd = _pivot_terms(pg, parts, w_r, w_t)
                return (lam * (lt - lr) + qd)[..., -1]
            return _eq16(pg, w_r, w_t)[0][..., -1]

        res_r = scipy.stats.bootstrap((np.arange(nbr),), stat_r, n_resamples=int(n_resamples),
                                      vectorized=True, method="percentile",
                                      confidence_level=confidence_level, rng=rng)
        d_r = res_r.bootstrap_distribution
        var_all = float(np.var(dev_b[K - 1] if pivot else dist[K - 1]))
        out["ref_share"] = _finite(float(np.var(d_r)) / var_all) if var_all > 0 else None
        lo_r, hi_r = np.quantile(d_r, [alpha, 1 - alpha])
        out["ref_only_width"] = float(hi_r - lo_r)
    return out


def pair_gram(ref: Any | None, test: Any, *, exact: np.ndarray | None = None,
              ref_mean: np.ndarray | None = None) -> tuple[PairGram, float]:
    """Gram matrices of a tested run against a reference run (or ``exact`` gradient), one pass.

    Args:
        ref: the reference ``RunData`` with block sums (None with ``exact``).
        test: the tested ``RunData`` with block sums.
        exact: float64 [dim], the exact gradient (instead of ``ref``).
        ref_mean: the reference's mean [dim], if already known (it is the centre).

    Returns:
        ``(PairGram, cosine)``: cosine between the mean gradients of test and reference (or exact).
    """
    gs = np.asarray(test.group_sizes, dtype=np.int64)
    t_idx = _kept(test)
    t_count = np.asarray(test.block_count)[t_idx].astype(np.float64)
    t_m2 = _with_total(np.asarray(test.block_m2, dtype=np.float64)[t_idx], axis=1)
    if exact is not None:
        center = np.asarray(exact, dtype=np.float64)
        r_count, r_m2 = np.zeros(0), np.zeros((0, len(gs) + 1))
        blocks = [(_sums(test), t_idx)]
    else:
        r_idx = _kept(ref)
        r_count = np.asarray(ref.block_count)[r_idx].astype(np.float64)
        r_m2 = _with_total(np.asarray(ref.block_m2, dtype=np.float64)[r_idx], axis=1)
        center = _block_mean(_sums(ref), r_idx, r_count) if ref_mean is None else ref_mean
        blocks = [(_sums(ref), r_idx), (_sums(test), t_idx)]
    raw = _raw_grams(blocks, center, gs)  # [G, nbR + nbT + 1, ...]
    counts = np.concatenate([r_count, t_count])
    cg = _with_total(_centre(raw, counts), axis=0)
    nbr, m = len(r_count), len(counts)
    tot = raw.sum(0)
    n_t = t_count.sum()
    dot = tot[nbr:m, m].sum() / n_t  # mu_T . c
    denom = math.sqrt(max(tot[nbr:m, nbr:m].sum() / n_t**2, 0.0) * max(tot[m, m], 0.0))
    cosine = dot / denom if denom > 0 else float("nan")
    pg = PairGram(_with_total(gs, 0), r_count, t_count, r_m2, t_m2, cg[:, :nbr, :nbr], cg[:, :nbr, nbr:],
                  cg[:, nbr:, nbr:], exact is not None)
    return pg, cosine


def _sums(run: Any) -> np.ndarray:
    if run.block_sum is None:
        raise AnalysisError(f"{run.path}: block sums were not loaded; read it with load_sums=True")
    return run.block_sum


def _pack(out: dict[str, Any], name: str, k: int) -> Estimate | None:
    val = out[name]
    if val is None:
        return None
    ci, se = out[f"{name}_ci"], out[f"{name}_se"]
    return Estimate(float(val[k]), _finite(ci[0][k]) if ci else None, _finite(ci[1][k]) if ci else None,
                    _finite(se[k]) if se is not None else None)


def _comparison(out: dict[str, Any], names: Sequence[str], dims: np.ndarray, *, with_b2: bool,
                cosine: float | None) -> Comparison:
    G = len(names)
    groups = tuple(
        GroupResult(names[k], int(dims[k]), _pack(out, "b2", k) if with_b2 else None, _pack(out, "v", k),
                    _pack(out, "mse", k) if with_b2 else None)
        for k in range(G)
    )
    return Comparison(
        b2=_pack(out, "b2", G) if with_b2 else None,
        variance=_pack(out, "v", G),
        mse=_pack(out, "mse", G) if with_b2 else None,
        ref_share=out["ref_share"] if with_b2 else None,
        ref_only_width=out["ref_only_width"] if with_b2 else None,
        cosine=_finite(cosine) if cosine is not None else None,
        groups=groups,
    )


def compare(ref: Any | None, test: Any, *, exact: np.ndarray | None = None, n_resamples: int = 1000,
            method: str = "pivot", confidence_level: float = 0.95,
            rng: np.random.Generator | None = None) -> Comparison:
    """Eq. 16 of a tested run against a reference run or the exact gradient, with intervals.

    Args:
        ref: reference ``RunData`` (block sums loaded), or None when ``exact`` is given.
        test: tested ``RunData`` (block sums loaded), independent of ``ref``.
        exact: float64 [dim], the exact gradient.
        n_resamples: bootstrap resamples of the blocks (R and T independently).
        method: ``pivot`` (default), ``percentile``, ``basic`` or ``bca``.
        confidence_level: of the intervals.
        rng: randomness of the resampling (default: a fixed seed 0).

    Returns:
        :class:`Comparison` for all parameters and per group.
    """
    if (ref is None) == (exact is None):
        raise AnalysisError("compare: give either a reference run or an exact gradient, not both/neither")
    if ref is not None:
        _check_compatible([ref, test])
    elif np.shape(exact) != (int(np.sum(test.group_sizes)),):
        raise AnalysisError(f"compare: exact gradient has shape {list(np.shape(exact))}, "
                            f"expected [{int(np.sum(test.group_sizes))}] (the run's dim)")
    pg, cosine = pair_gram(ref, test, exact=exact)
    out = bootstrap_pair(pg, n_resamples=n_resamples, method=method, confidence_level=confidence_level,
                         rng=rng if rng is not None else np.random.default_rng(0))
    return _comparison(out, list(test.groups), pg.dims, with_b2=True, cosine=cosine)


def describe_run(run: Any, *, n_resamples: int = 1000, method: str = "pivot", confidence_level: float = 0.95,
                 rng: np.random.Generator | None = None, mean: np.ndarray | None = None) -> Comparison:
    """The variance of one run alone (with its interval); ``b2`` is None."""
    sums = _sums(run)
    idx = _kept(run)
    count = np.asarray(run.block_count)[idx].astype(np.float64)
    gs = np.asarray(run.group_sizes, dtype=np.int64)
    center = _block_mean(sums, idx, count) if mean is None else mean
    gram = _centre(_raw_grams([(sums, idx)], center, gs), count)
    pg = PairGram(_with_total(gs, 0), np.zeros(0), count, np.zeros((0, len(gs) + 1)),
                  _with_total(np.asarray(run.block_m2, dtype=np.float64)[idx], axis=1),
                  np.zeros((len(gs) + 1, 0, 0)), np.zeros((len(gs) + 1, 0, len(count))),
                  _with_total(gram, 0), True)
    out = bootstrap_pair(pg, n_resamples=n_resamples, method=method, confidence_level=confidence_level,
                         rng=rng if rng is not None else np.random.default_rng(0), with_b2=False)
    return _comparison(out, list(run.groups), pg.dims, with_b2=False, cosine=None)


# ---------------------------------------------------------------------------------------------
# Compatibility of runs
# ---------------------------------------------------------------------------------------------


def _attr(run: Any, key: str, default: Any = None) -> Any:
    return (run.attrs or {}).get(key, default)


def _name(run: Any) -> str:
    return Path(str(run.path)).name if run.path else f"{_attr(run, 'spec')}-s{_attr(run, 'seed')}"


def _layout_key(run: Any) -> Any:
    layout = _attr(run, "layout")
    if layout is None:
        return [list(run.groups), [int(x) for x in run.group_sizes]]
    return [[str(e[0]), [int(s) for s in e[1]], int(e[2])] for e in layout]


def _check_compatible(runs: Sequence[Any]) -> None:
    """Refuse runs of different snapshots or parameter sets (AnalysisError, one line)."""
    first = runs[0]
    for other in runs[1:]:
        for key, what in (("snapshot_hash", "snapshots"), ("params_glob", "parameter sets (params_glob)"),
                          ("dim", "parameter sets (dim)")):
            a, b = _attr(first, key), _attr(other, key)
            if key == "dim":
                a = a if a is not None else int(np.sum(first.group_sizes))
                b = b if b is not None else int(np.sum(other.group_sizes))
            if a != b:
                raise AnalysisError(
                    f"cannot compare runs of different {what}: {_name(first)} has {key}={a!r}, "
                    f"{_name(other)} has {key}={b!r}; analyse one snapshot and parameter set at a time "
                    f"(pass --snapshot ID, or sample both with the same --params)")
        if _layout_key(first) != _layout_key(other) or list(first.groups) != list(other.groups):
            raise AnalysisError(
                f"cannot compare runs of different parameter sets (layout): {_name(first)} and "
                f"{_name(other)} select different parameter tensors; sample both with the same --params")


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """One row of a report: a run, its Eq. 16 numbers against the reference, and its provenance."""

    spec: str
    family: str
    hyper: dict[str, float]  # the spec's hyper-parameters
    seed: int
    role: str  # "test" or "reference" (the reference run itself: b2 is None)
    status: str
    n: int
    n_blocks: int
    dim: int
    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None
    ref_share: float | None
    ref_only_width: float | None
    cost: float  # forward passes per draw
    draws_per_s: float | None
    variance_x_cost: float
    cosine: float | None
    nonfinite: int
    pareto: bool
    snapshot_hash: str
    path: str
    versions: dict[str, Any]
    groups: tuple[GroupResult, ...] = ()


@dataclass(frozen=True)
class Report:
    """The analysis of one snapshot's runs against one reference; rows sorted by family, hyper-parameter."""

    snapshot_hash: str
    reference: str  # canonical spec of the reference, or "exact"
    reference_path: str | None
    reference_seed: int | None
    method: str
    n_resamples: int
    confidence_level: float
    seed: int
    dim: int
    params_glob: str | None
    problem: dict[str, Any]
    rows: tuple[RunResult, ...]
    notes: tuple[str, ...] = ()
    runs_dir: str | None = None
    biasvar_version: str = biasvar.__version__
    schema: int = REPORT_SCHEMA

    def row(self, spec: str, seed: int | None = None) -> RunResult:
        """The row of ``spec`` (canonical or not), the lowest seed unless ``seed`` is given."""
        canon = str(parse_spec(spec))
        for r in self.rows:
            if r.spec == canon and (seed is None or r.seed == seed):
                return r
        raise AnalysisError(f"no row for {canon}" + (f" seed {seed}" if seed is not None else "")
                            + f" in the report; rows: {', '.join(sorted({r.spec for r in self.rows}))}")


_GROUPING = {"gr-mc": ("M", "t"), "st-zgr": ("t", "alpha")}


def sort_key(spec: str, seed: int = 0) -> tuple:
    """Family (in the order of ``spec.FAMILIES``), then hyper-parameters (curve first), then seed."""
    s = parse_spec(spec)
    order = list(FAMILIES)
    keys = _GROUPING.get(s.name, tuple(p.key for p in s.family.params))
    return (order.index(s.name), tuple(float(s.get(k, 0.0)) for k in keys), seed)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which points are not dominated in (b2, V): no other point is <= in both and < in one.

    >>> pareto_front([(1, 1), (0, 2), (2, 2), (1, 1)])
    [True, True, False, True]
    """
    out = []
    for i, (b, v) in enumerate(points):
        dominated = any(
            (b2 <= b and v2 <= v and (b2 < b or v2 < v)) for j, (b2, v2) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


def _versions(run: Any) -> dict[str, Any]:
    keys = ("biasvar_version", "torch_version", "cuda_version", "git_commit", "device", "dtype", "created",
            "schema_version")
    return {k: _attr(run, k) for k in keys if _attr(run, k) is not None}


def _cost(run: Any) -> float:
    c = _attr(run, "cost")
    return float(c) if c is not None else float(parse_spec(_attr(run, "spec")).cost)


def _row(run: Any, comp: Comparison, *, role: str) -> RunResult:
    spec = parse_spec(_attr(run, "spec"))
    cost = _cost(run)
    dps = _attr(run, "draws_per_s")
    return RunResult(
        spec=str(spec), family=spec.name, hyper=dict(spec.params), seed=int(_attr(run, "seed", 0)), role=role,
        status=str(_attr(run, "status", "complete")), n=int(np.sum(run.block_count)),
        n_blocks=int(np.sum(np.asarray(run.block_count) > 0)), dim=int(np.sum(run.group_sizes)),
        b2=comp.b2, variance=comp.variance, mse=comp.mse, ref_share=comp.ref_share,
        ref_only_width=comp.ref_only_width, cost=cost, draws_per_s=float(dps) if dps is not None else None,
        variance_x_cost=comp.variance.value * cost, cosine=comp.cosine,
        nonfinite=int(np.sum(run.block_nonfinite)), pareto=False,
        snapshot_hash=str(_attr(run, "snapshot_hash", "")), path=str(run.path), versions=_versions(run),
        groups=comp.groups,
    )


def _run_rng(seed: int, run: Any) -> np.random.Generator:
    """The resampling randomness of one row: keyed by (seed, spec, run seed), not by row order."""
    key = zlib.crc32(f"{_attr(run, 'spec')}|{_attr(run, 'seed')}".encode())
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def _pick_reference(runs: Sequence[Any], reference: str) -> Any:
    canon = str(parse_spec(reference))
    cands = [r for r in runs if str(parse_spec(_attr(r, "spec"))) == canon]
    if not cands:
        have = ", ".join(sorted({str(_attr(r, "spec")) for r in runs})) or "none"
        raise AnalysisError(f"no run of the reference {canon} among the runs ({have}); sample one "
                            f"(biasvar sample --estimator \"{canon}\" ...), pick another with --reference, "
                            f"or use --reference exact on an enumerable problem")
    marked = [r for r in cands if _attr(r, "role") == "reference"]
    return min(marked or cands, key=lambda r: int(_attr(r, "seed", 0)))


def analyze(runs: Sequence[Any], *, reference: str = "rf(M=4)", n_resamples: int = 1000,
            method: str = "pivot", confidence_level: float = 0.95, seed: int = 0,
            load: Callable[[Any], Any] | None = None,
            runs_dir: str | None = None, progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Analyse runs of one snapshot and parameter set against a reference (Eq. 16, bootstrap).

    Args:
        runs: ``RunData`` of the runs (block sums may be absent if ``load`` can read them).
        reference: canonical spec of the reference (its run with the lowest seed, or the run whose
            ``attrs['role'] == 'reference'``, is the reference; its other seeds are tested rows), or
            ``"exact"`` to use every run's stored exact gradient.
        n_resamples: bootstrap resamples (blocks of R and T resampled independently).
        method: interval method, ``pivot`` (default), ``percentile``, ``basic``, ``bca``.
        confidence_level: of the intervals.
        seed: randomness of the resampling; each row's stream is keyed by (seed, spec, run seed).
        load: ``run -> run with block sums`` (e.g. ``store.read_run(run.path)``) for runs listed
            without them; they are loaded one at a time.
        runs_dir: recorded in the report.
        progress: called ``(i, total, spec)`` before each run is analysed.

    Returns:
        :class:`Report`. Raises :class:`AnalysisError` for runs of different snapshots or
        parameter sets, a missing reference, or a reference with fewer than 2 blocks.
    """
    if method not in METHODS:
        raise AnalysisError(f"unknown bootstrap method {method!r}; expected one of: {', '.join(METHODS)}")
    runs = list(runs)
    if not runs:
        raise AnalysisError("no runs to analyse" + (f" in {runs_dir}" if runs_dir else "")
                            + "; sample some with `biasvar sample`")
    _check_compatible(runs)
    loader = load or (lambda r: r)

    def loaded(r: Any) -> Any:
        return r if r.block_sum is not None else loader(r)

    notes: list[str] = []
    rows: list[RunResult] = []
    ref_run = None
    exact_mode = reference.strip().lower() == "exact"
    if exact_mode:
        missing = [_name(r) for r in runs if r.exact is None]
        if missing:
            raise AnalysisError(f"--reference exact needs runs with a stored exact gradient (enumerable "
                                f"problems); these have none: {', '.join(missing[:5])}; "
                                f"use --reference \"rf(M=4)\"")
        exact = np.asarray(runs[0].exact, dtype=np.float64)
        for r in runs[1:]:
            if not np.array_equal(np.asarray(r.exact, dtype=np.float64), exact):
                raise AnalysisError(f"runs {_name(runs[0])} and {_name(r)} store different exact gradients; "
                                    f"they cannot come from the same snapshot and parameter set")
        ref_label, tested = "exact", runs
    else:
        ref_label = str(parse_spec(reference))
        ref_run = loaded(_pick_reference(runs, ref_label))
        if int(np.sum(np.asarray(ref_run.block_count) > 0)) < 2:
            raise AnalysisError(f"the reference run {_name(ref_run)} has fewer than 2 non-empty blocks; "
                                f"the bootstrap needs at least 2 (sample more draws)")
        r_idx = _kept(ref_run)
        ref_mean = _block_mean(_sums(ref_run), r_idx, np.asarray(ref_run.block_count)[r_idx])
        tested = [r for r in runs if r is not _identity(runs, ref_run)]
        comp = describe_run(ref_run, n_resamples=n_resamples, method=method,
                            confidence_level=confidence_level, rng=_run_rng(seed, ref_run), mean=ref_mean)
        rows.append(_row(ref_run, comp, role="reference"))
    total = len(tested)
    for i, run in enumerate(tested):
        if progress is not None:
            progress(i, total, str(_attr(run, "spec")))
        run = loaded(run)
        if int(np.sum(run.block_count)) < 2:
            notes.append(f"{_name(run)}: fewer than 2 finite draws; left out")
            continue
        if int(np.sum(np.asarray(run.block_count) > 0)) < 2:
            notes.append(f"{_name(run)}: fewer than 2 non-empty blocks; no interval")
        if exact_mode:
            pg, cosine = pair_gram(None, run, exact=exact)
        else:
            pg, cosine = pair_gram(ref_run, run, ref_mean=ref_mean)
        out = bootstrap_pair(pg, n_resamples=n_resamples, method=method, confidence_level=confidence_level,
                             rng=_run_rng(seed, run))
        rows.append(_row(run, _comparison(out, list(run.groups), pg.dims, with_b2=True, cosine=cosine),
                         role="test"))
        if _attr(run, "status", "complete") != "complete":
            notes.append(f"{_name(run)}: status {_attr(run, 'status')!r} "
                         f"(partial run: committed blocks only)")
    if progress is not None:
        progress(total, total, "")
    rows = _mark_pareto(rows)
    rows.sort(key=lambda r: (sort_key(r.spec, r.seed), r.role != "reference"))
    first = runs[0]
    return Report(
        snapshot_hash=str(_attr(first, "snapshot_hash", "")), reference=ref_label,
        reference_path=str(ref_run.path) if ref_run is not None else None,
        reference_seed=int(_attr(ref_run, "seed", 0)) if ref_run is not None else None,
        method=method, n_resamples=int(n_resamples), confidence_level=float(confidence_level), seed=int(seed),
        dim=int(np.sum(first.group_sizes)), params_glob=_attr(first, "params_glob"),
        problem=dict(_attr(first, "problem") or {}), rows=tuple(rows), notes=tuple(notes),
        runs_dir=str(runs_dir) if runs_dir is not None else None,
    )


def _identity(runs: Sequence[Any], ref_run: Any) -> Any:
    """The listed run that is the reference (``loaded`` may have returned a new object)."""
    for r in runs:
        if r is ref_run or (str(r.path) == str(ref_run.path) and _attr(r, "seed") == _attr(ref_run, "seed")
                            and _attr(r, "spec") == _attr(ref_run, "spec")):
            return r
    return ref_run


def _mark_pareto(rows: list[RunResult]) -> list[RunResult]:
    """Mark the tested rows not dominated in (max(b2, 0), V).

    A negative b2 estimate means "no detectable bias" (the true b2 is >= 0), so it counts as 0:
    among runs without detectable bias only the one with the lowest variance is on the front.
    """
    idx = [i for i, r in enumerate(rows) if r.b2 is not None]
    front = pareto_front([(max(rows[i].b2.value, 0.0), rows[i].variance.value) for i in idx])
    out = list(rows)
    for i, f in zip(idx, front, strict=True):
        if f:
            out[i] = _replace(rows[i], pareto=True)
    return out


def _replace(row: RunResult, **kw: Any) -> RunResult:
    d = {f.name: getattr(row, f.name) for f in fields(row)}
    d.update(kw)
    return RunResult(**d)


def analyze_runs(runs_dir: str | Path = "runs", *, snapshot: str | None = None,
                 reference: str = "rf(M=4)", n_resamples: int = 1000, method: str = "pivot",
                 confidence_level: float = 0.95, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None) -> Report:
    """:func:`analyze` over the run files of one snapshot in ``runs_dir`` (read one at a time).

    Args:
        runs_dir: the runs folder (``<runs_dir>/<snapshot id>/<spec>-s<seed>.h5``).
        snapshot: snapshot id (or a prefix of its hash); optional when the folder holds one snapshot.
        reference, n_resamples, method, confidence_level, seed, progress: as in :func:`analyze`.
    """
    from biasvar import store  # the only module that reads HDF5

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise AnalysisError(f"runs folder {str(runs_dir)!r} does not exist; pass --runs-dir DIR "
                            f"(where `biasvar sample` wrote its run files)")
    try:
        runs = store.list_runs(runs_dir)
    except StoreError as e:
        raise AnalysisError(f"cannot list runs in {runs_dir}: {e}") from e
    hashes = sorted({str(_attr(r, "snapshot_hash", "")) for r in runs})
    if snapshot is not None:
        snap = snapshot.strip().lower()
        runs = [r for r in runs if str(_attr(r, "snapshot_hash", "")).lower().startswith(snap)]
        if not runs:
            ids = ", ".join(h[:12] for h in hashes) or "none"
            raise AnalysisError(f"no runs of snapshot {snapshot!r} in {runs_dir}; snapshots there: {ids}")
        hashes = sorted({str(_attr(r, "snapshot_hash", "")) for r in runs})
    if len(hashes) > 1:
        ids = ", ".join(h[:12] for h in hashes)
        raise AnalysisError(f"{runs_dir} holds runs of {len(hashes)} snapshots ({ids}); "
                            f"pick one with --snapshot ID")
    return analyze(runs, reference=reference, n_resamples=n_resamples, method=method,
                   confidence_level=confidence_level, seed=seed, load=lambda r: store.read_run(r.path),
                   runs_dir=str(runs_dir), progress=progress)


# ---------------------------------------------------------------------------------------------
# Formats: JSON (round-trips), CSV (full precision), Markdown and table text
# ---------------------------------------------------------------------------------------------


def report_to_dict(report: Report) -> dict[str, Any]:
    return asdict(report)


def report_to_json(report: Report) -> str:
    """JSON text with every number in full precision (``repr`` floats) and the provenance."""
    return json.dumps(report_to_dict(report), indent=1, allow_nan=False)


def _estimate(d: dict | None) -> Estimate | None:
    return None if d is None else Estimate(**d)


def _group(d: dict) -> GroupResult:
    return GroupResult(d["name"], int(d["dim"]), _estimate(d["b2"]), _estimate(d["variance"]),
                       _estimate(d["mse"]))


def report_from_dict(d: dict[str, Any]) -> Report:
    if d.get("schema") != REPORT_SCHEMA:
        raise AnalysisError(f"report schema {d.get('schema')!r} is not supported; expected {REPORT_SCHEMA}")
    rows = []
    for r in d["rows"]:
        r = dict(r)
        for k in ("b2", "variance", "mse"):
            r[k] = _estimate(r[k])
        r["groups"] = tuple(_group(g) for g in r["groups"])
        rows.append(RunResult(**r))
    d = dict(d)
    d["rows"] = tuple(rows)
    d["notes"] = tuple(d.get("notes", ()))
    return Report(**d)


def report_from_json(text: str) -> Report:
    """Read back :func:`report_to_json`; ``report_from_json(report_to_json(r)) == r``."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnalysisError(f"not a biasvar report (JSON): {e}") from e
    return report_from_dict(d)


CSV_COLUMNS = (
    "spec", "family", "seed", "role", "status", "n", "n_blocks", "dim",
    "b2", "b2_low", "b2_high", "b2_se", "variance", "variance_low", "variance_high", "variance_se",
    "mse", "mse_low", "mse_high", "mse_se", "ref_share", "ref_only_width", "cost", "draws_per_s",
    "variance_x_cost", "cosine", "nonfinite", "pareto", "snapshot_hash", "reference", "method",
    "n_resamples", "confidence_level", "bootstrap_seed", "path", "biasvar_version", "torch_version",
    "cuda_version", "git_commit", "device", "dtype",
)


def _num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return repr(x)
    return str(x)


def report_to_csv(report: Report) -> str:
    """One line per run, every number in full precision (``repr``), with provenance columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report.rows:
        vals: dict[str, Any] = {k: getattr(r, k) for k in ("spec", "family", "seed", "role", "status", "n",
                                                           "n_blocks", "dim", "ref_share", "ref_only_width",
                                                           "cost", "draws_per_s", "variance_x_cost", "cosine",
                                                           "nonfinite", "pareto", "snapshot_hash", "path")}
        for k in ("b2", "variance", "mse"):
            e = getattr(r, k)
            for part in ("value", "low", "high", "se"):
                vals[k if part == "value" else f"{k}_{part}"] = getattr(e, part) if e is not None else None
        vals.update(reference=report.reference, method=report.method, n_resamples=report.n_resamples,
                    confidence_level=report.confidence_level, bootstrap_seed=report.seed)
        for k in ("biasvar_version", "torch_version", "cuda_version", "git_commit", "device", "dtype"):
            vals[k] = r.versions.get(k)
        w.writerow([_num(vals.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def fmt(x: float | None, digits: int = 3) -> str:
    """A number in short scientific form for tables (``-`` for None)."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e6:
        out = f"{x:.{digits}g}"
        return f"{x:.0f}" if "e" in out else out  # 7137, not 7.14e+03
    mant, _, exp = f"{x:.{digits - 1}e}".partition("e")
    return f"{mant}e{int(exp)}"  # 1.64e-4, not 1.64e-04


def fmt_estimate(e: Estimate | None) -> str:
    """``value [low, high]`` (``-`` when absent)."""
    if e is None:
        return "-"
    if e.low is None or e.high is None:
        return fmt(e.value)
    for digits in range(3, 7):  # enough digits to tell the interval's ends apart
        v, lo, hi = fmt(e.value, digits), fmt(e.low, digits), fmt(e.high, digits)
        if e.low == e.high or lo != hi:
            break
    return f"{v} [{lo}, {hi}]"


TABLE_COLUMNS = ("spec", "seed", "n", "b2 [95% CI]", "V [95% CI]", "MSE", "cost", "draws/s", "V×cost",
                 "cos", "non-finite", "Pareto")


def table_rows(report: Report) -> list[dict[str, str]]:
    """The cells of the report table (the CLI's rich table and the Markdown table show these)."""
    out = []
    for r in report.rows:
        out.append({
            "spec": r.spec + (" (ref)" if r.role == "reference" else ""),
            "seed": str(r.seed),
            "n": str(r.n),
            "b2 [95% CI]": fmt_estimate(r.b2),
            "V [95% CI]": fmt_estimate(r.variance),
            "MSE": fmt(r.mse.value) if r.mse is not None else "-",
            "cost": fmt(r.cost),
            "draws/s": fmt(r.draws_per_s),
            "V×cost": fmt(r.variance_x_cost),
            "cos": f"{r.cosine:.4f}" if r.cosine is not None else "-",
            "non-finite": str(r.nonfinite),
            "Pareto": "*" if r.pareto else "",
        })
    return out


def report_header(report: Report) -> str:
    """One line: snapshot, reference, interval method."""
    ref = report.reference
    if ref != "exact":
        ref = f"{ref} (seed {report.reference_seed})"
    pct = f"{report.confidence_level * 100:g}%"
    return (f"snapshot {report.snapshot_hash[:12]} · dim {report.dim} · reference {ref} · {pct} intervals: "
            f"{report.method} bootstrap over blocks, {report.n_resamples} resamples")


def report_to_markdown(report: Report) -> str:
    """A Markdown table of :func:`table_rows` with a header line and the notes."""
    rows = table_rows(report)
    cols = TABLE_COLUMNS
    lines = [report_header(report), "", "| " + " | ".join(cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in cols) + " |")
    lines.append("")
    lines.append("b2: unbiased squared bias per parameter (Eq. 16, can be negative); "
                 "V: variance per parameter; MSE = b2 + V; cost: forward passes per draw; "
                 "Pareto: not dominated in (b2, V).")
    for n in report.notes:
        lines.append(f"- {n}")
    return "\n".join(lines) + "\n"


def format_report(report: Report, fmt_name: str) -> str:
    """The report as ``md``, ``json`` or ``csv`` text."""
    if fmt_name == "md":
        return report_to_markdown(report)
    if fmt_name == "json":
        return report_to_json(report) + "\n"
    if fmt_name == "csv":
        return report_to_csv(report)
    raise AnalysisError(f"unknown report format {fmt_name!r}; expected one of: md, json, csv (or table)")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary shared file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = [
    "Comparison", "Estimate", "GroupResult", "METHODS", "Moments", "PairGram", "Report", "RunResult",
    "analyze", "analyze_runs", "block_moments", "compare", "describe_run", "fmt", "fmt_estimate",
    "format_report", "group_variance", "merge_moments", "moments", "pair_gram", "pareto_front",
    "report_from_json", "report_header", "report_to_csv", "report_to_json", "report_to_markdown",
    "run_moments", "squared_bias", "squared_bias_exact", "table_rows", "variance", "write_atomic",
]

