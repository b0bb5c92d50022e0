"""The statistics of the measurement, in numpy, from block statistics only (never sampling).

* :mod:`biasvar.stats.moments`: :class:`Moments`, the one streaming state of a set of draws
  (count, sum, per-group m2 and sum of squares), shared by the engine's block builder and the
  analysis; Eq. 16 (:func:`squared_bias`) and the variance V from moments.
* :mod:`biasvar.stats.gram`: Gram matrices of block sums, so that Eq. 16 of every block resample
  is a quadratic form in O(nb^2) numbers.
* :mod:`biasvar.stats.intervals`: the interval methods (``gauss-eb``, a Gaussian test with the bias
  direction by empirical Bayes; ``pivot``, an inverted bootstrap test; ``jackknife-t``; scipy's
  ``percentile``, ``basic``, ``bca``), one module each with one signature, the read-only table
  ``METHODS`` of them, the :class:`Bootstrap` configuration, and ``DEFAULT_METHOD`` with the reason for it.
* :mod:`biasvar.stats.compare`: one run against a reference run or the exact gradient
  (:class:`Comparison`), and the check that runs are comparable at all.
* :mod:`biasvar.stats.contrast`: paired contrasts ``b2_A - b2_B``, ``V_A - V_B`` of two runs
  against one reference (:class:`Contrast`; jackknife-t, the shared reference accounted for).
"""

from biasvar.stats.compare import Comparison, GroupResult, check_compatible, compare, describe_run
from biasvar.stats.contrast import Contrast, contrast
from biasvar.stats.gram import PairGram, pair_gram
from biasvar.stats.intervals import DEFAULT_METHOD, METHODS, Bootstrap, Estimate, PairIntervals, bootstrap_pair
from biasvar.stats.moments import (
    Moments,
    block_moments,
    group_variance,
    merge_moments,
    moments,
    run_moments,
    squared_bias,
    squared_bias_exact,
    variance,
)

__all__ = [
    "DEFAULT_METHOD", "METHODS", "Bootstrap", "Comparison", "Contrast", "Estimate", "GroupResult", "Moments",
    "PairGram", "PairIntervals",
    "block_moments", "bootstrap_pair", "check_compatible", "compare", "contrast", "describe_run", "group_variance",
    "merge_moments", "moments", "pair_gram", "run_moments", "squared_bias", "squared_bias_exact", "variance",
]
