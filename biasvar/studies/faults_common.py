"""What the fault-injection experiments share (:mod:`biasvar.studies.faults`,
:mod:`biasvar.studies.faults_limits`): the children's environment, the toy snapshot, and the
bit-for-bit comparison of two run files."""

from __future__ import annotations

import os
from pathlib import Path

DATASETS = ("block_count", "block_nonfinite", "block_sum", "block_m2", "block_sumsq", "samples", "sample_index",
            "group_sizes", "exact")


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="100", BIASVAR_OFFLINE="1")


def _snapshot(folder: Path) -> tuple[Path, str]:
    from biasvar.problems.toy import ToyCat
    from biasvar.snapshot import save_snapshot

    snap = save_snapshot(folder / "toy.pt", ToyCat(vars=3, categories=4))
    return folder / "toy.pt", snap.id


def identical(a: Path, b: Path) -> bool:
    """Every dataset of two run files bit for bit, and the same counts (wall-clock time aside)."""
    from biasvar import store

    ra, rb = store.read_run(a), store.read_run(b)
    for name in DATASETS:
        x, y = getattr(ra, name, None), getattr(rb, name, None)
        if (x is None) != (y is None):
            return False
        if x is not None and (x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes()):
            return False
    keys = ("n_done", "n_finite", "n_nonfinite", "blocks", "status", "n_pending")
    return all(getattr(ra.progress, k) == getattr(rb.progress, k) for k in keys)


__all__ = ["DATASETS", "identical"]
