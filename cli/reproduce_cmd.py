"""``biasvar reproduce``: train the Fig. 1 snapshot, sweep, report, draw the figures — one command."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from biasvar import names
from biasvar.presets import protocol_specs

from . import options as o
from .common import console, progress_bar

Opt = typer.Option


What = o.choices("What", names.REPRODUCE_FIGURES)


def reproduce(
    what: Annotated[What, typer.Argument(help="fig1, fig4 or all (both, plus Fig. B.5).")] = What("all"),
    n: Annotated[int, Opt("--n", help="Draws per run (the paper: 10000).")] = 10_000,
    epochs: Annotated[int, Opt("--epochs", help="Training epochs of the snapshot (the paper: 10).")] = 10,
    points: Annotated[int | None, Opt("--points", help="Thin every hyper-parameter grid to this many "
                                      "values (reduced runs); default the paper's grids.")] = None,
    slow_n: Annotated[int | None, Opt("--slow-n", help="Draws for the costly gr-mc(M>=100) runs "
                                      "(default --n).")] = None,
    seed: Annotated[int, Opt("--seed", help="Seed of the noise (training and draws), and of the "
                             "bootstrap unless --bootstrap-seed is given.")] = 0,
    device: o.Device = "auto",
    data_dir: o.DataDir = None,
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_dir: Annotated[Path, Opt("--snapshot-dir", help="Where the trained snapshot goes.")]
    = Path("snapshots"),
    results_dir: Annotated[Path, Opt("--results-dir", help="Where the reports and provenance go (in a "
                                     "--tag sub-folder).")] = Path("results"),
    figures_dir: Annotated[Path, Opt("--figures-dir", help="Where the figures go (in a --tag "
                                     "sub-folder).")] = Path("figures"),
    tag: Annotated[str | None, Opt("--tag", help="Sub-folder of results/ and figures/ (default "
                                   "full-gpu, reduced-cpu, ...).")] = None,
    n_resamples: o.NResamples = 1000,
    bootstrap_seed: Annotated[int | None, Opt("--bootstrap-seed", help="Seed of the bootstrap resampling "
                                              "(default: --seed).")] = None,
    quant_n: o.QuantDraws = 10_000,
    threads: o.Threads = None,
    old_bootstrap: o.OldBootstrap = None,
    store_only: Annotated[bool, Opt("--store-only", help="Write no run files, only the snapshot's statistics "
                                    "store (as `sweep --store-only`): for device calls.")] = False,
) -> None:
    """Reproduce Fig. 1, Fig. 4 and Fig. B.5 from the raw MNIST files, with provenance."""
    o.set_threads(threads)
    n_resamples = o.alias(n_resamples, old_bootstrap, default=1000, new_flag="--n-resamples", old_flag="--bootstrap")
    from biasvar.studies.reproduce import reproduce as run_reproduce
    from biasvar.studies.reproduce import specs_summary
    from biasvar.train import loss_name

    specs = protocol_specs(what.value, points)
    header = [f"[bold]biasvar reproduce {what.value}[/]: {len(specs)} estimators ({specs_summary(specs)})"]

    def announce() -> None:
        """The header, once work starts: a command that fails first (a missing dataset) prints one line."""
        if header:
            console.print(header.pop(), highlight=False)

    progress = progress_bar("{task.fields[info]}")
    with progress:
        train_task = progress.add_task("train", total=None, info="")
        sweep_task = progress.add_task("sweep", total=None, info="", visible=False)

        def say(message: str) -> None:
            announce()
            progress.console.print(message)

        def on_train(p) -> None:
            announce()
            progress.update(train_task, total=p.epochs * p.steps, completed=(p.epoch - 1) * p.steps + p.step,
                            info=f"epoch {p.epoch}/{p.epochs}  {loss_name('vae')} {p.loss:.2f}")

        def on_sweep(done: int, total: int, nonfinite: int, rate: float, label: str) -> None:
            announce()
            progress.update(sweep_task, visible=True, total=total, completed=done,
                            info=f"{label}  {rate:.1f} draws/s  non-finite {nonfinite}")

        result = run_reproduce(
            what.value, n=n, epochs=epochs, points=points, slow_n=slow_n, seed=seed, device=device,
            data_dir=data_dir, runs_dir=runs_dir, snapshot_dir=snapshot_dir, results_dir=results_dir,
            figures_dir=figures_dir, tag=tag, n_resamples=n_resamples, bootstrap_seed=bootstrap_seed, quant_n=quant_n,
            command=shlex.join(["biasvar", *sys.argv[1:]]), say=say,
            sweep_progress=on_sweep, train_progress=on_train, store_only=store_only,
        )
    announce()
    console.print(f"done in {result.provenance['wall_s']:.0f} s ({result.tag}); wrote:", highlight=False)
    for f in result.files:
        console.print(f"  {f}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
