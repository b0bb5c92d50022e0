"""``biasvar train``: train a snapshot (App. B.3 defaults) with a rich progress bar."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from biasvar.spec import spec_from_flags
from biasvar.train import (
    TrainError,
    TrainProgress,
    build_problem,
    check_settings,
    epoch_path,
    load_data,
    train,
)

from .common import console, progress_bar

Opt = typer.Option


def _int_list(text: str | None, flag: str, example: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(e) for e in text.replace(" ", "").split(",") if e)
    except ValueError:
        raise TrainError(f"{flag} {text!r}: expected comma-separated integers, e.g. {example}") from None


def _value(raw: str | None) -> object:
    """A model option's value: JSON when it parses (``8``, ``[16,8]``, ``0.5``), else the text."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _parse_options(items: list[str] | None) -> dict[str, object]:
    """``-o key=value`` pairs (repeatable) -> {key: value}."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainError(f"--option {item!r}: expected KEY=VALUE, e.g. -o loss=quartic, -o hidden=[64]")
        out[key.strip().replace("-", "_")] = _value(raw)
    return out


def _default_out(model: str, spec: str, epochs: int, seed: int) -> Path:
    tag = re.sub(r"[^A-Za-z0-9.=-]+", "_", spec).strip("_")
    return Path("snapshots") / f"{model}-{tag}-e{epochs}-s{seed}.pt"


def train_command(
    model: Annotated[str, Opt(help="Problem: vae, hvae, toy-cat, qnet.")] = "vae",
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
    estimator: Annotated[str, Opt(help="Estimator: 'rf(M=4)', zgr, 'gr-mc(t=0.1,M=10)'.")] = "rf(M=4)",
    t: Annotated[float | None, Opt("--t", help="Temperature (flag form of the spec).")] = None,
    M: Annotated[int | None, Opt("--M", help="Samples M (flag form of the spec).")] = None,
    alpha: Annotated[float | None, Opt("--alpha", help="st-zgr alpha (flag form of the spec).")] = None,
    epochs: Annotated[int, Opt(help="Training epochs.")] = 10,
    batch_size: Annotated[int, Opt(help="Minibatch size (App. B.3: 50).")] = 50,
    lr: Annotated[float, Opt(help="Adam learning rate (App. B.3: 1e-4).")] = 1e-4,
    seed: Annotated[int, Opt(help="Seeds model init, evaluation batch, data order and noise.")] = 0,
    out: Annotated[Path | None, Opt(help="Snapshot file (default snapshots/<model>-<spec>-e<N>-s<seed>.pt).")]
    = None,
    save_at: Annotated[str | None, Opt(help="Also save OUT-e<epoch>.pt at epochs: 1,10,100.")] = None,
    data_dir: Annotated[Path | None, Opt(help="Data folder (else $BIASVAR_DATA, else user cache).")] = None,
    offline: Annotated[bool, Opt("--offline", help="Never download missing dataset files.")] = False,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
    eval_batch_size: Annotated[int, Opt(help="Size of the fixed evaluation batch in the snapshot.")] = 200,
    steps_per_epoch: Annotated[int | None, Opt(help="Steps per epoch (default: full pass; 100 no data).")]
    = None,
    threads: Annotated[int | None, Opt(help="CPU threads for torch (default: torch's choice; 1 is often "
                                            "fastest on a busy machine).")] = None,
) -> None:
    """Train a model with one estimator (Adam) and save a snapshot for bias-variance measurements."""
    spec = spec_from_flags(estimator, t=t, M=M, alpha=alpha)
    options: dict[str, object] = {"categories": categories, "vars": vars, "arch": _value(arch),
                                  "weights_bits": _value(weights_bits), "acts_bits": _value(acts_bits),
                                  "noise": _value(noise)}
    if hidden is not None:
        options["hidden"] = list(_int_list(hidden, "--hidden", "512,256")) or None
    options.update(_parse_options(option))
    save_epochs = _int_list(save_at, "--save-at", "1,10,100")
    out = out or _default_out(model, str(spec), epochs, seed)
    check_settings(epochs, batch_size, lr, eval_batch_size, save_epochs, out, steps_per_epoch)
    if threads is not None:
        if threads < 1:
            raise TrainError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)  # this process is the CLI's own
    problem = build_problem(model, options, seed=seed)
    dataset = load_data(model, data, data_dir=data_dir, download=False if offline else None)

    label = "neg-ELBO" if model in ("vae", "hvae") else "loss"
    with progress_bar(label + " {task.fields[loss]}", transient=False) as bar:
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
                     save_at=save_epochs, out=out, device=device, progress=report)

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
        table.add_row(f"epoch {e}", str(epoch_path(out, e)))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Adds ``train``."""
    app.command("train")(train_command)
