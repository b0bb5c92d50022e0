"""Shards: a run cut into block-aligned ranges of draws, computed apart and merged bit for bit.

A run ``(snapshot, spec, seed)`` of ``n`` draws in blocks of ``block_size`` draws can be cut into
shards: consecutive draw ranges ``[first, end)`` whose ends are block boundaries (or ``n``), so
no block spans two shards. A shard is computed like a run (same header, same engine, resumable,
locked) into a *shard file*, a run file of its own blocks only, beside the run file::

    <runs-dir>/<snapshot-id>/<spec>-s<seed>.h5                     the run file
    <runs-dir>/<snapshot-id>/<spec>-s<seed>.shards/<first>-<end>.h5  its shards, until merged

:func:`merge_run` appends the blocks of the complete shards that continue the run file (creating
it from the shard that starts at draw 0) and deletes each shard once it is merged; a partly
merged run is a valid, shorter run, and merging is resumable (a merge killed half-way continues
from the run file's committed blocks).

Why the bits agree with the same run done in one process: draw i's noise is a function of
``(seed, spec, i)`` only (:mod:`biasvar.rng`); the engine computes draw i in the same chunk of
a fixed grid counted from draw 0 wherever it is computed (:func:`~biasvar.engine.runs.fill` over
the shard's range: a shard computes the grid chunks at its ends whole and keeps its own draws),
so a draw's gradient is the same bits in any process on the same device, dtype and chunk size;
and a block's statistics are computed from that block's draws only, in fixed steps from the
block's start (:class:`~biasvar.engine.blocks.BlockBuilder`), then stored as they are. The merged
file's datasets are then the single-process run's, bit for bit; only the wall-clock bookkeeping
(``state`` wall time and update time, ``created``, host) differs. Shards take the vmap path
when the method is ``auto`` (a per-process timing could send two shards down different paths);
the single-process run to compare with is then ``sample_run(..., method="vmap")``, which is also
what ``auto`` picks wherever vmap is not more than 10 % slower than the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biasvar import store
from biasvar.engine.plan import SHARD_METHOD, RunOptions, RunPlan, plan_run, run_holds
from biasvar.engine.runs import ProgressFn, sample
from biasvar.errors import SpecError, StoreError, WriterBusy
from biasvar.spec import EstimatorSpec

#: Header keys a shard file has and its merged run file has not.
SHARD_KEYS = ("shard_first", "shard_end", "run_n")
_NAME = re.compile(r"^(\d+)-(\d+)\.h5$")


# ---------------------------------------------------------------------------------------------
# where shards live, and how a run is cut


def shard_folder(run_path: str | Path) -> Path:
    """``<spec>-s<seed>.shards/`` beside the run file ``<spec>-s<seed>.h5``."""
    run_path = Path(run_path)
    return run_path.with_name(run_path.stem + ".shards")


def shard_path(run_path: str | Path, first: int, end: int) -> Path:
    """The shard file of draws ``[first, end)`` of a run (zero-padded, so names sort by range)."""
    return shard_folder(run_path) / f"{int(first):012d}-{int(end):012d}.h5"


def shard_ranges(n: int, block_size: int, count: int, *, start: int = 0) -> list[tuple[int, int]]:
    """Cut draws ``[start, n)`` into at most ``count`` ranges of whole blocks (counted from
    ``start``: 0, or the committed draws of a run file), as even as possible. Fewer ranges come
    back when there are fewer blocks than ``count``; none when ``start >= n``.
    """
    n, bs, count, start = int(n), int(block_size), int(count), int(start)
    if bs < 1 or count < 1:
        raise SpecError(f"block size and shard count must be >= 1, got {bs} and {count}")
    if start >= n:
        return []
    blocks = math.ceil((n - start) / bs)
    count = min(count, blocks)
    cuts = [start + (i * blocks // count) * bs for i in range(count)] + [n]
    return [(a, min(b, n)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (``--shard``) -> ``(i, N)`` with ``0 <= i < N``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise SpecError(f"--shard takes i/N (shard i of N, counted from 0), e.g. 0/4; got {text!r}")
    i, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 0 <= i < count:
        raise SpecError(f"--shard {text}: need 0 <= i < N and N >= 1")
    return i, count


@dataclass(frozen=True)
class ShardInfo:
    """One shard file on disk: its draw range and committed progress."""

    path: Path
    first: int
    end: int
    n_done: int
    complete: bool
    run_n: int = 0  # draws of the whole run (0: unknown, the file unreadable)

    @property
    def draws(self) -> int:
        return self.end - self.first


def list_shards(run_path: str | Path) -> list[ShardInfo]:
    """The shard files of a run, sorted by range; a shard that cannot be read counts as empty."""
    folder = shard_folder(run_path)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        m = _NAME.match(p.name)
        if not m or not p.is_file():
            continue
        first, end = int(m.group(1)), int(m.group(2))
        try:
            a = store.read_run(p, load_sums=False).attrs
            done, complete = int(a["n_done"]), a["status"] == "complete" and int(a["n_done"]) >= end - first
            run_n = int(a.get("run_n", 0) or 0)
        except (StoreError, ValueError, TypeError):
            done, complete, run_n = 0, False, 0
        out.append(ShardInfo(p, first, end, done, complete, run_n))
    return out


def unstarted_shards(infos: list[ShardInfo], merged: int = 0) -> list[tuple[int, int, int]]:
    """The draw ranges of a run that neither its run file (``merged``: the draws it holds) nor a shard file
    covers, as ``(first, end, shards)``: the shards that were never started (a shard whose process never
    ran leaves no file), ``shards`` of them in each gap, counted at the size of the shards that exist."""
    n = max((s.run_n for s in infos), default=0)
    if n <= 0:
        return []
    sizes = sorted(s.draws for s in infos if s.end < n) or sorted(s.draws for s in infos)
    typical = max(1, sizes[len(sizes) // 2])
    out, pos = [], int(merged)
    for s in sorted(infos, key=lambda s: s.first):
        if s.first > pos:
            out.append((pos, s.first, max(1, round((s.first - pos) / typical))))
        pos = max(pos, s.end)
    if pos < n:
        out.append((pos, n, max(1, round((n - pos) / typical))))
    return out


def sharded_runs(runs_dir: str | Path, snapshot_id: str | None = None) -> dict[Path, list[ShardInfo]]:
    """Run file path -> its shard files, for every run under ``runs_dir`` (of the snapshot ids
    starting with ``snapshot_id``) that has shard files, whether or not its run file exists yet."""
    root = Path(runs_dir)
    pattern = f"{snapshot_id or ''}*/*.shards"
    out = {}
    for folder in sorted(root.glob(pattern)):
        run = folder.with_name(folder.name[: -len(".shards")] + ".h5")
        found = list_shards(run)
        if found:
            out[run] = found
    return out


# ---------------------------------------------------------------------------------------------
# computing one shard


def plan_shard(plan: RunPlan, first: int, end: int, *, restart: bool = False) -> RunPlan:
    """The plan of draws ``[first, end)`` of a run planned with ``sharded=True``
    (:func:`~biasvar.engine.plan.plan_run`): the same problem, path and header, written into the
    shard file (or complete, when the run file or the shard file already holds these draws).

    Raises:
        SpecError: the range is not whole blocks inside ``[0, n)``.
    """
    bs, n, first, end = plan.block_size, plan.n, int(first), int(end)
    if not (0 <= first < end <= n) or ((end - first) % bs and end != n):
        raise SpecError(f"a shard is a range of whole blocks of {bs} draws inside [0, {n}); got [{first}, {end})")
    header = {**plan.header, "shard_first": first, "shard_end": end, "run_n": n}
    path = shard_path(plan.run_path, first, end)
    if not restart and run_holds(plan.run_path, header, end):
        path, complete = plan.run_path, True
    else:
        complete = not restart and store.is_complete(path, header, end - first)
    return plan.with_target(path=path, first=first, end=end, header=header, complete=complete, restart=restart)


def sample_shard(
    snapshot: Any,
    spec: str | EstimatorSpec,
    *,
    n: int,
    first: int,
    end: int,
    seed: int = 0,
    runs_dir: str | Path = "runs",
    options: RunOptions = RunOptions(),
    restart: bool = False,
    progress: ProgressFn | None = None,
    plan: RunPlan | None = None,
) -> Path:
    """Draw (or resume) draws ``[first, end)`` of the run ``(snapshot, spec, seed)`` of ``n`` draws
    into its shard file; returns the shard file (or the run file, when it already holds these draws).
    ``progress(done, total, nonfinite, draws_per_s)`` counts the shard's draws. ``plan`` (of
    :func:`~biasvar.engine.plan.plan_run` with ``sharded=True``) replaces the arguments it was made
    from (snapshot, spec, n, seed, runs_dir, options)."""
    plan = plan or plan_run(snapshot, spec, n=n, seed=seed, runs_dir=runs_dir, options=options, sharded=True)
    return sample(plan_shard(plan, first, end, restart=restart), progress=progress)


# ---------------------------------------------------------------------------------------------
# merging


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_run` did: shards merged (and deleted), the run file's draws and status,
    and the shards left (not yet complete, or not continuing the run file)."""

    run_path: Path
    merged: int
    n_done: int
    n_target: int
    complete: bool
    left: int


