"""The state of every known dataset file under the data directory (``biasvar data verify``)."""

from __future__ import annotations

from pathlib import Path

from biasvar.data import catalog
from biasvar.data.catalog import DATASETS, FileStatus
from biasvar.data.checksums import check
from biasvar.data.locate import checked_root, locate
from biasvar.errors import DataError


def verify(data_dir: str | Path | None = None) -> list[FileStatus]:
    """Check every known dataset file under the data directory; never downloads.

    Returns:
        One :class:`FileStatus` per file of the table, in a fixed order: ``state`` is ``present``
        (verified), ``missing`` (``path`` is where to put it) or ``corrupt`` (``detail`` says why).

    Raises:
        DataError: the data directory (explicit or ``$BIASVAR_DATA``) is not an existing directory.
    """
    root = checked_root(data_dir, must_exist=True)
    out = []
    for spec in catalog.FILES.values():
        used_by = tuple(n for n, d in DATASETS.items()
                        if any(spec.key in keys for keys in d.split_files.values()))
        common = dict(dataset=spec.collection, split=spec.split, role=spec.role, used_by=used_by)
        path = locate(spec, root) if root.is_dir() else None
        if path is None:
            out.append(FileStatus(path=root / spec.relpath, state="missing",
                                  detail=f"get it from {spec.urls[0]}", **common))
            continue
        try:
            note = check(spec, path)
            out.append(FileStatus(path=path, state="present", detail=note, **common))
        except DataError as e:
            out.append(FileStatus(path=path, state="corrupt", detail=str(e), **common))
    return out
