"""Writing a run file: :class:`RunWriter` creates it (or reopens it to resume) and appends whole
blocks, each visible to readers whole or not at all.

* A new file is written in full under a temporary name and renamed into place
  (:func:`biasvar.atomic.atomic_path`), so a run file always has a complete header, and has an
  ordinary file mode.
* Blocks are appended in SWMR mode (HDF5 single-writer / multiple-reader): every dataset is
  resized and written, the file is flushed, and only then the ``state`` row (committed block
  count, draws done, ...) is written and flushed. Readers take only the committed blocks, so a
  block is visible whole or not at all, including after ``kill -9``.
* The block in progress can be saved too (:meth:`RunWriter.save_pending`: the engine does it at
  least once a minute and when interrupted): its float64 accumulators go to the ``pending_*``
  slot the state row does not point at, its kept draws are appended to ``samples``, the file is
  flushed, and the state row then points at the new slot. Resuming continues that block from the
  saved accumulators, so a run loses at most the draws since the last save.
* A file left flagged "open for writing" by a killed writer, or of the first layout, is rewritten
  before it is appended to (:func:`biasvar.store.maintenance.copy_committed`).
* Two writers of the same run are kept apart by the writer lock (:mod:`biasvar.store.lock`).
* A file whose identity (:data:`IDENTITY`) differs from the command is refused with a
  :class:`StoreError`, never appended to; ``restart=True`` deletes it first. A file whose saved
  rows fail their checksums is refused (:class:`DamagedError`) before the first write. A file the writer
  created and never saved a draw to is removed on close, so a run that fails before its first
  draw leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from biasvar.atomic import atomic_path, disk_full, free_bytes
from biasvar.errors import StoreError
from biasvar.store import lock, maintenance
from biasvar.store.datasets import BLOCK_SETS, create_datasets, filters_for
from biasvar.store.layout import BlockStats, PendingStats, RunHeader, StateRow, attrs_of
from biasvar.store.opening import DamagedError, damage_as_error, short
from biasvar.store.reader import check_identity, state_of, verify_file


def _create(path: Path, header: Mapping[str, Any], *, group_sizes: np.ndarray, sample_index: np.ndarray,
            exact: np.ndarray | None, n_target: int, compression: str | None = None) -> None:
    """Write a new, empty run file under a temporary name and rename it into place."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver="latest") as f:
        create_datasets(f, header, group_sizes=group_sizes, sample_index=sample_index, exact=exact,
                        row=StateRow(n_target=n_target, updated=time.time()), compression=compression)


def _open_append(path: Path) -> h5py.File:
    """Open for appending; a file left flagged open by a killed writer, or of the first layout,
    is rewritten first (atomically: temporary file, then rename)."""
    if maintenance.needs_upgrade(path):
        maintenance.copy_committed(path)
    for attempt in range(lock.LOCK_TRIES):
        try:
            return h5py.File(path, "a", libver="latest")
        except OSError as e:
            if "unable to lock file" in str(e) and attempt < lock.LOCK_TRIES - 1:
                time.sleep(0.05)  # a reader that locks HDF5-style has it open this instant
                continue
            if "already open" not in str(e):
                raise DamagedError(path, short(e)) from None
            break
    maintenance.copy_committed(path)  # we hold the lock, so the writer that flagged it is gone
    try:
        return h5py.File(path, "a", libver="latest")
    except OSError as e:
        raise DamagedError(path, f"cannot reopen after recovery: {short(e)}") from None


SPACE_MARGIN = 1 << 20  # bytes kept free besides a block's own: HDF5's metadata flushes and the close


def check_room(path: Path, nbytes: int, what: str) -> None:
    """Refuse, before anything is written, a file the disk has no room for: ``nbytes`` more (an estimate)
    plus :data:`SPACE_MARGIN` beside ``path``; ``what`` says what the file holds.

    Raises:
        StoreError: one line naming the folder, the space needed and the space free.
    """
    free = free_bytes(path.parent)
    need = int(nbytes) + SPACE_MARGIN
    if free is not None and nbytes > 0 and free < need:
        raise StoreError(f"not enough space in {path.parent} for {what}: it needs ~{_mib(need)} (without "
                         f"compression), {_mib(free)} free; free some space, or use another --runs-dir")


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:,.1f} MiB"


def _nbytes(*arrays: Any) -> int:
    return sum(8 * int(np.size(a)) for a in arrays if a is not None)


