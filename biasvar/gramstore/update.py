"""Build or update a snapshot's store from the run files present (``biasvar gram``).

A run is added when its file is new to the store; a run whose file changed since (more blocks
drawn, a resumed run) has its rows computed again; a run whose file is gone keeps its rows. Only
the new rows and columns are computed. Damaged and misplaced run files are left out with a note.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biasvar.errors import AnalysisError, StoreError
from biasvar.gramstore.anchored import RunRows
from biasvar.gramstore.build import MEMORY_BYTES, GramState, compute, drop_runs, file_sha256, unbiased
from biasvar.gramstore.file import read_store, store_path, write_store
from biasvar.spec import parse_spec


@dataclass(frozen=True)
class UpdateResult:
    """What :func:`update_store` did."""

    path: Path
    added: tuple[str, ...]
    recomputed: tuple[str, ...]
    kept_without_file: tuple[str, ...]
    unchanged: int
    notes: tuple[str, ...]
    runs: int


def _key(run: Any) -> tuple[str, int]:
    return str(parse_spec(run.attrs["spec"])), int(run.attrs["seed"])


def _name(key: tuple[str, int]) -> str:
    return f"{key[0]} seed {key[1]}"


def _pick_snapshot(runs: list[Any], runs_dir: Path, snapshot_id: str | None) -> list[Any]:
    hashes = sorted({str(r.attrs.get("snapshot_hash", "")) for r in runs})
    if snapshot_id is not None:
        snap = snapshot_id.strip().lower()
        runs = [r for r in runs if str(r.attrs.get("snapshot_hash", "")).lower().startswith(snap)
                or Path(r.path).parent.name.lower().startswith(snap)]
        if not runs:
            raise AnalysisError(f"no runs of snapshot {snapshot_id!r} in {runs_dir}; snapshots there: "
                                + (", ".join(h[:12] for h in hashes) or "none"))
        return runs
    if len(hashes) > 1:
        raise AnalysisError(f"{runs_dir} holds runs of {len(hashes)} snapshots ("
                            + ", ".join(h[:12] for h in hashes) + "); pick one with --snapshot-id ID")
    return runs


def update_store(runs_dir: str | Path, snapshot_id: str | None = None, *, path: str | Path | None = None,
                 rebuild: bool = False, memory_bytes: int = MEMORY_BYTES,
                 progress: Callable[[str], None] | None = None) -> UpdateResult:
    """Build or update the store of one snapshot's runs (by default ``<runs>/<snapshot>/gram-store.hdf5``).

    Args:
        runs_dir: the runs folder.
        snapshot_id: which snapshot (id or hash prefix); optional when the folder holds one.
        path: the store file (default: in the snapshot's folder).
        rebuild: start from scratch (the runs whose files are gone are dropped).
        memory_bytes: the panel's budget while computing.
        progress: called with a short line before each run file is read.
    """
    from biasvar import store

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise AnalysisError(f"runs folder {str(runs_dir)!r} does not exist; pass --runs-dir DIR")
    try:
        listed, bad = store.scan_runs(runs_dir)
    except StoreError as e:
        raise AnalysisError(f"cannot list runs in {runs_dir}: {e}") from e
    if not listed:
        raise AnalysisError(f"no readable runs in {runs_dir}" + (f" ({len(bad)} damaged or misplaced)" if bad else ""))
    listed = _pick_snapshot(listed, runs_dir, snapshot_id)
    folder = Path(listed[0].path).parent
    target = Path(path) if path is not None else store_path(runs_dir, folder.name)
    if target.exists() and not target.is_file():
        raise AnalysisError(f"the store path {target} is a folder, not a file; pass --store FILE")
    old: GramState | None = None if rebuild or not target.exists() else read_store(target)
    notes = [f"{b.path}: {b.problem} ({b.reason}); left out" for b in bad]
    if old is not None and old.snapshot_hash and listed[0].attrs.get("snapshot_hash") != old.snapshot_hash:
        raise AnalysisError(f"store {target} holds snapshot {old.snapshot_hash[:12]}, the runs are of "
                            f"{str(listed[0].attrs.get('snapshot_hash'))[:12]}; pass another --store")
    by_key = {_key(r): r for r in listed}
    stored = {r.key: r for r in old.gram.runs} if old is not None else {}
    fingerprints: dict[tuple[str, int], str] = {}

    def unchanged(s: RunRows) -> Any | None:
        run = by_key.get(s.key)
        if run is None or not os.path.exists(run.path):
            return None
        sha = fingerprints.get(s.key) or file_sha256(run.path)
        fingerprints[s.key] = sha
        return run if sha == s.file_sha else None

    changed = [k for k, s in stored.items() if k in by_key and unchanged(s) is None]
    gone = tuple(_name(k) for k in stored if k not in by_key)
    if changed and old is not None:
        old = drop_runs(old, changed)
    new_keys = [k for k in by_key if k not in stored or k in changed]
    if old is None:  # the first run anchors the store: an unbiased one (close to the common mean)
        new_keys.sort(key=lambda k: (not unbiased(k[0]), k))
    new = [(by_key[k], os.path.relpath(by_key[k].path, target.parent),  # the path from the store's folder
            fingerprints.get(k) or file_sha256(by_key[k].path)) for k in new_keys]
    if old is None and not new:
        raise AnalysisError(f"no runs to store in {runs_dir}")
    state = compute(new, load=lambda r: store.read_run(r.path), old=old,
                    old_present=lambda s: unchanged(s), memory_bytes=memory_bytes, progress=progress)
    if new or changed or old is None:
        write_store(target, state)
    return UpdateResult(path=target, added=tuple(_name(k) for k in new_keys if k not in changed),
                        recomputed=tuple(_name(k) for k in changed), kept_without_file=gone,
                        unchanged=len(stored) - len(changed), notes=tuple(notes), runs=len(state.gram.runs))


def load_store(path: str | Path) -> GramState:
    """Read a store file (see :mod:`biasvar.gramstore.file`)."""
    return read_store(path)


__all__ = ["UpdateResult", "load_store", "update_store"]
