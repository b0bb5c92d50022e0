"""The store file: one self-describing HDF5 file per snapshot, written atomically.

Layout (format ``biasvar-gram``, :data:`FORMAT_VERSION`; every dataset has a Fletcher-32 checksum):

* attributes: ``format``, ``format_version``, ``snapshot_hash``, ``params_glob``, ``dim``,
  ``groups`` (JSON), ``has_exact``, ``created``, ``biasvar_version``;
* ``group_sizes`` int64 [G]; ``anchor`` float32 [dim] (``c0``, needed to add runs);
* ``q`` float64 [G + 1, M (M + 1) / 2]: the lower triangles of the anchored Gram matrices, row by
  row (rows appended later extend each triangle at its end), NaN where not computed
  (deflate + shuffle: the per-group layers are mostly NaN);
* ``count``, ``nonfinite`` [M - 2], ``m2``, ``sumsq`` [M - 2, G]: per block row;
* ``runs``: UTF-8 JSON bytes, per run its key, attributes, file path and SHA-256, exact-gradient
  SHA-256, first row and block count.

The file is written under a temporary name beside it and renamed into place (:mod:`biasvar.atomic`),
so a reader sees the old store or the new one, never half of one. A damaged or foreign file is
an :class:`~biasvar.errors.AnalysisError` naming it.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.atomic import atomic_path, ensure_room
from biasvar.errors import AnalysisError
from biasvar.gramstore.anchored import SPECIAL, AnchoredGram, RunRows
from biasvar.gramstore.build import GramState

FORMAT = "biasvar-gram"
FORMAT_VERSION = 1
FILE_NAME = "gram-store.hdf5"  # in the snapshot's folder of the runs folder (not *.h5: not a run file)
_CHECKED = {"fletcher32": True}
_PACKED = {"compression": "gzip", "compression_opts": 1, "shuffle": True, **_CHECKED}


def store_path(runs_dir: str | Path, snapshot_id: str) -> Path:
    """``<runs_dir>/<snapshot_id>/gram-store.hdf5``."""
    return Path(runs_dir) / snapshot_id / FILE_NAME


def _pack(q: np.ndarray) -> np.ndarray:
    i, j = np.tril_indices(q.shape[1])
    return q[:, i, j]


def _unpack(packed: np.ndarray, m: int) -> np.ndarray:
    i, j = np.tril_indices(m)
    q = np.empty((packed.shape[0], m, m))
    q[:, i, j] = packed
    q[:, j, i] = packed
    return q


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_store(path: str | Path, state: GramState) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    import h5py

    from biasvar import __version__

    g = state.gram
    runs = [{"spec": r.key[0], "seed": r.key[1], "attrs": r.attrs, "path": r.path, "file_sha256": r.file_sha,
             "exact_sha256": r.exact_sha, "first_row": int(r.rows[0]) if len(r.rows) else -1,
             "blocks": len(r.rows)} for r in g.runs]
    rows = np.concatenate([r.rows for r in g.runs]) if g.runs else np.zeros(0, np.int64)
    order = np.argsort(rows)
    cat = (lambda f: np.concatenate([getattr(r, f) for r in g.runs])[order]) if g.runs else None
    G = len(g.group_sizes)
    path = Path(path)
    text = json.dumps(runs, default=_json_default, sort_keys=True).encode()
    ensure_room(path, sum(int(np.asarray(a).nbytes) for a in (g.q, state.anchor, rows)) + 64 * len(rows) + len(text))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "snapshot_hash": state.snapshot_hash,
                        "params_glob": state.params_glob, "dim": int(state.dim), "groups": json.dumps(list(g.groups)),
                        "has_exact": bool(g.has_exact), "biasvar_version": __version__,
                        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        f.create_dataset("group_sizes", data=np.asarray(g.group_sizes, dtype=np.int64), **_CHECKED)
        f.create_dataset("anchor", data=np.asarray(state.anchor, dtype=np.float32), **_PACKED)
        packed = _pack(g.q)
        f.create_dataset("q", data=packed, chunks=(1, min(packed.shape[1], 1 << 18)), **_PACKED)
        f.create_dataset("count", data=cat("count") if cat else np.zeros(0), **_CHECKED)
        f.create_dataset("nonfinite", data=cat("nonfinite") if cat else np.zeros(0, np.int64), **_CHECKED)
        f.create_dataset("m2", data=cat("m2") if cat else np.zeros((0, G)), **_CHECKED)
        f.create_dataset("sumsq", data=cat("sumsq") if cat else np.zeros((0, G)), **_CHECKED)
        f.create_dataset("runs", data=np.frombuffer(text, dtype=np.uint8), **_CHECKED)
    return path


def read_store(path: str | Path) -> GramState:
    """Read a store file (AnalysisError: missing, damaged, foreign or of a newer format)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"no store at {path}; build it with `biasvar gram`")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise AnalysisError(f"{path} is not a biasvar statistics store")
            version = int(f.attrs["format_version"])
            if version > FORMAT_VERSION:
                raise AnalysisError(f"{path} has store format {version}, newer than this biasvar reads "
                                    f"({FORMAT_VERSION}); upgrade biasvar")
            a = dict(f.attrs)
            sizes = f["group_sizes"][()]
            anchor = f["anchor"][()]
            packed = f["q"][()]
            count, nonfinite = f["count"][()], f["nonfinite"][()]
            m2, sumsq = f["m2"][()], f["sumsq"][()]
            runs = json.loads(bytes(f["runs"][()]).decode())
    except AnalysisError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise AnalysisError(f"store {path} is damaged ({str(e).splitlines()[0][:120]}); rebuild it with "
                            f"`biasvar gram --rebuild` while the run files are present") from None
    m = SPECIAL + len(count)
    if packed.shape[1] != m * (m + 1) // 2:
        raise AnalysisError(f"store {path} is damaged (Gram size disagrees with its rows); rebuild it")
    q = _unpack(packed, m)
    out = []
    for r in runs:
        lo = int(r["first_row"]) - SPECIAL
        sl = slice(lo, lo + int(r["blocks"]))
        out.append(RunRows(key=(str(r["spec"]), int(r["seed"])), attrs=dict(r["attrs"]), path=str(r["path"]),
                           rows=np.arange(sl.start, sl.stop, dtype=np.int64) + SPECIAL, count=count[sl],
                           nonfinite=nonfinite[sl], m2=m2[sl], sumsq=sumsq[sl], exact_sha=str(r["exact_sha256"]),
                           file_sha=str(r["file_sha256"])))
    gram = AnchoredGram(groups=tuple(json.loads(a["groups"])), group_sizes=sizes, q=q, runs=tuple(out),
                        has_exact=bool(a["has_exact"]))
    return GramState(gram, anchor, str(a["snapshot_hash"]), str(a["params_glob"]), int(a["dim"]))


def store_runs(path: str | Path) -> list[dict[str, Any]]:
    """The runs a store holds (spec, seed, attrs, path, ...), read without its Gram matrix (for listings).

    Raises:
        AnalysisError: missing, damaged or not a store.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise AnalysisError(f"{path} is not a biasvar statistics store")
            return list(json.loads(bytes(f["runs"][()]).decode()))
    except AnalysisError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise AnalysisError(f"store {path} is damaged ({str(e).splitlines()[0][:120]})") from None


__all__ = ["FILE_NAME", "FORMAT", "FORMAT_VERSION", "read_store", "store_path", "store_runs", "write_store"]
