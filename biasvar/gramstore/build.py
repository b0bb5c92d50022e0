"""Compute an :class:`~biasvar.gramstore.anchored.AnchoredGram` from run files, block by block.

The products are computed in panels: the blocks of a few new runs (as many as ``memory_bytes``
allows, anchored and in float64) stay in memory while every other run whose products with them are
still missing is read once and multiplied with them, one parameter group at a time (BLAS GEMM).
No more than one panel and one streamed run are in memory at once. Adding runs to a store computes
only their rows and columns: the runs already stored are read (their files must still be there for
the products with the new runs; a run whose file is gone keeps its rows, and its products with
the new runs stay NaN).

Per parameter group, products are kept for the blocks of one run among themselves and for pairs of
runs of which one is unbiased (a reference candidate: what a per-group report row uses); the
all-parameters layer is kept for every pair (contrasts, Pareto marks, any reference).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.errors import AnalysisError
from biasvar.gramstore.anchored import ANCHOR, EXACT, SPECIAL, AnchoredGram, RunRows
from biasvar.spec import parse_spec
from biasvar.stats.moments import CHUNK, offsets

MEMORY_BYTES = 2 << 30  # the panel's budget (float64 rows of dim entries)


@dataclass(frozen=True)
class GramState:
    """What a store holds: the anchored Gram matrix and its anchor ``c0`` (float32 [dim])."""

    gram: AnchoredGram
    anchor: np.ndarray
    snapshot_hash: str
    params_glob: str
    dim: int


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 8 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 23), b""):
            h.update(piece)
    return h.hexdigest()


def array_sha256(x: np.ndarray | None) -> str:
    return "" if x is None else hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()


def unbiased(spec: str) -> bool:
    """Whether the spec's family is unbiased (a reference candidate)."""
    return bool(parse_spec(spec).family.unbiased)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _anchored(run: Any, c0: np.ndarray, out: Any = None) -> Any:
    """``S_b - n_b c0`` for every block, float64 [nb, dim] (converted a column chunk at a time), into
    ``out`` if given (a slice of a panel: no second copy). Block sums held as a torch tensor (a
    store-only sweep on a device) stay on their device: the result is a float64 tensor there."""
    sums, count = run.block_sum, np.asarray(run.block_count, dtype=np.float64)
    if _is_tensor(sums):
        import torch

        c = torch.as_tensor(count, device=sums.device)[:, None]
        a = torch.as_tensor(c0, device=sums.device).to(torch.float64)[None, :]
        out = torch.empty(sums.shape, dtype=torch.float64, device=sums.device) if out is None else out
        for lo in range(0, sums.shape[1], CHUNK):
            hi = min(sums.shape[1], lo + CHUNK)
            out[:, lo:hi] = sums[:, lo:hi]
            out[:, lo:hi] -= c * a[:, lo:hi]
        return out
    out = np.empty(sums.shape, dtype=np.float64) if out is None else out
    for lo in range(0, sums.shape[1], CHUNK):
        hi = min(sums.shape[1], lo + CHUNK)
        out[:, lo:hi] = sums[:, lo:hi]
        out[:, lo:hi] -= count[:, None] * c0[lo:hi].astype(np.float64)[None, :]
    return out


def _panel(rows: int, dim: int, like: Any) -> Any:
    """An empty float64 panel [rows, dim] where the block sums of ``like`` are (numpy, or its device)."""
    if _is_tensor(like):
        import torch

        return torch.empty((rows, dim), dtype=torch.float64, device=like.device)
    return np.empty((rows, dim))


