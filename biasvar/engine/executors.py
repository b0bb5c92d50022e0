"""Executors of a sweep: in this process (``local``), or as Ray tasks on a cluster (``ray``).

A sweep is independent runs, and a run is independent draws: :func:`run_sweep` cuts every run
into block-aligned shards (:mod:`biasvar.engine.shards`) and computes them

* ``local``: one after the other in this process (with one shard per run, exactly
  :func:`~biasvar.engine.runs.sample_run`, as :func:`~biasvar.engine.sweeps.sweep_runs` does);
* ``ray``: as one Ray task per (run, shard), each asking for ``cpus_per_task`` CPUs and
  ``gpus_per_task`` GPUs and retried up to ``max_retries`` times when its worker dies. A task
  computes its shard into a temporary shard file on its own machine and returns the file's bytes
  (the shard's block statistics and header); the driver writes it under the runs folder and
  merges it into the run file. Workers need no shared file system, a worker that dies loses only
  its shard, and a driver that dies loses only the shards in flight: run again, the committed
  shards and run files are kept and only the rest is computed.

The results are the same bits whichever executor and however many shards (see
:mod:`biasvar.engine.shards`), given the same device, dtype and chunk size. Ray is imported only
by the ``ray`` executor (``pip install "biasvar[ray]"``).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasvar import store
from biasvar.atomic import write_atomic
from biasvar.engine import shards as sh
from biasvar.engine.runs import sample_run
from biasvar.engine.sweeps import PlannedRun, _write_manifest, plan_sweep
from biasvar.errors import BiasvarError, SpecError, UnsupportedError
from biasvar.spec import EstimatorSpec

EXECUTORS = ("local", "ray")
RAY_INSTALL = 'pip install "biasvar[ray]"'
#: Test hook: a file path; the first Ray task that finds this file deletes it and kills its own
#: worker process half-way through its shard (``os._exit``), as a crashed machine would.
FAULT_ENV = "BIASVAR_FAULT_ONCE"

#: ``progress(run, done, total)``: draws of ``run`` committed (run file plus complete shards), or,
#: for the local executor, drawn so far.
SweepProgress = Callable[[PlannedRun, int, int], None]


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the plan, and the shards computed in this call (run file path,
    first draw, end) versus the draws found already committed."""

    plan: list[PlannedRun]
    computed: list[tuple[Path, int, int]] = field(default_factory=list)
    reused_draws: int = 0


