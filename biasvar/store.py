"""HDF5 run files: one file per run, streamed in whole blocks of draws, resumable, readable while written.

A *run* is ``n`` gradient samples of one estimator at one snapshot (``<runs-dir>/<snapshot-id>/
<canonical-spec>-s<seed>.h5``). The engine hands the store one :class:`BlockStats` per block of
draws; the file keeps only what Eq. 16 and the bootstrap need (sufficient statistics per block),
plus the raw draws of a few fixed coordinates::

    attrs            immutable identity and provenance, written once when the file is created:
                     schema_version, spec, seed, block_size, keep, snapshot_hash, snapshot_id,
                     snapshot_path, problem (JSON), params_glob, layout (JSON), dim, cost, dtype,
                     device, versions, git_commit, created, ...
    state            float64 [12]  the mutable progress, written LAST after each commit (see STATE)
    block_sum        float32 [nb, dim]  sum of each block's finite draws
    block_m2         float64 [nb, G]    per group: sum_i ||x_i - mean_block||^2 (centred in the block)
    block_sumsq      float64 [nb, G]    per group: sum_i ||x_i||^2
    block_count      int64   [nb]       finite draws in the block
    block_nonfinite  int64   [nb]       draws excluded because one of their entries was not finite
    samples          float32 [n_kept, K] raw finite draws at the coordinates ``sample_index``
    sample_index     int64   [K]
    group_sizes      int64   [G]        one group per selected parameter tensor, in layout order
    exact            float64 [dim]      exact gradient (enumerable problems only)
    pending_sum      float64 [2, dim]   the block in progress (two slots, see below)
    pending_m2       float64 [2, G]
    pending_sumsq    float64 [2, G]

Size
----
``block_sum`` is nearly the whole file: ``4 * dim`` bytes per block whatever the block's draws
(see :func:`biasvar.engine.blocks.choose_block_size`). New files store it through a lossless
filter, :data:`COMPRESSION` (byte shuffle + deflate level 1; ``$BIASVAR_RUN_COMPRESSION`` or
``RunWriter.open(compression=...)`` pick another key of :data:`FILTERS`, ``none`` included), one
block per chunk, so every chunk is written once and never moved; rows under
:data:`COMPRESS_MIN_BYTES` are left unfiltered. The values read back are the same bits either
way, files without a filter (all files made before it) read and resume as before, and a
resumed or recovered file keeps the filter it was made with (:func:`compact`, ``biasvar
compact``, rewrites a file with another). The pending slots are allocated
only when a block in progress is first saved to them, and stay unfiltered (they are rewritten in
place), as do the kept draws. On the Fig. 1 VAE (d = 1,149,456) the filter stores the block sums
in 0.78 of their bytes; 12% of their entries are the encoder weights of pixels that are 0 across the
evaluation batch (their gradient is exactly 0 in every draw; the other 88% of the entries alone
compress to 0.855), and costs about 70 ms of CPU per block written and 9 ms per block read
(``scripts/runfile_size.py``, ``results/runfile-size/``).

Atomicity, concurrency and crashes
----------------------------------
* A new file is written in full under a temporary name and renamed into place, so a run file
  always has a complete header.
* Blocks are appended in SWMR mode (HDF5 single-writer / multiple-reader): every dataset is
  resized and written, the file is flushed, and only then the ``state`` row (committed block
  count, draws done, ...) is written and flushed. Readers take only the committed blocks, so a
  block is visible whole or not at all, including after ``kill -9``.
* The block in progress can be saved too (:meth:`RunWriter.save_pending`: the engine does it at
  least once a minute and when interrupted): its float64 accumulators go to the ``pending_*``
  slot the state row does not point at, its kept draws are appended to ``samples``, the file is
  flushed, and the state row then points at the new slot. Resuming continues that block from the
  saved accumulators, so a run loses at most the draws since the last save. Readers (the
  analysis) see whole blocks only; ``n_done`` counts the saved draws, ``n_pending`` those of
  them not yet in a whole block.
* A killed SWMR writer leaves the file flagged "open for writing"; HDF5 then refuses to reopen it
  for writing (the ``h5clear`` case). Resuming detects that, copies the committed blocks and the
  saved block in progress into a fresh file (temporary name, then rename) and continues.
* Two writers of the same run are kept apart by an ``flock`` on ``<file>.lock``: the second one
  gets a :class:`StoreError`. The OS drops the lock when a writer dies, so the lock also tells
  readers whether a writer is alive: an incomplete run is ``running`` while its lock is held and
  ``interrupted`` otherwise (:func:`writer_alive`).
* A file whose identity (schema, spec, seed, snapshot hash, parameter glob, dim, dtype) differs
  from the command is refused with a :class:`StoreError`, never appended to; ``restart=True``
  deletes it first. A file the writer created and never saved a draw to is removed on close,
  so a run that fails before its first draw leaves nothing behind.

Damaged files never hang a reader
---------------------------------
An HDF5 reader in SWMR mode retries a metadata read whose checksum fails up to 100 times with a
doubling sleep (1 ns, 2 ns, ... capped at an hour), so a truncated file used to block a reader for
hours, deaf to Ctrl-C. Readers here (:func:`read_run`) therefore

1. read the superblock themselves and refuse a file shorter than its recorded end of file
   (truncated) unless a writer holds its lock (a live SWMR writer may be mid-flush),
2. open it with a bounded number of metadata read attempts (:data:`READ_ATTEMPTS`, under 0.1 s
   of retry sleeps in all),
3. check that the datasets agree with the state row (shapes, counts); every dataset carries a
   Fletcher-32 checksum per chunk, so a flipped byte in the data is an error, not a wrong number,

and raise :class:`DamagedError` (a :class:`StoreError`) with the reason otherwise.
:func:`scan_runs` lists the readable runs and the damaged or misplaced files separately.

Only this module imports h5py. Readers return numpy arrays in frozen dataclasses, never open
HDF5 objects.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import json
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from biasvar.errors import StoreError, WriterBusy

try:  # POSIX advisory locks; elsewhere concurrent writers are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1

# Keys whose values must agree between a file and the command that wants to append to it.
IDENTITY = ("schema_version", "spec", "seed", "snapshot_hash", "params_glob", "dim", "dtype")

# The ``state`` dataset: one float64 row, rewritten after every commit (exact for integers below
# 2^53). ``n_done`` .. ``n_nonfinite`` count the whole blocks; ``pending_*`` the saved part of the
# block in progress, whose accumulators are in slot ``pending_slot`` of the ``pending_*`` datasets.
# Files of the first layout have the first 8 entries only (read as no pending block).
STATE = ("blocks", "n_done", "n_finite", "n_nonfinite", "wall_s", "n_target", "complete", "updated",
         "pending_draws", "pending_count", "pending_nonfinite", "pending_slot")
_S = {k: i for i, k in enumerate(STATE)}

_BLOCK_SETS = ("block_sum", "block_m2", "block_sumsq", "block_count", "block_nonfinite")
_PENDING_SETS = ("pending_sum", "pending_m2", "pending_sumsq")
_JSON_ATTRS = ("problem", "layout", "dataset")
_RETRIES = 5

READ_ATTEMPTS = 26  # SWMR metadata read attempts: HDF5 sleeps 2^k ns between them (~67 ms in all)
LOCK_TRIES = 20  # a writer retries its lock this often (50 ms apart): readers probe it briefly

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class DamagedError(StoreError):
    """A run file that cannot be read as a whole: truncated, corrupt, or not a run file.

    Attributes:
        path: the file.
        reason: what is wrong, in a few words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"run file {path} is damaged ({reason}); remove it, or rerun the same "
                         "`biasvar sample` command with --restart to redo the run")


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
    if not root.is_dir():
        return []
    pattern = f"{snapshot_id}/*.h5" if snapshot_id else "*/*.h5"
    return sorted(p for p in root.glob(pattern) if p.is_file())


