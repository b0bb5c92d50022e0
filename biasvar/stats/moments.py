"""Streaming moments of gradient draws: the one state type of the engine and the analysis.

:class:`Moments` holds the sufficient statistics of a set of draws ``x_1..x_n`` in ``R^dim`` whose
entries are split into contiguous parameter groups (one group per parameter tensor):

* ``count`` = n, ``sum`` = ``sum_i x_i`` [dim] (float64),
* ``m2`` [G] = per group ``sum_i ||x_i - mean||^2`` (sum of squared deviations from the mean),
* ``sumsq`` [G] = per group ``sum_i ||x_i||^2`` (stored in run files; not used by the estimates).

It works the way a torchmetrics metric does: :meth:`Moments.update` folds in a chunk of draws,
:meth:`Moments.merge` combines two states, and :func:`variance` / :func:`squared_bias` compute
the results. The arrays are numpy or torch alike (the engine keeps them on the device, the
analysis in numpy): only ``sum``, ``square`` and slicing are used.

Merging uses the parallel formula of Chan, Golub & LeVeque (1979):

    ``m2 = m2_a + m2_b + n_a n_b / n * ||mean_b - mean_a||^2`` per group,

exact in float64 and free of the cancellation of ``sum x^2 - n mean^2`` (gradient variances are
small next to ``mean^2``), so block statistics do not depend on how draws were chunked.

**Eq. 16.** For a tested run T against an independent reference run R (``dim`` parameters,
sample means ``mu``, per-parameter average sample variances ``V`` with denominator ``n - 1``),

    ``b2 = ||mu_R - mu_T||^2 / dim - V_R / n_R - V_T / n_T``

is unbiased for ``||E X - E Y||^2 / dim`` (:func:`squared_bias`); against the exact gradient
``g*`` it is ``||g* - mu_T||^2 / dim - V_T / n_T`` (:func:`squared_bias_exact`). ``b2`` can be
negative and is reported as measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biasvar.errors import AnalysisError

CHUNK = 1 << 16  # columns converted to float64 at a time (numpy paths)


def offsets(group_sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[0, s_0, s_0 + s_1, ...]``: the group boundaries in the flat vector."""
    return np.concatenate([[0], np.cumsum(np.asarray(group_sizes, dtype=np.int64))]).astype(np.int64)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _xp(x: Any) -> Any:
    """The array namespace of ``x`` (numpy, or torch for tensors; torch is imported only then)."""
    if _is_torch(x):
        import torch

        return torch
    return np


def _f64(x: Any) -> Any:
    if _is_torch(x):
        import torch

        return x.to(torch.float64)
    return np.asarray(x, dtype=np.float64)


