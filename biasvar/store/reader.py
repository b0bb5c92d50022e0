"""Reading run files: the committed, whole blocks as numpy arrays in a frozen :class:`RunData`,
never open HDF5 objects; listing the runs of a folder, and the files in it that are not runs.

A reader takes the ``state`` row first and slices every dataset to the blocks it counts, so a
block is visible whole or not at all, also while a writer appends (SWMR) and after ``kill -9``.
It checks that the datasets agree with the state row (shapes, counts) and raises
:class:`DamagedError` otherwise; the file is opened in bounded time (:mod:`biasvar.store.opening`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from biasvar.errors import StoreError
from biasvar.store.datasets import BLOCK_SETS, filters_of
from biasvar.store.layout import (
    PROGRESS_KEYS,
    SCHEMA_VERSION,
    BlockStats,
    RunHeader,
    RunProgress,
    StateRow,
    attrs_of,
    identity_mismatch,
)
from biasvar.store.lock import writer_alive
from biasvar.store.opening import DamagedError, damage_as_error, open_read, short
from biasvar.store.paths import list_run_files, run_path

_READ_ERRORS = (KeyError, OSError, RuntimeError, ValueError, TypeError, IndexError)


@dataclass(frozen=True)
class RunData:
    """What a run file holds: only committed, whole blocks.

    The overall mean is ``block_sum.sum(0) / n``; the sum of squared deviations of all draws in
    group g is ``sum_b block_m2[b, g] + sum_b block_count[b] * ||mean_b - mean||_g^2``.

    ``attrs`` is the file's attributes plus the progress (:data:`PROGRESS_KEYS`), as plain
    values; :attr:`header` and :attr:`progress` are the same, typed.
    """

    path: str
    attrs: dict[str, Any]
    groups: list[str]
    group_sizes: np.ndarray  # int64 [G]
    block_count: np.ndarray  # int64 [nb]
    block_nonfinite: np.ndarray  # int64 [nb]
    block_sum: np.ndarray | None  # float32 [nb, dim]
    block_m2: np.ndarray  # float64 [nb, G]
    block_sumsq: np.ndarray  # float64 [nb, G]
    samples: np.ndarray | None  # float32 [n_kept, K]
    sample_index: np.ndarray | None  # int64 [K]
    exact: np.ndarray | None  # float64 [dim]

    @property
    def header(self) -> RunHeader:
        """The immutable attributes, typed (made from :attr:`attrs`, so the two always agree)."""
        return RunHeader.from_attrs(self.attrs)

    @property
    def progress(self) -> RunProgress:
        """The committed progress, typed (made from :attr:`attrs`)."""
        return RunProgress.from_attrs(self.attrs)

    @property
    def n(self) -> int:
        """Finite draws in the committed blocks."""
        return int(self.block_count.sum())

    @property
    def dim(self) -> int:
        return self.header.dim

    @property
    def spec(self) -> str:
        return self.header.spec

    @property
    def seed(self) -> int:
        return self.header.seed

    @property
    def status(self) -> str:
        """``complete``, ``running`` (a live writer holds it) or ``interrupted``."""
        return str(self.attrs["status"])  # (not self.progress.status: runs made in memory may carry only this)

    def block(self, b: int) -> BlockStats:
        """The statistics of committed block ``b`` (what the writer appended; needs ``block_sum``)."""
        if self.block_sum is None:
            raise ValueError(f"{self.path} was read without its block sums (load_sums=False)")
        start = int(self.block_count[:b].sum())
        count = int(self.block_count[b])
        samples = (self.samples[start:start + count] if self.samples is not None
                   else np.zeros((count, 0), np.float32))
        return BlockStats(count, int(self.block_nonfinite[b]), self.block_sum[b], self.block_m2[b],
                          self.block_sumsq[b], samples, tuple(int(s) for s in self.group_sizes))


@dataclass(frozen=True)
class BadRun:
    """A file in a runs folder that is not listed as a run: ``damaged`` or ``misplaced``."""

    path: str
    problem: str  # "damaged" | "misplaced"
    reason: str


def state_of(f: h5py.File, path: Path) -> StateRow:
    """The committed state row of an open run file.

    Raises:
        DamagedError: a short row, negative or non-finite entries, non-integer counts.
    """
    try:
        return StateRow.from_row(f["state"][()])
    except ValueError as e:
        raise DamagedError(path, str(e)) from None


_VERIFY_BYTES = 64 << 20  # rows read at once when checking a file's checksums


def verify_checksums(f: h5py.File, path: Path) -> None:
    """Read every committed row of every dataset (HDF5 checks each chunk's fletcher32 sum as it reads),
    a bounded slice at a time: what a writer is about to extend, and what ``ls`` and ``compact`` vouch for.

    Raises:
        DamagedError: a checksum (or any other read) fails, or a dataset is shorter than the state says.
    """
    with damage_as_error(path):
        row = state_of(f, path)
        kept = int(np.asarray(f["block_count"][:row.blocks]).sum()) + row.pending_count
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset):
                raise DamagedError(path, f"{name} is not a dataset")
            if ds.shape == () or not ds.shape:
                ds[()]
                continue
            rows = ds.shape[0]
            if ds.maxshape and ds.maxshape[0] is None:
                rows = kept if name == "samples" else row.blocks
                if ds.shape[0] < rows:
                    raise DamagedError(path, f"{name} has {ds.shape[0]} rows, the state says {rows}")
            step = max(1, _VERIFY_BYTES // max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
            for start in range(0, rows, step):
                ds[start:min(rows, start + step)]


def verify_file(path: str | Path, *, own_lock: bool = False) -> None:
    """:func:`verify_checksums` of the run file ``path``, opened read-only.

    Raises:
        DamagedError: unreadable, or a checksum fails.
    """
    path = Path(path)
    with open_read(path, own_lock=own_lock) as f:
        verify_checksums(f, path)


def _read(f: h5py.File, path: Path, load_sums: bool, live: bool) -> RunData:
    if "state" not in f or "schema_version" not in f.attrs:
        raise DamagedError(path, "not a biasvar run file: no state or schema")
    attrs = attrs_of(f.attrs)
    if int(attrs["schema_version"]) > SCHEMA_VERSION:
        raise StoreError(f"{path} has run-file schema {attrs['schema_version']}; this biasvar reads "
                         f"<= {SCHEMA_VERSION}: upgrade biasvar")
    row = state_of(f, path)  # read first: everything below is sliced to the committed blocks
    header = RunHeader.from_attrs(attrs)
    nb = row.blocks
    for name in BLOCK_SETS:
        f[name].refresh()
        if f[name].shape[0] < nb:
            raise DamagedError(path, f"{name} has {f[name].shape[0]} rows, the state says {nb} blocks")
    count = np.asarray(f["block_count"][:nb], dtype=np.int64)
    nonfinite = np.asarray(f["block_nonfinite"][:nb], dtype=np.int64)
    if int(count.sum()) != row.n_finite or int((count + nonfinite).sum()) != row.n_done \
            or np.any(count < 0) or np.any(nonfinite < 0):
        raise DamagedError(path, "block counts disagree with the state row")
    kept = int(count.sum())
    group_sizes = np.asarray(f["group_sizes"][()], dtype=np.int64)
    dim, G = header.dim, len(group_sizes)
    if int(group_sizes.sum()) != dim or f["block_sum"].shape[1:] != (dim,) \
            or f["block_m2"].shape[1:] != (G,) or f["block_sumsq"].shape[1:] != (G,):
        raise DamagedError(path, "dataset shapes disagree with dim and the parameter groups")
    samples = index = None
    if "samples" in f:
        f["samples"].refresh()
        index = np.asarray(f["sample_index"][()], dtype=np.int64)
        if f["samples"].shape[0] < kept or f["samples"].shape[1:] != (len(index),):
            raise DamagedError(path, f"samples has {f['samples'].shape[0]} rows, the blocks need {kept}")
        samples = np.asarray(f["samples"][:kept], dtype=np.float32)
    return RunData(
        path=str(path),
        attrs={**attrs, **RunProgress.of(row, live).to_attrs()},
        groups=header.groups,
        group_sizes=group_sizes,
        block_count=count,
        block_nonfinite=nonfinite,
        block_sum=np.asarray(f["block_sum"][:nb], dtype=np.float32) if load_sums else None,
        block_m2=np.asarray(f["block_m2"][:nb], dtype=np.float64),
        block_sumsq=np.asarray(f["block_sumsq"][:nb], dtype=np.float64),
        samples=samples,
        sample_index=index,
        exact=np.asarray(f["exact"][()], dtype=np.float64) if "exact" in f else None,
    )


def read_run(path: str | Path, *, load_sums: bool = True) -> RunData:
    """Read the committed, whole blocks of a run file (also while it is being written).

    Bounded in time whatever the file holds (see :mod:`biasvar.store.opening`).

    Args:
        path: the run file.
        load_sums: read ``block_sum`` [nb, dim] (the only large array); False for a cheap listing.

    Raises:
        StoreError: no such file, or a newer schema; DamagedError: truncated, corrupt, not a run file.
    """
    path = Path(path)
    live = writer_alive(path)
    with open_read(path) as f:
        try:
            return _read(f, path, load_sums, live)
        except StoreError:
            raise
        except _READ_ERRORS as e:
            raise DamagedError(path, short(e)) from None


def read_header(path: str | Path) -> dict[str, Any]:
    """The immutable attributes of a run file, as written (no committed state): what a file made
    from this one (a merged run from its shards) copies."""
    path = Path(path)
    with open_read(path) as f:
        if "schema_version" not in f.attrs:
            raise StoreError(f"{path} is not a biasvar run file; remove it or rerun with --restart")
        return attrs_of(f.attrs)


def check_identity(path: Path, header: Mapping[str, Any], own_lock: bool = False) -> None:
    """Refuse to append to a file made by another command (see :data:`IDENTITY`).

    Raises:
        StoreError: an identity key differs; DamagedError: not a run file.
    """
    with open_read(path, own_lock=own_lock) as f, damage_as_error(path):
        if "schema_version" not in f.attrs:
            raise DamagedError(path, "not a biasvar run file: no schema")
        have = attrs_of(f.attrs)
    differs = identity_mismatch(have, header)
    if differs:
        key, got, want = differs
        raise StoreError(
            f"run file {path} was made with {key}={got!r}, but this command has {key}={want!r}; "
            f"it will not be appended to. Rerun with --restart to overwrite it, or use another --runs-dir"
        )


def is_complete(path: str | Path, header: Mapping[str, Any], n: int) -> bool:
    """Whether ``path`` is a complete run of this identity with at least ``n`` draws (read only).

    Raises:
        StoreError: the file's identity differs from ``header``, or it is damaged.
    """
    path = Path(path)
    if not path.is_file():
        return False
    check_identity(path, header)
    with open_read(path) as f:
        try:
            row = state_of(f, path)
        except (KeyError, OSError, RuntimeError, ValueError) as e:
            raise DamagedError(path, short(e)) from None
    return row.complete and row.n_done >= n


def storage_info(path: str | Path) -> dict[str, Any]:
    """How ``block_sum`` is stored: its filter (``compression``, ``compression_opts``, ``shuffle``;
    empty when none), its raw bytes and the bytes it takes in the file."""
    path = Path(path)
    with open_read(path) as f:
        try:
            ds = f["block_sum"]
            return {"filters": filters_of(ds), "raw_bytes": int(np.prod(ds.shape)) * ds.dtype.itemsize,
                    "stored_bytes": int(ds.id.get_storage_size())}
        except (KeyError, OSError, RuntimeError, ValueError) as e:
            raise DamagedError(path, short(e)) from None


# ---------------------------------------------------------------------------------------------
# folders of runs


def _misplaced(run: RunData, path: Path) -> str | None:
    """Why ``path`` is not where this run belongs, or None."""
    header = run.header
    snap = header.snapshot_id or (header.snapshot_hash or "")[:12]
    want = run_path(path.parent.parent, str(snap or path.parent.name), header.spec, header.seed)
    if want.parent.name != path.parent.name:
        return (f"made from snapshot {want.parent.name}, but lies in the folder of snapshot "
                f"{path.parent.name}; move it to {want}")
    if want.name != path.name:
        return f"holds the run {header.spec} seed {header.seed}, but is named {path.name}; rename it to {want.name}"
    return None


def scan_runs(runs_dir: str | Path, snapshot_id: str | None = None, *,
              verify: bool = False) -> tuple[list[RunData], list[BadRun]]:
    """Every run file under ``runs_dir`` (cheap: ``load_sums=False``): the readable runs where they
    belong, and the files that are damaged or misplaced (with the reason), both sorted by path.
    ``verify``: read every saved row too (:func:`verify_file`), so a file whose checksums fail is damaged."""
    runs, bad = [], []
    for path in list_run_files(runs_dir, snapshot_id):
        try:
            run = read_run(path, load_sums=False)
            if verify:
                verify_file(path)
        except DamagedError as e:
            bad.append(BadRun(str(path), "damaged", e.reason))
            continue
        except StoreError as e:
            bad.append(BadRun(str(path), "damaged", str(e)))
            continue
        why = _misplaced(run, path)
        if why:
            bad.append(BadRun(str(path), "misplaced", why))
        else:
            runs.append(run)
    return runs, bad


def list_runs(runs_dir: str | Path, snapshot_id: str | None = None) -> list[RunData]:
    """Every readable run under ``runs_dir`` where it belongs (see :func:`scan_runs` for the others)."""
    return scan_runs(runs_dir, snapshot_id)[0]


__all__ = ["PROGRESS_KEYS", "BadRun", "RunData", "check_identity", "is_complete", "list_runs", "read_header",
           "read_run", "scan_runs", "state_of", "storage_info", "verify_checksums",
           "verify_file"]
