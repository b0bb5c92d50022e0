"""Dataset files: locate, verify checksums, decode, binarize (App. B.3; docs/estimators.md, "Datasets").

Five variants are served by :func:`load` (see :data:`DATASETS`):

==================  =====================================================  ===================
name                images [N, 784] float32                                 splits
==================  =====================================================  ===================
``mnist``           MNIST grey levels ``pixel / 255`` in [0, 1], labels      train, test
``mnist-b``         MNIST-B: ``pixel / 255 > 0.5`` (static), labels          train, test
``fmnist``          Fashion-MNIST grey levels in [0, 1], labels              train, test
``omniglot-d``      Burda's 28x28 Omniglot grey probabilities, ``dynamic``   train, test
``binarized-mnist`` Larochelle's statically binarized MNIST (exactly 0/1)    train, valid, test
==================  =====================================================  ===================

``omniglot-d`` is dynamically binarized: the *consumer* Bernoulli-samples the grey images at every
use with its own seeded generator (``Problem.make_batch`` does ``torch.bernoulli(x, generator=g)``).

Files live under a data directory (:func:`data_dir`: ``--data-dir``, else ``$BIASVAR_DATA``, else
``$XDG_CACHE_HOME/biasvar`` or ``~/.cache/biasvar``), laid out as ``../shared/data`` is::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    binarized_mnist/binarized_mnist_{train,valid,test}.amat
    omniglot/chardata.mat

Files placed flat in the data directory are accepted too (MNIST and Fashion-MNIST share file names;
a flat file counts for the collection whose checksum it matches).

Every file is verified before it is decoded: MD5 for MNIST, Fashion-MNIST and Omniglot (public
values), SHA256 of the MATLAB copies for binarized MNIST, or, for the real ASCII ``.amat``, a check of
its shape and values. A missing file is downloaded from its canonical source when ``download`` allows
(into a temporary file, verified, then renamed); set ``BIASVAR_OFFLINE=1`` to make ``download=None``
mean "never". Digests and decoded arrays are cached in-process, keyed by (path, size, mtime, ctime,
inode), so repeated loads neither re-hash nor re-decode; :func:`clear_cache` empties the caches.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import os
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

import numpy as np
import scipy.io
import torch

from biasvar.atomic import atomic_path
from biasvar.errors import DataError

__all__ = [
    "DATASETS", "Dataset", "DatasetInfo", "FileSpec", "FileStatus", "Progress",
    "clear_cache", "data_dir", "load", "verify",
]

Progress = Callable[[str, int, "int | None"], None]
"""Download progress callback: ``progress(file_name, bytes_done, bytes_total_or_None)``."""

IMAGE_SIZE = 28 * 28
_TIMEOUT_S = 10.0          # per socket operation (connect, each read)
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# The file table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileSpec:
    """One dataset file: where it lives under the data dir, how it is checked, where to get it."""

    key: str                                   # "mnist/train-images"
    collection: str                            # mnist | fashion-mnist | binarized-mnist | omniglot
    split: str                                 # train | valid | test | train+test
    role: str                                  # images | labels | images (data + testdata)
    relpath: str                               # path under the data dir (POSIX)
    fmt: str                                   # idx-images | idx-labels | amat | chardata
    checksums: tuple[tuple[str, str], ...]     # accepted (hashlib algorithm, hex digest)
    urls: tuple[str, ...]                      # canonical source first, then mirrors
    size: int | None = None                    # bytes of the canonical file, when known
    rows: int | None = None                    # images in the file (checked for .amat)
    aliases: tuple[str, ...] = ()              # other names accepted flat in the data dir

    @property
    def name(self) -> str:
        return PurePosixPath(self.relpath).name


_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_BMNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_OMNIGLOT_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"


def _idx(collection: str, folder: str, urls: tuple[str, ...], split: str, role: str, md5: str,
         size: int | None, rows: int) -> FileSpec:
    stem = "train" if split == "train" else "t10k"
    name = f"{stem}-{role}-{'idx3' if role == 'images' else 'idx1'}-ubyte.gz"
    return FileSpec(key=f"{collection}/{split}-{role}", collection=collection, split=split, role=role,
                    relpath=f"{folder}/{name}", fmt=f"idx-{role}", checksums=(("md5", md5),),
                    urls=tuple(u + name for u in urls), size=size, rows=rows)


def _amat(split: str, sha256: str, rows: int) -> FileSpec:
    name = f"binarized_mnist_{split}.amat"
    # No canonical checksum of Larochelle's ASCII files is published: the SHA256 below is that of the
    # MATLAB copies in ../shared/data (SHA256SUMS); an ASCII .amat is accepted when well formed
    # (`rows` lines of 784 values in {0, 1}).
    return FileSpec(key=f"binarized-mnist/{split}", collection="binarized-mnist", split=split,
                    role="images", relpath=f"binarized_mnist/{name}", fmt="amat",
                    checksums=(("sha256", sha256),), urls=(_BMNIST_URL + name,), rows=rows)


_FILE_LIST = (
    # MNIST: MD5s are the public values (../shared/data/README.md).
    _idx("mnist", "mnist", _MNIST_URLS, "train", "images",
         "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422, 60000),
    _idx("mnist", "mnist", _MNIST_URLS, "train", "labels",
         "d53e105ee54ea40749a09fcbcd1e9432", 28881, 60000),
    _idx("mnist", "mnist", _MNIST_URLS, "test", "images",
         "9fb629c4189551a2d022fa330f9573f3", 1648877, 10000),
    _idx("mnist", "mnist", _MNIST_URLS, "test", "labels",
         "ec29112dd5afa0611ce80d1b7f02629c", 4542, 10000),
    # Fashion-MNIST: MD5s from the Fashion-MNIST README.
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "train", "images",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", None, 60000),
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "train", "labels",
         "25c81989df183df01b3e8a0aad5dffbe", 29515, 60000),
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "test", "images",
         "bef4ecab320f06d8554ea6380940ec79", None, 10000),
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "test", "labels",
         "bb300cfdad3c16e7a12a480ee83cd310", 5148, 10000),
    # Statically binarized MNIST (Larochelle & Murray 2011).
    _amat("train", "79a0312c7389d855cfc97e3812de3998417c5829d8a51543b56a90a91252ae7e", 50000),
    _amat("valid", "7436afc856959075c7787025bb8a4ba2b520b9230ee39667c66aa7dd2819dd68", 10000),
    _amat("test", "5bc30222e1e7896cbccd1e1db6b28540cc1230f4d2d5473841a5f6cc54be8d38", 10000),
    # Burda et al.'s 28x28 Omniglot (IWAE repo); ARM-gradient stores the same blob as omniglot.mat.
    FileSpec(key="omniglot/chardata", collection="omniglot", split="train+test", role="images",
             relpath="omniglot/chardata.mat", fmt="chardata",
             checksums=(("md5", "21ecaf34373511aa7691cf2e0802aa3d"),), urls=(_OMNIGLOT_URL,),
             aliases=("omniglot.mat",)),
)
_FILES: Mapping[str, FileSpec] = MappingProxyType({f.key: f for f in _FILE_LIST})


# ---------------------------------------------------------------------------------------------
# The datasets
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """A dataset variant: which files each split reads and how they become images in [0, 1]."""

    name: str
    summary: str
    split_files: Mapping[str, tuple[str, ...]]   # split -> file keys (images first, then labels)
    reader: str                                  # idx-grey | idx-threshold | chardata | amat
    binary: bool                                 # images exactly 0/1
    dynamic: bool                                # Bernoulli-sampled by the consumer at every use
    labelled: bool

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_files)


def _idx_splits(collection: str) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({s: (f"{collection}/{s}-images", f"{collection}/{s}-labels")
                             for s in ("train", "test")})


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({
    "mnist-b": DatasetInfo("mnist-b", "MNIST thresholded at 0.5 (pixel/255 > 0.5), static",
                           _idx_splits("mnist"), "idx-threshold", binary=True, dynamic=False, labelled=True),
    "mnist": DatasetInfo("mnist", "MNIST grey levels pixel/255 in [0, 1]", _idx_splits("mnist"),
                         "idx-grey", binary=False, dynamic=False, labelled=True),
    "omniglot-d": DatasetInfo("omniglot-d",
                              "Burda's 28x28 Omniglot grey probabilities, re-binarized at every use",
                              MappingProxyType({s: ("omniglot/chardata",) for s in ("train", "test")}),
                              "chardata", binary=False, dynamic=True, labelled=False),
    "fmnist": DatasetInfo("fmnist", "Fashion-MNIST grey levels pixel/255 in [0, 1]",
                          _idx_splits("fashion-mnist"), "idx-grey",
                          binary=False, dynamic=False, labelled=True),
    "binarized-mnist": DatasetInfo("binarized-mnist",
                                   "Larochelle's statically binarized MNIST (train/valid/test)",
                                   MappingProxyType({s: (f"binarized-mnist/{s}",)
                                                     for s in ("train", "valid", "test")}),
                                   "amat", binary=True, dynamic=False, labelled=False),
})


@dataclass(frozen=True, eq=False)
class Dataset:
    """What :func:`load` returns.

    Attributes:
        name: the variant (a key of :data:`DATASETS`).
        split: train, test (or valid for ``binarized-mnist``).
        images: float32 [N, 784] in [0, 1], rows are upright 28x28 images in row-major order;
            exactly 0/1 for the binary variants, grey probabilities for ``omniglot-d``.
        labels: int64 [N] class labels (``mnist``, ``mnist-b``, ``fmnist``), else None.
        dynamic: True for ``omniglot-d``: the consumer Bernoulli-samples ``images`` at every use.
        files: the paths read.
    """

    name: str
    split: str
    images: torch.Tensor = field(repr=False)
    labels: torch.Tensor | None = field(repr=False)
    dynamic: bool
    files: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class FileStatus:
    """One row of :func:`verify`: a known dataset file and what was found."""

    dataset: str            # the collection: mnist, fashion-mnist, binarized-mnist, omniglot
    split: str
    path: Path              # where it was found, or where it should be put
    state: str              # present | missing | corrupt
    detail: str
    role: str = "images"    # images | labels
    used_by: tuple[str, ...] = ()   # variants of DATASETS that read it


# ---------------------------------------------------------------------------------------------
# Locating
# ---------------------------------------------------------------------------------------------
def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (``--data-dir``), else ``$BIASVAR_DATA``, else a per-user cache.

    The cache is ``$XDG_CACHE_HOME/biasvar``, or ``~/.cache/biasvar``. Nothing is created or checked.
    """
    return _resolve(explicit)[0]


