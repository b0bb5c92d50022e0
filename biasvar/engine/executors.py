"""The one sweep entry point, :func:`run_sweep`, and its executors: in this process
(:class:`Local`), or as Ray tasks on a cluster (:class:`Ray`).

A sweep (:func:`~biasvar.engine.sweeps.plan_sweep`) is independent runs, and a run is independent
draws. An executor is a strategy: :func:`run_sweep` checks it, writes the sweep's manifest, clears
the runs on ``restart`` and hands the executor the plan and the :class:`~biasvar.engine.plan.RunOptions`.

* :class:`Local` computes each run in this process: with one shard per run, one
  :func:`~biasvar.engine.plan.plan_run` and :func:`~biasvar.engine.runs.sample`; with more, the
  run is planned once (``sharded``) and its block-aligned shards (:mod:`biasvar.engine.shards`)
  computed one after the other from that plan and merged.
* :class:`Ray` runs one Ray task per (run, shard), each asking for ``cpus_per_task`` CPUs and
  ``gpus_per_task`` GPUs and retried up to ``max_retries`` times when its worker dies. A task
  plans its run on its own machine, computes its shard into a temporary shard file and returns the
  file's bytes (the shard's block statistics and header); the driver writes it under the runs
  folder and merges it into the run file. Workers need no shared file system, a worker that dies
  loses only its shard, and a driver that dies loses only the shards in flight: run again, the
  committed shards and run files are kept and only the rest is computed.

The results are the same bits whichever executor and however many shards (see
:mod:`biasvar.engine.shards`), given the same device, dtype and chunk size. Ray is imported only
by the :class:`Ray` executor (``pip install "biasvar[ray]"``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from biasvar import store
from biasvar.atomic import write_atomic
from biasvar.engine import shards as sh
from biasvar.engine.calibration import Calibration
from biasvar.engine.plan import RunOptions, RunPlan, plan_run
from biasvar.engine.runs import sample
from biasvar.engine.sweeps import (
    PlannedRun,
    RunProgress,
    SweepPlan,
    SweepProgress,
    SweepResult,
    committed,
    committed_draws,
    finished,
    plan_shards,
    write_manifest,
)
from biasvar.errors import BiasvarError, SpecError, UnsupportedError
from biasvar.names import EXECUTORS

RAY_INSTALL = 'pip install "biasvar[ray]"'
CONNECT_TIMEOUT_S = 30.0  # seconds a Ray address is given to answer (``--connect-timeout``)
#: Test hook: a file path; the first Ray task that finds this file deletes it and kills its own
#: worker process half-way through its shard (``os._exit``), as a crashed machine would.
FAULT_ENV = "BIASVAR_FAULT_ONCE"


class Executor(Protocol):
    """How a sweep's runs are computed."""

    def check(self) -> None:
        """Refuse (one line) before any work is done: bad settings, a missing dependency."""

    def run(self, plan: SweepPlan, options: RunOptions, result: SweepResult, progress: SweepProgress | None,
            calibration: Calibration) -> None:
        """Compute every run of ``plan`` not yet complete, recording in ``result``."""


def run_sweep(plan: SweepPlan, options: RunOptions = RunOptions(), *, executor: Executor | None = None,
              progress: SweepProgress | None = None, restart: bool = False,
              calibration: Calibration | None = None, gram: bool = True, store_only: bool = False) -> SweepResult:
    """Run a sweep with an executor (default :class:`Local`); complete runs are skipped, partial
    runs and committed shards kept.

    Args:
        options: the settings of every run.
        progress: called with a :class:`~biasvar.engine.sweeps.RunProgress` as runs advance.
        restart: delete the runs' files and shards first.
        calibration: where ``method="auto"`` keeps its measurements (default: one for this sweep).
        gram: update the snapshot's statistics store (:mod:`biasvar.gramstore`) with the sweep's runs at the
            end (only the new and changed runs are computed), so every analysis outlives the run files.
        store_only: write no run files: keep each run's block sums in memory and add it to the store
            when it completes (:mod:`biasvar.engine.storeonly`; the local executor, one shard per run).
    """
    executor = executor or Local()
    executor.check()
    connect = getattr(executor, "connect", None)
    if connect is not None:  # a cluster that does not answer: one line before anything is written
        connect()
    if store_only:
        check_store_only(executor, gram)
        from biasvar.engine.storeonly import run_store_only

        if plan.name:
            write_manifest(plan)
        t = time.perf_counter()
        result = run_store_only(plan, options, progress=progress, calibration=calibration, restart=restart)
        result.timing["total_s"] = time.perf_counter() - t
        return result
    if plan.name:
        write_manifest(plan)
    if restart:
        for run in plan:
            for s in sh.list_shards(run.path):
                s.path.unlink(missing_ok=True)
            run.path.unlink(missing_ok=True)
    result = SweepResult(plan)
    t = time.perf_counter()
    executor.run(plan, options, result, progress, calibration or Calibration())
    if gram:
        from biasvar import gramstore

        s = time.perf_counter()
        result.store = gramstore.update_store(plan.runs_dir, plan.snapshot.id)
        result.timing["store_s"] = time.perf_counter() - s
    result.timing["total_s"] = time.perf_counter() - t
    return result


