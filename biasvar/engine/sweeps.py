"""Sweeps: what a sweep is (a reference run and many tested estimators at one snapshot) and what
of it is done; :func:`~biasvar.engine.executors.run_sweep` computes it with an executor.

:func:`plan_sweep` names the runs (:class:`SweepPlan`); :func:`committed` and :func:`plan_shards`
say what a rerun can keep and what is left; :class:`RunProgress` is what the executors report, and
:func:`overall_progress` turns it into one count over the whole sweep.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasvar import store
from biasvar.atomic import write_atomic
from biasvar.engine import shards as sh
from biasvar.spec import EstimatorSpec, parse_spec


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: the reference, or a tested estimator."""

    spec: str
    seed: int
    n: int
    role: str  # "reference" | "tested"
    path: Path


@dataclass(frozen=True)
class SweepPlan:
    """The runs of a sweep at one snapshot (the reference first); iterates over them."""

    snapshot: Any
    runs: tuple[PlannedRun, ...]
    runs_dir: Path
    name: str | None = None

    def __iter__(self) -> Iterator[PlannedRun]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> PlannedRun:
        return self.runs[i]

    @property
    def total(self) -> int:
        return sum(r.n for r in self.runs)


def plan_sweep(snapshot: Any, specs: Sequence[str | EstimatorSpec], *, reference: str = "rf(M=4)",
               n: int = 10_000, reference_n: int | None = None, seed: int = 0, runs_dir: str | Path = "runs",
               name: str | None = None) -> SweepPlan:
    """The runs of a sweep: the reference ``(reference, seed)`` first, then every tested spec
    with ``seed``, except the reference spec itself, which is tested as ``(reference, seed + 1)``:
    an independent second run, so Eq. 16 compares it with an independent reference. ``name``: the
    sweep's manifest ``sweep-<name>.json`` is written when it runs."""
    runs_dir = Path(runs_dir)
    ref = str(parse_spec(reference))
    runs = [PlannedRun(ref, seed, int(reference_n or n), "reference", store.run_path(runs_dir, snapshot.id, ref, seed))]
    seen = set()
    for s in specs:
        canon = str(parse_spec(s))
        if canon in seen:
            continue
        seen.add(canon)
        sd = seed + 1 if canon == ref else seed
        runs.append(PlannedRun(canon, sd, int(n), "tested", store.run_path(runs_dir, snapshot.id, canon, sd)))
    return SweepPlan(snapshot, tuple(runs), runs_dir, name)


def write_manifest(plan: SweepPlan) -> Path:
    """``<runs_dir>/<snapshot-id>/sweep-<name>.json``: which file is the reference, which are tested."""
    snapshot = plan.snapshot
    folder = plan.runs_dir / snapshot.id
    folder.mkdir(parents=True, exist_ok=True)
    entry = lambda r: {"spec": r.spec, "seed": r.seed, "n": r.n, "file": r.path.name}  # noqa: E731
    manifest = {
        "name": plan.name,
        "snapshot_hash": snapshot.hash,
        "snapshot_path": str(snapshot.path) if snapshot.path else None,
        "reference": entry(plan[0]),
        "tested": [entry(r) for r in plan.runs[1:]],
    }
    path = folder / f"sweep-{re.sub(r'[^A-Za-z0-9_.-]', '_', str(plan.name))}.json"
    return write_atomic(path, json.dumps(manifest, indent=1))


@dataclass(frozen=True)
class RunProgress:
    """A run's progress: draws committed or drawn, of ``total``; the non-finite draws and the draw
    rate where the executor knows them (the local one does)."""

    run: PlannedRun
    done: int
    total: int
    nonfinite: int = 0
    rate: float = 0.0


SweepProgress = Callable[[RunProgress], None]