class RunWriter:
    """Appends whole blocks to one run file; use :meth:`open` and close it (context manager)."""

    _broken = False  # a write failed (a full disk): close without flushing more

    def _check_space(self, nbytes: int) -> None:
        """Refuse a write the disk has no room for, before it starts: HDF5 crashes (a segmentation fault
        inside its flush) when the disk fills under it, so the room is checked with a margin
        (:data:`SPACE_MARGIN`, for HDF5's metadata and the close) before every block and save."""
        free = free_bytes(self.path.parent)
        if free is not None and free < 2 * nbytes + SPACE_MARGIN:
            raise StoreError(f"no space left on the device of {self.path.parent}: {free / 2**20:.1f} MiB free, a "
                             f"block needs ~{(2 * nbytes + SPACE_MARGIN) / 2**20:.1f} MiB with the margin; "
                             f"{self.n_done} draws are saved in {self.path.name}: free some space and rerun the same "
                             "command to resume")

    @contextlib.contextmanager
    def _guard(self):
        """A full disk is one :class:`StoreError` naming the folder; the file keeps its committed blocks."""
        try:
            yield
        except (OSError, RuntimeError) as e:
            if not disk_full(e):
                raise
            self._broken = True
            raise StoreError(f"no space left on the device of {self.path.parent} (run file {self.path.name}); "
                             f"{self.n_done} draws are saved in it: free some space and rerun the same command "
                             "to resume") from None

    def __init__(self, path: Path, f: h5py.File, lock_fd: int | None, created: bool) -> None:
        self.path = path
        self._f = f
        self._lock_fd = lock_fd
        self._created = created
        try:
            header = RunHeader.from_attrs(attrs_of(f.attrs))
        except ValueError as e:
            raise DamagedError(path, str(e)) from None
        if header.block_size is None:
            raise DamagedError(path, "run header without 'block_size'")
        self.block_size = header.block_size
        self.stats_step = header.stats_step  # files made before it: None
        has = "sample_index" in f
        self.sample_index = np.asarray(f["sample_index"][()]) if has else np.zeros(0, np.int64)
        self._row = state_of(f, path)
        self._kept = int(np.asarray(f["block_count"][:self.n_blocks]).sum())  # kept rows of whole blocks

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, header: Mapping[str, Any] | RunHeader, *, n_target: int,
             group_sizes: np.ndarray, sample_index: np.ndarray, exact: np.ndarray | None = None,
             restart: bool = False, compression: str | None = None) -> RunWriter:
        """Create the run file, or reopen a matching one to resume after its last saved draw.

        Args:
            path: the run file (its folder is created).
            header: immutable attributes; must include every key of :data:`IDENTITY` and
                ``block_size``. On resume the file's own ``block_size`` and ``sample_index`` win.
            n_target: draws wanted; on resume this replaces the file's target.
            group_sizes: int64 [G], sizes of the parameter groups (sum = dim).
            sample_index: int64 [K], coordinates whose raw draws are kept.
            exact: float64 [dim] exact gradient, or None.
            restart: delete an existing file first.
            compression: lossless filter of the block sums of a new file, a key of :data:`FILTERS`
                (None: :data:`COMPRESSION`). A resumed file keeps its own.

        Raises:
            StoreError: the file's identity differs, or it is damaged (:class:`DamagedError`).
            WriterBusy: another process writes this run.
        """
        path = Path(path)
        if isinstance(header, RunHeader):
            header = header.to_attrs()
        filters_for(compression)  # an unknown name is refused before anything is touched
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"cannot make the folder {path.parent}: a file is in the way "
                             "(--runs-dir must be a folder)") from None
        lock_fd = lock.acquire(path)
        created = False
        try:
            if restart and path.exists():
                path.unlink()
            if path.exists():
                check_identity(path, header, own_lock=True)
                verify_file(path, own_lock=True)  # before the first write: a damaged file is never extended
            else:
                _create(path, header, group_sizes=group_sizes, sample_index=sample_index, exact=exact,
                        n_target=n_target, compression=compression)
                created = True
            with damage_as_error(path):
                f = _open_append(path)
                try:
                    writer = cls(path, f, lock_fd, created)
                except BaseException:
                    f.close()
                    raise
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            lock.release(path, lock_fd)
            raise
        try:
            writer._prepare(n_target)
        except BaseException:
            writer.close()
            raise
        return writer

    def _prepare(self, n_target: int) -> None:
        """Switch to SWMR, drop any rows a killed writer left past the last commit, set the target."""
        f, nb = self._f, self.n_blocks
        f.swmr_mode = True
        kept = int(np.asarray(f["block_count"][:nb]).sum()) + self.pending_count
        for name in BLOCK_SETS:
            if f[name].shape[0] != nb:
                f[name].resize(nb, axis=0)
        if "samples" in f and f["samples"].shape[0] != kept:
            f["samples"].resize(kept, axis=0)
        # never below what is already drawn
        self._write_state(replace(self._row, n_target=max(n_target, self.n_done), complete=False))

    # -- progress -----------------------------------------------------------------------------
    @property
    def n_done(self) -> int:
        """Draws saved: those of the committed blocks and of the saved block in progress."""
        return self._row.saved

    @property
    def n_blocks(self) -> int:
        return self._row.blocks

    @property
    def n_nonfinite(self) -> int:
        return self._row.n_nonfinite + self._row.pending_nonfinite

    @property
    def pending_draws(self) -> int:
        """Draws of the saved block in progress."""
        return self._row.pending_draws

    @property
    def pending_count(self) -> int:
        return self._row.pending_count

    @property
    def wall_s(self) -> float:
        return self._row.wall_s

    def pending(self) -> PendingStats | None:
        """The saved block in progress (to continue it exactly), or None."""
        row = self._row
        if not row.pending_draws:
            return None
        f, slot, count, kept = self._f, row.pending_slot, row.pending_count, self._kept
        K = len(self.sample_index)
        samples = (np.asarray(f["samples"][kept:kept + count], dtype=np.float32) if "samples" in f
                   else np.zeros((count, K), np.float32))
        return PendingStats(count, row.pending_nonfinite, np.asarray(f["pending_sum"][slot], dtype=np.float64),
                            np.asarray(f["pending_m2"][slot], dtype=np.float64),
                            np.asarray(f["pending_sumsq"][slot], dtype=np.float64), samples)

    # -- writing ------------------------------------------------------------------------------
    def _write_state(self, row: StateRow) -> None:
        """The commit: the new state row, stamped and flushed."""
        with self._guard():
            ds = self._f["state"]
            ds[...] = replace(row, updated=time.time()).to_row()
            ds.flush()
        self._row = replace(row, updated=time.time())

    def _write_samples(self, samples: np.ndarray) -> None:
        """Append the kept draws of the block in progress that the file does not hold yet."""
        f = self._f
        if "samples" not in f:
            return
        new = np.asarray(samples, dtype=np.float32)[self.pending_count:]
        start = self._kept + self.pending_count  # rows past it are left over from a failed write
        ds = f["samples"]
        if ds.shape[0] != start + new.shape[0]:
            ds.resize(start + new.shape[0], axis=0)
        if new.shape[0]:
            ds[start:] = new

    def append(self, block: BlockStats, *, wall_s: float) -> None:
        """Commit one whole block: data first and flushed, then the state row (the commit).

        Args:
            block: the block's statistics (``samples``: all its kept draws, saved ones included).
            wall_s: sampling seconds spent since the last commit (added to the run's wall time).
        """
        f, i = self._f, self.n_blocks
        self._check_space(_nbytes(block.sum, block.m2, block.sumsq, block.samples))
        rows = {
            "block_sum": np.asarray(block.sum, dtype=np.float32),
            "block_m2": np.asarray(block.m2, dtype=np.float64),
            "block_sumsq": np.asarray(block.sumsq, dtype=np.float64),
            "block_count": np.int64(block.count),
            "block_nonfinite": np.int64(block.nonfinite),
        }
        with self._guard():
            for name, value in rows.items():
                ds = f[name]
                ds.resize(i + 1, axis=0)
                ds[i] = value
            self._write_samples(block.samples)
            f.flush()  # the block's rows are on disk before the commit below
        self._kept += block.count
        self._write_state(self._row.committed(block, wall_s))

    def save_pending(self, part: PendingStats, *, wall_s: float) -> None:
        """Save the block in progress (at least ``pending`` draws more than saved): accumulators
        into the free slot and new kept draws, flushed, then the state row points at them.

        Args:
            part: the block so far (all of it, not only what is new since the last save).
            wall_s: sampling seconds spent since the last commit.
        """
        f, row = self._f, self._row
        if part.draws < row.pending_draws:
            raise ValueError("a saved block in progress cannot shrink")
        slot = 1 - row.pending_slot
        self._check_space(_nbytes(part.sum, part.m2, part.sumsq, part.samples))
        with self._guard():
            f["pending_sum"][slot] = np.asarray(part.sum, dtype=np.float64)
            f["pending_m2"][slot] = np.asarray(part.m2, dtype=np.float64)
            f["pending_sumsq"][slot] = np.asarray(part.sumsq, dtype=np.float64)
            self._write_samples(part.samples)
            f.flush()
        self._write_state(replace(row, pending_slot=slot, pending_draws=part.draws, pending_count=part.count,
                                  pending_nonfinite=part.nonfinite, wall_s=row.wall_s + wall_s))

    def finish(self) -> None:
        """Mark the run complete."""
        self._write_state(replace(self._row, complete=True))

    def close(self) -> None:
        """Close the file and drop the lock; a file this writer created and never saved a draw to
        is removed (a run that fails before its first draw leaves nothing)."""
        if self._f is not None:
            empty = self._created and self.n_done == 0 and not self._row.complete
            try:
                if self._broken:  # a full disk: HDF5 cannot flush its caches; the committed state is on disk
                    _close_quietly(self._f)
                else:
                    self._f.close()
            finally:
                self._f = None  # type: ignore[assignment]
                if empty:
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                lock.release(self.path, self._lock_fd)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(f: h5py.File) -> None:
    """Close a file whose last writes failed: HDF5's errors on the way (it retries the flush) are not
    the user's news, the full disk was already said."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda _u: None  # h5py's deallocators report the failed flush this way
    try:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            f.close()
    finally:
        sys.unraisablehook = previous


__all__ = ["RunWriter"]
