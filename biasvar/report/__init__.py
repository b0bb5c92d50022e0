"""Reports: the runs of one snapshot against one reference, one row per run, with the Pareto front.

:func:`analyze_runs` lists the run files of a snapshot (``biasvar.store``), :func:`analyze` picks the
reference (a run of the reference spec, or the exact gradient stored in runs of enumerable
problems), compares every other run with it (:mod:`biasvar.stats`: Eq. 16 through the Gram
matrices of block sums, bootstrap intervals) and returns a :class:`Report`: rows sorted by estimator family and
hyper-parameters, each with Eq. 16's b2, the variance V and MSE = b2 + V with bootstrap intervals,
the cost, draws/s, V x cost, the cosine to the reference mean and the run's provenance.
Formatting (JSON, CSV, Markdown, table) lives in :mod:`biasvar.formats`.

**Pareto marks use the intervals** (:func:`mark_pareto`). A tested run is *dominated* (no mark)
only when another run is better in both b2 and V **beyond the intervals**: in :func:`analyze`, the
paired contrast of the two (:mod:`biasvar.stats.contrast`, shared reference accounted for) has
intervals below 0 in both; for a report read back from JSON (no block data), both of the other
run's marginal intervals lie below this run's (a stricter, conservative test: whatever the
correlation through the shared reference, ``sd(A - B) <= sd(A) + sd(B)``, so disjoint intervals
put the difference off 0). A run dominated at the point estimates in ``(max(b2, 0), V)`` (a
negative b2 estimate means "no detectable bias") but not beyond the intervals is a *near-tie*
(``~``); the rest are on the front (``*``).
Estimators identical by definition (``st-zgr(alpha=1)`` = ``zgr``, ``st-zgr(alpha=0,t)`` =
``st(t)``, the same for ``st-zgr-author``, and seeds of one spec; :func:`identity`) are one
point: they are not compared with each other and all get the best mark among them.

**Contrasts** (``analyze(..., contrasts=[("A", "B")])``, ``biasvar report --contrast A,B``):
``b2_A - b2_B`` and ``V_A - V_B`` with jackknife-t intervals, in :attr:`Report.contrasts`.
"""

from biasvar.report.analyze import analyze
from biasvar.report.pareto import identity, mark_pareto, pareto_front, remark_pareto, sort_key
from biasvar.report.rows import engine_label, run_row
from biasvar.report.sources import analyze_runs, runs_of
from biasvar.report.types import REPORT_SCHEMA, Report, RunResult

__all__ = ["REPORT_SCHEMA", "Report", "RunResult", "analyze", "analyze_runs", "engine_label", "identity",
           "mark_pareto", "pareto_front", "remark_pareto", "run_row", "runs_of", "sort_key"]
