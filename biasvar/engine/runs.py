"""Runs: draw (or resume) the draws of a :class:`~biasvar.engine.plan.RunPlan` into its file.

:func:`sample` writes a plan's file (a run file, or a shard file); :func:`fill` draws an explicit
range of a run's draws into an open writer, whole blocks at a time; :func:`sample_run` is the
keyword form (plan, then sample) most callers use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biasvar import store
from biasvar.engine.blocks import BlockBuilder, choose_block_size, choose_step, keep_index
from biasvar.engine.calibration import Calibration
from biasvar.engine.chunks import is_oom
from biasvar.engine.plan import (
    SEED_MAX,
    RunOptions,
    RunPlan,
    Selection,
    check_run_args,
    draw_work,
    plan_run,
    run_header,
)
from biasvar.errors import OutOfMemory
from biasvar.problems.base import Problem
from biasvar.spec import EstimatorSpec

ProgressFn = Callable[[int, int, int, float], None]
SAVE_EVERY_S = 30.0  # the block in progress is saved at least this often


def exact_flat(problem: Problem, names: Sequence[str]) -> np.ndarray | None:
    """The problem's exact gradient in the selected parameters, flat float64 (None: not known)."""
    exact = problem.exact_gradient()
    if exact is None:
        return None
    return torch.cat([exact[k].detach().reshape(-1).to(device="cpu", dtype=torch.float64)
                      for k in names]).numpy()


def add_time(timing: dict[str, float] | None, key: str, seconds: float) -> None:
    if timing is not None:
        timing[key] = timing.get(key, 0.0) + seconds