def _resolve(explicit: str | Path | None) -> tuple[Path, str]:
    """``(directory, where it came from)``; the origin names the setting in error messages."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser(), "--data-dir"
    env = os.environ.get("BIASVAR_DATA")
    if env:
        return Path(env).expanduser(), "$BIASVAR_DATA"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "biasvar", "default"


def _checked_root(explicit: str | Path | None, *, must_exist: bool) -> Path:
    root, origin = _resolve(explicit)
    if root.exists() and not root.is_dir():
        raise DataError(f"data directory {root} (from {origin}) is not a directory; "
                        f"pass a folder holding the dataset files, e.g. --data-dir ../shared/data")
    if must_exist and origin != "default" and not root.exists():
        raise DataError(f"data directory {root} (from {origin}) does not exist; "
                        f"create it or pass an existing folder, e.g. --data-dir ../shared/data")
    return root


def _ambiguous(spec: FileSpec, name: str) -> bool:
    """True when another collection has a file of this flat name (MNIST vs Fashion-MNIST)."""
    return any(o.collection != spec.collection and name in (o.name, *o.aliases) for o in _FILES.values())


def _locate(spec: FileSpec, root: Path) -> Path | None:
    """The file's path under ``root`` (nested first, then flat), or None."""
    nested = root / spec.relpath
    if nested.is_file():
        return nested
    for name in (spec.name, *spec.aliases):
        flat = root / name
        if flat.is_file() and (not _ambiguous(spec, name) or _checksum_ok(spec, flat)):
            return flat
    return None


