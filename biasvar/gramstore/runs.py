"""A stored run as the analysis sees a run file's header and block statistics (no block sums)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.gramstore.anchored import RunRows
from biasvar.gramstore.build import GramState


@dataclass(frozen=True)
class StoredRun:
    """What :func:`biasvar.report.analyze` reads of a run, from a store: the header attributes and
    the per-block statistics (``block_sum`` and ``exact`` are None: the store has their products)."""

    path: str
    attrs: dict[str, Any]
    groups: list[str]
    group_sizes: np.ndarray
    block_count: np.ndarray
    block_nonfinite: np.ndarray
    block_m2: np.ndarray
    block_sumsq: np.ndarray
    exact_sha: str
    block_sum: None = None
    exact: None = None
    samples: None = None

    @property
    def n(self) -> int:
        return int(self.block_count.sum())

    @property
    def spec(self) -> str:
        return str(self.attrs["spec"])

    @property
    def seed(self) -> int:
        return int(self.attrs["seed"])

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "complete"))


def stored_run(state: GramState, rows: RunRows, folder: str | Path) -> StoredRun:
    """The run ``rows`` of ``state`` (its path resolved from the store's folder)."""
    g = state.gram
    return StoredRun(path=str(Path(folder) / rows.path), attrs=dict(rows.attrs), groups=list(g.groups),
                     group_sizes=np.asarray(g.group_sizes), block_count=rows.count.astype(np.int64),
                     block_nonfinite=rows.nonfinite, block_m2=rows.m2, block_sumsq=rows.sumsq,
                     exact_sha=rows.exact_sha)


def stored_runs(state: GramState, folder: str | Path) -> list[StoredRun]:
    """Every run of a store, in row order."""
    return [stored_run(state, r, folder) for r in state.gram.runs]


__all__ = ["StoredRun", "stored_run", "stored_runs"]
