"""``biasvar demo``: the whole pipeline on built-in problems that need no data.

Two problems small enough to enumerate, so the reference is the exact gradient:

* ``toy-cat``: 3 categorical variables of 4 categories, quadratic loss with interactions
  (ZGR is unbiased there, Thm. 2 / Cor. 2; ST and DARN are not);
* ``quant-unit``: one 4-level stochastic quantizer (logistic noise) at eta = 0.7 with the
  sigmoid test function of App. B.5 (every estimator but RF is biased).

For each, every estimator family is sampled into run files (``<out>/runs``), the report (Eq. 16
against the exact gradient, bootstrap intervals) is computed, and a Pareto plot is drawn into
``<out>/figures/demo-<problem>-pareto.png``. A small Fig. B.5 study is drawn too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from biasvar import plots
from biasvar.engine import sample_run
from biasvar.problems.base import Problem
from biasvar.problems.quant import QuantUnit
from biasvar.problems.toy import ToyCat
from biasvar.report import Report, analyze_runs
from biasvar.snapshot import snapshot_of
from biasvar.studies.quantstudy import quant_unit_study

#: every family, a few hyper-parameters each
DEMO_SPECS = (
    "st", "st(t=2)", "darn", "zgr", "st-zgr(alpha=0.5)",
    "gs(t=0.1)", "gs(t=0.5)", "gs(t=1.1)", "gs(t=2)",
    "gs-st(t=0.1)", "gs-st(t=0.5)", "gs-st(t=1.1)", "gs-st(t=2)",
    "gr-mc(t=0.1,M=10)", "gr-mc(t=0.5,M=10)", "gr-mc(t=1.1,M=10)", "gr-mc(t=2,M=10)", "gr-mc(t=0.1,M=100)",
    "rf(M=2)", "rf(M=4)",
)


def demo_problems() -> dict[str, Problem]:
    return {
        "toy-cat": ToyCat(vars=3, categories=4, loss="quadratic", seed=0),
        "quant-unit": QuantUnit(K=4, loss="sigmoid", noise="logistic", eta=0.7),
    }


@dataclass
class DemoResult:
    reports: dict[str, Report] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    runs_dir: Path = Path("runs")


def run_demo(out_dir: str | Path = ".", *, n: int = 10_000, seed: int = 0, quant_n: int = 2000,
             progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    """Sample, analyse and plot the demo problems; ``progress(label, done, total)`` per run."""
    out = Path(out_dir)
    result = DemoResult(runs_dir=out / "runs")
    problems = demo_problems()
    total, done = len(problems) * len(DEMO_SPECS) + 1, 0
    for name, problem in problems.items():
        snap = snapshot_of(problem, provenance={"demo": name})
        for spec in DEMO_SPECS:
            if progress is not None:
                progress(f"{name}: {spec}", done, total)
            sample_run(snap, spec, n=n, seed=seed, runs_dir=result.runs_dir, device="cpu", keep=0)
            done += 1
        if progress is not None:
            progress(f"{name}: analysing", done, total)
        report = analyze_runs(result.runs_dir, snapshot=snap.id, reference="exact", seed=seed)
        result.reports[name] = report
        result.files += list(plots.plot_pareto(report, out / "figures" / f"demo-{name}-pareto.png").paths)
    if progress is not None:
        progress("Fig. B.5 study", done, total)
    study = quant_unit_study(n=quant_n, points=41, seed=seed)
    result.files += list(plots.plot_quant_unit(study, out / "figures" / "demo-quant-unit.png").paths)
    if progress is not None:
        progress("done", total, total)
    return result
