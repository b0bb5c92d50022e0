"""Opening a run file for reading in bounded time, also while a writer appends to it (SWMR).

An HDF5 reader in SWMR mode retries a metadata read whose checksum fails up to 100 times with a
doubling sleep (1 ns, 2 ns, ... capped at an hour), so a truncated file used to block a reader for
hours, deaf to Ctrl-C. :func:`open_read` therefore

1. reads the superblock itself and refuses a file shorter than its recorded end of file
   (truncated) unless a writer holds its lock (a live SWMR writer may be mid-flush),
2. opens it with a bounded number of metadata read attempts (:data:`READ_ATTEMPTS`, under 0.1 s
   of retry sleeps in all; h5py does not expose the setting, so it is set through the HDF5
   library h5py itself loaded),
3. retries a few times while a live writer is mid-flush,

and raises :class:`DamagedError` (a :class:`StoreError`) with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from biasvar.errors import StoreError, WriterBusy
from biasvar.store.lock import writer_alive

READ_ATTEMPTS = 26  # SWMR metadata read attempts: HDF5 sleeps 2^k ns between them (~67 ms in all)
_RETRIES = 5  # opens tried while a live writer is mid-flush
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


def short(err: BaseException) -> str:
    """The first line of an HDF5 error, without its "Unable to" (what :class:`DamagedError` says)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^Unable to (synchronously )?", "", text)[:160]


#: What h5py raises on a file whose bytes are wrong (a failed checksum, a broken link, a bad filter).
READ_ERRORS = (KeyError, OSError, RuntimeError, ValueError, TypeError, IndexError, AttributeError)


@contextlib.contextmanager
def damage_as_error(path: str | Path) -> Iterator[None]:
    """Turn h5py's error on damaged bytes inside the block into :class:`DamagedError` (one line);
    a :class:`StoreError` passes unchanged."""
    try:
        yield
    except StoreError:
        raise
    except READ_ERRORS as e:
        raise DamagedError(path, short(e)) from None


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


@contextlib.contextmanager
def open_read(path: Path, *, own_lock: bool = False) -> Iterator[h5py.File]:
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
                raise DamagedError(path, short(e)) from None
            if attempt == _RETRIES - 1:
                raise WriterBusy(f"cannot read run file {path} while it is being written: {short(e)}; "
                                 "try again") from None
        time.sleep(0.05 * (attempt + 1))
    assert f is not None
    try:
        yield f
    finally:
        f.close()


__all__ = ["READ_ATTEMPTS", "READ_ERRORS", "DamagedError", "damage_as_error", "open_read", "short"]