# ---------------------------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------------------------
def _stamp(path: Path) -> tuple[str, int, int, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@functools.lru_cache(maxsize=64)
def _digest_cached(stamp: tuple[str, int, int, int, int], algo: str) -> str:
    h = hashlib.new(algo)
    with open(stamp[0], "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _digest(path: Path, algo: str) -> str:
    return _digest_cached(_stamp(path), algo)


def _checksum_ok(spec: FileSpec, path: Path) -> bool:
    return any(_digest(path, algo) == hexd for algo, hexd in spec.checksums)


def _is_matlab(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"MATLAB"


def _expected(spec: FileSpec) -> str:
    return " or ".join(f"{algo.upper()} {hexd}" for algo, hexd in spec.checksums)


def _check(spec: FileSpec, path: Path) -> str:
    """Verify ``path`` as ``spec``'s file; return a short note, or raise :class:`DataError` (corrupt)."""
    if _checksum_ok(spec, path):
        return f"{spec.checksums[0][0].upper()} ok"
    if spec.fmt == "amat" and not _is_matlab(path):
        rows = _decode(path, spec.fmt).shape[0]   # raises DataError when malformed
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
                    f"{_expected(spec)} ({sizes}); delete it and get it again from {spec.urls[0]}")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def clear_cache() -> None:
    """Forget cached digests and decoded arrays (they are keyed by path, size and mtime)."""
    _digest_cached.cache_clear()
    _decode_cached.cache_clear()


def _decode(path: Path, fmt: str, part: str = "") -> np.ndarray:
    """The decoded (read-only) array of a verified file; cached per file identity."""
    return _decode_cached(_stamp(path), fmt, part)


@functools.lru_cache(maxsize=8)
def _decode_cached(stamp: tuple[str, int, int, int, int], fmt: str, part: str) -> np.ndarray:
    path = Path(stamp[0])
    if fmt.startswith("idx-"):
        arr = _read_idx(path, images=fmt == "idx-images")
    elif fmt == "chardata":
        arr = _read_chardata(path, part)
    elif fmt == "amat":
        arr = _read_matlab_amat(path) if _is_matlab(path) else _read_ascii_amat(path)
    else:  # pragma: no cover - the table only holds the formats above
        raise AssertionError(fmt)
    arr.setflags(write=False)
    return arr


def _read_idx(path: Path, *, images: bool) -> np.ndarray:
    """IDX gzip (LeCun): magic 0x803 = uint8 [n, 28, 28] images, 0x801 = uint8 [n] labels."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable gzip file ({e}); delete it and get it again") from None
    ndim = 3 if images else 1
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic != 0x800 + ndim:
        raise DataError(f"{path}: IDX magic number {magic:#x}, expected {0x800 + ndim:#x} "
                        f"({'images' if images else 'labels'}); is this the right file?")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if images and dims[1:] != [28, 28]:
        raise DataError(f"{path}: IDX images of {dims[1]}x{dims[2]} pixels, expected 28x28")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: IDX payload is {len(raw)} bytes, expected {expected} for shape {dims}")
    arr = np.frombuffer(raw, np.uint8, offset=header)
    return arr.reshape(dims[0], IMAGE_SIZE) if images else arr


def _read_chardata(path: Path, var: str) -> np.ndarray:
    """Burda's Omniglot ``chardata.mat``: ``var`` ('data' or 'testdata') is [784, N], column-major.

    Each column is one 28x28 image stored the MATLAB way (column-major), so image ``n`` is
    ``m[var][:, n].reshape(28, 28, order="F")``, the same as the IWAE code's
    ``data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='fortran')``. Returned as upright
    images flattened row-major: float32 [N, 784].
    """
    try:
        m = scipy.io.loadmat(path, variable_names=[var])
    except (ValueError, OSError, NotImplementedError, TypeError) as e:
        raise DataError(f"{path} is not a readable MATLAB file ({e}); delete it and get it again") from None
    if var not in m:
        names = sorted(k for k in m if not k.startswith("__"))
        raise DataError(f"{path}: no variable '{var}' (found {names}); "
                        f"expected Burda's chardata.mat with 'data' and 'testdata'")
    d = np.asarray(m[var])
    if d.ndim != 2 or d.shape[0] != IMAGE_SIZE:
        raise DataError(f"{path}: '{var}' has shape {list(d.shape)}, expected [784, N]")
    n = d.shape[1]
    imgs = d.T.reshape(n, 28, 28).transpose(0, 2, 1)   # [N, row, col]: column-major -> upright
    out = np.ascontiguousarray(imgs, dtype=np.float32).reshape(n, IMAGE_SIZE)
    if not (np.isfinite(out).all() and out.min(initial=0) >= 0 and out.max(initial=0) <= 1):
        raise DataError(f"{path}: '{var}' holds values outside [0, 1]; expected grey probabilities")
    return out


def _read_matlab_amat(path: Path) -> np.ndarray:
    """The MATLAB-5 copy of a binarized MNIST split: variable ``X``, uint8 [N, 784] in {0, 1}."""
    try:
        m = scipy.io.loadmat(path)
    except (ValueError, OSError, NotImplementedError, TypeError) as e:
        raise DataError(f"{path} is not a readable MATLAB file ({e}); delete it and get it again") from None
    names = [k for k in m if not k.startswith("__")]
    if "X" not in m:
        raise DataError(f"{path}: no variable 'X' (found {names}); expected a MATLAB copy of binarized MNIST")
    x = np.asarray(m["X"])
    if x.ndim != 2 or x.shape[1] != IMAGE_SIZE:
        raise DataError(f"{path}: 'X' has shape {list(x.shape)}, expected [N, 784]")
    if not np.isin(x, (0, 1)).all():
        raise DataError(f"{path}: 'X' holds values other than 0 and 1")
    return x.astype(np.uint8)


_WHITESPACE = np.array([ord(c) for c in " \t\r\n"], dtype=np.uint8)


def _read_ascii_amat(path: Path, block: int = 2000) -> np.ndarray:
    """Larochelle's ASCII ``.amat``: one image per line, 784 space-separated values in {0, 1}."""
    lines = [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]
    if not lines:
        raise DataError(f"{path}: empty file; expected lines of 784 values in {{0, 1}}")
    out = np.empty((len(lines), IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, len(lines), block):
        chunk = lines[start: start + block]
        buf = np.frombuffer(b"\n".join(chunk) + b"\n", dtype=np.uint8)
        digit = (buf == ord("0")) | (buf == ord("1"))
        newline = buf == ord("\n")
        bad = ~(digit | np.isin(buf, _WHITESPACE))
        bad[1:] |= digit[1:] & digit[:-1]                           # a token of two or more digits
        if bad.any():
            row = start + int(newline[: int(np.argmax(bad))].sum())
            raise DataError(f"{path}: image {row + 1} holds a value other than 0 or 1; "
                            f"expected lines of 784 space-separated values in {{0, 1}}")
        line_of = np.cumsum(newline) - newline                      # line index of each byte
        counts = np.bincount(line_of[digit], minlength=len(chunk))
        wrong = np.flatnonzero(counts != IMAGE_SIZE)
        if wrong.size:
            i = int(wrong[0])
            raise DataError(f"{path}: image {start + i + 1} has {int(counts[i])} values, "
                            f"expected {IMAGE_SIZE}")
        out[start: start + len(chunk)] = (buf[digit] - ord("0")).reshape(len(chunk), IMAGE_SIZE)
    return out


# ---------------------------------------------------------------------------------------------
# Obtaining: locate, verify, or download
# ---------------------------------------------------------------------------------------------
def _fetch(url: str, dest: Path, *, timeout: float, progress: Progress | None = None) -> None:
    """Stream ``url`` into ``dest`` (overwritten). Raises OSError / HTTPException on failure."""
    req = urllib.request.Request(url, headers={"User-Agent": "biasvar (dataset download)"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        done = 0
        if progress is not None:
            progress(dest.name, done, total)
        while chunk := resp.read(_CHUNK):
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
            _check(spec, tmp)
        except DataError as e:
            raise DataError(f"downloaded file failed verification: {e}") from None
    return dest


def _missing_message(spec: FileSpec, dest: Path, reason: str) -> str:
    return (f"dataset file {spec.name} is missing: put it at {dest} (or directly in {dest.parent.parent}); "
            f"get it from {' or '.join(spec.urls)} ({_expected(spec)}) [{reason}]")


def _obtain(spec: FileSpec, root: Path, download: bool | None, progress: Progress | None) -> Path:
    """The verified path of ``spec``'s file under ``root``, downloading it if allowed and needed."""
    path = _locate(spec, root)
    if path is not None:
        _check(spec, path)
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


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def _info(name: str, split: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; expected one of: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if split not in info.split_files:
        raise DataError(f"dataset '{name}' has no split '{split}'; expected one of: {', '.join(info.splits)}")
    return info


def load(name: str, split: str = "train", *, data_dir: str | Path | None = None, download: bool | None = None,
         progress: Progress | None = None) -> Dataset:
    """Load one split of a dataset variant as float32 images [N, 784] in [0, 1].

    Args:
        name: a key of :data:`DATASETS`: mnist-b, mnist, omniglot-d, fmnist, binarized-mnist.
        split: train or test (binarized-mnist: train, valid or test).
        data_dir: the data directory (see :func:`data_dir`).
        download: fetch missing files from their canonical source: True = yes, False = never,
            None = yes unless ``$BIASVAR_OFFLINE`` is set.
        progress: called as ``progress(file_name, bytes_done, bytes_total_or_None)`` while downloading.

    Returns:
        A :class:`Dataset`; ``images`` rows are upright 28x28 images flattened row-major.

    Raises:
        DataError: unknown name or split, a missing file that could not be downloaded (the message
            names the full path to put it at and where to get it), or a corrupt file (the message
            names the file and the expected checksum).
    """
    info = _info(name, split)
    root = _checked_root(data_dir, must_exist=False)
    paths = [_obtain(_FILES[key], root, download, progress) for key in info.split_files[split]]
    specs = [_FILES[key] for key in info.split_files[split]]

    if info.reader == "chardata":
        var = "data" if split == "train" else "testdata"
        images = torch.from_numpy(np.array(_decode(paths[0], "chardata", var)))    # float32 [N, 784]
    else:
        raw = _decode(paths[0], specs[0].fmt)                                  # uint8 [N, 784]
        if info.reader == "idx-threshold":
            # pixel/255 > 0.5 <=> pixel >= 128
            images = torch.from_numpy((raw > 127).astype(np.float32))
        elif info.reader == "idx-grey":
            images = torch.from_numpy(raw.astype(np.float32)).div_(255.0)
        else:                                                                  # amat: already 0/1
            images = torch.from_numpy(raw.astype(np.float32))

    labels = None
    if info.labelled:
        lab = _decode(paths[1], specs[1].fmt)
        if lab.shape[0] != images.shape[0]:
            raise DataError(f"{paths[1]} holds {lab.shape[0]} labels but {paths[0]} holds "
                            f"{images.shape[0]} images; the two files must be of the same split")
        if lab.size and lab.max() > 9:
            raise DataError(f"{paths[1]}: label {int(lab.max())} out of range, expected 0..9")
        labels = torch.from_numpy(lab.astype(np.int64))
    return Dataset(name=name, split=split, images=images, labels=labels, dynamic=info.dynamic,
                   files=tuple(str(p) for p in paths))


def verify(data_dir: str | Path | None = None) -> list[FileStatus]:
    """Check every known dataset file under the data directory; never downloads.

    Returns:
        One :class:`FileStatus` per file of the table, in a fixed order: ``state`` is ``present``
        (verified), ``missing`` (``path`` is where to put it) or ``corrupt`` (``detail`` says why).

    Raises:
        DataError: the data directory (explicit or ``$BIASVAR_DATA``) is not an existing directory.
    """
    root = _checked_root(data_dir, must_exist=True)
    out = []
    for spec in _FILES.values():
        used_by = tuple(n for n, d in DATASETS.items()
                        if any(spec.key in keys for keys in d.split_files.values()))
        common = dict(dataset=spec.collection, split=spec.split, role=spec.role, used_by=used_by)
        path = _locate(spec, root) if root.is_dir() else None
        if path is None:
            out.append(FileStatus(path=root / spec.relpath, state="missing",
                                  detail=f"get it from {spec.urls[0]}", **common))
            continue
        try:
            note = _check(spec, path)
            out.append(FileStatus(path=path, state="present", detail=note, **common))
        except DataError as e:
            out.append(FileStatus(path=path, state="corrupt", detail=str(e), **common))
    return out