# ---------------------------------------------------------------------------------------------
# writer liveness


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def writer_alive(path: str | Path) -> bool:
    """Whether a live process holds the writer lock of ``path`` (the OS drops it when one dies)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(_lock_path(Path(path)), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# opening a file for reading in bounded time


@dataclass(frozen=True)
class _Superblock:
    version: int
    flags: int
    stored_eof: int
    size: int


def _superblock(path: Path) -> _Superblock:
    """Parse the HDF5 superblock (versions 0-3) at offset 0, 512, 1024, ...: what the file says
    its end is, against what is on disk.

    Raises:
        DamagedError: no HDF5 signature, or a superblock cut short.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        base = 0
        while True:
            fh.seek(base)
            head = fh.read(96)
            if head[:8] == _HDF5_SIGNATURE:
                break
            base = 512 if base == 0 else 2 * base
            if base >= min(size, 1 << 20):
                raise DamagedError(path, "not an HDF5 file" if size else "empty file")
    version = head[8] if len(head) > 8 else -1
    try:
        if version in (2, 3):
            so = head[9]
            flags = head[11]
            fmt = {4: "<I", 8: "<Q"}[so]
            eof = struct.unpack_from(fmt, head, 12 + 2 * so)[0]
        elif version in (0, 1):
            so = head[13]
            flags = struct.unpack_from("<I", head, 20)[0]
            fmt = {4: "<I", 8: "<Q"}[so]
            eof = struct.unpack_from(fmt, head, (24 if version == 0 else 28) + 2 * so)[0]
        else:
            raise DamagedError(path, f"unknown HDF5 superblock version {version}")
    except (KeyError, struct.error, IndexError):
        raise DamagedError(path, f"truncated superblock ({size} bytes)") from None
    return _Superblock(version, flags, base + eof, size)