def import_ray() -> Any:
    """Ray, or a one-line :class:`UnsupportedError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UnsupportedError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _committed(run_path: Path) -> tuple[int, list[sh.ShardInfo]]:
    """Draws committed in the run file, and its complete shard files not yet merged."""
    done = 0
    if run_path.is_file():
        done = store.read_run(run_path, load_sums=False).progress.n_done
    return done, [s for s in sh.list_shards(run_path) if s.complete and s.end > done]


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


def run_sweep(
    snapshot: Any,
    specs: Sequence[str | EstimatorSpec],
    *,
    reference: str = "rf(M=4)",
    n: int = 10_000,
    reference_n: int | None = None,
    seed: int = 0,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    executor: str = "local",
    shards: int | None = None,
    address: str | None = None,
    cpus_per_task: int = 1,
    gpus_per_task: float = 0,
    max_retries: int = 3,
    progress: SweepProgress | None = None,
    restart: bool = False,
    **sample_kwargs: Any,
) -> SweepResult:
    """Run a sweep (:func:`~biasvar.engine.sweeps.plan_sweep`) with an executor; complete runs
    are skipped, partial runs and committed shards kept.

    Args:
        executor: ``local`` or ``ray``.
        shards: shards per run (None: 1 locally; on Ray, enough to give every task slot of the
            cluster work).
        address: the Ray cluster (``auto``: the one started on this machine by ``ray start``;
            None: the one this process already joined, else a new local one).
        cpus_per_task, gpus_per_task: the resources each Ray task asks for; a task with GPUs
            samples on ``cuda`` unless ``device`` says otherwise.
        max_retries: retries of a Ray task whose worker died.
        progress: ``progress(run, done, total)``.
        restart: delete the runs' files and shards first.
        sample_kwargs: params, keep, device, dtype, block_size, max_memory, chunk, method.
    """
    if executor not in EXECUTORS:
        raise SpecError(f"unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}")
    if shards is not None and int(shards) < 1:
        raise SpecError(f"--shards must be >= 1, got {shards}")
    ray = import_ray() if executor == "ray" else None  # fail before any work when Ray is missing
    plan = plan_sweep(snapshot.id, specs, reference=reference, n=n, reference_n=reference_n, seed=seed,
                      runs_dir=runs_dir)
    if name:
        _write_manifest(snapshot, plan, name, runs_dir)
    if restart:
        for run in plan:
            for s in sh.list_shards(run.path):
                s.path.unlink(missing_ok=True)
            run.path.unlink(missing_ok=True)
    result = SweepResult(plan)
    if executor == "local":
        _run_local(snapshot, plan, result, shards or 1, progress, sample_kwargs)
    else:
        _run_ray(ray, snapshot, plan, result, shards, address, cpus_per_task, gpus_per_task, max_retries,
                 progress, sample_kwargs)
    return result


def _setup_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: kw[k] for k in ("params", "keep", "dtype", "block_size", "method") if kw.get(k) is not None}


def _todo(snapshot: Any, run: PlannedRun, count: int, runs_dir: Path, kw: dict[str, Any],
          result: SweepResult) -> tuple[int, list[tuple[int, int]]]:
    """Merge what is committed, then the block size and the shards left of one run."""
    if sh.list_shards(run.path):
        sh.merge_when_free(run.path)
    done, present = _committed(run.path)
    result.reused_draws += min(done, run.n) + sum(s.draws for s in present)
    if done >= run.n and run.path.is_file() and store.read_run(run.path, load_sums=False).status == "complete":
        return 0, []
    su = sh.run_setup(snapshot, run.spec, n=run.n, seed=run.seed, runs_dir=runs_dir, device="cpu",
                      **_setup_kwargs(kw))
    return su.block_size, plan_shards(min(done, run.n), run.n, su.block_size, count, present)


def _run_local(snapshot: Any, plan: list[PlannedRun], result: SweepResult, count: int,
               progress: SweepProgress | None, kw: dict[str, Any]) -> None:
    runs_dir = plan[0].path.parent.parent
    for run in plan:
        def report(done: int, _total: int, _bad: int, _rate: float, run: PlannedRun = run, base: int = 0) -> None:
            if progress is not None:
                progress(run, min(run.n, base + done), run.n)

        if count == 1 and not sh.list_shards(run.path):  # the embedded path, as sweep_runs
            sample_run(snapshot, run.spec, n=run.n, seed=run.seed, runs_dir=runs_dir, progress=report, **kw)
            result.computed.append((run.path, 0, run.n))
        else:
            bs, todo = _todo(snapshot, run, count, runs_dir, kw, result)
            for first, end in todo:
                sh.sample_shard(snapshot, run.spec, n=run.n, first=first, end=end, seed=run.seed, runs_dir=runs_dir,
                                progress=lambda d, t, b, r, run=run, first=first: report(d, t, b, r, run, first),
                                **{**kw, "block_size": bs})
                sh.merge_when_free(run.path)
                result.computed.append((run.path, first, end))
        if progress is not None:
            progress(run, _committed_draws(run), run.n)


def _committed_draws(run: PlannedRun) -> int:
    done, present = _committed(run.path)
    return min(run.n, done + sum(s.draws for s in present))


# ---------------------------------------------------------------------------------------------
# Ray


PROGRESS_EVERY_S = 1.0  # a task reports its draws to the driver at most this often


def _shard_task(snapshot: Any, spec: str, n: int, seed: int, first: int, end: int, threads: int,
                kw: dict[str, Any], tracker: Any = None, key: str = "") -> bytes:
    """One Ray task: draws ``[first, end)`` of a run into a local temporary shard file; returns its bytes."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    fault = os.environ.get(FAULT_ENV)
    last = [0.0]

    def maybe_die(done: int, total: int, _bad: int, _rate: float) -> None:
        if fault and done * 2 >= total and os.path.exists(fault):
            try:
                os.unlink(fault)  # only the task that removes the flag dies
            except FileNotFoundError:
                pass
            else:
                os._exit(17)  # a worker lost half-way: Ray retries the task elsewhere
        now = time.monotonic()
        if tracker is not None and now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            tracker.report.remote(key, done)  # fire and forget

    with tempfile.TemporaryDirectory(prefix="biasvar-shard-") as tmp:
        path = sh.sample_shard(snapshot, spec, n=n, first=first, end=end, seed=seed, runs_dir=tmp, progress=maybe_die,
                               **kw)
        return Path(path).read_bytes()


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a new local cluster"
        raise BiasvarError(f"cannot connect to the Ray cluster at {where}: {str(e).splitlines()[0]}") from None


