"""Block statistics: what a run file stores per block of draws.

Per block: the count of finite draws, the count of non-finite ones, the float32 sum of the finite
draws and, per parameter group, the float64 sum of squares and sum of squared deviations from the
block mean (a :class:`biasvar.stats.moments.Moments` state kept on the device and merged step by
step, in draw order, over steps of a fixed number of draws counted from the block's start, so the
statistics are the same bits whatever the chunk size and wherever a run was interrupted), and the
raw draws of K fixed coordinates. The block size sets the run file's size and the bootstrap's
resolution (:func:`choose_block_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from biasvar import store
from biasvar.stats.moments import Moments

KEEP_SEED = 0x6B656570  # the kept coordinates depend on (dim, K) only: the same across runs
# Block-size rule (see choose_block_size).
SUM_BUDGET_BYTES = 150 << 20  # the float32 block sums of one run
MIN_BLOCKS, MAX_BLOCKS = 32, 100

STATS_ELEMENTS = 1 << 24  # entries of one parameter group per step of the block statistics (128 MB)
STEP_MAX = 4096  # draws per step of the block statistics, at most
STEP_WORK = 1 << 28  # draws x dim x M per step, at most: a step of a slow estimator stays short


def choose_step(block_size: int, group_sizes: Sequence[int], work: int = 1) -> int:
    """Draws per step of the block statistics: a fixed function of the run (stored in its file).

    A block's moments are the in-order merge of the moments of its consecutive steps of this many
    draws (the last one may be shorter), each computed in one pass: they are then the same bits
    however the engine chunks the draws and wherever a run is interrupted, and a run can save its
    block in progress at any step boundary. Bounded by the block, by :data:`STATS_ELEMENTS` per
    group (memory), by :data:`STEP_MAX`, and by :data:`STEP_WORK` over ``dim x work`` (``work``:
    forward passes per draw, ~M) so that one step of a slow estimator takes seconds, not minutes.
    """
    dim, largest = max(1, sum(group_sizes)), max(list(group_sizes) + [1])
    return int(max(1, min(block_size, STATS_ELEMENTS // largest, STEP_MAX, STEP_WORK // (dim * max(1, work)))))


class BlockBuilder:
    """Accumulates the draws of one block into :class:`biasvar.store.BlockStats`, one step of
    ``step`` draws at a time (see :func:`choose_step`), whatever the sizes of the pieces it is fed.

    Draws with any non-finite entry are counted and excluded from every statistic. Between steps
    its state is exactly what :meth:`pending` saves and :meth:`resume` restores.
    """

    def __init__(self, bounds: Sequence[tuple[int, int]], sample_index: np.ndarray,
                 device: torch.device, step: int | None = None) -> None:
        self.bounds = list(bounds)
        self.group_sizes = tuple(size for _, size in self.bounds)
        self.step = int(step or choose_step(1 << 62, self.group_sizes))
        self.index = torch.as_tensor(np.asarray(sample_index, dtype=np.int64), device=device)
        self.device = device
        self.moments: Moments | None = None
        self.nonfinite = 0
        self.samples: list[Tensor] = []
        self.buffer: list[Tensor] = []  # draws of the step in progress (fewer than ``step``)
        self.buffered = 0

    @property
    def draws(self) -> int:
        """Draws folded into whole steps (the part :meth:`pending` saves)."""
        return self.nonfinite + (self.moments.count if self.moments else 0)

    @property
    def count(self) -> int:
        return self.moments.count if self.moments else 0

    def add(self, x: Tensor) -> None:
        """Feed draws ``x`` [m, dim] in draw order; every completed step is folded in."""
        while x.shape[0]:
            take = min(x.shape[0], self.step - self.buffered)
            if take == self.step:  # a whole step inside x: no copy
                self._fold(x[:take])
            else:
                self.buffer.append(x[:take])
                self.buffered += take
                if self.buffered == self.step:
                    self.flush()
            x = x[take:]

    def flush(self) -> None:
        """Fold in the buffered draws as one (possibly short) step: at the end of a block only."""
        if self.buffered:
            self._fold(torch.cat(self.buffer))
        self.buffer, self.buffered = [], 0

    def _fold(self, x: Tensor) -> None:
        x = x.contiguous()
        finite = torch.isfinite(x).all(1)
        bad = int((~finite).sum())
        if bad:
            x = x[finite]
            self.nonfinite += bad
        if x.shape[0] == 0:
            return
        mom = Moments.of(x, self.group_sizes)
        self.moments = mom if self.moments is None else self.moments.merge(mom)
        if self.index.numel():
            self.samples.append(x[:, self.index].to(torch.float32))  # moved to the CPU once per block

    def _samples(self) -> np.ndarray:
        K = int(self.index.numel())
        return torch.cat(self.samples).cpu().numpy() if self.samples else np.zeros((0, K), np.float32)

    def stats(self, dim: int) -> store.BlockStats:
        """The whole block: the buffered draws are folded in as its last (short) step first."""
        self.flush()
        mom, G = self.moments, len(self.bounds)
        if mom is None:
            return store.BlockStats(0, self.nonfinite, np.zeros(dim, np.float32), np.zeros(G), np.zeros(G),
                                    self._samples())
        return store.BlockStats(
            count=mom.count,
            nonfinite=self.nonfinite,
            sum=mom.sum.to(torch.float32).cpu().numpy(),
            m2=mom.m2.cpu().numpy(),
            sumsq=mom.sumsq.cpu().numpy(),
            samples=self._samples(),
        )

    def pending(self, dim: int) -> store.PendingStats:
        """The whole steps so far, exactly (float64), for :meth:`biasvar.store.RunWriter.save_pending`."""
        mom, G = self.moments, len(self.bounds)
        if mom is None:
            return store.PendingStats(0, self.nonfinite, np.zeros(dim), np.zeros(G), np.zeros(G), self._samples())
        return store.PendingStats(mom.count, self.nonfinite, mom.sum.cpu().numpy(), mom.m2.cpu().numpy(),
                                  mom.sumsq.cpu().numpy(), self._samples())

    def resume(self, part: store.PendingStats | None) -> BlockBuilder:
        """Continue a saved block in progress (bit for bit)."""
        if part is not None and part.draws:
            self.nonfinite = int(part.nonfinite)
            if part.count:
                as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), device=self.device)  # noqa: E731
                self.moments = Moments(int(part.count), as_t(part.sum), as_t(part.m2), as_t(part.sumsq),
                                       self.group_sizes)
            if self.index.numel() and len(part.samples):
                self.samples = [torch.as_tensor(np.asarray(part.samples, dtype=np.float32), device=self.device)]
        return self


def choose_block_size(n: int, dim: int) -> int:
    """Draws per block: the run file's size and the bootstrap's resolution.

    A block costs ``4 * dim`` bytes (its float32 sum). We take ``SUM_BUDGET_BYTES // (4 dim)``
    blocks, clamped to [MIN_BLOCKS, MAX_BLOCKS] = [32, 100], and spread the n draws over them:

    * the analysis resamples blocks (bootstrap) or deletes one at a time (jackknife); the
      real-gradient coverage study (``results/coverage/``) analysed the same runs of 192 draws
      in 32 and in 96 blocks: 96 blocks moved coverage by -0.020 to +0.002 and narrowed the
      intervals by 2-5% (6 settings: pivot and jackknife-t, zgr and rf(M=4)), so the count is
      not raised (3x the file for that); fewer than 32 blocks were not studied, so it is not
      lowered for small n either (``block_size`` sets another count, unvalidated);
    * a Fig. 1 run (dim = 1.15M) gets 34 blocks whatever n (295 draws each at n = 1e4, 15 at
      n = 500): 34 x 4.6 MB = 156 MB of raw sums, which the run file's lossless filter stores in
      about 122 MB (:mod:`biasvar.store`, "Size"), plus 10 MB of kept samples at n = 1e4
      (1e4 x 256 float32): under 200 MB even unfiltered;
    * small problems get 100 blocks (e.g. 100 draws each for n = 1e4).

    The budget counts raw bytes, so the block count does not depend on the filter. Above
    dim = 1.2M the 32-block floor wins over the size budget (32 x 4 dim bytes).
    """
    blocks = int(min(MAX_BLOCKS, max(MIN_BLOCKS, SUM_BUDGET_BYTES // max(1, 4 * dim))))
    return max(1, math.ceil(n / blocks))


def keep_index(dim: int, keep: int) -> np.ndarray:
    """Sorted coordinates whose raw draws are kept: a fixed function of (dim, keep), so every run
    of a snapshot keeps the same coordinates."""
    K = int(max(0, min(keep, dim)))
    if K == dim:
        return np.arange(dim, dtype=np.int64)
    gen = np.random.default_rng(KEEP_SEED)
    return np.sort(gen.choice(dim, size=K, replace=False)).astype(np.int64)


__all__ = ["BlockBuilder", "KEEP_SEED", "MAX_BLOCKS", "MIN_BLOCKS", "STATS_ELEMENTS", "STEP_MAX", "STEP_WORK",
           "SUM_BUDGET_BYTES", "choose_step",
           "choose_block_size", "keep_index"]
