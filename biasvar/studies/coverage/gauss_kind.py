"""A synthetic model kind for the multi-model study whose bias lies where one chooses on the noise's spectrum.

The tiny enumerable models put their biases off the noise's strong directions (alignment 0.08-1.3, see
:mod:`~biasvar.studies.coverage.alignment`); the real-gradient VAE's ZGR bias lies on them (1.5-1.6). Eq. 16's
error has a term ``4 m'Cm / d^2`` in its variance that grows with that alignment, so a study without an aligned
model cannot fail an interval that is too narrow there. This kind draws, per run, the **block sums directly**:
a draw is ``J = g + b + e`` with ``e ~ N(0, diag(lam))`` (per-draw noise spectrum ``lam_j ∝ j^-decay``,
``j = 1..rank``; an orthonormal basis is immaterial since every statistic is a Gram matrix), so a block of
``bs`` draws has the sum ``bs (g + b) + sqrt(bs) lam^(1/2) z`` and the within-block sum of squared deviations
``sum_j lam_j chi2_(bs - 1)``, drawn exactly. ``g = 0`` (the exact gradient); the reference ``rf(M=4)`` is
unbiased with the spectrum ``ref_scale lam^ref_power`` (normalised to the same top eigenvalue).

The bias of an estimator is ``b_j ∝ ± lam_j^(q/2)`` (random signs), ``q`` solved so that its **alignment**
``(b'Cb / |b|^2) / (tr C^2 / tr C)`` on the tested run's own noise ``C ∝ lam`` is the model's ``align``
(1: shaped like the noise; the largest reachable is ``lam_max tr lam / tr lam^2``); against a reference of
another shape (``ref_power != 1``) the pair's alignment differs a little (the study measures it).
Its size is ``|b|^2 = share * tr(lam)``, ``share`` per spec
(:data:`SHARES`), so that ``b2 / (V/n) = share * n`` against the exact gradient, like the enumerable models'
``zgr``, ``st``, ``st(t=2)``. The truth is exact; ``d`` (Eq. 16's ``/ d``) is ``dim >= rank`` (the other
coordinates noiseless and unbiased). Cheap: one pair of n = 8192 in 32 blocks at rank 2000 costs ~10 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from biasvar.stats.intervals.lean import aligned_weights, alignment_of
from biasvar.studies.coverage.pairs import MemoryRun

#: |b|^2 / tr(lam) per tested spec (b2 / (V/n) = share * n against the exact gradient)
SHARES = {"zgr": 1 / 400, "st": 1 / 50, "st(t=2)": 1 / 5}
UNBIASED = "rf(M=4)"


def spectrum(rank: int, decay: float) -> np.ndarray:
    """``j^-decay``, ``j = 1..rank``."""
    return np.arange(1, rank + 1, dtype=float) ** -decay


@dataclass(frozen=True)
class GaussTables:
    """Duck-typed like :class:`~biasvar.studies.coverage.tables.OutcomeTables` for the multi-model study:
    ``run(spec, n, blocks, rng)``, ``pair(test, ref)``, ``dim``, ``rank``, ``truth``."""

    dim: int
    lam: np.ndarray  # the tested estimators' per-draw noise spectrum [rank]
    lam_ref: np.ndarray  # rf(M=4)'s
    bias: dict[str, np.ndarray]  # spec -> b [rank]
    truth: dict[str, float] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return len(self.lam)

    @property
    def g_exact(self) -> np.ndarray:
        return np.zeros(self.rank)

    def run(self, spec: str, n: int, blocks: int, rng: np.random.Generator) -> MemoryRun:
        """A run of ``n`` draws of ``spec`` in ``blocks`` equal blocks (its block sums and within-block m2)."""
        bs = n // blocks
        lam = self.lam_ref if spec == UNBIASED else self.lam
        mu = np.zeros(self.rank) if spec == UNBIASED else self.bias[spec]
        sums = bs * mu + math.sqrt(bs) * np.sqrt(lam) * rng.standard_normal((blocks, self.rank))
        m2 = rng.chisquare(bs - 1, (blocks, self.rank)) @ lam if bs > 1 else np.zeros(blocks)
        return MemoryRun(spec, 0, np.array([self.rank]), np.full(blocks, bs), sums, m2[:, None])

    def pair(self, test: MemoryRun, ref: MemoryRun | None) -> Any:
        from biasvar.studies.coverage.grams import gram_of

        pg = gram_of(ref, test, self.g_exact if ref is None else None)
        return replace(pg, dims=np.array([self.dim], dtype=np.int64))


def gauss_tables(*, rank: int, decay: float, align: float, seed: int, dim: int | None = None,
                 ref_scale: float = 0.5, ref_power: float = 1.0) -> GaussTables:
    """The :class:`GaussTables` of one synthetic model (module docstring); ``seed`` sets the biases' signs."""
    rng = np.random.default_rng((seed, 77))
    lam = spectrum(rank, decay)
    lam_ref = ref_scale * lam**ref_power / float(np.max(lam**ref_power))
    dim = rank if dim is None else dim
    bias, truth = {}, {UNBIASED: 0.0}
    for spec, share in SHARES.items():
        size = share * float(lam.sum())
        signs = rng.choice([-1.0, 1.0], rank)
        bias[spec] = signs * np.sqrt(aligned_weights(lam, align) * size)
        truth[spec] = size / dim
    return GaussTables(dim, lam, lam_ref, bias, truth)


__all__ = ["SHARES", "UNBIASED", "GaussTables", "aligned_weights", "alignment_of", "gauss_tables", "spectrum"]
