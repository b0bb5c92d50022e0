"""Sweeps: a reference run and a list of tested estimators at one snapshot, resumable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biasvar import store
from biasvar.atomic import write_atomic
from biasvar.engine.runs import sample_run
from biasvar.spec import EstimatorSpec, parse_spec


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: the reference, or a tested estimator."""

    spec: str
    seed: int
    n: int
    role: str  # "reference" | "tested"
    path: Path


def plan_sweep(snapshot_id: str, specs: Sequence[str | EstimatorSpec], *, reference: str = "rf(M=4)",
               n: int = 10_000, reference_n: int | None = None, seed: int = 0,
               runs_dir: str | Path = "runs") -> list[PlannedRun]:
    """The runs of a sweep: the reference ``(reference, seed)`` first, then every tested spec
    with ``seed``, except the reference spec itself, which is tested as ``(reference, seed + 1)``:
    an independent second run, so Eq. 16 compares it with an independent reference."""
    ref = str(parse_spec(reference))
    ref_path = store.run_path(runs_dir, snapshot_id, ref, seed)
    runs = [PlannedRun(ref, seed, int(reference_n or n), "reference", ref_path)]
    seen = set()
    for s in specs:
        canon = str(parse_spec(s))
        if canon in seen:
            continue
        seen.add(canon)
        sd = seed + 1 if canon == ref else seed
        runs.append(PlannedRun(canon, sd, int(n), "tested", store.run_path(runs_dir, snapshot_id, canon, sd)))
    return runs


def _done_so_far(path: Path) -> int:
    if not path.is_file():
        return 0
    try:
        return store.read_run(path, load_sums=False).progress.n_done
    except Exception:  # noqa: BLE001 - an unreadable file is redone or refused by sample_run
        return 0


def sweep_runs(
    snapshot: Any,
    specs: Sequence[str | EstimatorSpec],
    *,
    reference: str = "rf(M=4)",
    n: int = 10_000,
    reference_n: int | None = None,
    seed: int = 0,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    progress: Callable[[int, int, int, float, str], None] | None = None,
    **sample_kwargs: Any,
) -> list[PlannedRun]:
    """Run the reference and every tested spec (see :func:`plan_sweep`); complete runs are
    skipped, partial ones resumed.

    Writes ``<runs_dir>/<snapshot-id>/sweep-<name>.json`` (which file is the reference, which
    are tested) when ``name`` is given.

    Args:
        progress: ``progress(done, total, nonfinite, draws_per_s, current_spec)`` over all runs.
        sample_kwargs: passed to :func:`sample_run` (params, keep, device, dtype, max_memory, ...).
    """
    plan = plan_sweep(snapshot.id, specs, reference=reference, n=n, reference_n=reference_n, seed=seed,
                      runs_dir=runs_dir)
    if name:
        _write_manifest(snapshot, plan, name, runs_dir)
    total = sum(r.n for r in plan)
    current = {r.path: min(r.n, _done_so_far(r.path)) for r in plan}  # draws done per run
    nonfinite_done = [0]  # non-finite draws of the runs finished in this sweep
    for run in plan:

        def report(done: int, _total: int, nonfinite: int, rate: float, run: PlannedRun = run) -> None:
            current[run.path] = min(done, run.n)
            if progress is not None:
                progress(sum(current.values()), total, nonfinite_done[0] + nonfinite, rate,
                         f"{run.spec} s{run.seed}")

        sample_run(snapshot, run.spec, n=run.n, seed=run.seed, runs_dir=runs_dir, progress=report,
                   **sample_kwargs)
        done = store.read_run(run.path, load_sums=False).progress
        current[run.path] = run.n
        nonfinite_done[0] += done.n_nonfinite
        if progress is not None:
            progress(sum(current.values()), total, nonfinite_done[0], done.draws_per_s,
                     f"{run.spec} s{run.seed}")
    return plan


def _write_manifest(snapshot: Any, plan: Sequence[PlannedRun], name: str, runs_dir: str | Path) -> Path:
    folder = Path(runs_dir) / snapshot.id
    folder.mkdir(parents=True, exist_ok=True)
    entry = lambda r: {"spec": r.spec, "seed": r.seed, "n": r.n, "file": r.path.name}  # noqa: E731
    manifest = {
        "name": name,
        "snapshot_hash": snapshot.hash,
        "snapshot_path": str(snapshot.path) if snapshot.path else None,
        "reference": entry(plan[0]),
        "tested": [entry(r) for r in plan[1:]],
    }
    path = folder / f"sweep-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"
    return write_atomic(path, json.dumps(manifest, indent=1))


__all__ = ["PlannedRun", "plan_sweep", "sweep_runs"]