@functools.lru_cache(maxsize=1)
def _hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 library h5py uses (the one mapped into this process), for the one setting h5py
    does not expose: the SWMR metadata read attempts."""
    paths = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/maps").read_text().splitlines():
            name = line.split()[-1] if line.split() else ""
            if "libhdf5" in os.path.basename(name) and "_hl" not in os.path.basename(name):
                paths.append(name)
    libs = os.path.join(os.path.dirname(h5py.__file__), os.pardir, "h5py.libs")
    paths += [p for p in glob.glob(os.path.join(libs, "libhdf5*")) if "_hl" not in os.path.basename(p)]
    for p in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(p)
            lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
            lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
            return lib
        except (OSError, AttributeError):
            continue
    return None  # pragma: no cover - a build without the library in reach: attempts not bounded


def _read_fapl(locking: bool) -> Any:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if not locking:  # a reader must never make a writer's open fail ("unable to lock file")
        with contextlib.suppress(AttributeError, ValueError, RuntimeError):
            fapl.set_file_locking(False, True)
    lib = _hdf5_library()
    if lib is not None:
        lib.H5Pset_metadata_read_attempts(fapl.id, READ_ATTEMPTS)
    return fapl


def _h5_open_read(path: Path) -> h5py.File:
    name, flags = os.fsencode(str(path)), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
    try:
        fid = h5py.h5f.open(name, flags, fapl=_read_fapl(locking=False))
    except OSError as e:
        if "locking flag" not in str(e):  # this process has it open already, with HDF5's locking on
            raise
        fid = h5py.h5f.open(name, flags, fapl=_read_fapl(locking=True))
    return h5py.File(fid)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^Unable to (synchronously )?", "", text)[:160]


@contextlib.contextmanager
def _open_read(path: Path, *, own_lock: bool = False) -> Iterator[h5py.File]:
    """Open for reading, in bounded time, also while a writer is active (SWMR).

    Args:
        own_lock: this process holds the writer lock (so no other process writes the file).

    Raises:
        StoreError: no such file; DamagedError: truncated, corrupt, not HDF5.
    """
    if not path.exists():
        raise StoreError(f"run file not found: {path} (list runs with `biasvar ls`)")
    if not path.is_file():
        raise StoreError(f"{path} is not a file (a run file is <runs-dir>/<snapshot-id>/<spec>-s<seed>.h5)")
    f = None
    for attempt in range(_RETRIES):
        live = not own_lock and writer_alive(path)
        try:
            sb = _superblock(path)
            if sb.size < sb.stored_eof and not live:
                raise DamagedError(path, f"truncated: {sb.size} of {sb.stored_eof} bytes")
            f = _h5_open_read(path)
            break
        except DamagedError:
            if not live or attempt == _RETRIES - 1:
                raise
        except (OSError, RuntimeError, ValueError) as e:  # a live writer mid-flush (retry), or damage
            live = live or (not own_lock and writer_alive(path))
            if not live:
                raise DamagedError(path, _short(e)) from None
            if attempt == _RETRIES - 1:
                raise WriterBusy(f"cannot read run file {path} while it is being written: {_short(e)}; "
                                 "try again") from None
        time.sleep(0.05 * (attempt + 1))
    assert f is not None
    try:
        yield f
    finally:
        f.close()


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
        """``complete``, ``running`` (a live writer holds it) or ``interrupted``."""
        return str(self.attrs["status"])


@dataclass(frozen=True)
class BadRun:
    """A file in a runs folder that is not listed as a run: ``damaged`` or ``misplaced``."""

    path: str
    problem: str  # "damaged" | "misplaced"
    reason: str


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


def _state_row(f: h5py.File) -> np.ndarray:
    """The state row, padded with zeros to the current layout (older files are shorter)."""
    row = np.asarray(f["state"][()], dtype=np.float64).reshape(-1)
    if len(row) < 8:
        raise ValueError(f"state row of {len(row)} entries")
    out = np.zeros(len(STATE))
    out[:min(len(row), len(STATE))] = row[:len(STATE)]
    return out


def _state_of(f: h5py.File) -> dict[str, float]:
    row = _state_row(f)
    return {k: float(row[i]) for i, k in enumerate(STATE)}


def _live_attrs(attrs: dict[str, Any], state: Mapping[str, float], live: bool) -> dict[str, Any]:
    """Immutable attributes plus the committed state (status, counts, timings)."""
    out = dict(attrs)
    wall = state["wall_s"]
    saved = state["n_done"] + state["pending_draws"]
    out.update(
        n_target=int(state["n_target"]),
        n_done=int(saved),
        n_pending=int(state["pending_draws"]),
        n_finite=int(state["n_finite"]),
        n_nonfinite=int(state["n_nonfinite"] + state["pending_nonfinite"]),
        blocks=int(state["blocks"]),
        wall_s=wall,
        draws_per_s=(saved / wall) if wall > 0 else 0.0,
        status="complete" if state["complete"] else "running" if live else "interrupted",
        updated=state["updated"],
    )
    return out


def _check_state(path: Path, state: Mapping[str, float]) -> None:
    values = np.array(list(state.values()))
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise DamagedError(path, "state row holds negative or non-finite values")
    counts = [state[k] for k in STATE if k not in ("wall_s", "updated")]
    if any(c != int(c) for c in counts):
        raise DamagedError(path, "state row holds non-integer counts")


def _read(f: h5py.File, path: Path, load_sums: bool, live: bool) -> RunData:
    if "state" not in f or "schema_version" not in f.attrs:
        raise DamagedError(path, "not a biasvar run file: no state or schema")
    attrs = _attrs_of(f)
    if int(attrs["schema_version"]) > SCHEMA_VERSION:
        raise StoreError(f"{path} has run-file schema {attrs['schema_version']}; this biasvar reads "
                         f"<= {SCHEMA_VERSION}: upgrade biasvar")
    state = _state_of(f)  # read first: everything below is sliced to the committed blocks
    _check_state(path, state)
    nb = int(state["blocks"])
    for name in _BLOCK_SETS:
        f[name].refresh()
        if f[name].shape[0] < nb:
            raise DamagedError(path, f"{name} has {f[name].shape[0]} rows, the state says {nb} blocks")
    count = np.asarray(f["block_count"][:nb], dtype=np.int64)
    nonfinite = np.asarray(f["block_nonfinite"][:nb], dtype=np.int64)
    if int(count.sum()) != int(state["n_finite"]) or int((count + nonfinite).sum()) != int(state["n_done"]) \
            or np.any(count < 0) or np.any(nonfinite < 0):
        raise DamagedError(path, "block counts disagree with the state row")
    kept = int(count.sum())
    group_sizes = np.asarray(f["group_sizes"][()], dtype=np.int64)
    dim, G = int(attrs["dim"]), len(group_sizes)
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
    layout = attrs.get("layout", [])
    return RunData(
        path=str(path),
        attrs=_live_attrs(attrs, state, live),
        groups=[str(entry[0]) for entry in layout],
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

    Bounded in time whatever the file holds (see the module doc).

    Args:
        path: the run file.
        load_sums: read ``block_sum`` [nb, dim] (the only large array); False for a cheap listing.

    Raises:
        StoreError: no such file, or a newer schema; DamagedError: truncated, corrupt, not a run file.
    """
    path = Path(path)
    live = writer_alive(path)
    with _open_read(path) as f:
        try:
            return _read(f, path, load_sums, live)
        except StoreError:
            raise
        except (KeyError, OSError, RuntimeError, ValueError, TypeError, IndexError) as e:
            raise DamagedError(path, _short(e)) from None


