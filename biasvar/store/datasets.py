"""How each dataset of a run file is stored: its chunks, its checksum and (for the block sums) its
lossless filter; the datasets of a new file.

``block_sum`` is nearly the whole file: ``4 * dim`` bytes per block whatever the block's draws
(see :func:`biasvar.engine.blocks.choose_block_size`). New files store it through a lossless
filter, :data:`COMPRESSION` (byte shuffle + deflate level 1; ``$BIASVAR_RUN_COMPRESSION`` or
``RunWriter.open(compression=...)`` pick another key of :data:`FILTERS`, ``none`` included), one
block per chunk, so every chunk is written once and never moved; rows under
:data:`COMPRESS_MIN_BYTES` are left unfiltered. The values read back are the same bits either
way, files without a filter (all files made before it) read and resume as before, and a
resumed or recovered file keeps the filter it was made with (:func:`biasvar.store.compact`,
``biasvar compact``, rewrites a file with another). The pending slots are allocated only when a
block in progress is first saved to them, and stay unfiltered (they are rewritten in place), as
do the kept draws. On the Fig. 1 VAE (d = 1,149,456) the filter stores the block sums in 0.78 of
their bytes; 12% of their entries are the encoder weights of pixels that are 0 across the
evaluation batch (their gradient is exactly 0 in every draw; the other 88% of the entries alone
compress to 0.855), and costs about 70 ms of CPU per block written and 9 ms per block read
(``scripts/runfile_size.py``, ``results/runfile-size/``).

Every dataset carries a Fletcher-32 checksum per chunk, so a flipped byte in the data is an
error, not a wrong number.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from biasvar.errors import StoreError
from biasvar.store.layout import StateRow, attr_value

CHECKED = {"fletcher32": True}  # every dataset carries a checksum per chunk: a flipped byte is an error

# The datasets that grow by one row per block, and the two slots of the block in progress.
BLOCK_SETS = ("block_sum", "block_m2", "block_sumsq", "block_count", "block_nonfinite")
PENDING_SETS = ("pending_sum", "pending_m2", "pending_sumsq")

# Lossless filters for ``block_sum`` (the one large dataset). Every chunk of it is one block,
# written once and never rewritten, so a compressed chunk never has to be moved (the pending
# slots and the kept draws are rewritten in place, and stay uncompressed).
FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
}
COMPRESSION = "gzip"  # what new run files use, unless the environment variable below says otherwise
COMPRESSION_ENV = "BIASVAR_RUN_COMPRESSION"
COMPRESS_MIN_BYTES = 1 << 16  # block sums of smaller rows (dim < 16,384) are left as they are: small anyway


def compression_name(compression: str | None = None) -> str:
    """The filter new run files get: ``compression``, else ``$BIASVAR_RUN_COMPRESSION``, else
    :data:`COMPRESSION`.

    Raises:
        StoreError: not a key of :data:`FILTERS`.
    """
    env = os.environ.get(COMPRESSION_ENV, "").strip()
    name = compression if compression is not None else env or COMPRESSION
    if name not in FILTERS:
        where = f" (from ${COMPRESSION_ENV})" if compression is None and env else ""
        raise StoreError(f"unknown run-file compression {name!r}{where}; use one of {', '.join(FILTERS)}")
    return name


def filters_for(compression: str | None, row_bytes: int | None = None) -> dict[str, Any]:
    """The ``create_dataset`` filter arguments of a new ``block_sum`` with rows of ``row_bytes``."""
    name = compression_name(compression)
    return {} if row_bytes is not None and row_bytes < COMPRESS_MIN_BYTES else FILTERS[name]


def filters_of(ds: h5py.Dataset) -> dict[str, Any]:
    """The lossless filters a dataset was made with (to make a copy of it the same way)."""
    out: dict[str, Any] = {}
    if ds.compression:
        out["compression"] = ds.compression
        if ds.compression_opts is not None:
            out["compression_opts"] = ds.compression_opts
    if ds.shuffle:
        out["shuffle"] = True
    return out


def row_chunks(width: int, itemsize: int, target: int = 1 << 20) -> int:
    """Rows per HDF5 chunk: about 1 MiB a chunk, at least one row, at most 256."""
    return int(max(1, min(256, target // max(1, width * itemsize))))


def block_sum_chunks(dim: int, filters: Mapping[str, Any]) -> tuple[int, int]:
    """One block per chunk when filtered (each written once, never moved), else about 1 MiB."""
    return (1, dim) if filters else (row_chunks(dim, 4), dim)


def create_pending(f: h5py.File, dim: int, G: int) -> None:
    """Two slots, one chunk each: rewriting one never touches the other. Nothing is written, so a
    slot takes space in the file only once a block in progress is saved to it (it reads as 0)."""
    f.create_dataset("pending_sum", (2, dim), dtype="f8", chunks=(1, max(1, dim)), fillvalue=0.0, **CHECKED)
    for name in ("pending_m2", "pending_sumsq"):
        f.create_dataset(name, (2, G), dtype="f8", chunks=(1, max(1, G)), fillvalue=0.0, **CHECKED)


def create_state(f: h5py.File, row: StateRow) -> None:
    """The ``state`` dataset (one chunk, rewritten in place after every commit)."""
    data = row.to_row()
    f.create_dataset("state", data=data, chunks=data.shape, **CHECKED)


def create_datasets(f: h5py.File, header: Mapping[str, Any], *, group_sizes: np.ndarray, sample_index: np.ndarray,
                    exact: np.ndarray | None, row: StateRow, compression: str | None = None) -> None:
    """Fill an empty file: the header as attributes, empty block datasets, the constant arrays, the
    slots of the block in progress, then the state row."""
    dim, G, K = int(header["dim"]), int(len(group_sizes)), int(len(sample_index))
    filters = filters_for(compression, 4 * dim)
    for key, value in header.items():
        f.attrs[key] = attr_value(value)
    f.create_dataset("block_sum", (0, dim), maxshape=(None, dim), dtype="f4", chunks=block_sum_chunks(dim, filters),
                     **filters, **CHECKED)
    for name in ("block_m2", "block_sumsq"):
        f.create_dataset(name, (0, G), maxshape=(None, G), dtype="f8", chunks=(row_chunks(G, 8), G), **CHECKED)
    for name in ("block_count", "block_nonfinite"):
        f.create_dataset(name, (0,), maxshape=(None,), dtype="i8", chunks=(1024,), **CHECKED)
    if K:
        f.create_dataset("samples", (0, K), maxshape=(None, K), dtype="f4",
                         chunks=(row_chunks(K, 4, 1 << 18), K), **CHECKED)
        f.create_dataset("sample_index", data=np.asarray(sample_index, dtype=np.int64), **CHECKED)
    f.create_dataset("group_sizes", data=np.asarray(group_sizes, dtype=np.int64), **CHECKED)
    if exact is not None:
        f.create_dataset("exact", data=np.asarray(exact, dtype=np.float64), **CHECKED)
    create_pending(f, dim, G)
    create_state(f, row)


FILE_OVERHEAD = 64 << 10  # bytes of an empty run file: the header, the attributes, HDF5's own structures


def _rows(rows: int, chunk: int) -> int:
    """Rows a dataset of ``rows`` takes in chunks of ``chunk`` rows (a chunk is allocated whole)."""
    return -(-int(rows) // max(1, chunk)) * max(1, chunk)


def run_file_bytes(*, dim: int, groups: int, block_size: int, n: int, keep: int) -> int:
    """The bytes a run file of ``n`` draws takes, before any filter (the README's size table, "no filter"
    column: a filter stores the block sums of a large model in ~0.8 of that): its blocks' sums (``4 dim``
    each), per-group and count rows, ``keep`` kept coordinates per draw, the exact gradient, the header.
    The slots of a block in progress (``16 dim``, only when one is saved) are left out, as in the table."""
    dim, groups, keep, n = int(dim), max(1, int(groups)), int(keep), int(n)
    blocks = -(-n // max(1, int(block_size)))
    sums = 4 * dim * (blocks if dim * 4 >= COMPRESS_MIN_BYTES else _rows(blocks, row_chunks(dim, 4)))
    per_block = 2 * 8 * groups * _rows(blocks, row_chunks(groups, 8)) + 2 * 8 * _rows(blocks, 1024)
    kept = 4 * keep * _rows(n, row_chunks(keep, 4, 1 << 18)) + 8 * keep if keep else 0
    return sums + per_block + kept + 8 * dim + 8 * groups + FILE_OVERHEAD


__all__ = ["BLOCK_SETS", "CHECKED", "COMPRESSION", "COMPRESSION_ENV", "COMPRESS_MIN_BYTES", "FILTERS",
           "FILE_OVERHEAD", "PENDING_SETS", "block_sum_chunks", "compression_name", "create_datasets", "create_pending",
           "create_state", "filters_for", "filters_of", "row_chunks", "run_file_bytes"]