def _products(x: Any, y: Any, bounds: np.ndarray) -> np.ndarray:
    """Per group ``x_g y_g'`` and (last) their sum: [G + 1, len(x), len(y)] (numpy float64). Where
    either is a torch tensor the products are computed on its device (the other is moved there)."""
    G = len(bounds) - 1
    if _is_tensor(x) or _is_tensor(y):
        import torch

        dev = x.device if _is_tensor(x) else y.device
        x, y = (torch.as_tensor(v, dtype=torch.float64, device=dev) for v in (x, y))
        parts = [x[:, int(bounds[g]):int(bounds[g + 1])] @ y[:, int(bounds[g]):int(bounds[g + 1])].T
                 for g in range(G)]
        out = torch.stack(parts).cpu().numpy() if parts else np.zeros((0, len(x), len(y)))
        return np.concatenate([out, out.sum(0, keepdims=True)])
    out = np.empty((G + 1, len(x), len(y)))
    for g in range(G):
        a, b = int(bounds[g]), int(bounds[g + 1])
        out[g] = x[:, a:b] @ y[:, a:b].T
    out[G] = out[:G].sum(0)
    return out


def _put(q: np.ndarray, rows_x: np.ndarray, rows_y: np.ndarray, p: np.ndarray, groups: bool) -> None:
    """Write products ``p`` [G + 1, |x|, |y|] into both triangles of ``q`` (groups or total only)."""
    layers = slice(None) if groups else slice(-1, None)
    ix = np.ix_(np.arange(q.shape[0])[layers], rows_x, rows_y)
    iy = np.ix_(np.arange(q.shape[0])[layers], rows_y, rows_x)
    q[ix] = p[layers]
    q[iy] = np.swapaxes(p[layers], 1, 2)


def _put_panel(q: np.ndarray, members: Sequence[RunRows], off: np.ndarray, p: np.ndarray, other: RunRows) -> None:
    """Products ``p`` [G + 1, panel rows, other's rows] of a panel of runs with another run."""
    for a, run in enumerate(members):
        _put(q, run.rows, other.rows, p[:, off[a]:off[a + 1], :], _pair_groups(run, other))


def _pair_groups(a: RunRows, b: RunRows) -> bool:
    return a.key == b.key or unbiased(a.key[0]) or unbiased(b.key[0])


def _rows_of(run: Any, first: int, key: tuple[str, int], path: str, file_sha: str) -> RunRows:
    count = np.asarray(run.block_count, dtype=np.float64)
    return RunRows(key=key, attrs=dict(run.attrs), path=path, rows=first + np.arange(len(count), dtype=np.int64),
                   count=count, nonfinite=np.asarray(run.block_nonfinite, dtype=np.int64),
                   m2=np.asarray(run.block_m2, dtype=np.float64), sumsq=np.asarray(run.block_sumsq, dtype=np.float64),
                   exact_sha=array_sha256(run.exact), file_sha=file_sha)


def _choose_anchor(first: Any) -> np.ndarray:
    """``c0``: the exact gradient where the problem has one, else the first run's mean (float32)."""
    if first.exact is not None:
        return np.asarray(first.exact, dtype=np.float32)
    n = float(np.sum(first.block_count))
    mean = np.zeros(first.block_sum.shape[1])
    for lo in range(0, mean.size, CHUNK):
        part = first.block_sum[:, lo:lo + CHUNK]
        part = part.cpu().numpy() if _is_tensor(part) else part
        mean[lo:lo + CHUNK] = part.astype(np.float64).sum(0) / max(n, 1.0)
    return mean.astype(np.float32)


def _check_same(run: Any, groups: tuple[str, ...], sizes: np.ndarray, exact_sha: str | None, name: str) -> None:
    if tuple(run.groups) != groups or not np.array_equal(np.asarray(run.group_sizes), sizes):
        raise AnalysisError(f"{name}: its parameter groups differ from the store's; a store holds one snapshot "
                            f"and parameter set")
    if exact_sha is not None and array_sha256(run.exact) != exact_sha:
        raise AnalysisError(f"{name}: its exact gradient differs from the store's; not the same problem")