def _misplaced(run: RunData, path: Path) -> str | None:
    """Why ``path`` is not where this run belongs, or None."""
    snap = run.attrs.get("snapshot_id") or str(run.attrs.get("snapshot_hash", ""))[:12]
    want = run_path(path.parent.parent, str(snap or path.parent.name), run.spec, run.seed)
    if want.parent.name != path.parent.name:
        return (f"made from snapshot {want.parent.name}, but lies in the folder of snapshot "
                f"{path.parent.name}; move it to {want}")
    if want.name != path.name:
        return f"holds the run {run.spec} seed {run.seed}, but is named {path.name}; rename it to {want.name}"
    return None


def scan_runs(runs_dir: str | Path, snapshot_id: str | None = None) -> tuple[list[RunData], list[BadRun]]:
    """Every run file under ``runs_dir`` (cheap: ``load_sums=False``): the readable runs where they
    belong, and the files that are damaged or misplaced (with the reason), both sorted by path."""
    runs, bad = [], []
    for path in list_run_files(runs_dir, snapshot_id):
        try:
            run = read_run(path, load_sums=False)
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


# ---------------------------------------------------------------------------------------------
# writing


@dataclass(frozen=True)
class _BlockFields:
    """The fields of a block's statistics; ``draws = count + nonfinite`` draws were consumed."""

    count: int
    nonfinite: int
    sum: np.ndarray
    m2: np.ndarray  # float64 [G]
    sumsq: np.ndarray  # float64 [G]
    samples: np.ndarray  # float32 [count, K]

    @property
    def draws(self) -> int:
        return self.count + self.nonfinite