def _tracker(ray: Any) -> Any:
    """A small actor the tasks report their draws to (live per-run progress on the driver)."""

    class Tracker:
        def __init__(self) -> None:
            self.done: dict[str, int] = {}

        def report(self, key: str, done: int) -> None:
            self.done[key] = done

        def take(self) -> dict[str, int]:
            return dict(self.done)

    return ray.remote(num_cpus=0)(Tracker).remote()


def _slots(ray: Any, cpus: float, gpus: float) -> int:
    res = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(res.get("GPU", 0) // gpus))
    return max(1, int(res.get("CPU", 1) // max(cpus, 1e-9)))


def _live_progress(ray: Any, tracker: Any, pending: dict[Any, tuple[PlannedRun, int, int]],
                   committed: dict[Path, int], progress: SweepProgress) -> None:
    """Per run: committed draws plus the draws the running tasks reported."""
    try:
        live = ray.get(tracker.take.remote(), timeout=5)
    except Exception:  # noqa: BLE001 - progress is best effort
        return
    extra: dict[Path, int] = {}
    runs: dict[Path, PlannedRun] = {}
    for run, first, end in pending.values():
        runs[run.path] = run
        extra[run.path] = extra.get(run.path, 0) + min(end - first, live.get(f"{run.path.name}:{first}", 0))
    for path, run in runs.items():
        progress(run, min(run.n, committed[path] + extra[path]), run.n)


def _run_ray(ray: Any, snapshot: Any, plan: list[PlannedRun], result: SweepResult, count: int | None,
             address: str | None, cpus: int, gpus: float, max_retries: int, progress: SweepProgress | None,
             kw: dict[str, Any]) -> None:
    _connect(ray, address)
    runs_dir = plan[0].path.parent.parent
    if count is None:
        count = max(1, math.ceil(_slots(ray, cpus, gpus) / len(plan)))
    kw = dict(kw)
    if gpus > 0 and kw.get("device", "auto") == "auto":
        kw["device"] = "cuda"
    task = ray.remote(_shard_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=int(max_retries),
                                           retry_exceptions=False)
    snap_ref = ray.put(snapshot)
    tracker = _tracker(ray) if progress is not None else None
    pending: dict[Any, tuple[PlannedRun, int, int]] = {}
    committed: dict[Path, int] = {}
    for run in plan:
        bs, todo = _todo(snapshot, run, count, runs_dir, kw, result)
        committed[run.path] = _committed_draws(run)
        if progress is not None:
            progress(run, committed[run.path], run.n)
        for first, end in todo:
            ref = task.remote(snap_ref, run.spec, run.n, run.seed, first, end, cpus, {**kw, "block_size": bs},
                              tracker, f"{run.path.name}:{first}")
            pending[ref] = (run, first, end)
    failures = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_EVERY_S)
            if not ready:
                if tracker is not None:
                    _live_progress(ray, tracker, pending, committed, progress)
                continue
            run, first, end = pending.pop(ready[0])
            try:
                data = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - a task that failed after its retries
                failures.append(f"{run.spec} s{run.seed} draws [{first}, {end}): {str(e).splitlines()[0]}")
                continue
            write_atomic(sh.shard_path(run.path, first, end), data)
            sh.merge_when_free(run.path)
            result.computed.append((run.path, first, end))
            committed[run.path] = _committed_draws(run)
            if progress is not None:
                progress(run, committed[run.path], run.n)
    finally:
        for ref in pending:  # an interrupted driver: stop its tasks (their shards are redone next time)
            ray.cancel(ref, force=True)
    if failures:
        raise BiasvarError(f"{len(failures)} shard(s) failed after {max_retries} retries (committed shards kept; "
                           f"rerun to redo the rest); first: {failures[0]}")


__all__ = ["EXECUTORS", "FAULT_ENV", "RAY_INSTALL", "SweepProgress", "SweepResult", "import_ray", "plan_shards",
           "run_sweep"]
