"""The types every interval method shares: the configuration (:class:`Bootstrap`), the results
(:class:`Estimate`, :class:`LayerEstimates`, :class:`PairIntervals`) and the signature of a method
(:class:`IntervalMethod`). No statistics here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from biasvar.errors import AnalysisError
from biasvar.names import DEFAULT_METHOD, METHODS

if TYPE_CHECKING:
    from biasvar.stats.gram import PairGram

@dataclass(frozen=True)
class Bootstrap:
    """How intervals are formed; validated once, where it is made, and passed on whole.

    Attributes:
        n_resamples: bootstrap resamples of the blocks (0: point estimates only).
        method: a name in :data:`biasvar.stats.intervals.METHODS` (:data:`DEFAULT_METHOD` unless told).
        confidence_level: e.g. 0.95.
        seed: the resampling seed of a report (each row's stream is keyed by it, the spec and the run's
            seed); :func:`biasvar.stats.compare.compare` uses ``default_rng(seed)`` unless given an rng.
    """

    n_resamples: int = 1000
    method: str = DEFAULT_METHOD
    confidence_level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:  # the names of the table (a test keeps them equal to its keys)
            raise AnalysisError(f"unknown bootstrap method {self.method!r}; expected one of: {', '.join(METHODS)}")
        for name in ("n_resamples", "seed"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
                raise AnalysisError(f"{name} must be a non-negative integer, got {n!r}")
        if not 0.0 < self.confidence_level < 1.0:
            raise AnalysisError(f"confidence_level must lie in (0, 1), got {self.confidence_level!r}")

    @property
    def alpha(self) -> float:
        """The probability outside each end of the interval."""
        return (1.0 - self.confidence_level) / 2


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval (None where it cannot be formed)."""

    value: float
    low: float | None = None
    high: float | None = None
    se: float | None = None  # bootstrap standard error


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None when x is None, NaN or infinite (an interval end that cannot be formed)."""
    return float(x) if x is not None and np.isfinite(x) else None


@dataclass(frozen=True)
class LayerEstimates:
    """One quantity for every layer (parameter groups, then all parameters): arrays [K]."""

    value: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    se: np.ndarray | None = None

    def at(self, k: int) -> Estimate:
        """Layer k as an :class:`Estimate` (non-finite ends become None)."""
        ci = self.low is not None and self.high is not None
        return Estimate(float(self.value[k]), finite_or_none(self.low[k]) if ci else None,
                        finite_or_none(self.high[k]) if ci else None,
                        finite_or_none(self.se[k]) if self.se is not None else None)


@dataclass(frozen=True)
class PairIntervals:
    """b2, V_T and MSE of a pair with intervals, per layer; the reference's share (all parameters)."""

    b2: LayerEstimates
    variance: LayerEstimates
    mse: LayerEstimates
    ref_share: float | None = None
    ref_only_width: float | None = None


class IntervalMethod(Protocol):
    """What every entry of :data:`biasvar.stats.intervals.METHODS` is.

    Args:
        pg: the pair's Gram matrices (at least 2 blocks per run).
        b2, v_t: [K] Eq. 16's point estimates of the pair.
        boot: the configuration.
        rng: the randomness of the resampling (unused by analytic methods).
        with_b2: False for a run alone (variance only).
        share: whether to add the reference's share (left out against an exact gradient or without b2).
    """

    def __call__(self, pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                 *, with_b2: bool = True, share: bool = True) -> PairIntervals: ...


def wants_share(pg: PairGram, *, with_b2: bool, share: bool) -> bool:
    """Whether a method adds the reference's share: asked for, with b2, against a reference run."""
    return share and with_b2 and not pg.exact


__all__ = ["DEFAULT_METHOD", "Bootstrap", "Estimate", "IntervalMethod", "LayerEstimates", "PairIntervals",
           "finite_or_none", "wants_share"]
