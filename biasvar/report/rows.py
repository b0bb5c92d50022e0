"""A run's report row: its comparison with the reference and its provenance."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from biasvar.report.types import RunResult
from biasvar.spec import parse_spec
from biasvar.stats.compare import (
    Comparison,
    run_attr,
)


def _versions(run: Any) -> dict[str, Any]:
    keys = ("biasvar_version", "torch_version", "cuda_version", "git_commit", "device", "dtype", "created",
            "schema_version")
    out = {k: run_attr(run, k) for k in keys if run_attr(run, k) is not None}
    engine = engine_label(run)
    if engine is not None:
        out["engine"] = engine
    return out


def engine_label(run: Any) -> str | None:
    """The engine's path as the run file records it: ``vmap, chunk 8`` (``auto`` asked for is
    added as ``(auto)``); files written before the path was recorded say ``auto (path not
    recorded)``. None when the file has no method at all."""
    method = run_attr(run, "method")
    if method is None:
        return None
    method = str(method)
    if method == "auto":
        return "auto (path not recorded)"
    chunk, asked = run_attr(run, "chunk"), run_attr(run, "method_requested")
    label = method if chunk in (None, "none") else f"{method}, chunk {chunk}"
    return label if asked in (None, "none", method) else f"{label} ({asked})"


def _cost(run: Any) -> float:
    c = run_attr(run, "cost")
    return float(c) if c is not None else float(parse_spec(run_attr(run, "spec")).cost)


def run_row(run: Any, comp: Comparison, *, role: str) -> RunResult:
    """The report row of a run and its comparison."""
    spec = parse_spec(run_attr(run, "spec"))
    cost = _cost(run)
    dps = run_attr(run, "draws_per_s")
    return RunResult(
        spec=str(spec), family=spec.name, hyper=dict(spec.params), seed=int(run_attr(run, "seed", 0)), role=role,
        status=str(run_attr(run, "status", "complete")), n=int(np.sum(run.block_count)),
        n_blocks=int(np.sum(np.asarray(run.block_count) > 0)), dim=int(np.sum(run.group_sizes)),
        b2=comp.b2, variance=comp.variance, mse=comp.mse, ref_share=comp.ref_share,
        ref_only_width=comp.ref_only_width, cost=cost, draws_per_s=float(dps) if dps is not None else None,
        variance_x_cost=comp.variance.value * cost, cosine=comp.cosine,
        nonfinite=int(np.sum(run.block_nonfinite)), pareto=False,
        snapshot_hash=str(run_attr(run, "snapshot_hash", "")), path=str(run.path), versions=_versions(run),
        groups=comp.groups,
    )


def run_rng(seed: int, run: Any) -> np.random.Generator:
    """The resampling randomness of one row: keyed by (seed, spec, run seed), not by row order."""
    key = zlib.crc32(f"{run_attr(run, 'spec')}|{run_attr(run, 'seed')}".encode())
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))