def check_store_only(executor: Executor, gram: bool = True) -> None:
    """Refuse (one line) what a store-only sweep cannot do."""
    if not isinstance(executor, Local) or executor.shards != 1:
        raise SpecError("--store-only runs each run whole in this process: use the local executor without --shards")
    if not gram:
        raise SpecError("--store-only writes only the statistics store: it cannot go with --no-gram")


def make_executor(name: str, *, shards: int | None = None, address: str | None = None, cpus_per_task: int = 1,
                  gpus_per_task: float = 0, max_retries: int = 3,
                  connect_timeout: float = CONNECT_TIMEOUT_S) -> Executor:
    """The executor the CLI names (``local`` or ``ray``) with its settings."""
    if name == "local":
        return Local(shards or 1)
    if name == "ray":
        if not (connect_timeout > 0 and math.isfinite(connect_timeout)):
            raise SpecError(f"--connect-timeout must be a positive number of seconds, got {connect_timeout}")
        return Ray(shards, address, cpus_per_task, gpus_per_task, max_retries, connect_timeout)
    raise SpecError(f"unknown executor {name!r}; expected one of: {', '.join(EXECUTORS)}")


def _check_shards(shards: int | None) -> None:
    if shards is not None and int(shards) < 1:
        raise SpecError(f"--shards must be >= 1, got {shards}")


def _todo(run: PlannedRun, count: int, plan_of: Callable[[PlannedRun], RunPlan],
          result: SweepResult) -> tuple[RunPlan | None, list[tuple[int, int]]]:
    """Merge what is committed; then the run's plan (``plan_of(run)``, sharded) and its shards left."""
    if sh.list_shards(run.path):
        sh.merge_when_free(run.path)
    done, present = committed(run.path)
    result.reused_draws += min(done, run.n) + sum(s.draws for s in present)
    if done >= run.n and run.path.is_file() and store.read_run(run.path, load_sums=False).status == "complete":
        return None, []
    rplan = plan_of(run)
    return rplan, plan_shards(min(done, run.n), run.n, rplan.block_size, count, present)


@dataclass(frozen=True)
class Local:
    """Every run in this process, in ``shards`` shards each (1: the run file directly)."""

    shards: int = 1

    def check(self) -> None:
        _check_shards(self.shards)

    def run(self, plan: SweepPlan, options: RunOptions, result: SweepResult, progress: SweepProgress | None,
            calibration: Calibration) -> None:
        timing = result.timing

        def planned(run: PlannedRun, sharded: bool) -> RunPlan:
            t = time.perf_counter()
            try:
                return plan_run(plan.snapshot, run.spec, n=run.n, seed=run.seed, runs_dir=plan.runs_dir,
                                options=options, sharded=sharded, calibration=calibration)
            finally:
                timing["setup_s"] = timing.get("setup_s", 0.0) + time.perf_counter() - t

        for run in plan:
            def report(done: int, _total: int, bad: int, rate: float, run: PlannedRun = run, base: int = 0) -> None:
                if progress is not None:
                    progress(RunProgress(run, min(run.n, base + done), run.n, bad, rate))

            if self.shards == 1 and not sh.list_shards(run.path):  # the run file directly
                sample(planned(run, False), progress=report, timing=timing)
                result.computed.append((run.path, 0, run.n))
            else:
                rplan, todo = _todo(run, self.shards, lambda r: planned(r, True), result)
                for first, end in todo:
                    sample(sh.plan_shard(rplan, first, end),
                           progress=lambda d, t, b, r, run=run, first=first: report(d, t, b, r, run, first),
                           timing=timing)
                    t = time.perf_counter()
                    sh.merge_when_free(run.path)
                    timing["write_s"] = timing.get("write_s", 0.0) + time.perf_counter() - t
                    result.computed.append((run.path, first, end))
            if progress is not None:
                progress(finished(run))