@dataclass(frozen=True)
class BlockStats(_BlockFields):
    """Sufficient statistics of one block of draws (what :meth:`RunWriter.append` stores).

    ``draws = count + nonfinite`` draws were consumed; only the ``count`` finite ones enter
    ``sum`` (float32 [dim]), ``m2``, ``sumsq`` and ``samples``.
    """


@dataclass(frozen=True)
class PendingStats(_BlockFields):
    """The saved part of the block in progress: float64 accumulators (``sum`` float64 [dim]),
    resumed exactly. ``samples`` holds every kept draw of the block so far (the store writes the
    ones not yet saved).
    """


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


def _tmp_beside(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


_CHECKED = {"fletcher32": True}  # every dataset carries a checksum per chunk: a flipped byte is an error

# Lossless filters for ``block_sum`` (the one large dataset; see the module doc, "Size"). Every
# chunk of it is one block, written once and never rewritten, so a compressed chunk never has to
# be moved (the pending slots and the kept draws are rewritten in place, and stay uncompressed).
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


def _filters(compression: str | None, row_bytes: int | None = None) -> dict[str, Any]:
    name = compression_name(compression)
    return {} if row_bytes is not None and row_bytes < COMPRESS_MIN_BYTES else FILTERS[name]


def _filters_of(ds: h5py.Dataset) -> dict[str, Any]:
    """The lossless filters a dataset was made with (to make a copy of it the same way)."""
    out: dict[str, Any] = {}
    if ds.compression:
        out["compression"] = ds.compression
        if ds.compression_opts is not None:
            out["compression_opts"] = ds.compression_opts
    if ds.shuffle:
        out["shuffle"] = True
    return out


def _create_pending(f: h5py.File, dim: int, G: int) -> None:
    """Two slots, one chunk each: rewriting one never touches the other. Nothing is written, so a
    slot takes space in the file only once a block in progress is saved to it (it reads as 0)."""
    f.create_dataset("pending_sum", (2, dim), dtype="f8", chunks=(1, max(1, dim)), fillvalue=0.0, **_CHECKED)
    for name in ("pending_m2", "pending_sumsq"):
        f.create_dataset(name, (2, G), dtype="f8", chunks=(1, max(1, G)), fillvalue=0.0, **_CHECKED)


def _create(path: Path, header: Mapping[str, Any], *, group_sizes: np.ndarray, sample_index: np.ndarray,
            exact: np.ndarray | None, n_target: int, compression: str | None = None) -> None:
    """Write a new, empty run file under a temporary name and rename it into place."""
    dim, G, K = int(header["dim"]), int(len(group_sizes)), int(len(sample_index))
    filters = _filters(compression, 4 * dim)
    tmp = _tmp_beside(path)
    try:
        with h5py.File(tmp, "w", libver="latest") as f:
            for key, value in header.items():
                f.attrs[key] = _attr_value(value)
            f.create_dataset("block_sum", (0, dim), maxshape=(None, dim), dtype="f4",
                             chunks=(1, dim) if filters else (_row_chunks(dim, 4), dim), **filters, **_CHECKED)
            for name in ("block_m2", "block_sumsq"):
                f.create_dataset(name, (0, G), maxshape=(None, G), dtype="f8", chunks=(_row_chunks(G, 8), G),
                                 **_CHECKED)
            for name in ("block_count", "block_nonfinite"):
                f.create_dataset(name, (0,), maxshape=(None,), dtype="i8", chunks=(1024,), **_CHECKED)
            if K:
                f.create_dataset("samples", (0, K), maxshape=(None, K), dtype="f4",
                                 chunks=(_row_chunks(K, 4, 1 << 18), K), **_CHECKED)
                f.create_dataset("sample_index", data=np.asarray(sample_index, dtype=np.int64), **_CHECKED)
            f.create_dataset("group_sizes", data=np.asarray(group_sizes, dtype=np.int64), **_CHECKED)
            if exact is not None:
                f.create_dataset("exact", data=np.asarray(exact, dtype=np.float64), **_CHECKED)
            _create_pending(f, dim, G)
            state = np.zeros(len(STATE))
            state[_S["n_target"]] = n_target
            state[_S["updated"]] = time.time()
            f.create_dataset("state", data=state, chunks=state.shape, **_CHECKED)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _copy_committed(path: Path, block_sum_filters: dict[str, Any] | None = None) -> None:
    """Rewrite a file in the current layout with the header, the committed blocks and the saved
    block in progress only: a file whose writer was killed, or one of the first layout.

    A killed SWMR writer leaves the superblock flagged as open; HDF5 refuses to open such a
    file for writing but still reads it in SWMR mode. The copy is written under a temporary
    name and renamed into place. Every dataset keeps its filters, except ``block_sum`` when
    ``block_sum_filters`` is given (:func:`compact`): it is then re-encoded, and read back and
    compared bit for bit before the copy replaces the file.
    """
    tmp = _tmp_beside(path)
    try:
        with _open_read(path, own_lock=True) as src, h5py.File(tmp, "w", libver="latest") as dst:
            try:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                state = _state_row(src)
                _check_state(path, dict(zip(STATE, state, strict=True)))
                nb = int(state[_S["blocks"]])
                kept = int(np.asarray(src["block_count"][:nb]).sum()) + int(state[_S["pending_count"]])
                for name, ds in src.items():
                    if name == "state" or (name in _PENDING_SETS and not state[_S["pending_draws"]]):
                        continue  # no block in progress: its slots are made afresh, unwritten
                    ds.refresh()
                    if ds.maxshape and ds.maxshape[0] is None:
                        rows = kept if name == "samples" else nb
                        if ds.shape[0] < rows:
                            raise DamagedError(path, f"{name} has {ds.shape[0]} rows, the state says {rows}")
                        filters, chunks = _filters_of(ds), ds.chunks
                        if name == "block_sum" and block_sum_filters is not None:
                            filters = block_sum_filters
                            chunks = (1, ds.shape[1]) if filters else (_row_chunks(ds.shape[1], 4), ds.shape[1])
                        dst.create_dataset(name, data=ds[:rows], maxshape=ds.maxshape, chunks=chunks,
                                           **filters, **_CHECKED)
                    else:
                        dst.create_dataset(name, data=ds[()], chunks=ds.chunks, **_filters_of(ds), **_CHECKED)
                if "pending_sum" not in dst:
                    _create_pending(dst, int(dst.attrs["dim"]), len(dst["group_sizes"]))
                dst.create_dataset("state", data=state, chunks=state.shape, **_CHECKED)
                if block_sum_filters is not None:
                    dst.flush()
                    if np.asarray(dst["block_sum"][()]).tobytes() != np.asarray(src["block_sum"][:nb]).tobytes():
                        raise StoreError(f"rewriting {path} did not give back the same block sums; "
                                         "the file was left as it was")
            except StoreError:
                raise
            except (KeyError, OSError, RuntimeError, ValueError, TypeError) as e:
                raise DamagedError(path, _short(e)) from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_identity(path: Path, header: Mapping[str, Any], own_lock: bool = False) -> None:
    with _open_read(path, own_lock=own_lock) as f:
        if "schema_version" not in f.attrs:
            raise DamagedError(path, "not a biasvar run file: no schema")
        try:
            have = _attrs_of(f)
        except (KeyError, OSError, RuntimeError, ValueError) as e:
            raise DamagedError(path, _short(e)) from None
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
        StoreError: the file's identity differs from ``header``, or it is damaged.
    """
    path = Path(path)
    if not path.is_file():
        return False
    _check_identity(path, header)
    with _open_read(path) as f:
        try:
            state = _state_of(f)
        except (KeyError, OSError, RuntimeError, ValueError) as e:
            raise DamagedError(path, _short(e)) from None
    return bool(state["complete"]) and state["n_done"] >= n


class RunWriter:
    """Appends whole blocks to one run file; use :meth:`open` and close it (context manager)."""

    def __init__(self, path: Path, f: h5py.File, lock_fd: int | None, created: bool) -> None:
        self.path = path
        self._f = f
        self._lock_fd = lock_fd
        self._created = created
        self.block_size = int(f.attrs["block_size"])
        self.stats_step = int(_py(f.attrs.get("stats_step", 0)) or 0) or None  # files before it: None
        has = "sample_index" in f
        self.sample_index = np.asarray(f["sample_index"][()]) if has else np.zeros(0, np.int64)
        self._state = _state_row(f)
        self._kept = int(np.asarray(f["block_count"][:self.n_blocks]).sum())  # kept rows of whole blocks

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, header: Mapping[str, Any], *, n_target: int, group_sizes: np.ndarray,
             sample_index: np.ndarray, exact: np.ndarray | None = None, restart: bool = False,
             compression: str | None = None) -> RunWriter:
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
            StoreError: another process writes this run, the file's identity differs, or it is
                damaged (:class:`DamagedError`).
        """
        path = Path(path)
        _filters(compression)  # an unknown name is refused before anything is touched
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"cannot make the folder {path.parent}: a file is in the way "
                             "(--runs-dir must be a folder)") from None
        lock_fd = _lock(path)
        created = False
        try:
            if restart and path.exists():
                path.unlink()
            if path.exists():
                _check_identity(path, header, own_lock=True)
            else:
                _create(path, header, group_sizes=group_sizes, sample_index=sample_index, exact=exact,
                        n_target=n_target, compression=compression)
                created = True
            f = _open_append(path)
            writer = cls(path, f, lock_fd, created)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            _unlock(path, lock_fd)
            raise
        try:
            writer._prepare(n_target)
        except BaseException:
            writer.close()
            raise
        return writer

    def _prepare(self, n_target: int) -> None:
        """Switch to SWMR, drop any rows a killed writer left past the last commit, set the target."""
        f = self._f
        f.swmr_mode = True
        nb = int(self._state[_S["blocks"]])
        kept = int(np.asarray(f["block_count"][:nb]).sum()) + self.pending_count
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
        """Draws saved: those of the committed blocks and of the saved block in progress."""
        return int(self._state[_S["n_done"]] + self._state[_S["pending_draws"]])

    @property
    def n_blocks(self) -> int:
        return int(self._state[_S["blocks"]])

    @property
    def n_nonfinite(self) -> int:
        return int(self._state[_S["n_nonfinite"]] + self._state[_S["pending_nonfinite"]])

    @property
    def pending_draws(self) -> int:
        """Draws of the saved block in progress."""
        return int(self._state[_S["pending_draws"]])

    @property
    def pending_count(self) -> int:
        return int(self._state[_S["pending_count"]])

    @property
    def wall_s(self) -> float:
        return float(self._state[_S["wall_s"]])

    def pending(self) -> PendingStats | None:
        """The saved block in progress (to continue it exactly), or None."""
        s = self._state
        if not s[_S["pending_draws"]]:
            return None
        f, slot = self._f, int(s[_S["pending_slot"]])
        count, kept = self.pending_count, self._kept
        K = len(self.sample_index)
        samples = (np.asarray(f["samples"][kept:kept + count], dtype=np.float32) if "samples" in f
                   else np.zeros((count, K), np.float32))
        return PendingStats(count=count, nonfinite=int(s[_S["pending_nonfinite"]]),
                            sum=np.asarray(f["pending_sum"][slot], dtype=np.float64),
                            m2=np.asarray(f["pending_m2"][slot], dtype=np.float64),
                            sumsq=np.asarray(f["pending_sumsq"][slot], dtype=np.float64), samples=samples)

    def _write_state(self) -> None:
        self._state[_S["updated"]] = time.time()
        ds = self._f["state"]
        ds[...] = self._state
        ds.flush()

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
        self._write_samples(block.samples)
        f.flush()  # the block's rows are on disk before the commit below
        s = self._state
        s[_S["blocks"]] += 1
        s[_S["n_done"]] += block.draws
        s[_S["n_finite"]] += block.count
        s[_S["n_nonfinite"]] += block.nonfinite
        s[_S["wall_s"]] += wall_s
        s[_S["pending_draws"]] = s[_S["pending_count"]] = s[_S["pending_nonfinite"]] = 0
        self._kept += block.count
        self._write_state()

    def save_pending(self, part: PendingStats, *, wall_s: float) -> None:
        """Save the block in progress (at least ``pending`` draws more than saved): accumulators
        into the free slot and new kept draws, flushed, then the state row points at them.

        Args:
            part: the block so far (all of it, not only what is new since the last save).
            wall_s: sampling seconds spent since the last commit.
        """
        f, s = self._f, self._state
        if part.draws < s[_S["pending_draws"]]:
            raise ValueError("a saved block in progress cannot shrink")
        slot = 1 - int(s[_S["pending_slot"]])
        f["pending_sum"][slot] = np.asarray(part.sum, dtype=np.float64)
        f["pending_m2"][slot] = np.asarray(part.m2, dtype=np.float64)
        f["pending_sumsq"][slot] = np.asarray(part.sumsq, dtype=np.float64)
        self._write_samples(part.samples)
        f.flush()
        s[_S["pending_slot"]] = slot
        s[_S["pending_draws"]] = part.draws
        s[_S["pending_count"]] = part.count
        s[_S["pending_nonfinite"]] = part.nonfinite
        s[_S["wall_s"]] += wall_s
        self._write_state()

    def finish(self) -> None:
        """Mark the run complete."""
        self._state[_S["complete"]] = 1
        self._write_state()

    def close(self) -> None:
        """Close the file and drop the lock; a file this writer created and never saved a draw to
        is removed (a run that fails before its first draw leaves nothing)."""
        if self._f is not None:
            empty = self._created and self.n_done == 0 and not self._state[_S["complete"]]
            try:
                self._f.close()
            finally:
                self._f = None  # type: ignore[assignment]
                if empty:
                    with contextlib.suppress(OSError):
                        self.path.unlink()
                _unlock(self.path, self._lock_fd)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _needs_upgrade(path: Path) -> bool:
    """A file of the first layout (no slots for a block in progress, a short state row)."""
    with _open_read(path, own_lock=True) as f:
        return "pending_sum" not in f or f["state"].shape[0] < len(STATE)


