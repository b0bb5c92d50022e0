"""``biasvar reproduce b4`` and ``b6``: the paper's appendix measurements, one command each.

* **App. B.4** (Fig. B.2, B.4): the VAE and the HVAE, 16 variables x 16 categories on MNIST-B,
  trained with rf(M=4) (Adam 1e-4, batch 50, as Fig. 1's snapshot) and measured after 1, 10, 100
  and 200 epochs with every estimator of Fig. 4 left (``presets.protocol_specs("fig4")``) against
  10^4 reference draws, 10^4 per estimator. One training run per model reaches the last epoch and
  saves the earlier ones on the way (``train(save_at=...)``), so the stages are one trajectory.
* **App. B.6** (Fig. 4 right): the ternary 8C5-MP2-16C5-MP2-128FC-10FC network (weights and
  activations, triangular noise), trained 20 epochs with ZGR on Fashion-MNIST (Adam 1e-3, batch
  128: the paper states neither; these are our choices, in the provenance), measured on layer 0
  (the problem's ``measure_params``) with the ``fig4-quant`` grid: 4 x 10^5 reference draws and
  4 x 10^4 per estimator.

Snapshots already on disk with the same settings are reused. Each stage's report (Markdown, JSON)
and Pareto diagram go to ``results_dir/<tag>/<model>-e<epoch>/`` and ``figures_dir/<tag>/``, with
one ``provenance.json`` for the command. The HVAE's size in B.4 is not stated by the paper: the
VAE's 16 x 16 is used for both.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from biasvar import plots
from biasvar.atomic import write_atomic
from biasvar.device import resolve_device
from biasvar.engine import Calibration, RunOptions, overall_progress, plan_sweep, run_sweep
from biasvar.errors import SnapshotError
from biasvar.formats import report_to_json, report_to_markdown
from biasvar.presets import REFERENCE, _canon, get_preset, log_grid, protocol_specs
from biasvar.report import Report, analyze_runs
from biasvar.snapshot import Snapshot, load_snapshot
from biasvar.studies.reproduce import ReproduceResult, _provenance, train_resuming

Say = Callable[[str], None]

B4_EPOCHS: tuple[int, ...] = (1, 10, 100, 200)
B4_MODELS: Mapping[str, Mapping[str, Any]] = {"vae": {"categories": 16, "vars": 16},
                                              "hvae": {"categories": 16, "vars": 16}}
B4_TRAIN: Mapping[str, Any] = {"estimator": REFERENCE, "batch_size": 50, "lr": 1e-4, "data": "mnist-b"}
B6_EPOCHS = 20
B6_QNET: Mapping[str, Any] = {"arch": "8C5-MP2-16C5-MP2-128FC-10FC", "weights_bits": "T", "acts_bits": "T",
                              "noise": "triangular"}
B6_TRAIN: Mapping[str, Any] = {"estimator": "zgr", "batch_size": 128, "lr": 1e-3, "data": "fmnist"}


def b6_specs(points: int | None = None) -> list[str]:
    """The ``fig4-quant`` grid (App. B.6), or each of its grids thinned to ``points`` values."""
    if points is None:
        return list(get_preset("fig4-quant").specs)
    t_gs = log_grid(0.1, 2, points, extra=(1.1, 2.0))
    specs = [f"{fam}(t={t})" for fam in ("gs", "gs-st") for t in t_gs]
    specs += [f"gr-mc(t={t},M={M})" for M in (10, 100) for t in t_gs]
    specs += [f"st(t={t})" for t in sorted(set(log_grid(1, 8, points, extra=(1.1, 2.0))) | set(log_grid(0.5, 1, 2)))]
    specs += [f"st-zgr(alpha={a},t=1)" for a in (0.0, 0.5, 1.0)] + ["zgr", "rf(M=2)", REFERENCE]
    return list(_canon(specs))


def _config_tag(config: Mapping[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "", "-".join(f"{k}{v}" for k, v in sorted(config.items())))


def trained_snapshots(kind: str, config: Mapping[str, Any], *, epochs: Sequence[int], training: Mapping[str, Any],
                      seed: int, data_dir: str | Path | None, device: str, snapshot_dir: str | Path, say: Say,
                      train_progress: Callable | None = None,
                      steps_per_epoch: int | None = None) -> dict[int, Snapshot]:
    """Snapshots of ``kind`` after each of ``epochs`` epochs, from one training run (reused from disk when
    every one is there with these settings)."""
    from biasvar.train import build_problem, epoch_path, load_data

    last = max(epochs)
    est = re.sub(r"[^A-Za-z0-9.]+", "", str(training["estimator"]))
    out = Path(snapshot_dir) / f"{kind}-{_config_tag(config)}-{training['data']}-{est}-e{last}-s{seed}.pt"
    paths = {e: out if e == last else epoch_path(out, e) for e in epochs}
    snaps: dict[int, Snapshot] = {}
    for e, p in paths.items():
        try:
            s = load_snapshot(p) if p.is_file() else None
        except SnapshotError:
            s = None
        prov = s.provenance if s is not None else {}
        if (s is not None and prov.get("epochs") == e and prov.get("seed") == seed
                and steps_per_epoch in (None, prov.get("steps_per_epoch"))
                and all(s.problem.config.get(k) == v for k, v in config.items() if k in s.problem.config)):
            snaps[e] = s
    if len(snaps) == len(paths):
        say(f"reusing {kind} snapshots after {', '.join(map(str, sorted(paths)))} epochs ({out.parent})")
        return snaps
    problem = build_problem(kind, dict(config), seed=seed)
    data = load_data(kind, training["data"], data_dir=data_dir)
    say(f"training {kind} {dict(config)}: {last} epochs of {training['estimator']} on {training['data']}, saved "
        f"after {', '.join(map(str, sorted(paths)))} -> {out}")
    train_resuming(problem, data=data, estimator=training["estimator"], epochs=last,
                   batch_size=training["batch_size"], lr=training["lr"], seed=seed, steps_per_epoch=steps_per_epoch,
                   save_at=[e for e in epochs if e != last], out=out, device=device, progress=train_progress, say=say)
    return {e: load_snapshot(p) for e, p in paths.items()}


def measure(snap: Snapshot, specs: Sequence[str], *, n: int, reference_n: int, seed: int, runs_dir: str | Path,
            options: RunOptions, calibration: Calibration, store_only: bool, n_resamples: int, name: str,
            res_dir: Path, fig_dir: Path, sweep_progress: Callable | None = None) -> tuple[Report, list[Path], dict]:
    """Sweep ``specs`` against the reference at ``snap``; the report (Markdown, JSON) and its Pareto diagram."""
    sweep = plan_sweep(snap, list(specs), reference=REFERENCE, n=n, reference_n=reference_n, seed=seed,
                       runs_dir=runs_dir, name=name)
    done = run_sweep(sweep, options, calibration=calibration, gram=True, store_only=store_only,
                     progress=overall_progress(sweep, sweep_progress) if sweep_progress else None)
    report = analyze_runs(runs_dir, snapshot=snap.id, reference=REFERENCE, n_resamples=n_resamples, seed=seed)
    files = [write_atomic(res_dir / "report.md", report_to_markdown(report)),
             write_atomic(res_dir / "report.json", report_to_json(report))]
    files += list(plots.plot_pareto(report, fig_dir / f"{name}-pareto.png").paths)
    return report, files, dict(done.timing)


def reproduce_appendix(
    what: str,
    *,
    n: int | None = None,
    reference_n: int | None = None,
    epochs: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    points: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | Path | None = None,
    runs_dir: str | Path = "runs",
    snapshot_dir: str | Path = "snapshots",
    results_dir: str | Path = "results",
    figures_dir: str | Path = "figures",
    tag: str | None = None,
    n_resamples: int = 1000,
    steps_per_epoch: int | None = None,
    config: Mapping[str, Any] | None = None,
    estimators: Sequence[str] | None = None,
    command: str = "",
    say: Say = lambda msg: None,
    sweep_progress: Callable | None = None,
    train_progress: Callable | None = None,
    store_only: bool = False,
) -> ReproduceResult:
    """App. B.4 (``what="b4"``) or B.6 (``"b6"``); see the module docstring. ``n``/``reference_n`` default
    to the paper's (10^4/10^4 for B.4, 4e4/4e5 for B.6); ``epochs``, ``models``, ``points``,
    ``steps_per_epoch``, ``config`` (the model's size) and ``estimators`` (instead of the figure's grid) make
    reduced runs, tagged as such."""
    if what not in ("b4", "b6"):
        raise ValueError(f"unknown appendix study {what!r}; expected b4 or b6")
    t0 = time.perf_counter()
    b4 = what == "b4"
    paper_n, paper_ref = (10_000, 10_000) if b4 else (40_000, 400_000)
    n = paper_n if n is None else n
    reference_n = (paper_ref if n == paper_n else n) if reference_n is None else reference_n
    epochs = tuple(sorted(set(epochs or (B4_EPOCHS if b4 else (B6_EPOCHS,)))))
    models = tuple(models or (tuple(B4_MODELS) if b4 else ("qnet",)))
    specs = list(_canon(estimators)) if estimators else protocol_specs("fig4", points) if b4 else b6_specs(points)
    full = (n >= paper_n and reference_n >= paper_ref and points is None and steps_per_epoch is None
            and not estimators
            and config is None and epochs == (B4_EPOCHS if b4 else (B6_EPOCHS,))
            and models == (tuple(B4_MODELS) if b4 else ("qnet",)))
    dev = resolve_device(device)
    tag = tag or f"{what}-{'full' if full else 'reduced'}-{'cpu' if dev.type == 'cpu' else 'gpu'}"
    options, calibration = RunOptions(device=dev), Calibration()
    files: list[Path] = []
    stages: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    report = snap = None
    for model in models:
        cfg = dict(config or (B4_MODELS[model] if b4 else B6_QNET))
        training = B4_TRAIN if b4 else B6_TRAIN
        snaps = trained_snapshots(model, cfg, epochs=epochs, training=training, seed=seed, data_dir=data_dir,
                                  device=str(dev), snapshot_dir=snapshot_dir, say=say, train_progress=train_progress,
                                  steps_per_epoch=steps_per_epoch)
        for e in epochs:
            snap, name = snaps[e], f"{model}-e{e}"
            say(f"[{time.perf_counter() - t0:.0f} s] {name}: {len(specs)} estimators + {REFERENCE} at snapshot "
                f"{snap.id} (n = {n}, reference {reference_n})")
            report, written, t = measure(snap, specs, n=n, reference_n=reference_n, seed=seed, runs_dir=runs_dir,
                                         options=options, calibration=calibration, store_only=store_only,
                                         n_resamples=n_resamples, name=name,
                                         res_dir=Path(results_dir) / tag / name, fig_dir=Path(figures_dir) / tag,
                                         sweep_progress=sweep_progress)
            files += written
            for k, v in t.items():
                timing[k] = round(timing.get(k, 0.0) + v, 3)
            stages.append({"model": model, "epochs": e, "config": cfg, "snapshot_id": snap.id,
                           "snapshot_hash": snap.hash, "snapshot_path": str(snap.path), "training": dict(training),
                           "rows": len(report.rows)})
    settings = {"command": command, "what": what, "tag": tag, "reduced": not full, "n": n, "reference_n": reference_n,
                "epochs": list(epochs), "models": list(models), "points": points, "seed": seed,
                "n_resamples": n_resamples, "store_only": store_only, "steps_per_epoch": steps_per_epoch,
                "specs": list(specs)}
    provenance = _provenance(settings, snap, dev, report, t0)
    provenance["stages"] = stages
    provenance["sweep_timing_s"] = timing
    files.append(write_atomic(Path(results_dir) / tag / "provenance.json", json.dumps(provenance, indent=1)))
    return ReproduceResult(tag, snap, report, files, provenance)


__all__ = ["B4_EPOCHS", "B4_MODELS", "B6_QNET", "b6_specs", "measure", "reproduce_appendix", "trained_snapshots"]
