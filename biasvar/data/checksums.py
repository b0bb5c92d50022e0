"""Verifying one dataset file: its checksum, or for an ASCII ``.amat`` its shape and values.

Digests are cached per file identity (:func:`biasvar.data.decode.stamp`), so repeated checks do not
re-hash; :func:`clear_cache` empties this cache and the decoder's.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from biasvar.data.catalog import IMAGE_SIZE, FileSpec
from biasvar.data.decode import clear_decoded, decode, is_matlab, stamp
from biasvar.errors import DataError

CHUNK = 1 << 20
"""Bytes read (hashing) or written (downloading) at a time."""


def clear_cache() -> None:
    """Forget cached digests and decoded arrays (they are keyed by path, size and mtime)."""
    _digest_cached.cache_clear()
    clear_decoded()


@functools.lru_cache(maxsize=64)
def _digest_cached(key: tuple[str, int, int, int, int], algo: str) -> str:
    h = hashlib.new(algo)
    with open(key[0], "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _digest(path: Path, algo: str) -> str:
    return _digest_cached(stamp(path), algo)


def checksum_ok(spec: FileSpec, path: Path) -> bool:
    return any(_digest(path, algo) == hexd for algo, hexd in spec.checksums)


def expected(spec: FileSpec) -> str:
    return " or ".join(f"{algo.upper()} {hexd}" for algo, hexd in spec.checksums)


def check(spec: FileSpec, path: Path) -> str:
    """Verify ``path`` as ``spec``'s file; return a short note, or raise :class:`DataError` (corrupt)."""
    if checksum_ok(spec, path):
        return f"{spec.checksums[0][0].upper()} ok"
    if spec.fmt == "amat" and not is_matlab(path):
        rows = decode(path, spec.fmt).shape[0]   # raises DataError when malformed
        if spec.rows is not None and rows != spec.rows:
            raise DataError(f"{spec.name} at {path} has {rows} images, expected {spec.rows} "
                            f"(an ASCII .amat of the {spec.split} split); delete it and get it again "
                            f"from {spec.urls[0]}")
        return f"ASCII .amat, {rows} x {IMAGE_SIZE} binary values (no published checksum)"
    size = path.stat().st_size
    algo, _ = spec.checksums[0]
    got = _digest(path, algo)
    known = spec.size is not None and spec.size != size
    sizes = f"{size} bytes" + (f", expected {spec.size}" if known else "")
    hint = " (truncated?)" if spec.size is not None and size < spec.size else ""
    form = "MATLAB copy; " if spec.fmt == "amat" else ""
    raise DataError(f"{spec.name} at {path} is corrupt{hint}: {form}{algo.upper()} {got}, expected "
                    f"{expected(spec)} ({sizes}); delete it and get it again from {spec.urls[0]}")