def _open_append(path: Path) -> h5py.File:
    """Open for appending; a file left flagged open by a killed writer, or of the first layout,
    is rewritten first (atomically: temporary file, then rename)."""
    if _needs_upgrade(path):
        _copy_committed(path)
    for attempt in range(LOCK_TRIES):
        try:
            return h5py.File(path, "a", libver="latest")
        except OSError as e:
            if "unable to lock file" in str(e) and attempt < LOCK_TRIES - 1:
                time.sleep(0.05)  # a reader that locks HDF5-style has it open this instant
                continue
            if "already open" not in str(e):
                raise DamagedError(path, _short(e)) from None
            break
    _copy_committed(path)  # we hold the lock, so the writer that flagged it is gone
    try:
        return h5py.File(path, "a", libver="latest")
    except OSError as e:
        raise DamagedError(path, f"cannot reopen after recovery: {_short(e)}") from None


def _lock(path: Path) -> int | None:
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot write in {path.parent}: {e.strerror}") from None
    for attempt in range(LOCK_TRIES):  # a reader testing liveness holds it for microseconds
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if attempt < LOCK_TRIES - 1:
                time.sleep(0.05)
    os.close(fd)
    raise WriterBusy(f"run file {path} is being written by another process; wait for it "
                     f"or stop it (its lock: {_lock_path(path)})")


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


