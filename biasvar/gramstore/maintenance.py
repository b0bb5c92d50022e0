"""Deleting run files the store holds whole (``biasvar gram --drop-runs``).

A run file is deleted only after a check: its run is in the store, computed from a file with the
same SHA-256 (the bytes on disk now), the run is complete, and every product of its blocks with
the blocks of every other stored run is there (no analysis will need the file again). What is lost
with it: resuming the run (more draws), its kept raw draws (``--keep``), and parameter groups
other than the stored ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from biasvar.gramstore.anchored import ANCHOR
from biasvar.gramstore.build import file_sha256
from biasvar.gramstore.file import read_store


def drop_stored_runs(store_file: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """Delete the run files of ``store_file``'s runs that it holds whole.

    Returns:
        ``(deleted, kept)``: the deleted files with their sizes, and one line per run file kept
        (with the reason).
    """
    state = read_store(store_file)
    ag = state.gram
    total = ag.q[-1]
    all_rows = np.concatenate([[ANCHOR], *[r.rows for r in ag.runs]])
    deleted: list[tuple[str, int]] = []
    kept: list[str] = []
    for run in ag.runs:
        path = Path(store_file).parent / run.path  # stored relative to the store's folder
        if not path.is_file():
            continue
        if str(run.attrs.get("status", "complete")) != "complete":
            kept.append(f"{path.name}: the run is not complete (its file is needed to resume it)")
            continue
        if np.isnan(total[np.ix_(run.rows, all_rows)]).any():
            kept.append(f"{path.name}: some products with other runs are missing (run `biasvar gram` while "
                        f"their files are present)")
            continue
        if file_sha256(path) != run.file_sha:
            kept.append(f"{path.name}: changed since the store was updated (run `biasvar gram` first)")
            continue
        size = path.stat().st_size
        os.remove(path)
        deleted.append((str(path), size))
    return deleted, kept


__all__ = ["drop_stored_runs"]
