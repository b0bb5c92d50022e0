"""Intervals of Eq. 16 (b2), the variance V and MSE = b2 + V, over blocks of draws.

Blocks are the resampling unit: the blocks of the reference R and of the tested run T are
resampled independently, or deleted one at a time (the jackknife), each replicate evaluated
through the Gram matrices of :mod:`biasvar.stats.gram`.

**Why not the textbook bootstrap.** Three facts make the plain bootstrap intervals of Eq. 16
dishonest here (``tests/test_analysis.py::test_plain_percentile_interval_is_dishonest_in_high_dimension``;
on real gradients ``results/coverage/README.md``):

1. The bootstrap distribution of Eq. 16 is shifted from ``b2`` by a fraction ~``1/nb`` of
   ``V_R/n_R + V_T/n_T`` (a block bootstrap's variance of a mean is ``(nb - 1)/nb`` of the real
   one). In high dimension the interval is far narrower than that shift.
2. Its spread is dominated, in high dimension, by the products of a resampled block with itself
   (``w_b^2 ||dev_b||^2``), whose fluctuation is of relative order ``nb^-1/2``; the real
   estimate's fluctuation is of order ``dim^-1/2``. Intervals come out far too wide.
3. The cross term ``2 (mu_T - mu_R) . e`` is spread around the *observed* difference, whose
   squared norm exceeds the true one by ``~ dim (V_R/n_R + V_T/n_T)``: near ``b2 = 0``
   intervals are too wide again.

**The methods** (:data:`METHODS`, a read-only table name -> method, all with one signature,
:class:`~biasvar.stats.intervals.base.IntervalMethod`), one module each:

* ``gauss-eb`` (:mod:`~biasvar.stats.intervals.gauss_eb`): a Gaussian model of the error, inverted
  over b2, with the bias direction averaged by empirical Bayes.
* ``gauss-fit`` (:mod:`~biasvar.stats.intervals.gauss_fit`): gauss-eb with the power of its prior
  mixed over 0-2, weighed by the pair's own offset (profile likelihood), most prior weight on 1.5.
* ``pivot`` (:mod:`~biasvar.stats.intervals.pivot`): an inverted bootstrap test with a plug-in
  nuisance direction (this package's own construction).
* ``jackknife-t`` (:mod:`~biasvar.stats.intervals.jackknife`): the two-sample delete-one-block
  jackknife with Student-t quantiles.
* scipy's raw ``percentile``, ``basic`` and ``bca`` (:mod:`~biasvar.stats.intervals.scipy_methods`),
  for comparison only.

They share the configuration and result types (:mod:`~biasvar.stats.intervals.base`), the bootstrap
replicates (:mod:`~biasvar.stats.intervals.resample`), one Welch-Satterthwaite t
(:mod:`~biasvar.stats.intervals.welch`) and one root finder (:mod:`~biasvar.stats.intervals.roots`).

**The default** (:data:`DEFAULT_METHOD`) is chosen by the real-gradient coverage study
(``scripts/coverage_study.py``, ``results/coverage/``: a VAE small enough that the true b2 is
known by enumeration, 2000 independent pairs per setting): the rule is the method whose coverage
stays in [0.93, 0.97] at every setting with the narrowest intervals. ``gauss-eb`` is the only one
that does: 0.940-0.961 over all 13 settings (b2 from 0 to 2350 V/n, references exact and rf(M=4),
32 and 96 blocks), at 8% more width than the pivot (geometric mean over settings). ``pivot``
falls to 0.882 against the exact gradient at b2 ~ 2.7 V/n (0.859 at 96 blocks) and
``jackknife-t`` to 0.880 (0.875), while both over-cover at b2 = 0 (0.966, 0.975); they remain
available (``--method``). On fresh draws that had no part in choosing
:data:`~biasvar.stats.intervals.gauss_eb.GAUSS_PRIOR_POWER` (``results/coverage/holdout/``, 1000
pairs per setting) gauss-eb covers 0.934-0.964, again in the band; on synthetic draws where the
bias lies off the noise's strong directions every method here over-covers
(``results/coverage/synthetic.md``). The multi-model study (``results/coverage/multi/``: six tiny
enumerable models, three held out) puts gauss-eb at 0.915-1.000 and measures what that costs: 1.28x
(median) the narrowest interval covering >= 0.93 at b2 = 0 and 1.22x at 0 < b2 <= 5 V/n, about 1.0x
far above the floor. ``gauss-fit`` is within 1.15x at 39 of its 48 settings but covers 0.86-0.87 on the
real-gradient VAE, so it is not the default (:mod:`~biasvar.stats.intervals.gauss_fit`). Two further candidates
(:mod:`~biasvar.stats.intervals.candidates`, not offered by reports) did not pass both either: the six enumerable
models' biases lean away from the noise's strong directions and the real VAE's ZGR bias onto them
(:mod:`biasvar.studies.coverage.alignment`), and the pair's own data do not tell the two apart near the floor.

The reference's own contribution to the interval (:func:`~biasvar.stats.intervals.resample.reference_share`)
is the share of the bootstrap (for ``jackknife-t``: jackknife) variance of ``b2`` that comes from R
alone (T's blocks held fixed) and the width of the interval R alone would give.
"""

from biasvar.stats.intervals.base import (
    DEFAULT_METHOD,
    Bootstrap,
    Estimate,
    IntervalMethod,
    LayerEstimates,
    PairIntervals,
    finite_or_none,
)
from biasvar.stats.intervals.gauss_eb import GAUSS_DRAWS, GAUSS_PRIOR_POWER, GaussModel, gauss_eb_intervals, gauss_model
from biasvar.stats.intervals.jackknife import jackknife_intervals
from biasvar.stats.intervals.methods import METHODS, bootstrap_pair
from biasvar.stats.intervals.pivot import invert, pivot_intervals
from biasvar.stats.intervals.resample import PivotParts, pivot_parts, pivot_terms, reference_share
from biasvar.stats.intervals.scipy_methods import scipy_intervals
from biasvar.stats.intervals.welch import welch_t

__all__ = ["DEFAULT_METHOD", "GAUSS_DRAWS", "GAUSS_PRIOR_POWER", "METHODS", "Bootstrap", "Estimate", "GaussModel",
           "IntervalMethod", "LayerEstimates", "PairIntervals", "PivotParts", "bootstrap_pair", "finite_or_none",
           "gauss_eb_intervals", "gauss_model", "invert", "jackknife_intervals", "pivot_intervals", "pivot_parts",
           "pivot_terms", "reference_share", "scipy_intervals", "welch_t"]
