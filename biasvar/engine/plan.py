"""The plan of a run: everything about a run of ``(snapshot, spec, seed)`` settled once.

:func:`plan_run` parses the spec, builds the estimator, prepares the problem on its device and
dtype, selects the parameters, makes the run header and, unless the run is complete already, sizes
the chunks and chooses the gradient path (:class:`~biasvar.engine.draws.DrawPath`). The frozen
:class:`RunPlan` it returns is what :func:`~biasvar.engine.runs.sample`, the shards
(:func:`~biasvar.engine.shards.plan_shard`) and the sweep executors are handed; none of them parses,
prepares or chooses again. :class:`RunOptions` are the settings a run is made with (the same for
every run of a sweep).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from biasvar import store
from biasvar.device import matmul_precision, resolve_device, resolve_dtype
from biasvar.engine.blocks import choose_block_size, choose_step
from biasvar.engine.calibration import Calibration
from biasvar.engine.chunks import check_noise_fits
from biasvar.engine.draws import DrawPath, choose_method, plan_draws
from biasvar.engine.settings import params_glob, parse_memory, prepare, select_params, selected_layout
from biasvar.errors import SpecError, StoreError
from biasvar.estimators import Estimator, UserPlugIn, build
from biasvar.problems.base import Problem, passes
from biasvar.provenance import environment
from biasvar.spec import EstimatorSpec, parse_spec

SEED_MAX = 2**63 - 1  # seeds are stored as int64
COUNT_MAX = 2**63 - 1  # draws, block sizes, kept coordinates: counts a run file stores as int64
#: The gradient path of sharded runs when ``method="auto"``: one fixed path, not a per-process
#: timing (two shards timed apart could take different paths, and their last bits would differ).
SHARD_METHOD = "vmap"


def check_run_args(*, n: int, seed: int, keep: int = 0, block_size: int | None = None,
                   chunk: int | None = None) -> None:
    """Refuse out-of-range run arguments with one line (before anything is drawn or written).

    Raises:
        SpecError: n < 1, a seed outside [0, 2^63), keep < 0, block_size or chunk < 1, or a count
            past :data:`COUNT_MAX` (what a run file can hold).
    """
    checks = (("n", n, 1, COUNT_MAX, "draws"), ("seed", seed, 0, SEED_MAX, ""),
              ("keep", keep, 0, COUNT_MAX, "coordinates"), ("block size", block_size, 1, COUNT_MAX, "draws"),
              ("chunk", chunk, 1, COUNT_MAX, "draws"))
    for name, value, lo, hi, unit in checks:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SpecError(f"{name} must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            # a count's upper limit (what a run file holds) is named only to a value past it
            span = f"between {lo} and {hi}" if hi is not None and (value > hi or name == "seed") else f"at least {lo}"
            raise SpecError(f"{name} must be {span}{' ' + unit if unit else ''}, got {value}")


@dataclass(frozen=True)
class RunOptions:
    """How a run is computed (the same for every run of a sweep).

    Attributes:
        params: glob of the parameters to differentiate; None = the problem's ``measure_params``, else all.
        keep: K, raw draws kept of K fixed coordinates (0 = none).
        device, dtype: where and in which precision (None: the problem's dtype).
        block_size: draws per stored block; None = :func:`~biasvar.engine.blocks.choose_block_size`.
        max_memory: the chunks' memory budget (bytes or "4GB"); chunk: a fixed chunk size.
        method: "auto" (calibrated), "vmap" or "loop".
    """

    params: str | None = None
    keep: int = 256
    device: str | torch.device = "auto"
    dtype: str | torch.dtype | None = None
    block_size: int | None = None
    max_memory: int | str | None = None
    chunk: int | None = None
    method: str = "auto"


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


@dataclass(frozen=True)
class RunPlan:
    """A run (or a shard of it: draws ``[first, end)``) with everything settled.

    ``path`` is the file :func:`~biasvar.engine.runs.sample` writes (the run file, or a shard file)
    or, when ``complete``, the file that already holds these draws. ``draws`` is None only for a
    complete run (the path was never chosen: nothing is drawn).
    """

    snapshot: Any
    spec: EstimatorSpec
    estimator: Estimator
    n: int
    seed: int
    options: RunOptions
    problem: Problem
    selection: Selection
    device: torch.device
    run_path: Path
    header: Mapping[str, Any]
    draws: DrawPath | None
    path: Path
    complete: bool
    restart: bool = False
    first: int = 0
    end: int = 0

    @property
    def block_size(self) -> int:
        return int(self.header["block_size"])

    def with_target(self, *, path: Path, first: int, end: int, header: Mapping[str, Any], complete: bool,
                    restart: bool) -> RunPlan:
        """The same run, drawing ``[first, end)`` into ``path`` (a shard)."""
        return dataclasses.replace(self, path=path, first=int(first), end=int(end),
                                   header=MappingProxyType(dict(header)), complete=complete, restart=restart)


def draw_work(spec: EstimatorSpec) -> int:
    """Forward passes per draw, roughly (M of rf and gr-mc): it bounds the draws per step."""
    try:
        return max(1, int(spec.get("M", 1) or 1))
    except (TypeError, ValueError):
        return 1


def run_header(snapshot: Any, spec: EstimatorSpec, est: Estimator, problem: Problem, sel: Selection, *, n: int,
               seed: int, block_size: int | None, keep: int, method: str, device: torch.device) -> dict[str, Any]:
    """The header (identity and provenance) of the run file of ``(snapshot, spec, seed)``."""
    bs = int(block_size or choose_block_size(int(n), sel.dim))
    return {
        "schema_version": store.SCHEMA_VERSION,
        "spec": str(spec),
        "seed": int(seed),
        "block_size": bs,
        "stats_step": choose_step(bs, [size for _, size in sel.bounds], draw_work(spec)),
        "keep": int(min(keep, sel.dim)),
        "snapshot_hash": snapshot.hash,
        "snapshot_id": snapshot.id,
        "snapshot_path": str(snapshot.path) if snapshot.path else "none",
        "problem": problem.describe(),
        "dataset": snapshot.dataset or {},
        "params_glob": sel.glob,
        "layout": [[k, list(shape), off] for k, shape, off in sel.layout],
        "dim": int(sel.dim),
        "cost": passes(problem, est),
        "dtype": str(problem.params[sel.names[0]].dtype).replace("torch.", ""),
        "method": method,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_n": int(n),
        **environment(device),
        **({"estimator_source": est.source()} if isinstance(est, UserPlugIn) else {}),  # the user's code
    }


def run_holds(run_path: Path, header: Mapping[str, Any], end: int) -> bool:
    """Whether the run file (of this identity) already has draws ``[0, end)`` committed."""
    if not run_path.is_file():
        return False
    try:
        store.is_complete(run_path, header, 0)  # raises on another identity
        return int(store.read_run(run_path, load_sums=False).attrs["n_done"]) >= end
    except StoreError:
        return False


def _recorded_method(path: Path) -> str | None:
    """The gradient path (vmap or loop) an existing run file recorded, or None (no file, or none recorded)."""
    if not path.is_file():
        return None
    try:
        recorded = store.read_header(path).get("method")
    except (StoreError, KeyError, ValueError, OSError):
        return None
    return recorded if recorded in ("vmap", "loop") else None


def plan_run(snapshot: Any, spec: str | EstimatorSpec, *, n: int, seed: int = 0, runs_dir: str | Path = "runs",
             options: RunOptions = RunOptions(), restart: bool = False, sharded: bool = False,
             calibration: Calibration | None = None) -> RunPlan:
    """The plan of the run ``(snapshot, spec, seed)`` of ``n`` draws under ``runs_dir``.

    An existing run file with the same identity is resumed (a complete one makes a ``complete``
    plan, without choosing the path; under ``method="auto"`` an incomplete one continues on the path
    its file recorded, so that all its blocks come from one path); one with a different identity raises
    :class:`~biasvar.errors.StoreError` unless ``restart``.

    Args:
        sharded: the plan of a run computed in shards (:func:`~biasvar.engine.shards.plan_shard`):
            ``method="auto"`` is :data:`SHARD_METHOD`, and without ``block_size`` an existing run
            file's block size wins (its shards must continue its blocks).
        calibration: where ``method="auto"`` finds or stores its measurement (default: the process's).
    """
    o = options
    check_run_args(n=n, seed=seed, keep=o.keep, block_size=o.block_size, chunk=o.chunk)
    max_memory = parse_memory(o.max_memory)  # refused even when the run is complete already
    method = SHARD_METHOD if sharded and o.method == "auto" else o.method
    spec = parse_spec(spec)
    est = build(spec)
    params = o.params
    if params is None:  # a problem may name the parameters its study measures (qnet: layer 0, App. B.6)
        params = getattr(snapshot.problem, "measure_params", None)
    dev = resolve_device(o.device)
    precision = matmul_precision(o.dtype, dev)
    problem = prepare(snapshot.problem, device=dev, dtype=resolve_dtype(o.dtype))
    sel = Selection.of(problem, params)
    path = store.run_path(runs_dir, snapshot.id, str(spec), seed)
    block_size = o.block_size
    if sharded and block_size is None and path.is_file():
        with contextlib.suppress(StoreError, KeyError, ValueError):
            block_size = int(store.read_header(path)["block_size"])
    header = run_header(snapshot, spec, est, problem, sel, n=int(n), seed=int(seed), block_size=block_size,
                        keep=o.keep, method=choose_method(dev, method), device=dev)
    if precision is not None:  # a TF32 run is not a float32 run: it neither resumes nor pairs as one
        header["dtype"] = precision
    if sharded:
        complete = not restart and run_holds(path, header, int(n))
    else:
        complete = not restart and store.is_complete(path, header, int(n))
    draws = None
    if sharded or not complete:  # the path the engine takes ("auto" is kept as method_requested)
        check_noise_fits(problem, spec, est, dev, max_memory)  # before any draw (a calibration draws)
        path_method = method
        if method == "auto" and not sharded and not restart:  # a resumed run continues on its file's path
            path_method = _recorded_method(path) or method
        draws = plan_draws(problem, est, sel.names, chunk=o.chunk, max_memory=max_memory, method=path_method,
                           calibration=calibration, draws=int(n))
        header.update(draws.record())
    return RunPlan(snapshot, spec, est, int(n), int(seed), dataclasses.replace(o, params=params, method=method),
                   problem, sel, dev, path, MappingProxyType(header), draws, path, complete, restart, 0, int(n))


__all__ = ["SEED_MAX", "SHARD_METHOD", "RunOptions", "RunPlan", "Selection", "check_run_args", "draw_work", "plan_run",
           "run_header", "run_holds"]
