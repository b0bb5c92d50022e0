"""Decoding verified dataset files into (read-only) numpy arrays, cached per file identity.

Readers: IDX gzip (MNIST, Fashion-MNIST), Burda's Omniglot ``chardata.mat``, and binarized MNIST
either as Larochelle's ASCII ``.amat`` or as a MATLAB-5 copy. A file's identity is its
:func:`stamp` (path, size, mtime, ctime, inode), so a replaced file is decoded again.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np
import scipy.io

from biasvar.data.catalog import IMAGE_SIZE
from biasvar.errors import DataError


def stamp(path: Path) -> tuple[str, int, int, int, int]:
    """A file's identity for the caches: (resolved path, size, mtime, ctime, inode)."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def is_matlab(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"MATLAB"


def clear_decoded() -> None:
    """Forget the decoded arrays."""
    _decode_cached.cache_clear()


def decode(path: Path, fmt: str, part: str = "") -> np.ndarray:
    """The decoded (read-only) array of a verified file; cached per file identity."""
    return _decode_cached(stamp(path), fmt, part)


@functools.lru_cache(maxsize=8)
def _decode_cached(key: tuple[str, int, int, int, int], fmt: str, part: str) -> np.ndarray:
    path = Path(key[0])
    if fmt.startswith("idx-"):
        arr = _read_idx(path, images=fmt == "idx-images")
    elif fmt == "chardata":
        arr = _read_chardata(path, part)
    elif fmt == "amat":
        arr = _read_matlab_amat(path) if is_matlab(path) else _read_ascii_amat(path)
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

