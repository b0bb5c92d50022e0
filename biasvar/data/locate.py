"""Where the dataset files are: the data directory and a file's path in it (nested, or flat).

The data directory is ``--data-dir``, else ``$BIASVAR_DATA``, else ``$XDG_CACHE_HOME/biasvar`` or
``~/.cache/biasvar``. A file is looked for at its path under it (``mnist/t10k-labels-idx1-ubyte.gz``),
then directly in it; a flat name two collections share (MNIST and Fashion-MNIST) counts only for the
collection whose checksum it matches.
"""

from __future__ import annotations

import os
from pathlib import Path

from biasvar.data import catalog
from biasvar.data.catalog import FileSpec
from biasvar.data.checksums import checksum_ok
from biasvar.errors import DataError


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (``--data-dir``), else ``$BIASVAR_DATA``, else a per-user cache.

    The cache is ``$XDG_CACHE_HOME/biasvar``, or ``~/.cache/biasvar``. Nothing is created or checked.
    """
    return resolve(explicit)[0]


def resolve(explicit: str | Path | None) -> tuple[Path, str]:
    """``(directory, where it came from)``; the origin names the setting in error messages."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser(), "--data-dir"
    env = os.environ.get("BIASVAR_DATA")
    if env:
        return Path(env).expanduser(), "$BIASVAR_DATA"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "biasvar", "default"


def checked_root(explicit: str | Path | None, *, must_exist: bool) -> Path:
    root, origin = resolve(explicit)
    if root.exists() and not root.is_dir():
        raise DataError(f"data directory {root} (from {origin}) is not a directory; "
                        f"pass a folder holding the dataset files, e.g. --data-dir ../shared/data")
    if must_exist and origin != "default" and not root.exists():
        raise DataError(f"data directory {root} (from {origin}) does not exist; "
                        f"create it or pass an existing folder, e.g. --data-dir ../shared/data")
    return root


def _ambiguous(spec: FileSpec, name: str) -> bool:
    """True when another collection has a file of this flat name (MNIST vs Fashion-MNIST)."""
    return any(o.collection != spec.collection and name in (o.name, *o.aliases) for o in catalog.FILES.values())


def locate(spec: FileSpec, root: Path) -> Path | None:
    """The file's path under ``root`` (nested first, then flat), or None."""
    nested = root / spec.relpath
    if nested.is_file():
        return nested
    for name in (spec.name, *spec.aliases):
        flat = root / name
        if flat.is_file() and (not _ambiguous(spec, name) or checksum_ok(spec, flat)):
            return flat
    return None

