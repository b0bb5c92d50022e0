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

The package imports its submodules when one of their names is first used (PEP 562), so the code
that needs only :mod:`~biasvar.stats.moments` (the engine, the run files) does not pay for scipy's
import (about 2 s): ``from biasvar.stats import compare`` works as before, and ``compare``,
``contrast`` and ``moments`` name the functions even after their modules are imported.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: every public name, by the submodule that defines it
_WHERE = {
    "compare": ("Comparison", "GroupResult", "check_compatible", "compare", "describe_run"),
    "contrast": ("Contrast", "contrast"),
    "gram": ("PairGram", "pair_gram"),
    "intervals": ("DEFAULT_METHOD", "METHODS", "Bootstrap", "Estimate", "PairIntervals", "bootstrap_pair"),
    "moments": ("Moments", "block_moments", "group_variance", "merge_moments", "moments", "run_moments",
                "squared_bias", "squared_bias_exact", "variance"),
}
_SOURCE = {name: module for module, names in _WHERE.items() for name in names}
_SHADOWED = frozenset(_SOURCE) & frozenset(_WHERE)  # a function named as its module: the function wins


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the import system binding the submodule: keep the function of that name
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    module = _SOURCE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCE))


sys.modules[__name__].__class__ = _Package

__all__ = [
    "DEFAULT_METHOD", "METHODS", "Bootstrap", "Comparison", "Contrast", "Estimate", "GroupResult", "Moments",
    "PairGram", "PairIntervals",
    "block_moments", "bootstrap_pair", "check_compatible", "compare", "contrast", "describe_run", "group_variance",
    "merge_moments", "moments", "pair_gram", "run_moments", "squared_bias", "squared_bias_exact", "variance",
]
