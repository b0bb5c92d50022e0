"""Runs: draw (or resume) ``n`` gradient samples of one estimator at one snapshot into a run file."""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biasvar import store
from biasvar.device import resolve_device, resolve_dtype
from biasvar.engine.blocks import BlockBuilder, choose_block_size, choose_step, keep_index
from biasvar.engine.gradients import choose_method, engine_path, sample_gradients
from biasvar.engine.settings import params_glob, parse_memory, prepare, select_params, selected_layout
from biasvar.errors import SpecError
from biasvar.estimators import build
from biasvar.problems.base import Problem, passes
from biasvar.provenance import environment
from biasvar.spec import EstimatorSpec, parse_spec

ProgressFn = Callable[[int, int, int, float], None]
SAVE_EVERY_S = 30.0  # the block in progress is saved at least this often


def _exact_flat(problem: Problem, names: Sequence[str]) -> np.ndarray | None:
    exact = problem.exact_gradient()
    if exact is None:
        return None
    return torch.cat([exact[k].detach().reshape(-1).to(device="cpu", dtype=torch.float64)
                      for k in names]).numpy()


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
) -> Path:
    """Draw (or resume) the run ``(snapshot, spec, seed)`` up to ``n`` draws; returns its file.

    The file is ``run_path(runs_dir, snapshot.id, spec, seed)``. An existing file with the same
    identity is resumed after its last whole block (a complete one returns at once); one with a
    different identity raises :class:`~biasvar.errors.StoreError` unless ``restart``.

    Args:
        snapshot: a :class:`biasvar.snapshot.Snapshot` (``load_snapshot`` or ``snapshot_of``).
        spec: the estimator, e.g. ``"gr-mc(t=0.1,M=100)"``.
        n: draws wanted (a resumed run with a larger n is extended).
        seed: the run's seed (with the spec, it keys the noise).
        params: glob of the parameters to differentiate; None = all.
        keep: K, raw draws kept of K fixed coordinates (0 = none).
        device, dtype, max_memory, chunk, method: see :func:`sample_gradients`.
        block_size: draws per stored block; None = :func:`choose_block_size`.
        progress: called after every chunk as ``progress(done, total, nonfinite, draws_per_s)``.
        save_every_s: save the block in progress at least this often (a kill -9 loses at most
            about this much work, plus one step of the block statistics).

    Interrupted (Ctrl-C, or any exception while drawing), the run saves the whole steps drawn so
    far and re-raises; the same call resumes it, and the file is then bit for bit the file of a run
    that was never interrupted, whatever the chunk sizes of either.
    """
    check_run_args(n=n, seed=seed, keep=keep, block_size=block_size, chunk=chunk)
    parse_memory(max_memory)  # refused even when the run is complete already
    spec = parse_spec(spec)
    if params is None:  # a problem may name the parameters its study measures (qnet: layer 0, App. B.6)
        params = getattr(snapshot.problem, "measure_params", None)
    dev = resolve_device(device)
    problem = prepare(snapshot.problem, device=dev, dtype=resolve_dtype(dtype))
    sel = Selection.of(problem, params)
    path = store.run_path(runs_dir, snapshot.id, str(spec), seed)
    header = run_header(snapshot, spec, problem, sel, n=int(n), seed=int(seed), block_size=block_size, keep=keep,
                        method=choose_method(dev, method), device=dev)
    if not restart and store.is_complete(path, header, int(n)):
        return path  # nothing to do: not even opened for writing
    # the path the engine will take (a new file records it; "auto" is kept as method_requested)
    header.update(engine_path(problem, spec, params=params, chunk=chunk, max_memory=max_memory, method=method))
    exact = _exact_flat(problem, sel.names) if restart or not path.exists() else None  # only for a new file
    writer = store.RunWriter.open(path, header, n_target=int(n), group_sizes=np.array([b[1] for b in sel.bounds]),
                                  sample_index=keep_index(sel.dim, keep), exact=exact, restart=restart)
    with writer:
        _fill(writer, problem, spec, n=int(n), seed=int(seed), params=params, bounds=sel.bounds, dim=sel.dim,
              device=dev, chunk=chunk, max_memory=max_memory, method=method, progress=progress,
              save_every_s=save_every_s)
        writer.finish()
    return path


SEED_MAX = 2**63 - 1  # seeds are stored as int64


