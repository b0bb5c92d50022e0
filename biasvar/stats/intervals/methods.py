"""The read-only table of interval methods (:data:`METHODS`, name -> method) and
:func:`bootstrap_pair`, which runs the one a :class:`~biasvar.stats.intervals.base.Bootstrap` names.

Every method has the signature of :class:`~biasvar.stats.intervals.base.IntervalMethod`. Reports,
comparisons, the coverage study and the CLI's ``--method`` choices read this table.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from biasvar.stats.gram import PairGram, eq16
from biasvar.stats.intervals.base import Bootstrap, IntervalMethod, LayerEstimates, PairIntervals
from biasvar.stats.intervals.gauss_eb import gauss_eb_intervals
from biasvar.stats.intervals.gauss_fit import gauss_fit_intervals
from biasvar.stats.intervals.jackknife import jackknife_intervals
from biasvar.stats.intervals.pivot import pivot_intervals
from biasvar.stats.intervals.scipy_methods import SCIPY_METHODS, scipy_intervals

#: name -> method, in the order the CLI and the docs list them (the default first)
METHODS: MappingProxyType[str, IntervalMethod] = MappingProxyType({
    "gauss-eb": gauss_eb_intervals,
    "gauss-fit": gauss_fit_intervals,
    "pivot": pivot_intervals,
    "jackknife-t": jackknife_intervals,
    **dict.fromkeys(SCIPY_METHODS, scipy_intervals),
})


def bootstrap_pair(pg: PairGram, boot: Bootstrap, *, rng: np.random.Generator,
                   with_b2: bool = True, share: bool = True) -> PairIntervals:
    """Point estimates and intervals of b2, V_T and MSE for every layer of ``pg``.

    Args:
        pg: the pair's Gram matrices (:func:`biasvar.stats.gram.pair_gram`).
        boot: resamples, method and confidence level.
        rng: the randomness of the resampling.
        with_b2: False for a run alone (variance only).
        share: False to leave out the reference's share.

    Without resamples, or with fewer than 2 blocks in a run, the point estimates alone.
    """
    nbr, nbt = len(pg.ref_count), len(pg.test_count)
    b2, v_t, _ = eq16(pg, np.ones(nbr), np.ones(nbt))
    if boot.n_resamples == 0 or nbt < 2 or (not pg.exact and nbr < 2):
        return PairIntervals(LayerEstimates(b2), LayerEstimates(v_t), LayerEstimates(b2 + v_t))
    return METHODS[boot.method](pg, b2, v_t, boot, rng, with_b2=with_b2, share=share)


__all__ = ["METHODS", "bootstrap_pair"]