def compact(path: str | Path, compression: str | None = None) -> tuple[int, int]:
    """Store a run file's block sums through the filter ``compression`` (None: what new files
    get, see :func:`compression_name`), losslessly: the numbers read back are the same bits.

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
    target = _filters(compression)
    if not path.is_file():
        raise StoreError(f"run file not found: {path} (list runs with `biasvar ls`)")
    before = path.stat().st_size
    lock_fd = _lock(path)
    try:
        with _open_read(path, own_lock=True) as f:
            if "schema_version" not in f.attrs or "block_sum" not in f:
                raise DamagedError(path, "not a biasvar run file: no schema")
            try:
                ds = f["block_sum"]
                current, row = _filters_of(ds), 4 * int(ds.shape[1])
            except (KeyError, OSError, RuntimeError, ValueError, IndexError) as e:
                raise DamagedError(path, _short(e)) from None
        wanted = {} if row < COMPRESS_MIN_BYTES else target
        if current != wanted:
            _copy_committed(path, block_sum_filters=wanted)
    finally:
        _unlock(path, lock_fd)
    return before, path.stat().st_size


def storage_info(path: str | Path) -> dict[str, Any]:
    """How ``block_sum`` is stored: its filter (``compression``, ``compression_opts``, ``shuffle``;
    empty when none), its raw bytes and the bytes it takes in the file."""
    path = Path(path)
    with _open_read(path) as f:
        try:
            ds = f["block_sum"]
            return {"filters": _filters_of(ds), "raw_bytes": int(np.prod(ds.shape)) * ds.dtype.itemsize,
                    "stored_bytes": int(ds.id.get_storage_size())}
        except (KeyError, OSError, RuntimeError, ValueError) as e:
            raise DamagedError(path, _short(e)) from None


def read_header(path: str | Path) -> dict[str, Any]:
    """The immutable attributes of a run file, as written (no committed state): what a file made
    from this one (a merged run from its shards) copies."""
    path = Path(path)
    with _open_read(path) as f:
        if "schema_version" not in f.attrs:
            raise StoreError(f"{path} is not a biasvar run file; remove it or rerun with --restart")
        return _attrs_of(f)
