"""Figures: Fig. 1 (bias and variance vs temperature), Fig. 4 (Pareto), Fig. B.5 (single quantizer).

The functions lay out what a :class:`biasvar.report.Report` (or, for Fig. B.5, a small
in-memory structure) already holds; they compute nothing. They draw with matplotlib's
object-oriented API on a private ``Figure`` (no pyplot, no global state), write PNG and PDF,
and use the Okabe-Ito colour-blind-safe palette with distinct markers and line styles, so the
curves stay apart in grey-scale too. 95% intervals are drawn as bands (or error bars in the
Pareto diagram). Missing families are skipped; the result says which.

Modules: :mod:`.common` (palette, styles, saving, the symlog axis), :mod:`.fig1`, :mod:`.pareto`,
:mod:`.quant`. The only package of biasvar that imports matplotlib.
"""

from biasvar.plots.common import (  # noqa: F401  (the private helpers: used by tests/test_plots.py)
    FORMATS,
    OKABE_ITO,
    PlotResult,
    _linthresh,
    _nice,
    _one_per_spec,
    _overlap,
)
from biasvar.plots.fig1 import figure_fig1, plot_fig1
from biasvar.plots.pareto import PARETO_FOOTER, figure_pareto, plot_pareto
from biasvar.plots.quant import QuantUnitData, figure_quant_unit, plot_quant_unit, spec_words

__all__ = ["FORMATS", "OKABE_ITO", "PARETO_FOOTER", "PlotResult", "QuantUnitData", "figure_fig1", "figure_pareto",
           "figure_quant_unit", "plot_fig1", "plot_pareto", "plot_quant_unit", "spec_words"]
