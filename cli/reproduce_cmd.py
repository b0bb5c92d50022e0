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
from .parsing import int_list

Opt = typer.Option


What = o.choices("What", names.REPRODUCE_FIGURES + names.REPRODUCE_APPENDIX)


def reproduce(
    what: Annotated[What, typer.Argument(help="fig1, fig4 or all (both, plus Fig. B.5); b4 (App. B.4: VAE and "
                                         "HVAE after 1, 10, 100, 200 epochs) or b6 (App. B.6: the ternary "
                                         "network, layer 0).")] = What("all"),
    n: Annotated[int | None, Opt("--n", help="Draws per run (the paper: 10000; b6: 40000).", show_default=False)]
    = None,
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
    stages: Annotated[str | None, Opt("--stages", help="b4/b6: the epochs measured (b4: 1,10,100,200; b6: 20).")]
    = None,
    models: Annotated[str | None, Opt("--models", help="b4: the models (vae,hvae).")] = None,
    reference_n: Annotated[int | None, Opt("--reference-n", help="b4/b6: reference draws (the paper: 10^4 for "
                                           "b4, 4*10^5 for b6; default --n when --n is given).")] = None,
    steps_per_epoch: Annotated[int | None, Opt("--steps-per-epoch", help="b4/b6: training steps per epoch "
                                               "(default a full pass; fewer for a smoke run).")] = None,
) -> None:
    """Reproduce Fig. 1, Fig. 4 and Fig. B.5 from the raw MNIST files, with provenance; or App. B.4 / B.6."""
    o.set_threads(threads)
    n_resamples = o.alias(n_resamples, old_bootstrap, default=1000, new_flag="--n-resamples", old_flag="--bootstrap")
    if what.value in names.REPRODUCE_APPENDIX:
        wrong = [f for f, v, default in (("--epochs", epochs, 10), ("--slow-n", slow_n, None),
                                         ("--quant-n", quant_n, 10_000)) if v != default]
        if wrong:
            raise typer.BadParameter(f"{', '.join(wrong)} are for fig1/fig4/all; b4 and b6 take --stages (the epochs "
                                     "measured), --n and --reference-n", param_hint="what")
        appendix(what.value, n=n, reference_n=reference_n, stages=stages, models=models,
                 points=points, seed=seed, device=device, data_dir=data_dir, runs_dir=runs_dir,
                 snapshot_dir=snapshot_dir, results_dir=results_dir, figures_dir=figures_dir, tag=tag,
                 n_resamples=n_resamples, steps_per_epoch=steps_per_epoch, store_only=store_only)
        return
    if any(v is not None for v in (stages, models, reference_n, steps_per_epoch)):
        raise typer.BadParameter("--stages, --models, --reference-n and --steps-per-epoch are for b4 and b6",
                                 param_hint="what")
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
            what.value, n=10_000 if n is None else n, epochs=epochs, points=points, slow_n=slow_n, seed=seed,
            device=device,
            data_dir=data_dir, runs_dir=runs_dir, snapshot_dir=snapshot_dir, results_dir=results_dir,
            figures_dir=figures_dir, tag=tag, n_resamples=n_resamples, bootstrap_seed=bootstrap_seed, quant_n=quant_n,
            command=shlex.join(["biasvar", *sys.argv[1:]]), say=say,
            sweep_progress=on_sweep, train_progress=on_train, store_only=store_only,
        )
    announce()
    console.print(f"done in {result.provenance['wall_s']:.0f} s ({result.tag}); wrote:", highlight=False)
    for f in result.files:
        console.print(f"  {f}", highlight=False)


def appendix(what: str, *, n: int | None, reference_n: int | None, stages: str | None, models: str | None,
             **kwargs) -> None:
    """``reproduce b4`` / ``b6``: App. B.4 and B.6 (:mod:`biasvar.studies.appendix`) with a progress bar."""
    from biasvar.studies.appendix import B4_MODELS, reproduce_appendix

    epochs = int_list(stages, "--stages", "1,10,100,200") or None
    model_list = tuple(m.strip() for m in models.split(",") if m.strip()) if models else None
    if model_list and (what == "b6" or not set(model_list) <= set(B4_MODELS)):
        raise typer.BadParameter(f"b4 measures {' and '.join(B4_MODELS)}; b6 the ternary qnet only",
                                 param_hint="--models")
    console.print(f"[bold]biasvar reproduce {what}[/]", highlight=False)
    progress = progress_bar("{task.fields[info]}")
    with progress:
        task = progress.add_task(what, total=None, info="")

        def on_train(p) -> None:
            progress.update(task, total=p.epochs * p.steps, completed=(p.epoch - 1) * p.steps + p.step,
                            info=f"train epoch {p.epoch}/{p.epochs}  loss {p.loss:.3f}")

        def on_sweep(done: int, total: int, nonfinite: int, rate: float, label: str) -> None:
            progress.update(task, total=total, completed=done, info=f"{label}  {rate:.1f} draws/s")

        result = reproduce_appendix(what, n=n, reference_n=reference_n, epochs=epochs, models=model_list,
                                    command=shlex.join(["biasvar", *sys.argv[1:]]), say=progress.console.print,
                                    sweep_progress=on_sweep, train_progress=on_train, **kwargs)
    console.print(f"done in {result.provenance['wall_s']:.0f} s ({result.tag}); wrote:", highlight=False)
    for f in result.files:
        console.print(f"  {f}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