def compute(new: Sequence[tuple[Any, str, str]], *, load: Callable[[Any], Any], old: GramState | None = None,
            old_present: Callable[[RunRows], Any | None] = lambda r: None, memory_bytes: int = MEMORY_BYTES,
            progress: Callable[[str], None] | None = None, mode: str = "all") -> GramState:
    """Add runs to a store (or make one).

    ``mode="all"`` computes the products of every pair of runs (a store); ``"star"`` only those of
    each run with itself and with the first run (a report against that reference, one read per run
    file); ``"self"`` only each run's own (a report against the exact gradient).

    Args:
        new: ``(run, path, file_sha)`` of the runs to add (``run`` as listed: header and block
            statistics; ``load(run)`` returns it with its block sums), in row order.
        load: reads a run's block sums.
        old: the store so far (None: a new store).
        old_present: a stored run -> the run (listed) if its file is still there and unchanged, else None.
        memory_bytes: the panel's budget.
        progress: called with a short line before each read.

    Returns:
        the new :class:`GramState`.
    """
    if not new and old is not None:
        return old
    say = progress or (lambda _m: None)
    first = load(new[0][0]) if old is None else None
    if old is None:
        groups = tuple(first.groups)
        sizes = np.asarray(first.group_sizes, dtype=np.int64)
        anchor = _choose_anchor(first)
        exact = None if first.exact is None else np.asarray(first.exact, dtype=np.float64)
        exact_sha = array_sha256(exact) if exact is not None else None
        stored: tuple[RunRows, ...] = ()
        M0 = SPECIAL
        q_old = None
    else:
        groups, sizes, anchor = old.gram.groups, old.gram.group_sizes, old.anchor
        exact, exact_sha = None, None
        stored, M0, q_old = old.gram.runs, old.gram.q.shape[1], old.gram.q
        if old.gram.has_exact:
            exact_sha = next((r.exact_sha for r in stored if r.exact_sha), None)
    bounds = offsets(sizes)
    K = len(sizes) + 1
    # rows of the new runs
    rows_new: list[RunRows] = []
    at = M0
    for run, path, sha in new:
        _check_same(run, groups, sizes, exact_sha, path)
        key = (str(parse_spec(run.attrs["spec"])), int(run.attrs["seed"]))
        rows_new.append(_rows_of(run, at, key, path, sha))
        at += len(run.block_count)
    M = at
    q = np.full((K, M, M), np.nan)
    if q_old is not None:
        q[:, :M0, :M0] = q_old
    c0 = anchor.astype(np.float64)
    per_block = 8 * max(1, c0.size)
    panel_rows = max(1, int(memory_bytes // per_block) - 2)

    def loaded(i: int) -> Any:
        run = new[i][0]
        return run if getattr(run, "block_sum", None) is not None else load(run)

    has_exact = exact is not None if old is None else old.gram.has_exact
    if has_exact and exact is None:  # adding to a store with an exact gradient: the new runs carry it
        run0 = new[0][0] if new[0][0].exact is not None else loaded(0)
        exact = np.asarray(run0.exact, dtype=np.float64)
    sp_rows = np.array([ANCHOR, EXACT]) if has_exact else np.array([ANCHOR])
    special = np.stack([c0, exact - c0]) if has_exact else c0[None, :]
    if old is None:  # the special rows among themselves
        _put(q, sp_rows, sp_rows, _products(special, special, bounds), True)
    if mode != "all":
        _star(q, new, rows_new, loaded, first, anchor, special, sp_rows, bounds, mode == "star", say)
    i = 0 if mode == "all" else len(new)
    while i < len(new):  # one panel of new runs at a time
        j, size = i, 0
        while j < len(new) and (j == i or size + len(rows_new[j].rows) <= panel_rows):
            size += len(rows_new[j].rows)
            j += 1
        off = np.concatenate([[0], np.cumsum([len(r.rows) for r in rows_new[i:j]])])
        x = None  # the panel, filled in place run by run (numpy, or on the device of the runs' block sums)
        for k in range(i, j):
            say(f"reading {Path(new[k][1]).name} (new)")
            run = first if (k == 0 and first is not None) else loaded(k)
            x = _panel(int(off[-1]), c0.size, run.block_sum) if x is None else x
            _anchored(run, anchor, out=x[off[k - i]:off[k - i + 1]])
            del run
        x_rows = np.concatenate([r.rows for r in rows_new[i:j]])
        _put(q, x_rows, sp_rows, _products(x, special, bounds), True)
        members = rows_new[i:j]
        pp = _products(x, x, bounds)
        for b in range(i, j):
            _put_panel(q, members, off, pp[:, :, off[b - i]:off[b - i + 1]], rows_new[b])
        # every other run once: the stored ones still present, then the later new ones
        later = [(s, old_present(s), None) for s in stored] + [(rows_new[k], None, k) for k in range(j, len(new))]
        for other, listed, k in later:
            if k is None and listed is None:
                continue  # its file is gone or changed: its products with the new runs stay NaN
            say(f"reading {Path(other.path).name}")
            y = _anchored(loaded(k) if k is not None else load(listed), anchor)
            _put_panel(q, members, off, _products(x, y, bounds), other)
            del y
        del x
        i = j
    gram = AnchoredGram(groups=groups, group_sizes=sizes, q=q, runs=stored + tuple(rows_new), has_exact=has_exact)
    if old is None:
        a0 = new[0][0].attrs
        return GramState(gram, anchor, str(a0.get("snapshot_hash", "")), str(a0.get("params_glob", "")),
                         int(c0.size))
    return replace(old, gram=gram)


def _star(q: np.ndarray, new: Sequence[tuple[Any, str, str]], rows_new: Sequence[RunRows],
          loaded: Callable[[int], Any], first: Any, anchor: np.ndarray, special: np.ndarray, sp_rows: np.ndarray,
          bounds: np.ndarray, star: bool, say: Callable[[str], None]) -> None:
    """Each run's products with itself and the special rows, and (``star``) with the first run."""
    x = None
    for k in range(len(new)):
        say(f"reading {Path(new[k][1]).name}")
        y = _anchored(first if (k == 0 and first is not None) else loaded(k), anchor)
        _put(q, rows_new[k].rows, sp_rows, _products(y, special, bounds), True)
        _put(q, rows_new[k].rows, rows_new[k].rows, _products(y, y, bounds), True)
        if star and k == 0:
            x = y
        elif x is not None:
            _put(q, rows_new[0].rows, rows_new[k].rows, _products(x, y, bounds), _pair_groups(rows_new[0], rows_new[k]))
        del y


def self_products(run: Any, anchor: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """A run's products with itself, anchored at ``anchor``: [G + 1, nb, nb] (what a store holds of
    it; used to check that a run drawn again is the stored one)."""
    x = _anchored(run, anchor)
    return _products(x, x, offsets(np.asarray(group_sizes, dtype=np.int64)))


def drop_runs(state: GramState, keys: Sequence[tuple[str, int]]) -> GramState:
    """The store without the given runs (their rows and columns removed)."""
    drop = [r for r in state.gram.runs if r.key in set(keys)]
    if not drop:
        return state
    gone = np.concatenate([r.rows for r in drop])
    keep = np.setdiff1d(np.arange(state.gram.q.shape[1]), gone)
    new_index = np.full(state.gram.q.shape[1], -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))
    q = state.gram.q[:, keep][:, :, keep]
    runs = tuple(replace(r, rows=new_index[r.rows]) for r in state.gram.runs if r.key not in set(keys))
    return replace(state, gram=replace(state.gram, q=q, runs=runs))


__all__ = ["MEMORY_BYTES", "GramState", "array_sha256", "compute", "drop_runs", "file_sha256", "self_products",
           "unbiased"]
