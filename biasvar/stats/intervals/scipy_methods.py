"""scipy's raw ``percentile``, ``basic`` and ``bca`` intervals of the plain Eq. 16 statistic (and of
MSE = b2 + V as a statistic of its own), for comparison only: they are dishonest in high dimension
(:mod:`biasvar.stats.intervals`). BCa is often undefined (NaN ends, reported as None) because ``b2``
lies outside its own bootstrap distribution.
"""

from __future__ import annotations

import numpy as np

from biasvar.stats.gram import PairGram
from biasvar.stats.intervals.base import Bootstrap, LayerEstimates, PairIntervals
from biasvar.stats.intervals.resample import Resample, block_data, scipy_bootstrap, with_bootstrap_share

#: the scipy methods (``scipy.stats.bootstrap``'s ``method``), each a name of its own in the table
SCIPY_METHODS = ("percentile", "basic", "bca")


def scipy_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                    *, with_b2: bool = True, share: bool = True) -> PairIntervals:
    """scipy's ``boot.method`` interval (:class:`~biasvar.stats.intervals.base.IntervalMethod`); b2's
    interval is formed even for a run alone (``with_b2=False`` only leaves out the share)."""
    K, data = len(pg.dims), block_data(pg)
    res = scipy_bootstrap(data, Resample(pg, None), boot, boot.method, rng)
    res_m = scipy_bootstrap(data, Resample(pg, None, mse=True), boot, boot.method, rng)
    lo, hi = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
    se = np.asarray(res.standard_error)
    ci_m = res_m.confidence_interval
    out = PairIntervals(
        b2=LayerEstimates(b2, lo[:K], hi[:K], se[:K]),
        variance=LayerEstimates(v_t, lo[K:], hi[K:], se[K:]),
        mse=LayerEstimates(b2 + v_t, np.asarray(ci_m.low), np.asarray(ci_m.high), np.asarray(res_m.standard_error)),
    )
    return with_bootstrap_share(out, pg, res.bootstrap_distribution[:K], boot, rng, with_b2=with_b2, share=share)


__all__ = ["SCIPY_METHODS", "scipy_intervals"]
