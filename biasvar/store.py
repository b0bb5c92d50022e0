"""HDF5 run files: one file per run, streamed in whole blocks of draws, resumable, readable while written.

A *run* is ``n`` gradient samples of one estimator at one snapshot (``<runs-dir>/<snapshot-id>/
<canonical-spec>-s<seed>.h5``). The engine hands the store one :class:`BlockStats` per block of
draws; the file keeps only what Eq. 16 and the bootstrap need (sufficient statistics per block),
plus the raw draws of a few fixed coordinates::

    attrs            immutable identity and provenance, written once when the file is created:
                     schema_version, spec, seed, block_size, keep, snapshot_hash, snapshot_path,
                     problem (JSON), params_glob, layout (JSON), dim, cost, dtype, device, versions,
                     git_commit, created, ...
    state            float64 [8]   the mutable progress, written LAST after each block (see STATE)
    block_sum        float32 [nb, dim]  sum of each block's finite draws
    block_m2         float64 [nb, G]    per group: sum_i ||x_i - mean_block||^2 (centred in the block)
    block_sumsq      float64 [nb, G]    per group: sum_i ||x_i||^2
    block_count      int64   [nb]       finite draws in the block
    block_nonfinite  int64   [nb]       draws excluded because one of their entries was not finite
    samples          float32 [n_kept, K] raw finite draws at the coordinates ``sample_index``
    sample_index     int64   [K]
    group_sizes      int64   [G]        one group per selected parameter tensor, in layout order
    exact            float64 [dim]      exact gradient (enumerable problems only)

Atomicity, concurrency and crashes
----------------------------------
* A new file is written in full under a temporary name and renamed into place, so a run file
  always has a complete header.
* Blocks are appended in SWMR mode (HDF5 single-writer / multiple-reader): every dataset is
  resized and written, the file is flushed, and only then the ``state`` row (committed block
  count, draws done, ...) is written and flushed. Readers (:func:`read_run`, ``biasvar ls``)
  open the file with ``swmr=True`` while it is being written and take only the committed
  blocks, so a block is visible whole or not at all. SWMR keeps the file consistent on disk
  at every moment, including after ``kill -9``.
* A killed SWMR writer leaves the file flagged "open for writing"; HDF5 then refuses to reopen it
  for writing (the ``h5clear`` case). Resuming detects that, copies the committed blocks into a
  fresh file (temporary name, then rename) and continues from there.
* Two writers of the same run are kept apart by an ``flock`` on ``<file>.lock``: the second one
  gets a :class:`StoreError`. The OS drops the lock when a writer dies.
* A file whose identity (schema, spec, seed, snapshot hash, parameter glob, dim, dtype) differs
  from the command is refused with a :class:`StoreError`, never appended to; ``restart=True``
  deletes it first.

Only this module imports h5py. Readers return numpy arrays in frozen dataclasses, never open
HDF5 objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from biasvar.errors import StoreError

try:  # POSIX advisory locks; elsewhere concurrent writers are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1

# Keys whose values must agree between a file and the command that wants to append to it.
IDENTITY = ("schema_version", "spec", "seed", "snapshot_hash", "params_glob", "dim", "dtype")

# The ``state`` dataset: one float64 row, rewritten after every committed block (exact for
# integers below 2^53).
STATE = ("blocks", "n_done", "n_finite", "n_nonfinite", "wall_s", "n_target", "complete", "updated")
_S = {k: i for i, k in enumerate(STATE)}

_BLOCK_SETS = ("block_sum", "block_m2", "block_sumsq", "block_count", "block_nonfinite")
_JSON_ATTRS = ("problem", "layout", "dataset")
_RETRIES = 5


# ---------------------------------------------------------------------------------------------
# paths


def _safe(text: str) -> str:
    """File-system-safe form of a canonical spec (they only contain [a-z0-9.,=()-] already)."""
    return re.sub(r"[^A-Za-z0-9.,=()+_-]", "_", text)


def run_path(runs_dir: str | Path, snapshot_id: str, spec: str, seed: int) -> Path:
    """``<runs_dir>/<snapshot_id>/<canonical-spec>-s<seed>.h5``."""
    return Path(runs_dir) / snapshot_id / f"{_safe(str(spec))}-s{int(seed)}.h5"


def list_run_files(runs_dir: str | Path, snapshot_id: str | None = None) -> list[Path]:
    """Run files under ``runs_dir`` (of one snapshot, or of all), sorted by path."""
    root = Path(runs_dir)
    pattern = f"{snapshot_id}/*.h5" if snapshot_id else "*/*.h5"
    return sorted(p for p in root.glob(pattern) if p.is_file())


# ---------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class RunData:
    """What a run file holds: only committed, whole blocks.

    The overall mean is ``block_sum.sum(0) / n``; the sum of squared deviations of all draws in
    group g is ``sum_b block_m2[b, g] + sum_b block_count[b] * ||mean_b - mean||_g^2``.
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
    def n(self) -> int:
        """Finite draws in the committed blocks."""
        return int(self.block_count.sum())

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    @property
    def spec(self) -> str:
        return str(self.attrs["spec"])

    @property
    def seed(self) -> int:
        return int(self.attrs["seed"])

    @property
    def status(self) -> str:
        return str(self.attrs["status"])


