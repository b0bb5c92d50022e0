"""HDF5 run files: one file per run, streamed in whole blocks of draws, resumable, readable while written.

A *run* is ``n`` gradient samples of one estimator at one snapshot (``<runs-dir>/<snapshot-id>/
<canonical-spec>-s<seed>.h5``). The engine hands the store one :class:`BlockStats` per block of
draws; the file keeps only what Eq. 16 and the bootstrap need (sufficient statistics per block),
plus the raw draws of a few fixed coordinates::

    attrs            immutable identity and provenance, written once when the file is created
                     (RunHeader): schema_version, spec, seed, block_size, keep, snapshot_hash,
                     snapshot_id, snapshot_path, problem (JSON), params_glob, layout (JSON), dim,
                     cost, dtype, device, versions, git_commit, created, ...
    state            float64 [12]  the mutable progress, written LAST after each commit (StateRow)
    block_sum        float32 [nb, dim]  sum of each block's finite draws
    block_m2         float64 [nb, G]    per group: sum_i ||x_i - mean_block||^2 (centred in the block)
    block_sumsq      float64 [nb, G]    per group: sum_i ||x_i||^2
    block_count      int64   [nb]       finite draws in the block
    block_nonfinite  int64   [nb]       draws excluded because one of their entries was not finite
    samples          float32 [n_kept, K] raw finite draws at the coordinates ``sample_index``
    sample_index     int64   [K]
    group_sizes      int64   [G]        one group per selected parameter tensor, in layout order
    exact            float64 [dim]      exact gradient (enumerable problems only)
    pending_sum      float64 [2, dim]   the block in progress (two slots, see writer)
    pending_m2       float64 [2, G]
    pending_sumsq    float64 [2, G]

One module per job, each with the details in its docstring:

* :mod:`~biasvar.store.layout`: the attributes and the state row as types (:class:`RunHeader`,
  :class:`StateRow`, :class:`RunProgress`, :class:`BlockStats`);
* :mod:`~biasvar.store.paths`: where run files and their lock files are;
* :mod:`~biasvar.store.lock`: the writer lock (one writer per run; tells readers whether a
  writer is alive);
* :mod:`~biasvar.store.opening`: opening for reading in bounded time, whatever the file holds;
* :mod:`~biasvar.store.datasets`: chunks, checksums and filters of each dataset (sizes);
* :mod:`~biasvar.store.reader`: :func:`read_run`, :func:`scan_runs` and the rest of the readers;
* :mod:`~biasvar.store.writer`: :class:`RunWriter` (atomic creation, SWMR appends, resume);
* :mod:`~biasvar.store.maintenance`: recovery after a killed writer, upgrade, :func:`compact`;
* :mod:`~biasvar.store.memory`: :class:`MemoryWriter`, a run kept in memory (``sweep --store-only``).

Only this package imports h5py. Readers return numpy arrays in frozen dataclasses, never open
HDF5 objects. Every file it creates goes through :mod:`biasvar.atomic`.
"""

from __future__ import annotations

from biasvar.errors import StoreError, WriterBusy
from biasvar.store.datasets import (
    COMPRESS_MIN_BYTES,
    COMPRESSION,
    COMPRESSION_ENV,
    FILTERS,
    compression_name,
    run_file_bytes,
)
from biasvar.store.layout import (
    IDENTITY,
    SCHEMA_VERSION,
    STATE,
    BlockStats,
    PendingStats,
    RunHeader,
    RunProgress,
    StateRow,
)
from biasvar.store.lock import LOCK_TRIES, writer_alive
from biasvar.store.maintenance import compact
from biasvar.store.memory import MemoryWriter
from biasvar.store.opening import READ_ATTEMPTS, DamagedError
from biasvar.store.paths import file_size, list_run_files, lock_path, run_path
from biasvar.store.reader import (
    BadRun,
    RunData,
    is_complete,
    list_runs,
    read_header,
    read_run,
    scan_runs,
    storage_info,
)
from biasvar.store.writer import RunWriter, check_room, free_bytes

__all__ = [
    "COMPRESSION",
    "COMPRESSION_ENV",
    "COMPRESS_MIN_BYTES",
    "FILTERS",
    "IDENTITY",
    "LOCK_TRIES",
    "READ_ATTEMPTS",
    "SCHEMA_VERSION",
    "STATE",
    "BadRun",
    "BlockStats",
    "DamagedError",
    "MemoryWriter",
    "PendingStats",
    "RunData",
    "RunHeader",
    "RunProgress",
    "RunWriter",
    "StateRow",
    "StoreError",
    "WriterBusy",
    "check_room",
    "compact",
    "compression_name",
    "file_size",
    "free_bytes",
    "is_complete",
    "list_run_files",
    "list_runs",
    "lock_path",
    "read_header",
    "read_run",
    "run_file_bytes",
    "run_path",
    "scan_runs",
    "storage_info",
    "writer_alive",
]