# ---------------------------------------------------------------------------------------------
# Ray


PROGRESS_EVERY_S = 1.0  # a task reports its draws to the driver at most this often


def import_ray() -> Any:
    """Ray, or a one-line :class:`UnsupportedError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UnsupportedError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _shard_task(snapshot: Any, spec: str, n: int, seed: int, first: int, end: int, threads: int,
                options: RunOptions, tracker: Any = None, key: str = "") -> bytes:
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
        rplan = plan_run(snapshot, spec, n=n, seed=seed, runs_dir=tmp, options=options, sharded=True)
        path = sample(sh.plan_shard(rplan, first, end), progress=maybe_die)
        return Path(path).read_bytes()


def _host_port(address: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of an explicit cluster address (``host:port`` or ``ray://host:port``); None for
    ``auto``, none, or anything else (left to Ray)."""
    if not address or address == "auto":
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def probe(address: str | None, timeout: float) -> None:
    """Refuse in one line, within ``timeout`` seconds, an explicit address where nothing listens
    (Ray itself retries such an address for minutes, deaf to Ctrl-C).

    Raises:
        BiasvarError: the connection is refused, unroutable or not answered in time.
    """
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout) as conn:
            grpc = _speaks_grpc(conn, timeout)
    except TimeoutError:
        raise BiasvarError(f"no Ray cluster answers at {address} within {timeout:g} s (--connect-timeout); "
                           "check the address (`ray status` on the head node)") from None
    except OSError as e:
        raise BiasvarError(f"no Ray cluster at {address}: {e.strerror or e}; check the address "
                           "(`ray status` on the head node), or start one with `ray start --head`") from None
    if not grpc:
        raise BiasvarError(f"something answers at {address}, but not a Ray cluster (no gRPC reply within "
                           f"{timeout:g} s, --connect-timeout); check the address and port (`ray status` on the "
                           "head node)")


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS


def _speaks_grpc(conn: socket.socket, timeout: float) -> bool:
    """Whether the peer answers an HTTP/2 connection preface with a SETTINGS frame, as Ray's GCS (and
    its client server, both gRPC) does at once; a closed, silent or other service does not."""
    conn.settimeout(timeout)
    try:
        conn.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            part = conn.recv(9 - len(head))
            if not part:
                break
            head += part
    except OSError:  # timed out, reset
        return False
    return len(head) == 9 and head[3] == 4


#: The trial join run in a child process (see :func:`trial_join`): says when Ray is imported, then joins.
_TRIAL_JOIN = """
import sys
import ray
print("imported", flush=True)
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, configure_logging=False)
ray.shutdown()
"""
RAY_IMPORT_LIMIT_S = 180.0  # seconds a child process is given to import Ray before its join is timed


def trial_join(address: str, timeout: float) -> None:
    """Join the cluster at ``address`` once in a child process, its output kept from the user, and
    refuse in one line when it has not joined ``timeout`` seconds after importing Ray (the child is
    killed) or fails. Where something that speaks HTTP/2 but is not Ray answers (a proxy), Ray's own
    join retries for ~25 s and logs ~20 warnings, deaf to the timeout: this bounds it and keeps it
    quiet. A cluster that answers is joined by this process right after (a second, quick join).

    Raises:
        BiasvarError: the join timed out or failed (its last error line named).
    """
    import selectors
    import signal
    import subprocess
    import sys

    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", _TRIAL_JOIN, address], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        try:
            with selectors.DefaultSelector() as sel:
                assert proc.stdout is not None
                sel.register(proc.stdout, selectors.EVENT_READ)
                imported = bool(sel.select(RAY_IMPORT_LIMIT_S)) and proc.stdout.readline().strip() == "imported"
            try:
                code = proc.wait(timeout if imported else 5.0)
            except subprocess.TimeoutExpired:
                raise BiasvarError(f"something answers at {address}, but no Ray cluster joined within {timeout:g} s "
                                   "(--connect-timeout); check the address and port (`ray status` on the head "
                                   "node)") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if code != 0:
            err.seek(0)
            lines = [line.strip() for line in err.read().splitlines() if line.strip()]
            last = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else f"exit {code}")
            raise BiasvarError(f"cannot connect to the Ray cluster at {address}: {last[:300]}")