def _group_sq(x: Any, group_sizes: Sequence[int]) -> Any:
    """Per group sum of squares of the last axis of ``x`` ([..., dim] -> [..., G]), in float64."""
    xp = _xp(x)
    off = offsets(group_sizes)
    return xp.stack([xp.square(_f64(x[..., int(a):int(b)])).sum(-1) for a, b in zip(off[:-1], off[1:],
                                                                                       strict=True)], -1)


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a set of draws (see the module docstring); merge, don't mutate.

    Attributes:
        count: number of draws n.
        sum: float64 [dim], ``sum_i x_i``.
        m2: float64 [G], per group ``sum_i ||x_i - mean||^2``.
        sumsq: float64 [G], per group ``sum_i ||x_i||^2``.
        group_sizes: entries per group (sums to dim); group g is a contiguous slice.
    """

    count: int
    sum: Any
    m2: Any
    sumsq: Any
    group_sizes: tuple[int, ...]

    @property
    def dim(self) -> int:
        return int(self.sum.shape[0])

    @property
    def mean(self) -> Any:
        """``sum / count`` (zeros for no draws)."""
        return self.sum / self.count if self.count else self.sum * 0.0

    @classmethod
    def of(cls, x: Any, group_sizes: Sequence[int] | np.ndarray | None = None) -> Moments:
        """The moments of draws ``x`` [n, dim] (numpy array or tensor), computed one group at a time
        in float64."""
        if len(x.shape) != 2:
            raise AnalysisError(f"moments: expected draws of shape [n, dim], got {list(x.shape)}")
        gs = tuple(int(s) for s in ([x.shape[1]] if group_sizes is None else group_sizes))
        if sum(gs) != x.shape[1]:
            raise AnalysisError(f"moments: group sizes sum to {sum(gs)}, draws have dim {x.shape[1]}")
        xp, m = _xp(x), int(x.shape[0])
        off = offsets(gs)
        sums, m2, sq = [], [], []
        for a, b in zip(off[:-1], off[1:], strict=True):
            xs = _f64(x[:, int(a):int(b)])  # [m, size]
            s = xs.sum(0)
            sums.append(s)
            sq.append(xp.square(xs).sum())
            m2.append(xp.square(xs - s / m).sum() if m else xp.square(s).sum())
        return cls(m, xp.concatenate(sums), xp.stack(m2), xp.stack(sq), gs)

    def update(self, x: Any) -> Moments:
        """These moments with the draws ``x`` [m, dim] folded in."""
        return self.merge(Moments.of(x, self.group_sizes))

    def merge(self, other: Moments) -> Moments:
        """Both sets of draws (the parallel formula; associative up to rounding)."""
        if self.dim != other.dim or tuple(self.group_sizes) != tuple(other.group_sizes):
            raise AnalysisError(f"merge_moments: parameter sets differ (dim {self.dim} vs {other.dim}, "
                                f"groups {list(self.group_sizes)} vs {list(other.group_sizes)})")
        if self.count == 0:
            return other
        if other.count == 0:
            return self
        n = self.count + other.count
        delta = other.sum / other.count - self.sum / self.count  # [dim]
        m2 = self.m2 + other.m2 + _group_sq(delta, self.group_sizes) * (self.count * other.count / n)
        return Moments(n, self.sum + other.sum, m2, self.sumsq + other.sumsq, self.group_sizes)


def moments(x: np.ndarray, group_sizes: Sequence[int] | np.ndarray | None = None) -> Moments:
    """One-shot moments of draws ``x`` [n, dim] (float64), the reference for streaming merges.

    >>> m = moments(np.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> m.count, m.mean.tolist(), m.m2.tolist()
    (2, [1.0, 2.0], [4.0])
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise AnalysisError(f"moments: expected draws of shape [n, dim], got {list(x.shape)}")
    return Moments.of(x, group_sizes)


def merge_moments(a: Moments, b: Moments) -> Moments:
    """``a.merge(b)``: the moments of both sets of draws."""
    return a.merge(b)


def block_moments(count: np.ndarray, block_sum: np.ndarray, block_m2: np.ndarray,
                  group_sizes: np.ndarray, block_sumsq: np.ndarray | None = None) -> Moments:
    """Moments of all draws of a run from its per-block statistics (the parallel formula).

    Args:
        count: int [nb], finite draws per block.
        block_sum: float32/64 [nb, dim], sum of each block's finite draws.
        block_m2: float64 [nb, G], per group ``sum_i ||x_i - mean_block||^2`` within the block.
        group_sizes: int [G].
        block_sumsq: float64 [nb, G] (optional; zeros when absent).

    Returns:
        ``sum = sum_b S_b``, ``m2 = sum_b m2_b + sum_b n_b ||S_b / n_b - mean||^2`` (per group).
    """
    count = np.asarray(count, dtype=np.int64)
    gs = tuple(int(s) for s in np.asarray(group_sizes, dtype=np.int64))
    keep = count > 0
    n = int(count.sum())
    dim = block_sum.shape[1]
    total = np.zeros(dim)
    m2 = np.asarray(block_m2, dtype=np.float64)[keep].sum(0) if keep.any() else np.zeros(len(gs))
    sumsq = (np.asarray(block_sumsq, dtype=np.float64)[keep].sum(0) if block_sumsq is not None and keep.any()
             else np.zeros(len(gs)))
    if n == 0:
        return Moments(0, total, m2, sumsq, gs)
    cnt = count[keep].astype(np.float64)
    sums = block_sum[keep]
    off = offsets(gs)
    for g, (a, b) in enumerate(zip(off[:-1], off[1:], strict=True)):
        for lo in range(a, b, CHUNK):
            hi = min(b, lo + CHUNK)
            s = sums[:, lo:hi].astype(np.float64)  # [nb, c]
            total[lo:hi] = s.sum(0)
            mu = total[lo:hi] / n
            m2[g] += (np.square(s / cnt[:, None] - mu) * cnt[:, None]).sum()
    return Moments(n, total, m2, sumsq, gs)


def run_moments(run: Any) -> Moments:
    """Moments of a run (a ``store.RunData`` with its block sums loaded)."""
    if run.block_sum is None:
        raise AnalysisError(f"{run.path}: block sums were not loaded; read it with load_sums=True")
    return block_moments(run.block_count, run.block_sum, run.block_m2, run.group_sizes,
                         getattr(run, "block_sumsq", None))


def variance(m: Moments) -> float:
    """Per-parameter average sample variance ``sum_g m2_g / ((n - 1) dim)`` (the V of Eq. 16)."""
    if m.count < 2:
        raise AnalysisError(f"variance needs at least 2 draws, got {m.count}")
    return float(m.m2.sum() / ((m.count - 1) * m.dim))


def group_variance(m: Moments) -> np.ndarray:
    """Per group, the per-parameter average sample variance [G]."""
    if m.count < 2:
        raise AnalysisError(f"variance needs at least 2 draws, got {m.count}")
    return m.m2 / ((m.count - 1) * np.asarray(m.group_sizes, dtype=np.float64))


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
    return d2 / test.dim - variance(ref) / ref.count - variance(test) / test.count


def squared_bias_exact(exact: np.ndarray, test: Moments) -> float:
    """Eq. 16 against the exact gradient: ``||g* - mu_T||^2 / dim - V_T / n_T`` (unbiased)."""
    exact = np.asarray(exact, dtype=np.float64)
    if exact.shape != test.mean.shape:
        raise AnalysisError(f"squared_bias_exact: exact gradient {list(exact.shape)} "
                            f"vs mean {list(test.mean.shape)}")
    return float(np.square(exact - test.mean).sum()) / test.dim - variance(test) / test.count


__all__ = ["CHUNK", "Moments", "block_moments", "group_variance", "merge_moments", "moments", "offsets",
           "run_moments", "squared_bias", "squared_bias_exact", "variance"]