def check_run_room(plan: RunPlan) -> None:
    """Refuse, before any draw, a run whose file the disk has no room for: its size estimated from the
    plan (:func:`biasvar.store.run_file_bytes`), less what a file resumed already holds.

    Raises:
        StoreError: one line naming the folder and the space needed.
    """
    n, bs, dim = plan.end - plan.first, plan.block_size, plan.selection.dim
    need = store.run_file_bytes(dim=dim, groups=len(plan.selection.bounds), block_size=bs, n=n,
                                keep=int(plan.header["keep"]))
    if plan.path.is_file() and not plan.restart:
        need -= plan.path.stat().st_size
    blocks = -(-n // bs)
    store.check_room(plan.path, need, f"the run file {plan.path.name} ({n:,} draws: {blocks:,} blocks of {dim:,} "
                                      f"sums, {int(plan.header['keep'])} kept coordinates a draw)")


def check_sweep_room(snapshot: Any, runs: Sequence[Any], options: RunOptions, *, restart: bool = False) -> None:
    """Refuse, before any draw, a sweep whose run files (``runs``: each with ``n``, ``path``) the disk has
    no room for together; each run is checked again before its own draws (:func:`check_run_room`).

    Raises:
        StoreError: one line naming the folder and the space needed.
    """
    if not runs:
        return
    params = options.params if options.params is not None else getattr(snapshot.problem, "measure_params", None)
    sel = Selection.of(snapshot.problem, params)
    need = 0
    for run in runs:
        bs = options.block_size or choose_block_size(int(run.n), sel.dim)
        one = store.run_file_bytes(dim=sel.dim, groups=len(sel.bounds), block_size=bs, n=int(run.n),
                                   keep=min(int(options.keep), sel.dim))
        if not restart and Path(run.path).is_file():
            one -= Path(run.path).stat().st_size
        need += max(0, one)
    store.check_room(Path(runs[0].path), need, f"the {len(runs)} run files of this sweep "
                                               f"({sum(int(r.n) for r in runs):,} draws of {sel.dim:,} sums)")


def sample(plan: RunPlan, *, progress: ProgressFn | None = None, save_every_s: float = SAVE_EVERY_S,
           timing: dict[str, float] | None = None) -> Path:
    """Draw (or resume) the plan's draws ``[plan.first, plan.end)`` into ``plan.path``; returns the
    file that holds them (at once when the plan is complete: the file is not even opened for writing).

    ``progress(done, total, nonfinite, draws_per_s)`` is called after every chunk, counting the
    plan's draws (``done`` from 0 to ``plan.end - plan.first``). Interrupted (Ctrl-C, or any
    exception while drawing), the file keeps the whole steps drawn so far and the exception is
    re-raised; the same plan resumes it, and the file is then bit for bit the file of a run that was
    never interrupted, whatever the chunk sizes of either.

    ``timing`` (a dict) gets the seconds spent drawing (``draw_s``) and writing the file
    (``write_s``: opening, appending, saving, closing) added to it.
    """
    if plan.complete:
        return plan.path
    sel = plan.selection
    check_run_room(plan)
    t = time.perf_counter()
    exact = exact_flat(plan.problem, sel.names) if plan.restart or not plan.path.exists() else None
    writer = store.RunWriter.open(plan.path, dict(plan.header), n_target=plan.end - plan.first,
                                  group_sizes=np.array([b[1] for b in sel.bounds]),
                                  sample_index=keep_index(sel.dim, int(plan.header["keep"])), exact=exact,
                                  restart=plan.restart)
    add_time(timing, "write_s", time.perf_counter() - t)
    with writer:
        fill(plan, writer, plan.first, plan.end, progress=progress, save_every_s=save_every_s, timing=timing)
        t = time.perf_counter()
        writer.finish()
    add_time(timing, "write_s", time.perf_counter() - t)  # finish and close
    return plan.path


def fill(plan: RunPlan, writer: store.RunWriter, first: int, end: int, *, progress: ProgressFn | None = None,
         save_every_s: float = SAVE_EVERY_S, timing: dict[str, float] | None = None) -> None:
    """Draw the run's draws ``[first + writer.n_done, end)`` into ``writer``, whose draw 0 is the
    run's draw ``first`` (0 for a run file, the shard's first draw for a shard file), committing
    whole blocks of ``writer.block_size``. The chunk grid is the run's (counted from draw 0, up to
    ``plan.n``), so every draw is computed in the same call wherever the range starts or ends.

    The block in progress is saved (whole steps of it) at least every ``save_every_s`` seconds,
    and when drawing stops with an exception (Ctrl-C, SIGTERM turned into KeyboardInterrupt by the
    CLI, a progress callback that raises, out of memory): the resumed run is then the same bits.

    ``timing`` (a dict) gets ``write_s`` (the writer's appends and saves) and ``draw_s`` (the rest of
    this call: drawing and the block statistics) added to it.
    """
    first, end = int(first), int(end)
    done, bs = first + writer.n_done, writer.block_size
    if done >= end:
        return
    bounds, dim, device = plan.selection.bounds, plan.selection.dim, plan.device
    step = writer.stats_step or choose_step(bs, [size for _, size in bounds], draw_work(plan.spec))
    t0 = t_saved = time.perf_counter()
    written = 0.0  # seconds inside the writer
    block_start = done - writer.pending_draws
    block = BlockBuilder(bounds, writer.sample_index, device, step).resume(writer.pending())
    block_end = min(block_start + bs, end)
    pos = done
    try:
        for ch in plan.draws.draws(plan.seed, done, end, aligned=True, run_end=plan.n):
            x, i = ch.grads, ch.start
            while x.shape[0]:
                take = min(x.shape[0], block_end - i)
                block.add(x[:take])
                x, i = x[take:], i + take
                if i == block_end:
                    block.flush()
                    stats = block.stats(dim)
                    now = time.perf_counter()
                    writer.append(stats, wall_s=now - t_saved)
                    t_saved = time.perf_counter()
                    written += t_saved - now
                    block = BlockBuilder(bounds, writer.sample_index, device, step)
                    block_end = min(i + bs, end)
            pos = ch.start + ch.grads.shape[0]
            del ch, x  # let the engine reuse this chunk's memory for the next one
            now = time.perf_counter()
            if now - t_saved >= save_every_s and block.draws > writer.pending_draws:
                part = block.pending(dim)
                now = time.perf_counter()
                writer.save_pending(part, wall_s=now - t_saved)
                t_saved = time.perf_counter()
                written += t_saved - now
            if progress is not None:
                elapsed = now - t0
                rate = (pos - done) / elapsed if elapsed > 0 else 0.0
                progress(pos - first, end - first, writer.n_nonfinite + block.nonfinite, rate)
    except BaseException as e:
        if block.draws > writer.pending_draws:  # keep the whole steps drawn so far
            try:
                writer.save_pending(block.pending(dim), wall_s=time.perf_counter() - t_saved)
            except Exception:  # noqa: BLE001 - the file keeps its last save; report the first error
                pass
        if out_of_memory(e):
            saved = writer.n_done + writer.pending_draws
            kept = (f"the {saved:,} draws drawn so far are saved in {writer.path} (interrupted)"
                    if not getattr(writer, "in_memory", False) else
                    "this run's draws were held in memory and are lost (store-only: the completed runs are in "
                    "the store)")
            raise OutOfMemory(
                f"out of memory on {device} while drawing {plan.spec} ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:120] or 'no message'}); {kept}: rerun the same command to resume, "
                "with a smaller --chunk or --max-memory, or with less else running") from None
        raise
    finally:
        add_time(timing, "write_s", written)
        add_time(timing, "draw_s", time.perf_counter() - t0 - written)


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation that failed: Python's ``MemoryError``, torch's CPU or CUDA
    out-of-memory (:func:`~biasvar.engine.chunks.is_oom`, or a ``RuntimeError`` that says so)."""
    if isinstance(err, MemoryError) or is_oom(err):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def sample_run(
    snapshot: Any,
    spec: str | EstimatorSpec,
    *,
    n: int,
    seed: int = 0,
    runs_dir: str | Path = "runs",
    params: str | None = None,
    keep: int = 256,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    restart: bool = False,
    block_size: int | None = None,
    max_memory: int | str | None = None,
    chunk: int | None = None,
    method: str = "auto",
    progress: ProgressFn | None = None,
    save_every_s: float = SAVE_EVERY_S,
    calibration: Calibration | None = None,
) -> Path:
    """Draw (or resume) the run ``(snapshot, spec, seed)`` up to ``n`` draws; returns its file:
    ``sample(plan_run(...))`` with the :class:`~biasvar.engine.plan.RunOptions` as keywords.

    The file is ``run_path(runs_dir, snapshot.id, spec, seed)``. An existing file with the same
    identity is resumed after its last whole block (a complete one returns at once); one with a
    different identity raises :class:`~biasvar.errors.StoreError` unless ``restart``.

    Args:
        snapshot: a :class:`biasvar.snapshot.Snapshot` (``load_snapshot`` or ``snapshot_of``).
        spec: the estimator, e.g. ``"gr-mc(t=0.1,M=100)"``.
        n: draws wanted (a resumed run with a larger n is extended).
        seed: the run's seed (with the spec, it keys the noise).
        params, keep, device, dtype, block_size, max_memory, chunk, method: see
            :class:`~biasvar.engine.plan.RunOptions`.
        progress, save_every_s: see :func:`sample` (a kill -9 loses at most about ``save_every_s``
            of work, plus one step of the block statistics).
    """
    options = RunOptions(params=params, keep=keep, device=device, dtype=dtype, block_size=block_size,
                         max_memory=max_memory, chunk=chunk, method=method)
    plan = plan_run(snapshot, spec, n=n, seed=seed, runs_dir=runs_dir, options=options, restart=restart,
                    calibration=calibration)
    return sample(plan, progress=progress, save_every_s=save_every_s)


__all__ = ["SAVE_EVERY_S", "SEED_MAX", "ProgressFn", "Selection", "check_run_args", "check_run_room",
           "check_sweep_room", "exact_flat", "fill", "run_header", "sample", "sample_run"]
