"""One way to write a file so that readers never see it half-written: write a temporary file in the
same folder, then rename it into place (``os.replace`` is atomic on POSIX and Windows).

A file that fails midway leaves the old one (or none) and no temporary file behind. The result has
an ordinary file mode (``0666`` less the umask), not ``mkstemp``'s private ``0600``.

A write that fails because the disk is full is one :class:`~biasvar.errors.DiskFullError` naming the
folder and the file, whatever raised it (an ``OSError`` with ``ENOSPC``, HDF5's message, or torch's
``basic_ios::clear: iostream error`` on a device left with no room): every writer of biasvar (snapshots,
run files, the statistics store, reports, figures, manifests) goes through :func:`atomic_path`, so a full
disk is handled here once. :func:`free_bytes` is the one measure of the room left.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from biasvar.errors import DiskFullError

LOW_SPACE = 1 << 20  # a failed write on a device with less room than this left is taken for a full disk


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free on the device of ``folder`` (or of its nearest existing parent); None where unknown."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def disk_full(e: BaseException, folder: str | Path | None = None) -> bool:
    """Whether the error ``e`` of a write into ``folder`` comes from a full disk: ``ENOSPC`` (or a quota),
    said in the message (HDF5 writes ``errno = 28``), or a write error of a library that does not say why
    (torch's ``iostream error``) on a device with under :data:`LOW_SPACE` left."""
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    if "No space left on device" in text or "errno = 28," in text or "Disk quota exceeded" in text:
        return True
    if folder is not None and isinstance(e, (OSError, RuntimeError)):
        free = free_bytes(folder)
        return free is not None and free < LOW_SPACE
    return False


def full_disk_error(path: str | Path, e: BaseException | None = None) -> DiskFullError:
    """The one-line error of a file that could not be written because its device is full."""
    path = Path(path)
    free = free_bytes(path.parent)
    room = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
    return DiskFullError(f"no space left on the device of {path.parent}{room}: {path.name} was not written "
                         "(any earlier version of it is unchanged); free some space and rerun the same command")


def ensure_room(path: str | Path, nbytes: int, margin: int = LOW_SPACE) -> None:
    """Refuse, before anything is written, a file of about ``nbytes`` the device of ``path`` has no room
    for (with ``margin`` to spare): HDF5 can crash (a segmentation fault while it closes the file) when
    the disk fills under it, so its writers check first.

    Raises:
        DiskFullError: one line naming the folder, the space needed and the space free.
    """
    path = Path(path)
    free = free_bytes(path.parent)
    need = int(nbytes) + int(margin)
    if free is not None and free < need:
        raise DiskFullError(f"no space left on the device of {path.parent} for {path.name}: it needs "
                            f"~{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free; free some space and rerun the "
                            "same command (any earlier version of the file is unchanged)")


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is renamed to ``path``.

    >>> with atomic_path(folder / "model.pt") as tmp:   # doctest: +SKIP
    ...     torch.save(payload, tmp)

    Raises:
        DiskFullError: the device of ``path``'s folder is full (nothing is left behind, ``path`` unchanged).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        if disk_full(e):
            raise full_disk_error(path, e) from None
        raise
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, DiskFullError) or not disk_full(e, path.parent):
            raise
        raise full_disk_error(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write text (UTF-8, newlines as given) or bytes to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(data)
    return path


__all__ = ["LOW_SPACE", "atomic_path", "disk_full", "ensure_room", "free_bytes", "full_disk_error", "write_atomic"]
