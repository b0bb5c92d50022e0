"""One fixed run written through a store module's public writer API (the same for the store of
commit 201ed0b and the package now): what ``tests/test_store_compat.py`` compares, and what made
the files in ``tests/data/`` (``python tests/store_scenario.py``, with the old module)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

OLD_COMMIT = "201ed0b"


def header(dim: int) -> dict:
    """A header like the engine's (every kind of value: ints, str, None, dict, list, float)."""
    return {"schema_version": 1, "spec": "zgr", "seed": 3, "block_size": 4, "stats_step": 2, "keep": 2,
            "snapshot_hash": "ab" * 32, "snapshot_id": "abababababab", "snapshot_path": None,
            "problem": {"kind": "toy", "vars": 2}, "dataset": {}, "params_glob": "*",
            "layout": [["a", [dim - 2], 0], ["b", [2], dim - 2]], "dim": dim, "cost": 1.5, "dtype": "float32",
            "method": "vmap", "created": "2026-01-01T00:00:00+00:00", "command_n": 20, "biasvar_version": "t",
            "device": "cpu", "git_commit": "none"}


def blocks(dim: int, n: int) -> list[tuple]:
    """``(count, nonfinite, sum, m2, sumsq, samples)`` of ``n`` blocks, fixed pseudo-random values."""
    rng = np.random.default_rng(7)
    out = []
    for b in range(n):
        count = 4 - (b % 2)
        s = np.zeros(dim, np.float32)
        s[:5] = rng.normal(size=5)
        out.append((count, 4 - count, s, rng.random(2), rng.random(2), rng.normal(size=(count, 2)).astype(np.float32)))
    return out


def pending(dim: int) -> tuple:
    s = np.zeros(dim)
    s[:3] = [0.1, 0.2, 0.3]
    return 2, 1, s, np.array([0.5, 0.25]), np.array([1.5, 2.5]), np.ones((2, 2), np.float32)


def write(store: ModuleType, path: Path, dim: int, *, compression: str | None, finish: bool) -> None:
    """Three blocks and (unless ``finish``) a saved block in progress; reopened (resumed), one block
    more, then finished, or a block in progress saved again."""
    kw = dict(n_target=20, group_sizes=np.array([dim - 2, 2]), sample_index=np.array([0, 1]),
              exact=np.linspace(0, 1, dim) if dim < 100 else None, compression=compression)
    bl = blocks(dim, 4)
    with store.RunWriter.open(path, header(dim), **kw) as w:
        for b in bl[:3]:
            w.append(store.BlockStats(*b), wall_s=0.125)
        if not finish:
            w.save_pending(store.PendingStats(*pending(dim)), wall_s=0.5)
    with store.RunWriter.open(path, header(dim), **kw) as w:
        assert w.n_done == 12 + 3 * (not finish)
        w.append(store.BlockStats(*bl[3]), wall_s=0.25)
        if finish:
            w.finish()
        else:
            w.save_pending(store.PendingStats(*pending(dim)), wall_s=0.0625)


def kept(dim: int, finish: bool) -> np.ndarray:
    """The kept draws the file holds: the block after a saved block in progress starts with the
    saved draws (the writer does not write them again)."""
    rows = [b[5] for b in blocks(dim, 4)]
    if not finish:
        saved = pending(dim)[5]
        rows[3] = np.concatenate([saved, rows[3][len(saved):]])
    return np.concatenate(rows)


def load_old_store() -> ModuleType:
    """``biasvar/store.py`` of :data:`OLD_COMMIT`, loaded from git as a module."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:biasvar/store.py"], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    mod = ModuleType("old_store")
    mod.__file__ = "old_store.py"
    sys.modules["old_store"] = mod  # dataclasses look their module up
    exec(compile(src, "old_store.py", "exec"), mod.__dict__)
    return mod


FIXTURES = {"old-run-small.h5": dict(dim=7, compression=None, finish=False),
            "old-run-gzip.h5": dict(dim=1 << 14, compression="gzip", finish=True)}

if __name__ == "__main__":  # make the fixtures with the old code
    old = load_old_store()
    here = Path(__file__).parent / "data"
    for name, kw in FIXTURES.items():
        path = here / name
        path.unlink(missing_ok=True)
        write(old, path, kw["dim"], compression=kw["compression"], finish=kw["finish"])
        attrs = old.read_run(path).attrs
        path.with_suffix(".json").write_text(json.dumps(attrs, sort_keys=True) + "\n")
