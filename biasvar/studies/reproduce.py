"""``biasvar reproduce``: the paper's bias-variance measurements end to end, from raw MNIST files.

1. Train the Fig. 1 snapshot: VAE on MNIST-B, 16 variables x 16 categories, ``epochs`` epochs of
   rf(M=4), Adam lr 1e-4, batch 50 (App. B.3, B.4). A snapshot already on disk with the same
   settings is reused.
2. Sweep the estimator grids of Fig. 1 and/or Fig. 4 (``biasvar.presets``) against the reference
   rf(M=4) at the same snapshot (reference and tested runs of ``n`` draws).
3. Analyse (Eq. 16, bootstrap intervals) into Markdown and JSON under ``results_dir/<tag>/``.
4. Draw Fig. 1, the Fig. 4 Pareto diagram and Fig. B.5 (the single-unit quantizer study) into
   ``figures_dir/<tag>/`` as PNG and PDF.

The full protocol is ``n = 10_000`` draws per run, 10 epochs, the presets' full grids. A reduced
run (fewer draws, a coarser grid given by ``points``, fewer draws ``slow_n`` for the costly
gr-mc(M >= 100) runs) is labelled as such in its tag and provenance.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

import biasvar
from biasvar import plots
from biasvar.atomic import write_atomic
from biasvar.device import resolve_device
from biasvar.engine import Calibration, RunOptions, overall_progress, plan_sweep, run_sweep
from biasvar.engine.sweeps import SweepPlan
from biasvar.errors import SnapshotError
from biasvar.formats import report_to_json, report_to_markdown
from biasvar.presets import REFERENCE, is_slow, protocol_specs, resolve_sweep
from biasvar.provenance import device_name, git_commit
from biasvar.report import Report, analyze_runs
from biasvar.snapshot import Snapshot, load_snapshot
from biasvar.spec import parse_spec
from biasvar.studies.quantstudy import quant_unit_study

Say = Callable[[str], None]


@dataclass
class ReproduceResult:
    tag: str
    snapshot: Snapshot
    report: Report
    files: list[Path] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


FIG1_VAE: Mapping[str, Any] = MappingProxyType({"categories": 16, "vars": 16})  # App. B.4


def _snapshot_path(snapshot_dir: str | Path, vae: Mapping[str, Any], epochs: int, seed: int) -> Path:
    if dict(vae) == dict(FIG1_VAE):
        return Path(snapshot_dir) / f"vae-c16v16-mnist-b-rf4-e{epochs}-s{seed}.pt"
    tag = re.sub(r"[^A-Za-z0-9.]+", "", "-".join(f"{k}{v}" for k, v in sorted(vae.items())))
    return Path(snapshot_dir) / f"vae-{tag}-mnist-b-rf4-e{epochs}-s{seed}.pt"


def _reusable(path: Path, *, epochs: int, seed: int, vae: Mapping[str, Any], steps_per_epoch: int | None,
              say: Say) -> Snapshot | None:
    """The snapshot at ``path`` if it was trained with these settings."""
    if not path.is_file():
        return None
    try:
        snap = load_snapshot(path)
    except SnapshotError as e:
        say(f"retraining: {e}")
        return None
    prov, config = snap.provenance, snap.problem.config
    if ((prov.get("epochs"), prov.get("seed"), prov.get("estimator")) == (epochs, seed, REFERENCE)
            and all(config.get(k) == v for k, v in vae.items())
            and steps_per_epoch in (None, prov.get("steps_per_epoch"))):
        say(f"reusing snapshot {path} ({snap.id})")
        return snap
    return None


def fig1_snapshot(*, epochs: int, seed: int, data_dir: str | Path | None, device: str,
                  snapshot_dir: str | Path, say: Say, train_progress: Callable | None = None,
                  vae: Mapping[str, Any] | None = None, steps_per_epoch: int | None = None) -> Snapshot:
    """The Fig. 1 VAE snapshot after ``epochs`` epochs of rf(M=4) (trained, or reused from disk).

    ``vae`` (default :data:`FIG1_VAE`) and ``steps_per_epoch`` (default a full pass) make smaller
    snapshots for tests and smoke runs.
    """
    from biasvar.data import load
    from biasvar.problems.vae import VAE

    vae = dict(FIG1_VAE if vae is None else vae)
    path = _snapshot_path(snapshot_dir, vae, epochs, seed)
    snap = _reusable(path, epochs=epochs, seed=seed, vae=vae, steps_per_epoch=steps_per_epoch, say=say)
    if snap is not None:
        return snap
    data = load("mnist-b", "train", data_dir=data_dir)
    problem = VAE(**vae, seed=seed)
    say(f"training the Fig. 1 VAE: {epochs} epochs of {REFERENCE} on MNIST-B -> {path}")
    return train_resuming(problem, data=data, estimator=REFERENCE, epochs=epochs, batch_size=50, lr=1e-4,
                          seed=seed, out=path, device=device, progress=train_progress, steps_per_epoch=steps_per_epoch,
                          say=say)


def train_resuming(problem: Any, *, out: Path, say: Say, **kw: Any) -> Snapshot:
    """:func:`biasvar.train.train` continuing the training state beside ``out`` when one of the same
    settings is there (a stopped reproduce resumes its training after the last finished epoch), else
    from the start."""
    from biasvar.train import StateError, train, train_state_path

    state = train_state_path(out)
    if state.is_file():
        try:
            return train(problem, out=out, resume=True, **kw)
        except StateError as e:
            say(f"not resuming ({e}): training from the start")
    return train(problem, out=out, **kw)


def reproduce(
    what: str = "all",
    *,
    n: int = 10_000,
    epochs: int = 10,
    points: int | None = None,
    slow_n: int | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | Path | None = None,
    runs_dir: str | Path = "runs",
    snapshot_dir: str | Path = "snapshots",
    results_dir: str | Path = "results",
    figures_dir: str | Path = "figures",
    tag: str | None = None,
    n_resamples: int = 1000,
    bootstrap_seed: int | None = None,
    quant_n: int = 10_000,
    vae: Mapping[str, Any] | None = None,
    steps_per_epoch: int | None = None,
    command: str = "",
    say: Say = lambda msg: None,
    sweep_progress: Callable | None = None,
    train_progress: Callable | None = None,
    store_only: bool = False,
) -> ReproduceResult:
    """Run the protocol (see the module docstring); returns the report and the files written.

    ``bootstrap_seed`` defaults to ``seed``; ``vae`` and ``steps_per_epoch`` shrink the snapshot
    (see :func:`fig1_snapshot`; such a run is tagged reduced). ``store_only``: write no run files,
    only the snapshot's statistics store (one store-only sweep of every run: ``sweep --store-only``).
    """
    t0 = time.perf_counter()
    specs = protocol_specs(what, points)
    full = (n >= 10_000 and epochs == 10 and points is None and (slow_n is None or slow_n >= n)
            and vae is None and steps_per_epoch is None)
    dev = resolve_device(device)
    if tag is None:
        tag = ("full" if full else "reduced") + ("-cpu" if dev.type == "cpu" else "-gpu")
    steps: dict[str, float] = {}  # wall seconds of each step, in provenance.json and the messages

    def lap(name: str) -> str:
        steps[name] = round(time.perf_counter() - t0 - sum(steps.values()), 1)
        return f"[{time.perf_counter() - t0:.0f} s] "

    snap = fig1_snapshot(epochs=epochs, seed=seed, data_dir=data_dir, device=str(dev), snapshot_dir=snapshot_dir,
                         say=say, train_progress=train_progress, vae=vae, steps_per_epoch=steps_per_epoch)
    fast = resolve_sweep(estimators=[s for s in specs if not is_slow(s)], n=n, name=what)
    slow = [s for s in specs if is_slow(s)]
    say(lap("snapshot") + f"sweeping {len(specs)} estimators + reference {REFERENCE} at snapshot {snap.id} (n = {n}"
        + (f", gr-mc(M>=100): n = {slow_n}" if slow and slow_n else "") + ")")
    options, calibration = RunOptions(device=dev), Calibration()
    sweeps = [plan_sweep(snap, fast.specs, reference=REFERENCE, n=fast.n, reference_n=fast.reference_n, seed=seed,
                         runs_dir=runs_dir, name=fast.name)]
    if slow:
        sweeps.append(plan_sweep(snap, slow, reference=REFERENCE, n=slow_n or n, reference_n=n, seed=seed,
                                 runs_dir=runs_dir))
    if store_only:  # one sweep of every run: the runs held in memory pair with each other
        sweeps = [SweepPlan(snap, sweeps[0].runs + tuple(r for sw in sweeps[1:] for r in sw.runs[1:]),
                            sweeps[0].runs_dir, sweeps[0].name)]
    timing: dict[str, float] = {}
    for i, sweep in enumerate(sweeps):  # the statistics store is updated once, after the last
        done = run_sweep(sweep, options, calibration=calibration, gram=i == len(sweeps) - 1, store_only=store_only,
                         progress=overall_progress(sweep, sweep_progress) if sweep_progress else None)
        for k, v in done.timing.items():
            timing[k] = round(timing.get(k, 0.0) + v, 3)
    say(lap("sweep") + "analysing (Eq. 16, bootstrap over blocks)")
    bseed = seed if bootstrap_seed is None else bootstrap_seed
    report = analyze_runs(runs_dir, snapshot=snap.id, reference=REFERENCE, n_resamples=n_resamples, seed=bseed)
    res_dir, fig_dir = Path(results_dir) / tag, Path(figures_dir) / tag
    files = [write_atomic(res_dir / "report.md", report_to_markdown(report)),
             write_atomic(res_dir / "report.json", report_to_json(report))]
    for name, fn in (("fig1", plots.plot_fig1), ("fig4-pareto", plots.plot_pareto)):
        files += list(fn(report, fig_dir / f"{name}.png").paths)
    say(lap("analysis_and_figures") + f"single-unit quantizer study (Fig. B.5), {quant_n} draws per eta")
    study = quant_unit_study(n=quant_n, seed=seed, device=dev)
    files += list(plots.plot_quant_unit(study, fig_dir / "figB5-quant-unit.png").paths)
    lap("quant_study")
    settings = {"command": command, "what": what, "tag": tag, "reduced": not full, "n": n, "slow_n": slow_n or n,
                "points": points, "epochs": epochs, "seed": seed, "n_resamples": n_resamples, "quant_n": quant_n,
                "store_only": store_only}
    if bootstrap_seed is not None and bootstrap_seed != seed:
        settings["bootstrap_seed"] = bootstrap_seed
    if vae is not None or steps_per_epoch is not None:
        settings.update(vae=dict(FIG1_VAE if vae is None else vae), steps_per_epoch=steps_per_epoch)
    provenance = _provenance(settings, snap, dev, report, t0)
    provenance["steps_s"] = steps
    provenance["sweep_timing_s"] = timing  # drawing, set-up, run-file writes, store (SweepResult.timing)
    files.append(write_atomic(res_dir / "provenance.json", json.dumps(provenance, indent=1)))
    return ReproduceResult(tag, snap, report, files, provenance)


def _provenance(settings: dict[str, Any], snap: Snapshot, dev: torch.device, report: Report,
                t0: float) -> dict[str, Any]:
    """``provenance.json``: the settings, the snapshot, the machine and versions, the runs."""
    return {
        **settings,
        "snapshot_id": snap.id,
        "snapshot_hash": snap.hash,
        "snapshot_path": snap.path,
        "snapshot_provenance": {k: v for k, v in snap.provenance.items() if k != "loss_history"},
        "loss_history": snap.provenance.get("loss_history"),
        "device": device_name(dev),
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
        "commit": git_commit(),
        "biasvar_version": biasvar.__version__,
        "torch_version": str(torch.__version__),
        "wall_s": round(time.perf_counter() - t0, 1),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "runs": [{"spec": r.spec, "seed": r.seed, "n": r.n} for r in report.rows],
    }


def specs_summary(specs: Sequence[str]) -> str:
    fams: dict[str, int] = {}
    for s in specs:
        fams[parse_spec(s).name] = fams.get(parse_spec(s).name, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in fams.items())
