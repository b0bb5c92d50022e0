"""``biasvar train``: train a snapshot (App. B.3 defaults) with a rich progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from biasvar import names
from biasvar.spec import spec_from_flags

from . import options as o
from .common import console, lazy, progress_bar
from .parsing import int_list, model_options

train_mod = lazy("biasvar.train")  # torch: loaded when training

Opt = typer.Option
ModelName = o.choices("ModelName", names.MODELS)


def train_command(
    model: Annotated[ModelName | None, Opt("--model", metavar="NAME", help="Built-in model, one of: "
                                           f"{', '.join(names.MODELS)} (default vae; options below or with "
                                           "-o KEY=VALUE).")] = None,
    problem: Annotated[str | None, Opt("--problem", metavar="MODULE:FUNCTION", help="Your own problem "
                                       "instead of --model: a factory module:function (or file.py:function) "
                                       "returning a biasvar Problem (options with -o KEY=VALUE).")] = None,
    data: Annotated[str | None, Opt(help="Dataset (default mnist-b for vae/hvae, fmnist for qnet).")] = None,
    categories: Annotated[int | None, Opt(help="Categories per variable (a power of 2).")] = None,
    vars: Annotated[int | None, Opt("--vars", help="Categorical variables (per layer for hvae).")] = None,
    hidden: Annotated[str | None, Opt(help="vae hidden sizes, e.g. 512,256.")] = None,
    arch: Annotated[str | None, Opt(help="qnet architecture.")] = None,
    weights_bits: Annotated[str | None, Opt(help="qnet weight bits.")] = None,
    acts_bits: Annotated[str | None, Opt(help="qnet activation bits.")] = None,
    noise: Annotated[str | None, Opt(help="qnet injected noise (logistic, triangular).")] = None,
    option: Annotated[list[str] | None, Opt("--option", "-o", help="Model option KEY=VALUE (repeatable).")]
    = None,
    weights: Annotated[Path | None, Opt("--weights", help="Start from this state dict (names and shapes "
                                        "must match the problem's parameters).")] = None,
    estimator: o.Estimator = "rf(M=4)",
    t: o.TFlag = None,
    M: o.MFlag = None,
    alpha: o.AlphaFlag = None,
    epochs: Annotated[int, Opt(help="Training epochs.")] = 10,
    batch_size: Annotated[int, Opt(help="Minibatch size (App. B.3: 50).")] = 50,
    lr: Annotated[float, Opt(help="Adam learning rate (App. B.3: 1e-4).")] = 1e-4,
    seed: Annotated[int, Opt("--seed", help="Seed of the noise, and of the model init, evaluation batch "
                             "and data order.")] = 0,
    out: Annotated[Path | None, Opt(help="Snapshot file (default: a file in snapshots/ "
                                    "named by the model, the spec, the epochs and the seed).")] = None,
    save_at: Annotated[str | None, Opt(help="Also save OUT-e<epoch>.pt at epochs: 1,10,100.")] = None,
    data_dir: o.DataDir = None,
    offline: Annotated[bool, Opt("--offline", help="Never download missing dataset files.")] = False,
    device: o.Device = "auto",
    eval_batch_size: Annotated[int, Opt(help="Size of the fixed evaluation batch in the snapshot.")] = 200,
    steps_per_epoch: Annotated[int | None, Opt(help="Steps per epoch (default: full pass; 100 no data).")]
    = None,
    threads: o.Threads = None,
    resume: Annotated[bool, Opt("--resume", help="Continue the training state kept beside OUT "
                                "(OUT.train-state.pt, written after every epoch) from its last finished epoch; "
                                "a larger --epochs extends it.")] = False,
    resume_from: Annotated[Path | None, Opt("--resume-from", metavar="FILE", help="Continue from this "
                                            "training state file (e.g. a shorter training's, to extend it into "
                                            "OUT).")] = None,
    restart: o.Restart = False,
) -> None:
    """Train a model with one estimator (Adam) and save a snapshot for bias-variance measurements.

    The training state is saved after every epoch, so a stopped training continues with --resume and
    ends bit for bit where an uninterrupted one ends (same device and threads)."""
    if model is not None and problem is not None:
        raise typer.BadParameter("give --model (a built-in) or --problem (your own factory), not both",
                                 param_hint="'--problem'")
    model = problem or (model.value if model is not None else "vae")
    spec = spec_from_flags(estimator, t=t, M=M, alpha=alpha)
    from biasvar.problems.user import load_state
    from biasvar.train import (
        TrainError,
        TrainProgress,
        build_problem,
        check_settings,
        default_snapshot_path,
        load_data,
        loss_name,
        read_state_dict,
        train,
        train_state_path,
    )

    options = model_options(categories=categories, vars=vars, hidden=hidden, arch=arch, weights_bits=weights_bits,
                            acts_bits=acts_bits, noise=noise, extra=option)
    save_epochs = int_list(save_at, "--save-at", "1,10,100")
    out = out or default_snapshot_path(model, str(spec), epochs, seed)
    check_settings(epochs, batch_size, lr, eval_batch_size, save_epochs, out, steps_per_epoch)
    if sum((resume, resume_from is not None, restart)) > 1:
        raise TrainError("give one of --resume, --resume-from and --restart")
    state = train_state_path(out)
    if state.exists() and not (resume or resume_from is not None or restart):
        raise TrainError(f"a training state is kept at {state}: --resume continues it, --restart starts over")
    if restart:
        state.unlink(missing_ok=True)
    if resume_from is not None and not resume_from.is_file():
        raise TrainError(f"--resume-from: training state not found: {resume_from}")
    o.set_threads(threads)
    problem = build_problem(model, options, seed=seed)
    if weights is not None:
        load_state(problem, read_state_dict(weights), source=f"weights {weights}")
    dataset = load_data(model, data, data_dir=data_dir, download=False if offline else None)

    with progress_bar(loss_name(model) + " {task.fields[loss]}", transient=False) as bar:
        task = None

        def report(p: TrainProgress) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(f"train {model} {spec}", total=p.epochs * p.steps, loss="-")
            if p.done:
                bar.console.print(f"epoch {p.epoch}/{p.epochs}: train loss {p.loss:.3f}, "
                                  f"eval-batch loss {p.eval_loss:.3f}", highlight=False)
                return
            bar.update(task, completed=(p.epoch - 1) * p.steps + p.step, loss=f"{p.loss:.3f}")

        snap = train(problem, data=dataset, estimator=spec, epochs=epochs, batch_size=batch_size, lr=lr,
                     seed=seed, eval_batch_size=eval_batch_size, steps_per_epoch=steps_per_epoch,
                     save_at=save_epochs, out=out, device=device, progress=report,
                     resume=resume_from if resume_from is not None else resume)

    console.print(_summary(snap, problem, save_epochs, out))


def _summary(snap, problem, save_epochs: tuple[int, ...], out: Path) -> Table:
    """The trained snapshot: file, model, data, estimator, losses, wall time, per-epoch files."""
    prov = snap.provenance
    table = Table(title=f"snapshot {snap.id}", show_header=False)
    table.add_row("file", str(snap.path))
    table.add_row("model", f"{problem.kind} {json.dumps(problem.config)} ({problem.dim:,} parameters)")
    table.add_row("data", f"{prov.get('data')} (evaluation batch {tuple(problem.batch.shape)})")
    table.add_row("estimator", f"{prov['estimator']}, {prov['epochs']} epochs x {prov['steps_per_epoch']} "
                               f"steps, lr {prov['lr']:g}, seed {prov['seed']}, {prov['device']}")
    evals = prov["eval_history"]
    table.add_row("eval-batch loss", f"{evals[0]['loss']:.3f} (init) -> {evals[-1]['loss']:.3f}")
    for name, value in evals[-1].get("metrics", {}).items():
        table.add_row(f"metric {name}", f"{evals[0]['metrics'][name]:.4g} (init) -> {value:.4g}")
    wall = prov["wall_time_s"]
    table.add_row("wall time", f"{wall:.1f} s ({wall / prov['epochs']:.1f} s/epoch)")
    for e in save_epochs:
        table.add_row(f"epoch {e}", str(train_mod.epoch_path(out, e)))
    return table


def register(app: typer.Typer) -> None:
    """Adds ``train``."""
    app.command("train")(train_command)
