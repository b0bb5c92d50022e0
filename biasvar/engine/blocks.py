"""Block statistics: what a run file stores per block of draws.

Per block: the count of finite draws, the count of non-finite ones, the float32 sum of the finite
draws and, per parameter group, the float64 sum of squares and sum of squared deviations from the
block mean (a :class:`biasvar.stats.moments.Moments` state kept on the device and updated chunk by
chunk with the parallel formula, so the statistics do not depend on the chunk size), and the raw
draws of K fixed coordinates. The block size sets the run file's size and the bootstrap's
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


class BlockBuilder:
    """Accumulates the draws of one block into :class:`biasvar.store.BlockStats`.

    Draws with any non-finite entry are counted and excluded from every statistic.
    """

    def __init__(self, bounds: Sequence[tuple[int, int]], sample_index: np.ndarray,
                 device: torch.device) -> None:
        self.bounds = list(bounds)
        self.group_sizes = tuple(size for _, size in self.bounds)
        self.largest = max([size for _, size in self.bounds] + [1])
        self.index = torch.as_tensor(np.asarray(sample_index, dtype=np.int64), device=device)
        self.moments: Moments | None = None
        self.nonfinite = 0
        self.samples: list[Tensor] = []

    @property
    def draws(self) -> int:
        return self.nonfinite + (self.moments.count if self.moments else 0)

    def add(self, x: Tensor) -> None:
        """Fold in draws ``x`` [m, dim], a bounded number of rows at a time: the float64 copy of one
        parameter group then takes at most STATS_ELEMENTS entries (128 MB), whatever the chunk."""
        rows = max(1, STATS_ELEMENTS // self.largest)
        for lo in range(0, x.shape[0], rows):
            self._add(x[lo:lo + rows])

    def _add(self, x: Tensor) -> None:
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

    def stats(self, dim: int) -> store.BlockStats:
        K = int(self.index.numel())
        mom, G = self.moments, len(self.bounds)
        if mom is None:
            return store.BlockStats(0, self.nonfinite, np.zeros(dim, np.float32), np.zeros(G), np.zeros(G),
                                    np.zeros((0, K), np.float32))
        samples = torch.cat(self.samples).cpu().numpy() if self.samples else np.zeros((0, K), np.float32)
        return store.BlockStats(
            count=mom.count,
            nonfinite=self.nonfinite,
            sum=mom.sum.to(torch.float32).cpu().numpy(),
            m2=mom.m2.cpu().numpy(),
            sumsq=mom.sumsq.cpu().numpy(),
            samples=samples,
        )


def choose_block_size(n: int, dim: int) -> int:
    """Draws per block: the run file's size and the bootstrap's resolution.

    A block costs ``4 * dim`` bytes (its float32 sum). We take ``SUM_BUDGET_BYTES // (4 dim)``
    blocks, clamped to [MIN_BLOCKS, MAX_BLOCKS] = [32, 100], and spread the n draws over them:

    * the analysis bootstraps by resampling blocks, and 32 blocks are enough for honest
      percentile intervals (each block mean is close to Gaussian, the block means are i.i.d.);
    * a Fig. 1 run (dim = 1.15M, n = 1e4) gets 34 blocks of 295 draws: 34 x 4.6 MB = 156 MB
      of sums, plus 10 MB of kept samples (1e4 x 256 float32): under 200 MB;
    * small problems get 100 blocks (e.g. 100 draws each for n = 1e4).

    Above dim = 1.2M the 32-block floor wins over the size budget (32 x 4 dim bytes).
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


__all__ = ["BlockBuilder", "KEEP_SEED", "MAX_BLOCKS", "MIN_BLOCKS", "STATS_ELEMENTS", "SUM_BUDGET_BYTES",
           "choose_block_size", "keep_index"]
