"""The snapshot format (``ckpt.pt``): a problem's parameters, its evaluation batch, provenance.

A snapshot is a plain dict saved with ``torch.save`` and read with
``torch.load(weights_only=True)`` only, so loading one never executes code::

    magic            "biasvar-snapshot"
    format_version   1
    problem          {"kind": str, "config": {...}}          # rebuilt by registry.make_problem
    params           {name: Tensor}                          # in the problem's layout order
    buffers          {name: Tensor}                          # only for module problems that have some
    batch            Tensor [B, ...]                         # the fixed evaluation batch
    dataset          {"name", "split", "indices", "seed", "batch_size"} or None
    provenance       {"estimator", "epochs", "lr", "seed", "loss_history", "biasvar_version", ...}
    hash             sha256 of problem + params + batch (hex)

``hash[:12]`` is the snapshot id: the folder its run files go to. One model has one id however its
factory is named: the hash sees a factory named by its file (``path/catnet.py:make``) under the module
name that file has from the working directory or ``sys.path`` (``catnet:make``, the name a module import
uses; :func:`identity_kind`), while ``kind`` keeps the name as given, to rebuild it. Snapshots saved
before this rule keep their stored id (the loader also accepts the hash of the kind as written).

``kind`` is a built-in name (``vae``) or the import path of the factory that made the problem
(``mypkg.models:make``; :mod:`biasvar.problems.registry`), so a snapshot of your own model loads
wherever that factory is importable. Loading one whose factory cannot be imported, or whose
parameters no longer match what the factory builds, is one :class:`SnapshotError` line naming what
is missing, with a hint where the factory was imported from when it was saved (``provenance
["factory_file"]``). Snapshots written before user problems existed load unchanged (same format, same hash).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import biasvar
from biasvar.atomic import atomic_path
from biasvar.errors import BiasvarError, ShapeError, SnapshotError
from biasvar.problems.base import Problem
from biasvar.problems.registry import PROBLEMS, is_import_path, make_problem, problem_factory
from biasvar.problems.user import load_state
from biasvar.userimport import is_file_module

MAGIC = "biasvar-snapshot"
FORMAT_VERSION = 1


@dataclass
class Snapshot:
    """A loaded snapshot: the problem at its parameters plus what made it."""

    problem: Problem
    hash: str
    path: str | None = None
    dataset: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.hash[:12]


def _module_names(path: Path) -> list[str]:
    """The dotted module names the file ``path`` has (``a/b/c.py``: ``a.b.c``, ``b.c``, ``c``), longest first."""
    parts = path.with_suffix("").parts
    names = []
    for i in range(len(parts)):
        tail = parts[i:]
        if all(p.isidentifier() for p in tail):
            names.append(".".join(tail))
    return names or [path.stem]


def identity_kind(kind: str) -> str:
    """The name of the problem's factory as the snapshot hash sees it: a built-in name or a module name
    as given; a factory named by its file, as the module name that file has from the working directory
    (then the first ``sys.path`` folder holding it; else its file name's stem), so ``catnet:make``,
    ``./catnet.py:make`` and ``/abs/catnet.py:make`` are one model."""
    if not is_import_path(kind):
        return kind
    module, _, attr = kind.rpartition(":")
    if not is_file_module(module):
        return kind
    path = Path(os.path.abspath(module))
    for entry in (os.getcwd(), *sys.path):
        root = Path(os.path.abspath(entry or os.getcwd()))
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        parts = rel.with_suffix("").parts
        if parts and all(p.isidentifier() for p in parts):
            return ".".join(parts) + ":" + attr
    return path.stem + ":" + attr


def _identity_kinds(kind: str) -> list[str]:
    """Every name a snapshot of a factory ``kind`` may have been hashed under: the kind as written (before
    :func:`identity_kind`), its identity now, and the module names its file has from another folder."""
    out = [kind, identity_kind(kind)]
    module, _, attr = kind.rpartition(":")
    if is_import_path(kind) and is_file_module(module):
        out += [f"{name}:{attr}" for name in _module_names(Path(os.path.abspath(module)))[-8:]]
    return list(dict.fromkeys(out))


def content_hash(problem: Problem, *, kind: str | None = None) -> str:
    """sha256 over the problem kind (its :func:`identity_kind`; ``kind``: this name instead) and config,
    every parameter (name, dtype, shape, bytes) and the batch."""
    h = hashlib.sha256()
    kind = identity_kind(problem.kind) if kind is None else kind
    h.update(json.dumps({"kind": kind, "config": problem.config}, sort_keys=True).encode())
    buffers = [(f"__buffer__{k}", v) for k, v in (getattr(problem, "buffers", None) or {}).items()]
    for name, t in list(problem.params.items()) + [("__batch__", problem.batch)] + buffers:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def snapshot_of(problem: Problem, *, dataset: dict | None = None, provenance: dict | None = None) -> Snapshot:
    """An in-memory snapshot of a problem (built-in toy problems, tests)."""
    return Snapshot(problem, content_hash(problem), None, dataset, dict(provenance or {}))


def save_snapshot(path: str | Path, problem: Problem, *, dataset: dict | None = None,
                  provenance: dict | None = None) -> Snapshot:
    """Write a snapshot atomically (temporary file, then rename); returns it with its hash."""
    path = Path(path)
    if problem.kind not in PROBLEMS and not is_import_path(problem.kind):
        raise SnapshotError(f"problem kind {problem.kind!r} cannot be rebuilt when the snapshot is loaded: make "
                            f"the problem with a factory, make_problem('mypkg.models:make', options)")
    snap = snapshot_of(problem, dataset=dataset, provenance=_plain(provenance or {}))
    snap.provenance.setdefault("biasvar_version", biasvar.__version__)
    if is_import_path(problem.kind):
        where = _factory_file(problem.kind)
        if where:
            snap.provenance.setdefault("factory_file", where)
    payload = {
        "magic": MAGIC,
        "format_version": FORMAT_VERSION,
        "problem": {"kind": problem.kind, "config": dict(problem.config)},
        "params": {k: v.detach().cpu() for k, v in problem.params.items()},
        "batch": problem.batch.detach().cpu(),
        **({"buffers": {k: v.detach().cpu() for k, v in problem.buffers.items()}}
           if getattr(problem, "buffers", None) else {}),
        "dataset": dataset,
        "provenance": snap.provenance,
        "hash": snap.hash,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    snap.path = str(path)
    return snap


def _factory_file(kind: str) -> str | None:
    """The file the factory ``kind`` is defined in (where it was imported from), if it can be told."""
    try:
        return str(Path(inspect.getsourcefile(problem_factory(kind)) or "").resolve()) or None
    except (BiasvarError, TypeError, OSError):
        return None


def _unimportable_hint(kind: str, provenance: dict[str, Any]) -> str:
    """What to do when a snapshot's factory cannot be imported here."""
    module = kind.rpartition(":")[0]
    made = provenance.get("factory_file")
    where = f" (it was imported from {made} when the snapshot was saved)" if made else ""
    if is_file_module(module):
        return (f"; the factory is named by the file {module}{where}: run from the folder that path is relative "
                "to, or remake the snapshot with an absolute path")
    folder = f" ({Path(str(made)).parent})" if made else ""
    return (f"; the module {module} is looked up from the current folder and PYTHONPATH{where}: run from the "
            f"folder the snapshot was made in{folder}, or add that folder to PYTHONPATH")


def _plain(value: Any) -> Any:
    """Provenance as plain Python values (weights_only loading refuses other objects, e.g. TorchVersion)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def load_snapshot(path: str | Path) -> Snapshot:
    """Read and verify a snapshot; every failure is one clear :class:`SnapshotError`."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"snapshot not found: {path} (make one with `biasvar train ... --out {path}`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError, KeyError,
            IndexError, TypeError, AttributeError, UnicodeError, MemoryError) as e:  # arbitrary bytes: anything
        raise SnapshotError(f"cannot read snapshot {path}: truncated, corrupt or not a torch file "
                            f"({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise SnapshotError(f"{path} is not a biasvar snapshot (no '{MAGIC}' marker)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SnapshotError(f"{path} has snapshot format {version}; this biasvar {biasvar.__version__} reads "
                            f"format <= {FORMAT_VERSION}: upgrade biasvar")
    try:
        kind, config = payload["problem"]["kind"], payload["problem"]["config"]
        stored, batch = payload["params"], payload["batch"]
    except (KeyError, TypeError) as e:
        raise SnapshotError(f"{path}: snapshot lacks {e}; file damaged or written by another tool") from None
    provenance = payload.get("provenance") if isinstance(payload.get("provenance"), dict) else {}
    if isinstance(kind, str) and is_import_path(kind):
        try:
            problem_factory(kind)
        except BiasvarError as e:
            raise SnapshotError(f"{path}: cannot rebuild its problem {kind}: {e}"
                                f"{_unimportable_hint(kind, provenance)}") from None
    try:
        problem = make_problem(kind, config)
    except BiasvarError as e:
        raise SnapshotError(f"{path}: cannot rebuild its problem {kind}: {e}") from None
    try:
        load_state(problem, {**(payload.get("buffers") or {}), **stored}, source="snapshot parameters", cast=False)
    except ShapeError as e:
        raise SnapshotError(f"{path}: the problem {kind} no longer matches the snapshot: {e}") from None
    problem.batch = batch
    digest = content_hash(problem)
    if digest != payload.get("hash"):  # hashed under another name of the same factory (or before identity_kind)
        digest = next((d for d in (content_hash(problem, kind=k) for k in _identity_kinds(problem.kind))
                       if d == payload.get("hash")), digest)
    if digest != payload.get("hash"):
        raise SnapshotError(f"{path}: content hash mismatch (stored {str(payload.get('hash'))[:12]}, "
                            f"computed {digest[:12]}): the file was modified")
    return Snapshot(problem, digest, str(path), payload.get("dataset"), dict(payload.get("provenance") or {}))
