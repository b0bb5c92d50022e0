"""``biasvar demo``: the main job on the built-in toy problems, no data needed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from .common import console, progress_bar, step_task
from .report_cmd import report_table

Opt = typer.Option


def demo(
    out_dir: Annotated[Path, Opt("--out-dir", help="Where runs/ and figures/ go.")] = Path("."),
    n: Annotated[int, Opt("--n", help="Draws per estimator.")] = 10_000,
    seed: Annotated[int, Opt("--seed", help="Seed of the noise (and of the bootstrap).")] = 0,
) -> None:
    """Sample every estimator family on two enumerable toy problems, report Eq. 16 against the
    exact gradient with bootstrap intervals, and draw Pareto plots and a Fig. B.5 study."""
    t0 = time.perf_counter()
    from biasvar.engine import check_run_args
    from biasvar.studies.demo import DEMO_SPECS, run_demo

    check_run_args(n=n, seed=seed)  # a bad --n or --seed: one line, before the header
    console.print(f"[bold]biasvar demo[/]: {len(DEMO_SPECS)} estimators x 2 problems (toy-cat, quant-unit), "
                  f"{n} draws each, exact reference", highlight=False)
    with progress_bar(eta=False, transient=True) as bar:
        step = step_task(bar, "starting")
        result = run_demo(out_dir, n=n, seed=seed, progress=lambda label, done, total: step(done, total, label))
    for name, rep in result.reports.items():
        console.print()
        console.print(f"[bold]{name}[/]", highlight=False)
        console.print(report_table(rep))
    console.print(f"\nrun files: {result.runs_dir}/  (list them: biasvar ls --runs-dir {result.runs_dir})",
                  highlight=False)
    console.print("figures:", highlight=False)
    for f in result.files:
        console.print(f"  {f}", highlight=False)
    console.print(f"done in {time.perf_counter() - t0:.0f} s", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