def _blocks_of(data: store.RunData, skip_draws: int):
    """Yield ``(BlockStats, draws)`` of a shard's committed blocks, after its first ``skip_draws``."""
    rows = np.concatenate([[0], np.cumsum(data.block_count)])
    consumed = 0
    for b in range(len(data.block_count)):
        count, bad = int(data.block_count[b]), int(data.block_nonfinite[b])
        draws = count + bad
        if consumed >= skip_draws:
            samples = (data.samples[rows[b]:rows[b + 1]] if data.samples is not None
                       else np.zeros((count, 0), np.float32))
            yield store.BlockStats(count, bad, data.block_sum[b], data.block_m2[b], data.block_sumsq[b],
                                   samples), draws
        consumed += draws


def _check_same_run(shard: dict[str, Any], run: dict[str, Any], path: Path) -> None:
    for key in (*store.IDENTITY, "block_size", "keep", "layout"):
        if shard.get(key) != run.get(key):
            raise StoreError(f"shard {path} has {key}={shard.get(key)!r} but its run file has {run.get(key)!r}; "
                             f"remove the shard (or the run file) and redo it")


def merge_run(run_path: str | Path, *, whole: bool = False) -> MergeResult:
    """Append to the run file every complete shard that continues it, in order, deleting each
    merged shard (and any complete shard the run file already covers). A new run file is built
    from the shards that start at draw 0 under a temporary name and renamed into place, so it
    appears complete with its first merged shards or not at all. Returns at once when there is
    nothing to merge.

    Args:
        whole: merge only when the complete shards reach the end of the run (the last shard of a
            sweep or of ``sample --shard``); ``biasvar merge`` also merges a prefix.

    Raises:
        StoreError: a shard of another identity or block size than the run file, or the run file
            is being written by another process.
    """
    run_path = Path(run_path)
    shards = list_shards(run_path)
    done = target = merged = 0
    run_header: dict[str, Any] | None = None
    if run_path.is_file():
        a = store.read_run(run_path, load_sums=False).attrs
        done = int(a["n_done"]) - int(a.get("n_pending", 0))  # whole blocks (a block in progress is redone)
        target = int(a["n_target"])
        run_header = store.read_header(run_path)
    ready = [s for s in shards if s.complete]
    for s in ready:  # shards the run file already covers
        if s.end <= done:
            s.path.unlink(missing_ok=True)
            merged += 1
    ready = [s for s in ready if s.end > done]
    chain, pos = [], done  # the complete shards that continue the run file, in order
    while True:
        nxt = [s for s in ready if s.first <= pos < s.end and s not in chain]
        if not nxt:
            break
        chain.append(nxt[0])
        pos = nxt[0].end
    if chain:
        header = {k: v for k, v in store.read_header(chain[0].path).items() if k not in SHARD_KEYS}
        run_n = max(int(store.read_header(chain[0].path).get("run_n", chain[-1].end)), target)
        if whole and pos < run_n:
            chain = []
    if chain:
        if run_header is not None:
            _check_same_run(header, run_header, chain[0].path)
        new = run_header is None
        write_path = run_path.with_name("." + run_path.name + ".merging") if new else run_path
        shard0 = store.read_run(chain[0].path, load_sums=True)
        writer = store.RunWriter.open(write_path, header, n_target=run_n, group_sizes=shard0.group_sizes,
                                      sample_index=shard0.sample_index if shard0.sample_index is not None
                                      else np.zeros(0, np.int64), exact=shard0.exact, restart=new)
        appended = []
        with writer:
            for s in chain:
                data = shard0 if s is chain[0] else store.read_run(s.path, load_sums=True)
                _check_same_run({k: v for k, v in store.read_header(s.path).items() if k not in SHARD_KEYS},
                                header, s.path)
                wall, total = float(data.attrs["wall_s"]), max(1, s.draws)
                whole = writer.n_done - writer.pending_draws
                for block, draws in _blocks_of(data, whole - s.first):
                    writer.append(block, wall_s=wall * draws / total)
                if writer.n_done < s.end:  # cannot happen for a complete shard; keep the shard
                    break
                appended.append(s)
                if not new:
                    s.path.unlink(missing_ok=True)
            if writer.n_done >= run_n:
                writer.finish()
        if new:  # the new run file appears whole; only then its shards go
            os.replace(write_path, run_path)
            for s in appended:
                s.path.unlink(missing_ok=True)
        merged += len(appended)
    with contextlib.suppress(OSError):  # the folder goes once it is empty
        shard_folder(run_path).rmdir()
    left = len(list_shards(run_path))
    complete = False
    if run_path.is_file():
        a = store.read_run(run_path, load_sums=False).attrs
        done, target, complete = int(a["n_done"]), int(a["n_target"]), a["status"] == "complete"
    return MergeResult(run_path, merged, done, target, complete, left)


def merge_when_free(run_path: str | Path, *, wait_s: float = 5.0, whole: bool = True) -> MergeResult | None:
    """:func:`merge_run` (by default only once the shards reach the run's end), retrying while
    another process holds the run file (it may be merging the same shards); None if it stays busy
    for ``wait_s`` seconds (``biasvar merge`` finishes later)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return merge_run(run_path, whole=whole)
        except WriterBusy:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def merge_all(runs_dir: str | Path, snapshot_id: str | None = None,
              progress: Callable[[MergeResult], None] | None = None) -> list[MergeResult]:
    """:func:`merge_run` for every run under ``runs_dir`` that has shard files."""
    out = []
    for run in sharded_runs(runs_dir, snapshot_id):
        result = merge_run(run)
        out.append(result)
        if progress is not None:
            progress(result)
    return out


__all__ = ["MergeResult", "SHARD_KEYS", "SHARD_METHOD", "ShardInfo", "list_shards", "merge_all", "merge_run",
           "merge_when_free", "parse_shard", "plan_shard", "sample_shard", "shard_folder", "shard_path",
           "shard_ranges", "sharded_runs"]
