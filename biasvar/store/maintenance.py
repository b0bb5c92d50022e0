"""Rewriting a run file whole: recovery after a killed writer, the upgrade of a file of the first
layout, and :func:`compact` (another filter for the block sums).

A killed SWMR writer leaves the file flagged "open for writing"; HDF5 then refuses to reopen it
for writing (the ``h5clear`` case) but still reads it in SWMR mode. Resuming detects that, and
:func:`copy_committed` copies the header, the committed blocks and the saved block in progress
into a fresh file (temporary name, then rename: :func:`biasvar.atomic.atomic_path`), which the
writer then continues. The caller holds the run's writer lock throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from biasvar.atomic import atomic_path, ensure_room
from biasvar.errors import StoreError
from biasvar.store import lock
from biasvar.store.datasets import (
    CHECKED,
    PENDING_SETS,
    block_sum_chunks,
    create_pending,
    create_state,
    filters_for,
    filters_of,
)
from biasvar.store.layout import STATE
from biasvar.store.opening import READ_ERRORS, DamagedError, damage_as_error, open_read
from biasvar.store.reader import state_of, verify_checksums


def needs_upgrade(path: Path) -> bool:
    """A file of the first layout (no slots for a block in progress, a short state row)."""
    with open_read(path, own_lock=True) as f, damage_as_error(path):
        return "pending_sum" not in f or f["state"].shape[0] < len(STATE)


def _copy_into(src: h5py.File, dst: h5py.File, path: Path, block_sum_filters: dict[str, Any] | None) -> None:
    """The committed part of ``src`` into the empty ``dst`` (see :func:`copy_committed`)."""
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    row = state_of(src, path)
    nb = row.blocks
    kept = int(np.asarray(src["block_count"][:nb]).sum()) + row.pending_count
    for name, ds in src.items():
        if name == "state" or (name in PENDING_SETS and not row.pending_draws):
            continue  # no block in progress: its slots are made afresh, unwritten
        ds.refresh()
        if ds.maxshape and ds.maxshape[0] is None:
            rows = kept if name == "samples" else nb
            if ds.shape[0] < rows:
                raise DamagedError(path, f"{name} has {ds.shape[0]} rows, the state says {rows}")
            filters, chunks = filters_of(ds), ds.chunks
            if name == "block_sum" and block_sum_filters is not None:
                filters, chunks = block_sum_filters, block_sum_chunks(ds.shape[1], block_sum_filters)
            dst.create_dataset(name, data=ds[:rows], maxshape=ds.maxshape, chunks=chunks, **filters, **CHECKED)
        else:
            dst.create_dataset(name, data=ds[()], chunks=ds.chunks, **filters_of(ds), **CHECKED)
    if "pending_sum" not in dst:
        create_pending(dst, int(dst.attrs["dim"]), len(dst["group_sizes"]))
    create_state(dst, row)
    if block_sum_filters is not None:
        dst.flush()
        if np.asarray(dst["block_sum"][()]).tobytes() != np.asarray(src["block_sum"][:nb]).tobytes():
            raise StoreError(f"rewriting {path} did not give back the same block sums; the file was left as it was")


def _copy_bytes(path: Path, block_sum_filters: dict[str, Any] | None) -> int:
    """What a copy of the run file ``path`` takes at most: its size, with the block sums at their raw size
    when they are re-encoded without a filter (``compact --compression none``)."""
    size = path.stat().st_size
    if block_sum_filters is None or block_sum_filters:
        return size
    try:
        with open_read(path, own_lock=True) as f:
            ds = f["block_sum"]
            return size - int(ds.id.get_storage_size()) + int(np.prod(ds.shape)) * ds.dtype.itemsize
    except READ_ERRORS:
        return size


def copy_committed(path: Path, block_sum_filters: dict[str, Any] | None = None) -> None:
    """Rewrite a file in the current layout with the header, the committed blocks and the saved
    block in progress only: a file whose writer was killed, or one of the first layout.

    The copy is written under a temporary name and renamed into place. Every dataset keeps its
    filters, except ``block_sum`` when ``block_sum_filters`` is given (:func:`compact`): it is
    then re-encoded, and read back and compared bit for bit before the copy replaces the file.
    """
    ensure_room(path, _copy_bytes(path, block_sum_filters))
    with atomic_path(path) as tmp, open_read(path, own_lock=True) as src, \
            h5py.File(tmp, "w", libver="latest") as dst:
        with damage_as_error(path):
            _copy_into(src, dst, path, block_sum_filters)


def compact(path: str | Path, compression: str | None = None) -> tuple[int, int]:
    """Store a run file's block sums through the filter ``compression`` (None: what new files
    get, see :func:`biasvar.store.compression_name`), losslessly: the numbers read back are the
    same bits.

    The file is rewritten under a temporary name (its committed blocks and saved block in
    progress, the unsaved rest dropped as a resume would) and renamed into place; slots for a
    block in progress that holds nothing are dropped. A file that has the filter already is left
    as it is.

    Returns:
        (bytes before, bytes after).

    Raises:
        StoreError: a writer holds the file, unknown ``compression``; DamagedError: not readable.
    """
    path = Path(path)
    filters_for(compression)  # an unknown name is refused before anything is touched
    if not path.is_file():
        raise StoreError(f"run file not found: {path} (list runs with `biasvar ls`)")
    before = path.stat().st_size
    with lock.held(path):
        with open_read(path, own_lock=True) as f:
            if "schema_version" not in f.attrs or "block_sum" not in f:
                raise DamagedError(path, "not a biasvar run file: no schema")
            with damage_as_error(path):
                ds = f["block_sum"]
                current, row = filters_of(ds), 4 * int(ds.shape[1])
            verify_checksums(f, path)  # a damaged file is reported, never called unchanged nor rewritten
        wanted = filters_for(compression, row)
        if current != wanted:
            copy_committed(path, block_sum_filters=wanted)
    return before, path.stat().st_size


__all__ = ["compact", "copy_committed", "needs_upgrade"]