def _connect(ray: Any, address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    if ray.is_initialized():
        return
    probe(address, timeout)
    if _host_port(address) is not None:  # an explicit address: Ray's join is bounded and quiet only in a child
        trial_join(str(address), timeout)
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
                   done_by_run: dict[Path, int], progress: SweepProgress) -> None:
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
        progress(RunProgress(run, min(run.n, done_by_run[path] + extra[path]), run.n))


@dataclass(frozen=True)
class Ray:
    """One Ray task per (run, shard) on the cluster at ``address``.

    Attributes:
        shards: shards per run (None: enough to give every task slot of the cluster work).
        address: the Ray cluster (``auto``: the one started on this machine by ``ray start``;
            None: the one this process already joined, else a new local one).
        cpus_per_task, gpus_per_task: the resources each task asks for; a task with GPUs samples
            on ``cuda`` unless the options name a device.
        max_retries: retries of a task whose worker died.
        connect_timeout: seconds an explicit ``host:port`` address is given to answer.
    """

    shards: int | None = None
    address: str | None = None
    cpus_per_task: int = 1
    gpus_per_task: float = 0
    max_retries: int = 3
    connect_timeout: float = CONNECT_TIMEOUT_S

    def check(self) -> None:
        _check_shards(self.shards)
        import_ray()  # fail before any work when Ray is missing
        probe(self.address, self.connect_timeout)  # and when nothing listens at the address

    def connect(self) -> None:
        """Join the cluster (once per process): before the sweep writes anything."""
        _connect(import_ray(), self.address, self.connect_timeout)

    def run(self, plan: SweepPlan, options: RunOptions, result: SweepResult, progress: SweepProgress | None,
            calibration: Calibration) -> None:
        ray = import_ray()
        _connect(ray, self.address, self.connect_timeout)
        cpus, gpus = self.cpus_per_task, self.gpus_per_task
        count = self.shards or max(1, math.ceil(_slots(ray, cpus, gpus) / len(plan)))
        if gpus > 0 and options.device == "auto":
            options = dataclasses.replace(options, device="cuda")
        task = ray.remote(_shard_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=int(self.max_retries),
                                               retry_exceptions=False)
        snap_ref = ray.put(plan.snapshot)
        tracker = _tracker(ray) if progress is not None else None
        # the driver plans a run only for its block size (on the CPU: the tasks plan where they run)
        here = dataclasses.replace(options, device="cpu")
        plan_of = lambda run: plan_run(plan.snapshot, run.spec, n=run.n, seed=run.seed,  # noqa: E731
                                       runs_dir=plan.runs_dir, options=here, sharded=True)
        pending: dict[Any, tuple[PlannedRun, int, int]] = {}
        done_by_run: dict[Path, int] = {}
        for run in plan:
            rplan, todo = _todo(run, count, plan_of, result)
            done_by_run[run.path] = committed_draws(run)
            if progress is not None:
                progress(RunProgress(run, done_by_run[run.path], run.n))
            for first, end in todo:
                opts = dataclasses.replace(options, block_size=rplan.block_size)
                ref = task.remote(snap_ref, run.spec, run.n, run.seed, first, end, cpus, opts, tracker,
                                  f"{run.path.name}:{first}")
                pending[ref] = (run, first, end)
        failures = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_EVERY_S)
                if not ready:
                    if tracker is not None:
                        _live_progress(ray, tracker, pending, done_by_run, progress)
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
                done_by_run[run.path] = committed_draws(run)
                if progress is not None:
                    progress(RunProgress(run, done_by_run[run.path], run.n))
        finally:
            for ref in pending:  # an interrupted driver: stop its tasks (their shards are redone next time)
                ray.cancel(ref, force=True)
        if failures:
            raise BiasvarError(f"{len(failures)} shard(s) failed after {self.max_retries} retries (committed shards "
                               f"kept; rerun to redo the rest); first: {failures[0]}")


__all__ = ["EXECUTORS", "FAULT_ENV", "RAY_IMPORT_LIMIT_S", "RAY_INSTALL", "Executor", "Local", "Ray",
           "check_store_only", "import_ray", "make_executor", "run_sweep", "trial_join"]