@dataclass
class SweepResult:
    """What a sweep did: the plan, and the shards computed in this call (run file path, first
    draw, end) versus the draws found already committed."""

    plan: SweepPlan
    computed: list[tuple[Path, int, int]] = field(default_factory=list)
    reused_draws: int = 0
    store: Any = None  # the statistics store updated at the end (biasvar.gramstore.UpdateResult), if any
    #: seconds by step, this call only: ``setup_s`` (planning each run: the problem, the estimator, the
    #: calibration of the engine path), ``draw_s`` (drawing and the block statistics; compilation
    #: included), ``write_s`` (run files: open, append, save, close, merge), ``store_s`` (the statistics
    #: store), ``total_s`` (the whole call). The local executors fill it; Ray's only ``store_s``/``total_s``.
    timing: dict[str, float] = field(default_factory=dict)

    def overheads(self) -> str:
        """One line: the time of each step and the overheads' share of the drawing time."""
        t = self.timing
        draw = t.get("draw_s", 0.0)
        over = sum(t.get(k, 0.0) for k in ("setup_s", "write_s", "store_s"))
        other = max(0.0, t.get("total_s", 0.0) - draw - over)
        share = f" ({over / draw:.0%} of drawing)" if draw > 0 else ""
        return (f"time {t.get('total_s', 0.0):.1f} s: drawing {draw:.1f}, set-up {t.get('setup_s', 0.0):.1f}, "
                f"run-file writes {t.get('write_s', 0.0):.1f}, store {t.get('store_s', 0.0):.1f}, other {other:.1f}"
                f"{share.replace(' (', '; overheads ').rstrip(')')}")


def committed(run_path: Path) -> tuple[int, list[sh.ShardInfo]]:
    """Draws committed in the run file, and its complete shard files not yet merged."""
    done = 0
    if run_path.is_file():
        done = int(store.read_run(run_path, load_sums=False).attrs["n_done"])
    return done, [s for s in sh.list_shards(run_path) if s.complete and s.end > done]


def committed_draws(run: PlannedRun) -> int:
    """Draws of ``run`` committed in its run file and complete shard files (at most ``run.n``)."""
    done, present = committed(run.path)
    return min(run.n, done + sum(s.draws for s in present))


def finished(run: PlannedRun) -> RunProgress:
    """The progress of a run after its executor is done with it (non-finite draws and the draw
    rate from its run file, once the file exists)."""
    bad, rate = 0, 0.0
    if run.path.is_file():
        a = store.read_run(run.path, load_sums=False).attrs
        bad, rate = int(a["n_nonfinite"]), float(a["draws_per_s"])
    return RunProgress(run, committed_draws(run), run.n, bad, rate)


def plan_shards(start: int, n: int, block_size: int, count: int,
                present: Sequence[sh.ShardInfo] = ()) -> list[tuple[int, int]]:
    """The shards still to compute: draws ``[start, n)`` less the ranges of ``present`` shard files,
    each gap cut into whole-block shards of about ``n / count`` draws (``count`` shards for a
    whole run; a rerun after a failure cuts only what is missing)."""
    gaps, pos = [], start
    for s in sorted(present, key=lambda s: s.first):
        if s.first > pos:
            gaps.append((pos, min(s.first, n)))
        pos = max(pos, s.end)
    if pos < n:
        gaps.append((pos, n))
    total = max(1, n)
    out = []
    for a, b in gaps:
        if a >= b:
            continue
        k = max(1, math.ceil(count * (b - a) / total))
        out += sh.shard_ranges(b, block_size, k, start=a)
    return out


def overall_progress(plan: SweepPlan, fn: Callable[[int, int, int, float, str], None]) -> SweepProgress:
    """Per-run :class:`RunProgress` -> ``fn(done, total, nonfinite, draws_per_s, current_run)`` over
    the whole sweep (draws already committed count from the start)."""
    done = {r.path: committed_draws(r) for r in plan}
    bad: dict[Path, int] = {}

    def update(p: RunProgress) -> None:
        done[p.run.path], bad[p.run.path] = min(p.done, p.run.n), p.nonfinite
        fn(sum(done.values()), plan.total, sum(bad.values()), p.rate, f"{p.run.spec} s{p.run.seed}")

    return update


__all__ = ["PlannedRun", "RunProgress", "SweepPlan", "SweepProgress", "SweepResult", "committed", "committed_draws",
           "finished", "overall_progress", "plan_sweep", "plan_shards", "write_manifest"]
