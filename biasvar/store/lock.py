"""The writer lock of a run file: an ``flock`` on ``<file>.lock`` that at most one process holds.

Two writers of the same run are kept apart by it: the second one gets :class:`WriterBusy` after
:data:`LOCK_TRIES` tries. The OS drops the lock when a writer dies, so it also tells readers
whether a writer is alive (:func:`writer_alive`): an incomplete run is ``running`` while its lock
is held and ``interrupted`` otherwise.

The lock file is removed by its holder on release, so a finished run leaves no ``.lock`` behind
(and a folder of shards can go once it is empty). Removing it is safe only because a process
that gets the ``flock`` then checks that the file it locked is still the one at the path: a
waiter that opened the file before its holder removed it locks an orphan, sees that, and tries
again with the file now at the path, where a newcomer may be waiting too; so only one process
ever holds the lock of the file that is at the path.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from biasvar.errors import StoreError, WriterBusy
from biasvar.store.paths import lock_path

try:  # POSIX advisory locks; elsewhere concurrent writers are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_TRIES = 20  # a writer retries its lock this often (50 ms apart): readers probe it briefly
_RETRY_S = 0.05


def _is_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file now at ``path`` (not one a former holder removed)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def acquire(path: str | Path) -> int | None:
    """Take the writer lock of the run file ``path``; returns the descriptor to :func:`release`.

    Raises:
        WriterBusy: another process holds it (a live writer).
        StoreError: the lock file cannot be made (no write permission in the folder).
    """
    if fcntl is None:  # pragma: no cover
        return None
    path = Path(path)
    lp = lock_path(path)
    for attempt in range(LOCK_TRIES):
        try:
            fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, like every file we make
        except OSError as e:
            raise StoreError(f"cannot write in {path.parent}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: by a writer, or for microseconds by a reader testing liveness
            os.close(fd)
            if attempt < LOCK_TRIES - 1:
                time.sleep(_RETRY_S)
            continue
        if _is_at(fd, lp):
            return fd
        os.close(fd)  # its holder removed it as we waited: try the file now at the path at once
    raise WriterBusy(f"run file {path} is being written by another process; wait for it "
                     f"or stop it (its lock: {lp})")


def release(path: str | Path, fd: int | None) -> None:
    """Drop the lock taken by :func:`acquire`, removing the lock file first (while still held)."""
    if fd is None:  # pragma: no cover
        return
    lp = lock_path(path)
    with contextlib.suppress(OSError):
        if _is_at(fd, lp):  # (someone may have removed it by hand and another writer made a new one)
            lp.unlink()
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def held(path: str | Path) -> Iterator[None]:
    """Hold the writer lock of ``path`` for the ``with`` block (see :func:`acquire`)."""
    fd = acquire(path)
    try:
        yield
    finally:
        release(path, fd)


def writer_alive(path: str | Path) -> bool:
    """Whether a live process holds the writer lock of ``path`` (the OS drops it when one dies)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
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


__all__ = ["LOCK_TRIES", "acquire", "held", "release", "writer_alive"]
