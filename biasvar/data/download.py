"""Obtaining a dataset file: found and verified under the data directory, or downloaded.

A missing file is downloaded from its canonical source, then its mirrors, when ``download`` allows
(``None`` means "yes unless ``$BIASVAR_OFFLINE`` is set"): into a temporary file beside its place,
verified, then renamed. A file that cannot be had gives one :class:`~biasvar.errors.DataError` naming
where to put it and where to get it.
"""

from __future__ import annotations

import http.client
import os
import urllib.request
from pathlib import Path

from biasvar.atomic import atomic_path
from biasvar.data.catalog import FileSpec, Progress
from biasvar.data.checksums import CHUNK, check, expected
from biasvar.data.locate import locate
from biasvar.errors import DataError

_TIMEOUT_S = 10.0          # per socket operation (connect, each read)


def _fetch(url: str, dest: Path, *, timeout: float, progress: Progress | None = None) -> None:
    """Stream ``url`` into ``dest`` (overwritten). Raises OSError / HTTPException on failure."""
    req = urllib.request.Request(url, headers={"User-Agent": "biasvar (dataset download)"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        done = 0
        if progress is not None:
            progress(dest.name, done, total)
        while chunk := resp.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(dest.name, done, total)


def _download(spec: FileSpec, url: str, dest: Path, progress: Progress | None) -> Path:
    """Download ``url`` into a temporary file beside ``dest``, verify it, then rename it to ``dest``."""
    with atomic_path(dest, suffix=".part") as tmp:
        wrapped = None if progress is None else (lambda _name, done, total: progress(spec.name, done, total))
        _fetch(url, tmp, timeout=_TIMEOUT_S, progress=wrapped)
        try:
            check(spec, tmp)
        except DataError as e:
            raise DataError(f"downloaded file failed verification: {e}") from None
    return dest


def _missing_message(spec: FileSpec, dest: Path, reason: str) -> str:
    return (f"dataset file {spec.name} is missing: put it at {dest} (or directly in {dest.parent.parent}); "
            f"get it from {' or '.join(spec.urls)} ({expected(spec)}) [{reason}]")


def obtain(spec: FileSpec, root: Path, download: bool | None, progress: Progress | None) -> Path:
    """The verified path of ``spec``'s file under ``root``, downloading it if allowed and needed."""
    path = locate(spec, root)
    if path is not None:
        check(spec, path)
        return path
    dest = root / spec.relpath
    if download is False:
        raise DataError(_missing_message(spec, dest, "download=False"))
    if download is None and os.environ.get("BIASVAR_OFFLINE", "") not in ("", "0"):
        raise DataError(_missing_message(spec, dest, "BIASVAR_OFFLINE is set"))
    errors = []
    for url in spec.urls:
        try:
            return _download(spec, url, dest, progress)
        except (OSError, http.client.HTTPException, DataError) as e:
            errors.append(f"{url}: {e}")
    raise DataError(_missing_message(spec, dest, "download failed: " + "; ".join(errors)))