def check_run_args(*, n: int, seed: int, keep: int = 0, block_size: int | None = None,
                   chunk: int | None = None) -> None:
    """Refuse out-of-range run arguments with one line (before anything is drawn or written).

    Raises:
        SpecError: n < 1, a seed outside [0, 2^63), keep < 0, block_size or chunk < 1.
    """
    checks = (("n", n, 1, None, "draws"), ("seed", seed, 0, SEED_MAX, ""), ("keep", keep, 0, None, "coordinates"),
              ("block size", block_size, 1, None, "draws"), ("chunk", chunk, 1, None, "draws"))
    for name, value, lo, hi, unit in checks:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SpecError(f"{name} must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise SpecError(f"{name} must be {span}{' ' + unit if unit else ''}, got {value}")


@dataclass(frozen=True)
class Selection:
    """The differentiated parameters of a run: names, ``(name, shape, offset)`` layout, groups."""

    names: list[str]
    layout: list[tuple[str, tuple[int, ...], int]]
    glob: str

    @classmethod
    def of(cls, problem: Problem, params: str | None) -> Selection:
        names = select_params(problem, params)
        return cls(names, selected_layout(problem, names), params_glob(params))

    @property
    def dim(self) -> int:
        return sum(math.prod(shape) for _, shape, _ in self.layout)

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """``(offset, size)`` of each parameter group in the flat gradient."""
        return [(off, math.prod(shape)) for _, shape, off in self.layout]


def run_header(snapshot: Any, spec: EstimatorSpec, problem: Problem, sel: Selection, *, n: int, seed: int,
               block_size: int | None, keep: int, method: str, device: torch.device) -> dict[str, Any]:
    """The header (identity and provenance) of the run file of ``(snapshot, spec, seed)``."""
    bs = int(block_size or choose_block_size(int(n), sel.dim))
    return {
        "schema_version": store.SCHEMA_VERSION,
        "spec": str(spec),
        "seed": int(seed),
        "block_size": bs,
        "stats_step": choose_step(bs, [size for _, size in sel.bounds], _work(spec)),
        "keep": int(min(keep, sel.dim)),
        "snapshot_hash": snapshot.hash,
        "snapshot_id": snapshot.id,
        "snapshot_path": str(snapshot.path) if snapshot.path else "none",
        "problem": problem.describe(),
        "dataset": snapshot.dataset or {},
        "params_glob": sel.glob,
        "layout": [[k, list(shape), off] for k, shape, off in sel.layout],
        "dim": int(sel.dim),
        "cost": passes(problem, build(spec)),
        "dtype": str(problem.params[sel.names[0]].dtype).replace("torch.", ""),
        "method": method,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_n": int(n),
        **environment(device),
    }


def _fill(writer: store.RunWriter, problem: Problem, spec: EstimatorSpec, *, n: int, seed: int,
          params: str | None, bounds: list[tuple[int, int]], dim: int, device: torch.device,
          chunk: int | None, max_memory: int | str | None, method: str, progress: ProgressFn | None,
          save_every_s: float) -> None:
    """Draw from ``writer.n_done`` to ``n``, committing whole blocks of ``writer.block_size``.

    The block in progress is saved (whole steps of it) at least every ``save_every_s`` seconds,
    and when drawing stops with an exception (Ctrl-C, SIGTERM turned into KeyboardInterrupt by the
    CLI, a progress callback that raises, out of memory): the resumed run is then the same bits.
    """
    done, bs = writer.n_done, writer.block_size
    if done >= n:
        return
    step = writer.stats_step or choose_step(bs, [size for _, size in bounds], _work(spec))
    t0 = t_saved = time.perf_counter()
    block_start = done - writer.pending_draws
    block = BlockBuilder(bounds, writer.sample_index, device, step).resume(writer.pending())
    block_end = min(block_start + bs, n)
    pos = done
    try:
        for ch in sample_gradients(problem, spec, n=n - done, seed=seed, start=done, params=params,
                                   chunk=chunk, max_memory=max_memory, method=method, aligned=True,
                                   run_end=getattr(writer, "run_end", n)):
            x, i = ch.grads, ch.start
            while x.shape[0]:
                take = min(x.shape[0], block_end - i)
                block.add(x[:take])
                x, i = x[take:], i + take
                if i == block_end:
                    block.flush()
                    now = time.perf_counter()
                    writer.append(block.stats(dim), wall_s=now - t_saved)
                    t_saved = now
                    block = BlockBuilder(bounds, writer.sample_index, device, step)
                    block_end = min(i + bs, n)
            pos = ch.start + ch.grads.shape[0]
            del ch, x  # let the engine reuse this chunk's memory for the next one
            now = time.perf_counter()
            if now - t_saved >= save_every_s and block.draws > writer.pending_draws:
                writer.save_pending(block.pending(dim), wall_s=now - t_saved)
                t_saved = now
            if progress is not None:
                elapsed = now - t0
                rate = (pos - done) / elapsed if elapsed > 0 else 0.0
                progress(pos, n, writer.n_nonfinite + block.nonfinite, rate)
    except BaseException:
        if block.draws > writer.pending_draws:  # keep the whole steps drawn so far
            try:
                writer.save_pending(block.pending(dim), wall_s=time.perf_counter() - t_saved)
            except Exception:  # noqa: BLE001 - the file keeps its last save; report the first error
                pass
        raise


def _work(spec: EstimatorSpec) -> int:
    """Forward passes per draw, roughly (M of rf and gr-mc): it bounds the draws per step."""
    try:
        return max(1, int(spec.get("M", 1) or 1))
    except (TypeError, ValueError):
        return 1


__all__ = ["SAVE_EVERY_S", "SEED_MAX", "ProgressFn", "Selection", "check_run_args", "run_header", "sample_run"]
