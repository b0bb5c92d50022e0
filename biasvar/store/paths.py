"""Where run files live: ``<runs-dir>/<snapshot-id>/<canonical-spec>-s<seed>.h5``, and the lock file
beside each (``<file>.lock``, see :mod:`biasvar.store.lock`)."""

from __future__ import annotations

import re
from pathlib import Path


def _safe(text: str) -> str:
    """File-system-safe form of a canonical spec (they only contain [a-z0-9.,=()-] already)."""
    return re.sub(r"[^A-Za-z0-9.,=()+_-]", "_", text)


def run_path(runs_dir: str | Path, snapshot_id: str, spec: str, seed: int) -> Path:
    """``<runs_dir>/<snapshot_id>/<canonical-spec>-s<seed>.h5``."""
    return Path(runs_dir) / snapshot_id / f"{_safe(str(spec))}-s{int(seed)}.h5"


def list_run_files(runs_dir: str | Path, snapshot_id: str | None = None) -> list[Path]:
    """Run files under ``runs_dir`` (of one snapshot, or of all), sorted by path."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    pattern = f"{snapshot_id}/*.h5" if snapshot_id else "*/*.h5"
    return sorted(p for p in root.glob(pattern) if p.is_file())


def lock_path(path: str | Path) -> Path:
    """The writer lock file of a run file: ``<file>.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def file_size(path: str | Path) -> int:
    """Bytes on disk of a run file."""
    return Path(path).stat().st_size


__all__ = ["file_size", "list_run_files", "lock_path", "run_path"]
