"""Where a report's runs come from: the run files of a runs folder, or a statistics store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from biasvar.errors import AnalysisError, StoreError
from biasvar.report.analyze import analyze
from biasvar.report.types import Report
from biasvar.stats.compare import (
    run_attr,
)
from biasvar.stats.intervals import DEFAULT_METHOD


def _only_snapshot(runs: list[Any], where: str | Path, snapshot: str | None) -> list[Any]:
    """The runs of one snapshot (``snapshot``: an id or hash prefix; optional when there is one)."""
    hashes = sorted({str(run_attr(r, "snapshot_hash", "")) for r in runs})
    if snapshot is not None:
        snap = snapshot.strip().lower()
        runs = [r for r in runs if str(run_attr(r, "snapshot_hash", "")).lower().startswith(snap)]
        if not runs:
            ids = ", ".join(h[:12] for h in hashes) or "none"
            raise AnalysisError(f"no runs of snapshot {snapshot!r} in {where}; snapshots there: {ids}")
        hashes = sorted({str(run_attr(r, "snapshot_hash", "")) for r in runs})
    if len(hashes) > 1:
        ids = ", ".join(h[:12] for h in hashes)
        raise AnalysisError(f"{where} holds runs of {len(hashes)} snapshots ({ids}); pick one with --snapshot-id ID")
    return runs


def _store_in(runs_dir: Path, snapshot: str | None) -> Path | None:
    """The store file of the runs folder's snapshot (the only one, or the one ``snapshot`` names), if any."""
    from biasvar.gramstore import FILE_NAME

    found = sorted(runs_dir.glob(f"*/{FILE_NAME}"))
    if snapshot is not None:
        found = [p for p in found if p.parent.name.lower().startswith(snapshot.strip().lower()[:12])]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class RunSet:
    """The runs of one snapshot a report reads: from its run files, or from a statistics store (``gram``).

    Attributes:
        runs: the runs (``RunData`` listed without block sums, or stored runs).
        gram: the store's products (None: computed from the run files).
        store: the store's path (None: the run files).
        left_out: one note per damaged or misplaced run file.
    """

    runs: list[Any]
    gram: Any = None
    store: str | None = None
    left_out: tuple[str, ...] = ()


def runs_of(runs_dir: str | Path = "runs", snapshot: str | None = None, store: str | Path | None = None) -> RunSet:
    """The runs of one snapshot: its run files in ``runs_dir``, or the statistics store ``store``;
    without ``store``, the store in the snapshot's folder when none of its run files is there."""
    from biasvar import gramstore
    from biasvar import store as run_store  # the run files

    runs_dir = Path(runs_dir)
    left_out: tuple[str, ...] = ()
    if store is None:
        if not runs_dir.is_dir():
            raise AnalysisError(f"runs folder {str(runs_dir)!r} does not exist; pass --runs-dir DIR "
                                f"(where `biasvar sample` wrote its run files)")
        try:
            runs, bad = run_store.scan_runs(runs_dir)  # checksums: at the analysis read (analyze_runs)
        except StoreError as e:
            raise AnalysisError(f"cannot list runs in {runs_dir}: {e}") from e
        left_out = tuple(f"{b.path}: {b.problem} ({b.reason}); left out" for b in bad)
        if runs:
            try:
                return RunSet(_only_snapshot(runs, runs_dir, snapshot), left_out=left_out)
            except AnalysisError:
                store = _store_in(runs_dir, snapshot)
                if store is None:
                    raise
        else:
            store = _store_in(runs_dir, snapshot)
        if store is None:
            if bad:
                raise AnalysisError(f"no readable runs in {runs_dir}: {len(bad)} run files are damaged or "
                                    f"misplaced (first: {left_out[0]}); see `biasvar ls --runs-dir {runs_dir}`")
            raise AnalysisError(f"no runs to analyse in {runs_dir}; sample some with `biasvar sample`")
    state = gramstore.read_store(store)
    runs = _only_snapshot(gramstore.stored_runs(state, Path(store).parent), store, snapshot)
    return RunSet(runs, state.gram, str(store), left_out)


def analyze_runs(runs_dir: str | Path = "runs", *, snapshot: str | None = None,
                 reference: str = "rf(M=4)", n_resamples: int = 1000, method: str = DEFAULT_METHOD,
                 confidence_level: float = 0.95, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None,
                 contrasts: Sequence[tuple[str, str]] = (), store: str | Path | None = None) -> Report:
    """:func:`analyze` over the run files of one snapshot in ``runs_dir``, or over its statistics store
    (:func:`runs_of` says which).

    Args:
        runs_dir: the runs folder (``<runs_dir>/<snapshot id>/<spec>-s<seed>.h5``).
        snapshot: snapshot id (or a prefix of its hash); optional when the folder holds one snapshot.
        store: a statistics store file (``biasvar gram``) to analyse instead of the run files.
        reference, n_resamples, method, confidence_level, seed, progress, contrasts: as in :func:`analyze`.
    """
    from biasvar import store as run_store

    found = runs_of(runs_dir, snapshot, store)
    runs, left_out = list(found.runs), list(found.left_out)
    while True:
        try:
            report = analyze(runs, reference=reference, n_resamples=n_resamples, method=method,
                             confidence_level=confidence_level, seed=seed, progress=progress, contrasts=contrasts,
                             gram=found.gram, store=found.store, runs_dir=str(runs_dir),
                             load=lambda r: run_store.read_run(r.path))
            break
        except run_store.DamagedError as e:
            # The analysis read is the one full read of each file, its checksums checked as it reads (``ls``
            # and the listing above read only the small datasets): a file found damaged there is left out
            # with a note, as one found damaged when listed, and the analysis redone without it.
            kept = [r for r in runs if str(r.path) != e.path]
            if found.gram is not None or len(kept) == len(runs):
                raise
            runs = kept
            left_out.append(f"{e.path}: damaged ({e.reason}); left out")
            if not runs:
                raise AnalysisError(f"no readable runs in {runs_dir}: every run file is damaged (first: "
                                    f"{left_out[0]}); see `biasvar ls --verify --runs-dir {runs_dir}`") from None
    return replace(report, notes=report.notes + tuple(left_out)) if left_out else report