def _py(value: Any) -> Any:
    """h5py attribute value -> plain JSON-able Python."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attrs_of(f: h5py.File) -> dict[str, Any]:
    attrs = {k: _py(v) for k, v in f.attrs.items()}
    for key in _JSON_ATTRS:
        if isinstance(attrs.get(key), str):
            attrs[key] = json.loads(attrs[key])
    return attrs


def _state_of(f: h5py.File) -> dict[str, float]:
    row = f["state"][()]
    return {k: float(row[i]) for i, k in enumerate(STATE)}


def _live_attrs(attrs: dict[str, Any], state: Mapping[str, float]) -> dict[str, Any]:
    """Immutable attributes plus the committed state (status, counts, timings)."""
    out = dict(attrs)
    wall = state["wall_s"]
    out.update(
        n_target=int(state["n_target"]),
        n_done=int(state["n_done"]),
        n_finite=int(state["n_finite"]),
        n_nonfinite=int(state["n_nonfinite"]),
        blocks=int(state["blocks"]),
        wall_s=wall,
        draws_per_s=(state["n_done"] / wall) if wall > 0 else 0.0,
        status="complete" if state["complete"] else "running",
        updated=state["updated"],
    )
    return out


@contextlib.contextmanager
def _open_read(path: Path) -> Iterator[h5py.File]:
    """Open for reading while a writer may be active (SWMR); retries briefly on a busy file."""
    if not path.is_file():
        raise StoreError(f"run file not found: {path} (list runs with `biasvar ls`)")
    last: Exception | None = None
    f = None
    for attempt in range(_RETRIES):
        try:
            f = h5py.File(path, "r", libver="latest", swmr=True)
            break
        except OSError as e:  # a writer switching modes (retry), or a damaged file (give up)
            last = e
            if not any(word in str(e) for word in ("lock", "already open", "temporarily")):
                break
            time.sleep(0.05 * (attempt + 1))
    if f is None:
        raise StoreError(f"cannot read run file {path}: {last}; "
                         "if it is damaged, rerun with --restart") from None
    try:
        yield f
    finally:
        f.close()


def _read(f: h5py.File, path: Path, load_sums: bool) -> RunData:
    if "state" not in f or "schema_version" not in f.attrs:
        raise StoreError(f"{path} is not a biasvar run file (no state/schema); remove it or use --restart")
    attrs = _attrs_of(f)
    if int(attrs["schema_version"]) > SCHEMA_VERSION:
        raise StoreError(f"{path} has run-file schema {attrs['schema_version']}; this biasvar reads "
                         f"<= {SCHEMA_VERSION}: upgrade biasvar")
    state = _state_of(f)  # read first: everything below is sliced to the committed blocks
    nb = int(state["blocks"])
    for name in _BLOCK_SETS:
        f[name].refresh()
    count = np.asarray(f["block_count"][:nb], dtype=np.int64)
    kept = int(count.sum())
    samples = index = None
    if "samples" in f:
        f["samples"].refresh()
        samples = np.asarray(f["samples"][:kept], dtype=np.float32)
        index = np.asarray(f["sample_index"][()], dtype=np.int64)
    layout = attrs.get("layout", [])
    return RunData(
        path=str(path),
        attrs=_live_attrs(attrs, state),
        groups=[str(entry[0]) for entry in layout],
        group_sizes=np.asarray(f["group_sizes"][()], dtype=np.int64),
        block_count=count,
        block_nonfinite=np.asarray(f["block_nonfinite"][:nb], dtype=np.int64),
        block_sum=np.asarray(f["block_sum"][:nb], dtype=np.float32) if load_sums else None,
        block_m2=np.asarray(f["block_m2"][:nb], dtype=np.float64),
        block_sumsq=np.asarray(f["block_sumsq"][:nb], dtype=np.float64),
        samples=samples,
        sample_index=index,
        exact=np.asarray(f["exact"][()], dtype=np.float64) if "exact" in f else None,
    )


def read_run(path: str | Path, *, load_sums: bool = True) -> RunData:
    """Read the committed, whole blocks of a run file (also while it is being written).

    Args:
        path: the run file.
        load_sums: read ``block_sum`` [nb, dim] (the only large array); False for a cheap listing.
    """
    path = Path(path)
    with _open_read(path) as f:
        try:
            return _read(f, path, load_sums)
        except (KeyError, OSError) as e:
            raise StoreError(f"cannot read run file {path}: {e}; "
                             "if it is damaged, rerun with --restart") from None


def list_runs(runs_dir: str | Path, snapshot_id: str | None = None) -> list[RunData]:
    """Every readable run under ``runs_dir`` (cheap: ``load_sums=False``); unreadable files are skipped."""
    out = []
    for path in list_run_files(runs_dir, snapshot_id):
        with contextlib.suppress(StoreError):
            out.append(read_run(path, load_sums=False))
    return out


# ---------------------------------------------------------------------------------------------
# writing


@dataclass(frozen=True)
class BlockStats:
    """Sufficient statistics of one block of draws (what :meth:`RunWriter.append` stores).

    ``draws = count + nonfinite`` draws were consumed; only the ``count`` finite ones enter
    ``sum``, ``m2``, ``sumsq`` and ``samples``.
    """

    count: int
    nonfinite: int
    sum: np.ndarray  # float32 [dim]
    m2: np.ndarray  # float64 [G]
    sumsq: np.ndarray  # float64 [G]
    samples: np.ndarray  # float32 [count, K]

    @property
    def draws(self) -> int:
        return self.count + self.nonfinite


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return "none"
    if isinstance(value, str):
        return str.__str__(value)  # plain str (torch.__version__ is a str subclass h5py cannot store)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _row_chunks(width: int, itemsize: int, target: int = 1 << 20) -> int:
    """Rows per HDF5 chunk: about 1 MiB a chunk, at least one row, at most 256."""
    return int(max(1, min(256, target // max(1, width * itemsize))))


def _create(path: Path, header: Mapping[str, Any], *, group_sizes: np.ndarray, sample_index: np.ndarray,
            exact: np.ndarray | None, n_target: int) -> None:
    """Write a new, empty run file under a temporary name and rename it into place."""
    dim, G, K = int(header["dim"]), int(len(group_sizes)), int(len(sample_index))
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", libver="latest") as f:
            for key, value in header.items():
                f.attrs[key] = _attr_value(value)
            f.create_dataset("block_sum", (0, dim), maxshape=(None, dim), dtype="f4",
                             chunks=(_row_chunks(dim, 4), dim))
            for name in ("block_m2", "block_sumsq"):
                f.create_dataset(name, (0, G), maxshape=(None, G), dtype="f8", chunks=(_row_chunks(G, 8), G))
            for name in ("block_count", "block_nonfinite"):
                f.create_dataset(name, (0,), maxshape=(None,), dtype="i8", chunks=(1024,))
            if K:
                f.create_dataset("samples", (0, K), maxshape=(None, K), dtype="f4",
                                 chunks=(_row_chunks(K, 4, 1 << 18), K))
                f.create_dataset("sample_index", data=np.asarray(sample_index, dtype=np.int64))
            f.create_dataset("group_sizes", data=np.asarray(group_sizes, dtype=np.int64))
            if exact is not None:
                f.create_dataset("exact", data=np.asarray(exact, dtype=np.float64))
            state = np.zeros(len(STATE))
            state[_S["n_target"]] = n_target
            state[_S["updated"]] = time.time()
            f.create_dataset("state", data=state)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_committed(path: Path) -> None:
    """Rewrite a file whose writer was killed: keep the header and the committed blocks only.

    A killed SWMR writer leaves the superblock flagged as open; HDF5 refuses to open such a
    file for writing but still reads it in SWMR mode. The copy is written under a temporary
    name and renamed into place.
    """
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with _open_read(path) as src, h5py.File(tmp, "w", libver="latest") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            nb = int(src["state"][_S["blocks"]])
            kept = int(np.asarray(src["block_count"][:nb]).sum())
            for name, ds in src.items():
                ds.refresh()
                if ds.maxshape and ds.maxshape[0] is None:
                    rows = kept if name == "samples" else nb
                    dst.create_dataset(name, data=ds[:rows], maxshape=ds.maxshape, chunks=ds.chunks)
                else:
                    dst.create_dataset(name, data=ds[()])
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_identity(path: Path, header: Mapping[str, Any]) -> None:
    with _open_read(path) as f:
        if "schema_version" not in f.attrs:
            raise StoreError(f"{path} is not a biasvar run file; remove it or rerun with --restart")
        have = _attrs_of(f)
    for key in IDENTITY:
        want = header.get(key)
        got = have.get(key)
        if want is None and got == "none":
            continue
        if got != want:
            raise StoreError(
                f"run file {path} was made with {key}={got!r}, but this command has {key}={want!r}; "
                f"it will not be appended to. Rerun with --restart to overwrite it, or use another --runs-dir"
            )


def is_complete(path: str | Path, header: Mapping[str, Any], n: int) -> bool:
    """Whether ``path`` is a complete run of this identity with at least ``n`` draws (read only).

    Raises:
        StoreError: the file's identity differs from ``header``.
    """
    path = Path(path)
    if not path.is_file():
        return False
    _check_identity(path, header)
    with _open_read(path) as f:
        state = _state_of(f)
    return bool(state["complete"]) and state["n_done"] >= n


class RunWriter:
    """Appends whole blocks to one run file; use :meth:`open` and close it (context manager)."""

    def __init__(self, path: Path, f: h5py.File, lock_fd: int | None) -> None:
        self.path = path
        self._f = f
        self._lock_fd = lock_fd
        self.block_size = int(f.attrs["block_size"])
        has = "sample_index" in f
        self.sample_index = np.asarray(f["sample_index"][()]) if has else np.zeros(0, np.int64)
        self._state = np.asarray(f["state"][()], dtype=np.float64).copy()

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, header: Mapping[str, Any], *, n_target: int, group_sizes: np.ndarray,
             sample_index: np.ndarray, exact: np.ndarray | None = None, restart: bool = False) -> RunWriter:
        """Create the run file, or reopen a matching one to resume after its last whole block.

        Args:
            path: the run file (its folder is created).
            header: immutable attributes; must include every key of :data:`IDENTITY` and
                ``block_size``. On resume the file's own ``block_size`` and ``sample_index`` win.
            n_target: draws wanted; on resume this replaces the file's target.
            group_sizes: int64 [G], sizes of the parameter groups (sum = dim).
            sample_index: int64 [K], coordinates whose raw draws are kept.
            exact: float64 [dim] exact gradient, or None.
            restart: delete an existing file first.

        Raises:
            StoreError: another process writes this run, or the file's identity differs.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock(path)
        try:
            if restart and path.exists():
                path.unlink()
            if path.exists():
                _check_identity(path, header)
            else:
                _create(path, header, group_sizes=group_sizes, sample_index=sample_index, exact=exact,
                        n_target=n_target)
            f = _open_append(path)
        except BaseException:
            _unlock(path, lock_fd)
            raise
        writer = cls(path, f, lock_fd)
        writer._prepare(n_target)
        return writer

    def _prepare(self, n_target: int) -> None:
        """Switch to SWMR, drop any partial block a killed writer left, set the target."""
        f = self._f
        f.swmr_mode = True
        nb = int(self._state[_S["blocks"]])
        kept = int(np.asarray(f["block_count"][:nb]).sum())
        for name in _BLOCK_SETS:
            if f[name].shape[0] != nb:
                f[name].resize(nb, axis=0)
        if "samples" in f and f["samples"].shape[0] != kept:
            f["samples"].resize(kept, axis=0)
        self._state[_S["n_target"]] = max(n_target, self.n_done)  # never below what is already drawn
        self._state[_S["complete"]] = 0
        self._write_state()

    # -- progress -----------------------------------------------------------------------------
    @property
    def n_done(self) -> int:
        """Draws consumed by the committed blocks (finite and non-finite)."""
        return int(self._state[_S["n_done"]])

    @property
    def n_blocks(self) -> int:
        return int(self._state[_S["blocks"]])

    @property
    def n_nonfinite(self) -> int:
        return int(self._state[_S["n_nonfinite"]])

    @property
    def wall_s(self) -> float:
        return float(self._state[_S["wall_s"]])

    def _write_state(self) -> None:
        self._state[_S["updated"]] = time.time()
        ds = self._f["state"]
        ds[...] = self._state
        ds.flush()

    def append(self, block: BlockStats, *, wall_s: float) -> None:
        """Commit one whole block: data first and flushed, then the state row (the commit).

        Args:
            block: the block's statistics.
            wall_s: sampling seconds spent on this block (added to the run's wall time).
        """
        f, i = self._f, self.n_blocks
        rows = {
            "block_sum": np.asarray(block.sum, dtype=np.float32),
            "block_m2": np.asarray(block.m2, dtype=np.float64),
            "block_sumsq": np.asarray(block.sumsq, dtype=np.float64),
            "block_count": np.int64(block.count),
            "block_nonfinite": np.int64(block.nonfinite),
        }
        for name, row in rows.items():
            ds = f[name]
            ds.resize(i + 1, axis=0)
            ds[i] = row
        if "samples" in f and block.count:
            ds = f["samples"]
            start = int(ds.shape[0])
            ds.resize(start + block.count, axis=0)
            ds[start:] = np.asarray(block.samples, dtype=np.float32)
        f.flush()  # the block's rows are on disk before the commit below
        s = self._state
        s[_S["blocks"]] += 1
        s[_S["n_done"]] += block.draws
        s[_S["n_finite"]] += block.count
        s[_S["n_nonfinite"]] += block.nonfinite
        s[_S["wall_s"]] += wall_s
        self._write_state()

    def finish(self) -> None:
        """Mark the run complete."""
        self._state[_S["complete"]] = 1
        self._write_state()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None  # type: ignore[assignment]
            _unlock(self.path, self._lock_fd)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_append(path: Path) -> h5py.File:
    """Open for appending; a file left flagged open by a killed writer is rewritten first."""
    try:
        return h5py.File(path, "a", libver="latest")
    except OSError as e:
        if "already open" not in str(e):
            raise StoreError(f"cannot open run file {path} for writing: {e}; rerun with --restart") from None
    _copy_committed(path)  # we hold the lock, so the writer that flagged it is gone
    try:
        return h5py.File(path, "a", libver="latest")
    except OSError as e:
        raise StoreError(f"cannot reopen run file {path} after recovery: {e}; rerun with --restart") from None


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int | None:
    if fcntl is None:  # pragma: no cover
        return None
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreError(f"run file {path} is being written by another process; wait for it "
                         f"or stop it (its lock: {_lock_path(path)})") from None
    return fd


def _unlock(path: Path, fd: int | None) -> None:
    if fd is None:  # pragma: no cover
        return
    with contextlib.suppress(OSError):
        _lock_path(path).unlink()
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def file_size(path: str | Path) -> int:
    """Bytes on disk of a run file."""
    return Path(path).stat().st_size
