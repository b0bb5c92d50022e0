"""Reports: the runs of one snapshot against one reference, one row per run, with the Pareto front.

:func:`analyze_runs` lists the run files of a snapshot (``biasvar.store``), :func:`analyze` picks the
reference (a run of the reference spec, or the exact gradient stored in runs of enumerable
problems), compares every other run with it (:mod:`biasvar.stats`: Eq. 16 through the Gram
matrices of block sums, bootstrap intervals) and returns a :class:`Report`: rows sorted by estimator family and
hyper-parameters, each with Eq. 16's b2, the variance V and MSE = b2 + V with bootstrap intervals,
the cost, draws/s, V x cost, the cosine to the reference mean and the run's provenance.
Formatting (JSON, CSV, Markdown, table) lives in :mod:`biasvar.formats`.

**Pareto marks use the intervals** (:func:`mark_pareto`). A tested run is *dominated* (no mark)
only when another run is better in both b2 and V **beyond the intervals**: in :func:`analyze`, the
paired contrast of the two (:mod:`biasvar.stats.contrast`, shared reference accounted for) has
intervals below 0 in both; for a report read back from JSON (no block data), both of the other
run's marginal intervals lie below this run's (a stricter, conservative test: whatever the
correlation through the shared reference, ``sd(A - B) <= sd(A) + sd(B)``, so disjoint intervals
put the difference off 0). A run dominated at the point estimates in ``(max(b2, 0), V)`` (a
negative b2 estimate means "no detectable bias") but not beyond the intervals is a *near-tie*
(``~``); the rest are on the front (``*``).
Estimators identical by definition (``st-zgr(alpha=1)`` = ``zgr``, ``st-zgr(alpha=0,t)`` =
``st(t)``, the same for ``st-zgr-author``, and seeds of one spec; :func:`identity`) are one
point: they are not compared with each other and all get the best mark among them.

**Contrasts** (``analyze(..., contrasts=[("A", "B")])``, ``biasvar report --contrast A,B``):
``b2_A - b2_B`` and ``V_A - V_B`` with jackknife-t intervals, in :attr:`Report.contrasts`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import biasvar
from biasvar.errors import AnalysisError, StoreError
from biasvar.gramstore.anchored import AnchoredGram, RunRows
from biasvar.gramstore.anchored import pair_gram as gram_pair
from biasvar.gramstore.anchored import single_gram as gram_single
from biasvar.gramstore.build import array_sha256, compute
from biasvar.spec import FAMILIES, parse_spec
from biasvar.stats.compare import (
    Comparison,
    GroupResult,
    check_compatible,
    comparison,
    describe_run,
    run_attr,
    run_name,
)
from biasvar.stats.contrast import Contrast, contrast, total_layer
from biasvar.stats.gram import PairGram, kept_blocks
from biasvar.stats.intervals import DEFAULT_METHOD, Bootstrap, Estimate, bootstrap_pair

REPORT_SCHEMA = 1


@dataclass(frozen=True)
class RunResult:
    """One row of a report: a run, its Eq. 16 numbers against the reference, and its provenance."""

    spec: str
    family: str
    hyper: dict[str, float]  # the spec's hyper-parameters
    seed: int
    role: str  # "test" or "reference" (the reference run itself: b2 is None)
    status: str
    n: int
    n_blocks: int
    dim: int
    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None
    ref_share: float | None
    ref_only_width: float | None
    cost: float  # forward passes per draw
    draws_per_s: float | None
    variance_x_cost: float
    cosine: float | None
    nonfinite: int
    pareto: bool
    snapshot_hash: str
    path: str
    versions: dict[str, Any]
    groups: tuple[GroupResult, ...] = ()
    pareto_mark: str = ""  # "*" front, "~" near-tie (dominated only within the intervals), "" dominated


@dataclass(frozen=True)
class Report:
    """The analysis of one snapshot's runs against one reference; rows sorted by family, hyper-parameter."""

    snapshot_hash: str
    reference: str  # canonical spec of the reference, or "exact"
    reference_path: str | None
    reference_seed: int | None
    method: str
    n_resamples: int
    confidence_level: float
    seed: int  # the bootstrap seed
    dim: int
    params_glob: str | None
    problem: dict[str, Any]
    rows: tuple[RunResult, ...]
    notes: tuple[str, ...] = ()
    runs_dir: str | None = None
    biasvar_version: str = biasvar.__version__
    schema: int = REPORT_SCHEMA
    contrasts: tuple[Contrast, ...] = ()
    store: str | None = None  # the statistics store the numbers came from (None: the run files)

    def row(self, spec: str, seed: int | None = None) -> RunResult:
        """The row of ``spec`` (canonical or not), the lowest seed unless ``seed`` is given."""
        canon = str(parse_spec(spec))
        for r in self.rows:
            if r.spec == canon and (seed is None or r.seed == seed):
                return r
        raise AnalysisError(f"no row for {canon}" + (f" seed {seed}" if seed is not None else "")
                            + f" in the report; rows: {', '.join(sorted({r.spec for r in self.rows}))}")


_GROUPING = {"gr-mc": ("M", "t"), "st-zgr": ("t", "alpha")}


def sort_key(spec: str, seed: int = 0) -> tuple:
    """Family (in the order of ``spec.FAMILIES``), then hyper-parameters (curve first), then seed."""
    s = parse_spec(spec)
    order = list(FAMILIES)
    keys = _GROUPING.get(s.name, tuple(p.key for p in s.family.params))
    return (order.index(s.name), tuple(float(s.get(k, 0.0)) for k in keys), seed)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which points are not dominated in (b2, V): no other point is <= in both and < in one.

    >>> pareto_front([(1, 1), (0, 2), (2, 2), (1, 1)])
    [True, True, False, True]
    """
    out = []
    for i, (b, v) in enumerate(points):
        dominated = any(
            (b2 <= b and v2 <= v and (b2 < b or v2 < v)) for j, (b2, v2) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


def identity(spec: str) -> str:
    """The estimator a spec is by definition: ``st-zgr(alpha=1,...)`` is ``zgr`` and
    ``st-zgr(alpha=0,t)`` is ``st(t)`` (likewise ``st-zgr-author``); others are themselves.

    >>> identity("st-zgr(alpha=0,t=2)"), identity("st-zgr(alpha=1,t=2)"), identity("gs(t=2)")
    ('st(t=2)', 'zgr', 'gs(t=2)')
    """
    s = parse_spec(spec)
    if s.name in ("st-zgr", "st-zgr-author"):
        alpha = float(s["alpha"])
        if alpha == 1.0:
            return "zgr"
        if alpha == 0.0:
            return str(parse_spec(f"st(t={float(s['t'])!r})"))
    return str(s)


def _beats_by_intervals(a: RunResult, b: RunResult) -> bool:
    """Both of ``a``'s marginal intervals lie below ``b``'s (b2 and V): ``a`` better beyond them."""
    def below(x: Estimate, y: Estimate) -> bool:
        if x.high is None or y.low is None:
            return x.value < y.value
        return x.high < y.low
    return below(a.b2, b.b2) and below(a.variance, b.variance)


_RANK = {"*": 2, "~": 1, "": 0}


def mark_pareto(rows: Sequence[RunResult],
                beats: Callable[[RunResult, RunResult], bool] | None = None) -> list[RunResult]:
    """Pareto marks of the tested rows (module docstring): ``*`` front, ``~`` near-tie, ``""`` dominated.

    Args:
        rows: report rows (rows without b2, the reference, get no mark).
        beats: ``beats(a, b)``: ``a`` is better than ``b`` in both b2 and V beyond the intervals;
            default: both marginal intervals of ``a`` lie below ``b``'s.
    """
    beats = beats or _beats_by_intervals
    idx = [i for i, r in enumerate(rows) if r.b2 is not None]
    ident = {i: identity(rows[i].spec) for i in idx}
    mark: dict[int, str] = {}
    for i in idx:
        bi, vi = max(rows[i].b2.value, 0.0), rows[i].variance.value
        point, resolved = False, False
        for j in idx:
            if ident[j] == ident[i]:
                continue
            bj, vj = max(rows[j].b2.value, 0.0), rows[j].variance.value
            if bj <= bi and vj <= vi and (bj < bi or vj < vi):
                point = True
                if beats(rows[j], rows[i]):
                    resolved = True
                    break
        mark[i] = "" if resolved else "~" if point else "*"
    best: dict[str, str] = {}
    for i in idx:
        if _RANK[mark[i]] > _RANK[best.get(ident[i], "")] or ident[i] not in best:
            best[ident[i]] = mark[i]
    out = list(rows)
    for i in idx:
        m = best[ident[i]]
        out[i] = replace(rows[i], pareto=m in ("*", "~"), pareto_mark=m)
    return out


def remark_pareto(report: Report) -> Report:
    """The report with Pareto marks recomputed from its rows' marginal intervals (reports read back
    from JSON written before interval-aware marks: their ``pareto`` came from point estimates)."""
    return replace(report, rows=tuple(mark_pareto(report.rows)))


# ---------------------------------------------------------------------------------------------
# rows


def _versions(run: Any) -> dict[str, Any]:
    keys = ("biasvar_version", "torch_version", "cuda_version", "git_commit", "device", "dtype", "created",
            "schema_version")
    out = {k: run_attr(run, k) for k in keys if run_attr(run, k) is not None}
    engine = engine_label(run)
    if engine is not None:
        out["engine"] = engine
    return out


def engine_label(run: Any) -> str | None:
    """The engine's path as the run file records it: ``vmap, chunk 8`` (``auto`` asked for is
    added as ``(auto)``); files written before the path was recorded say ``auto (path not
    recorded)``. None when the file has no method at all."""
    method = run_attr(run, "method")
    if method is None:
        return None
    method = str(method)
    if method == "auto":
        return "auto (path not recorded)"
    chunk, asked = run_attr(run, "chunk"), run_attr(run, "method_requested")
    label = method if chunk in (None, "none") else f"{method}, chunk {chunk}"
    return label if asked in (None, "none", method) else f"{label} ({asked})"


def _cost(run: Any) -> float:
    c = run_attr(run, "cost")
    return float(c) if c is not None else float(parse_spec(run_attr(run, "spec")).cost)


def run_row(run: Any, comp: Comparison, *, role: str) -> RunResult:
    """The report row of a run and its comparison."""
    spec = parse_spec(run_attr(run, "spec"))
    cost = _cost(run)
    dps = run_attr(run, "draws_per_s")
    return RunResult(
        spec=str(spec), family=spec.name, hyper=dict(spec.params), seed=int(run_attr(run, "seed", 0)), role=role,
        status=str(run_attr(run, "status", "complete")), n=int(np.sum(run.block_count)),
        n_blocks=int(np.sum(np.asarray(run.block_count) > 0)), dim=int(np.sum(run.group_sizes)),
        b2=comp.b2, variance=comp.variance, mse=comp.mse, ref_share=comp.ref_share,
        ref_only_width=comp.ref_only_width, cost=cost, draws_per_s=float(dps) if dps is not None else None,
        variance_x_cost=comp.variance.value * cost, cosine=comp.cosine,
        nonfinite=int(np.sum(run.block_nonfinite)), pareto=False,
        snapshot_hash=str(run_attr(run, "snapshot_hash", "")), path=str(run.path), versions=_versions(run),
        groups=comp.groups,
    )


def _run_rng(seed: int, run: Any) -> np.random.Generator:
    """The resampling randomness of one row: keyed by (seed, spec, run seed), not by row order."""
    key = zlib.crc32(f"{run_attr(run, 'spec')}|{run_attr(run, 'seed')}".encode())
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def _pick_reference(runs: Sequence[Any], reference: str) -> Any:
    canon = str(parse_spec(reference))
    cands = [r for r in runs if str(parse_spec(run_attr(r, "spec"))) == canon]
    if not cands:
        have = ", ".join(sorted({str(run_attr(r, "spec")) for r in runs})) or "none"
        raise AnalysisError(f"no run of the reference {canon} among the runs ({have}); sample one "
                            f"(biasvar sample --estimator \"{canon}\" ...), pick another with --reference, "
                            f"or use --reference exact on an enumerable problem")
    marked = [r for r in cands if run_attr(r, "role") == "reference"]
    return min(marked or cands, key=lambda r: int(run_attr(r, "seed", 0)))


def _identity(runs: Sequence[Any], ref_run: Any) -> Any:
    """The listed run that is the reference (``loaded`` may have returned a new object)."""
    for r in runs:
        if r is ref_run or (str(r.path) == str(ref_run.path) and run_attr(r, "seed") == run_attr(ref_run, "seed")
                            and run_attr(r, "spec") == run_attr(ref_run, "spec")):
            return r
    return ref_run


def _check_common_exact(runs: Sequence[Any]) -> None:
    """Every run stores one and the same exact gradient (AnalysisError otherwise)."""
    def sha(r: Any) -> str:
        return r.exact_sha if hasattr(r, "exact_sha") else array_sha256(r.exact)
    missing = [run_name(r) for r in runs if not sha(r)]
    if missing:
        raise AnalysisError(f"--reference exact needs runs with a stored exact gradient (enumerable "
                            f"problems); these have none: {', '.join(missing[:5])}; "
                            f"use --reference \"rf(M=4)\"")
    first = sha(runs[0])
    for r in runs[1:]:
        if sha(r) != first:
            raise AnalysisError(f"runs {run_name(runs[0])} and {run_name(r)} store different exact gradients; "
                                f"they cannot come from the same snapshot and parameter set")


def _rows(gram: AnchoredGram, run: Any) -> RunRows:
    return gram.run(str(parse_spec(run_attr(run, "spec"))), int(run_attr(run, "seed", 0)))


def _grams_of(runs: Sequence[Any], ref_run: Any | None, loader: Callable[[Any], Any],
              progress: Callable[[int, int, str], None] | None) -> AnchoredGram:
    """The products a report needs, from the run files (each read once): every run's own blocks and
    (against a reference run) theirs with the reference's, anchored as a store is."""
    order = list(runs) if ref_run is None else [ref_run, *[r for r in runs if r is not ref_run]]
    specs = {Path(str(r.path)).name: str(run_attr(r, "spec")) for r in order}
    count = iter(range(len(order)))

    def say(line: str) -> None:
        if progress is not None:
            progress(next(count), len(order), specs.get(line.split(" ")[1], ""))

    new = [(r, str(r.path), "") for r in order]
    return compute(new, load=loader, mode="self" if ref_run is None else "star", progress=say).gram


def _test_row(run: Any, gram: AnchoredGram, ref_rows: RunRows | None, boot: Bootstrap,
              notes: list[str]) -> tuple[RunResult, PairGram] | None:
    """The row of a tested run and its Gram matrices, or None when it has too few draws; notes are appended."""
    if int(np.sum(run.block_count)) < 2:
        notes.append(f"{run_name(run)}: fewer than 2 finite draws; left out")
        return None
    if len(kept_blocks(run)) < 2:
        notes.append(f"{run_name(run)}: fewer than 2 non-empty blocks; no interval")
    pg, cosine = gram_pair(gram, ref_rows, _rows(gram, run))
    iv = bootstrap_pair(pg, boot, rng=_run_rng(boot.seed, run))
    if run_attr(run, "status", "complete") != "complete":
        notes.append(f"{run_name(run)}: status {run_attr(run, 'status')!r} (partial run: committed blocks only)")
    row = run_row(run, comparison(iv, list(run.groups), pg.dims, with_b2=True, cosine=cosine), role="test")
    return row, total_layer(pg)


def _contrast_beats(grams: dict[tuple[str, int], PairGram], level: float) -> Callable[[RunResult, RunResult], bool]:
    """``beats(a, b)``: the paired contrast ``a - b`` has intervals below 0 in both b2 and V."""
    def beats(a: RunResult, b: RunResult) -> bool:
        ga, gb = grams.get((a.spec, a.seed)), grams.get((b.spec, b.seed))
        if ga is None or gb is None:
            return _beats_by_intervals(a, b)
        c = contrast(ga, gb, a=a.spec, b=b.spec, confidence_level=level)
        return (c.b2.high is not None and c.b2.high < 0 and c.variance.high is not None
                and c.variance.high < 0)
    return beats


def _contrasts(pairs: Sequence[tuple[str, str]], rows: Sequence[RunResult], grams: dict[tuple[str, int], PairGram],
               reference: str, level: float) -> tuple[Contrast, ...]:
    """The requested contrasts ``A - B`` (each spec's lowest-seed tested row)."""
    def tested(spec: str) -> RunResult:
        canon = str(parse_spec(spec))
        cands = [r for r in rows if r.spec == canon and r.b2 is not None]
        if not cands:
            what = " (it is the reference: contrasts need two tested runs)" if canon == reference else ""
            raise AnalysisError(f"--contrast: no tested row for {canon}{what}; tested: "
                                + ", ".join(sorted({r.spec for r in rows if r.b2 is not None})))
        return min(cands, key=lambda r: r.seed)

    out = []
    for a_spec, b_spec in pairs:
        a, b = tested(a_spec), tested(b_spec)
        out.append(contrast(grams[(a.spec, a.seed)], grams[(b.spec, b.seed)], a=a.spec, b=b.spec, a_seed=a.seed,
                            b_seed=b.seed, reference=reference, confidence_level=level))
    return tuple(out)


def analyze(runs: Sequence[Any], *, reference: str = "rf(M=4)", n_resamples: int = 1000,
            method: str = DEFAULT_METHOD, confidence_level: float = 0.95, seed: int = 0,
            load: Callable[[Any], Any] | None = None,
            runs_dir: str | None = None, progress: Callable[[int, int, str], None] | None = None,
            contrasts: Sequence[tuple[str, str]] = (), gram: AnchoredGram | None = None,
            store: str | None = None) -> Report:
    """Analyse runs of one snapshot and parameter set against a reference (Eq. 16, bootstrap).

    Args:
        runs: ``RunData`` of the runs (block sums may be absent if ``load`` can read them), or the
            stored runs of a statistics store (:func:`biasvar.gramstore.stored_runs`) with ``gram``.
        reference: canonical spec of the reference (its run with the lowest seed, or the run whose
            ``attrs['role'] == 'reference'``, is the reference; its other seeds are tested rows), or
            ``"exact"`` to use every run's stored exact gradient.
        n_resamples: bootstrap resamples (blocks of R and T resampled independently).
        method: interval method, one of ``biasvar.stats.intervals.METHODS`` (default :data:`DEFAULT_METHOD`).
        confidence_level: of the intervals.
        seed: the bootstrap seed; each row's stream is keyed by (seed, spec, run seed).
        load: ``run -> run with block sums`` (e.g. ``store.read_run(run.path)``) for runs listed
            without them; each is read once.
        runs_dir: recorded in the report.
        progress: called ``(i, total, spec)`` before each run is read.
        contrasts: ``(A, B)`` spec pairs: ``b2_A - b2_B`` and ``V_A - V_B`` with jackknife-t intervals
            (:mod:`biasvar.stats.contrast`), in :attr:`Report.contrasts`.
        gram: the runs' products from a statistics store (:mod:`biasvar.gramstore`); without it they are
            computed from the run files, the same way (one code path: the numbers agree to rounding).
        store: the store's path, recorded in the report.

    Returns:
        :class:`Report`. Raises :class:`AnalysisError` for runs of different snapshots or
        parameter sets, a missing reference, or a reference with fewer than 2 blocks.
    """
    boot = Bootstrap(n_resamples, method, confidence_level, seed)
    runs = list(runs)
    if not runs:
        raise AnalysisError("no runs to analyse" + (f" in {runs_dir}" if runs_dir else "")
                            + "; sample some with `biasvar sample`")
    check_compatible(runs)
    loader = load or (lambda r: r)
    notes: list[str] = []
    rows: list[RunResult] = []
    ref_run = None
    if reference.strip().lower() == "exact":
        _check_common_exact(runs)
        label, tested = "exact", runs
    else:
        label = str(parse_spec(reference))
        ref_run = _pick_reference(runs, label)
        if len(kept_blocks(ref_run)) < 2:
            raise AnalysisError(f"the reference run {run_name(ref_run)} has fewer than 2 non-empty blocks; "
                                f"the bootstrap needs at least 2 (sample more draws)")
        tested = [r for r in runs if r is not ref_run]
    for spec_a, spec_b in contrasts:  # unknown specs fail before the long part
        parse_spec(spec_a), parse_spec(spec_b)
    if gram is None:
        gram = _grams_of(runs, ref_run, loader, progress)
    ref_rows = None
    if ref_run is not None:
        ref_rows = _rows(gram, ref_run)
        comp = describe_run(ref_run, boot, rng=_run_rng(boot.seed, ref_run), pg=gram_single(gram, ref_rows))
        rows.append(run_row(ref_run, comp, role="reference"))
    grams: dict[tuple[str, int], PairGram] = {}
    for run in tested:
        out = _test_row(run, gram, ref_rows, boot, notes)
        if out is not None:
            rows.append(out[0])
            grams[(out[0].spec, out[0].seed)] = out[1]
    if progress is not None:
        progress(len(runs), len(runs), "")
    rows = mark_pareto(rows, _contrast_beats(grams, boot.confidence_level))
    contrast_rows = _contrasts(contrasts, rows, grams, label, boot.confidence_level)
    rows.sort(key=lambda r: (sort_key(r.spec, r.seed), r.role != "reference"))
    first = runs[0]
    return Report(
        snapshot_hash=str(run_attr(first, "snapshot_hash", "")), reference=label,
        reference_path=str(ref_run.path) if ref_run is not None else None,
        reference_seed=int(run_attr(ref_run, "seed", 0)) if ref_run is not None else None,
        method=boot.method, n_resamples=int(boot.n_resamples), confidence_level=float(boot.confidence_level),
        seed=int(boot.seed), dim=int(np.sum(first.group_sizes)), params_glob=run_attr(first, "params_glob"),
        problem=dict(run_attr(first, "problem") or {}), rows=tuple(rows), notes=tuple(notes),
        runs_dir=str(runs_dir) if runs_dir is not None else None, contrasts=contrast_rows, store=store,
    )


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


def analyze_runs(runs_dir: str | Path = "runs", *, snapshot: str | None = None,
                 reference: str = "rf(M=4)", n_resamples: int = 1000, method: str = DEFAULT_METHOD,
                 confidence_level: float = 0.95, seed: int = 0,
                 progress: Callable[[int, int, str], None] | None = None,
                 contrasts: Sequence[tuple[str, str]] = (), store: str | Path | None = None) -> Report:
    """:func:`analyze` over the run files of one snapshot in ``runs_dir``, or over its statistics store.

    Args:
        runs_dir: the runs folder (``<runs_dir>/<snapshot id>/<spec>-s<seed>.h5``).
        snapshot: snapshot id (or a prefix of its hash); optional when the folder holds one snapshot.
        store: a statistics store file (``biasvar gram``) to analyse instead of the run files; without it,
            the store in the snapshot's folder is used when no run file of the snapshot is there.
        reference, n_resamples, method, confidence_level, seed, progress, contrasts: as in :func:`analyze`.
    """
    from biasvar import gramstore
    from biasvar import store as run_store  # the run files

    kw = dict(reference=reference, n_resamples=n_resamples, method=method, confidence_level=confidence_level,
              seed=seed, progress=progress, contrasts=contrasts)
    runs_dir = Path(runs_dir)
    left_out: tuple[str, ...] = ()
    if store is None:
        if not runs_dir.is_dir():
            raise AnalysisError(f"runs folder {str(runs_dir)!r} does not exist; pass --runs-dir DIR "
                                f"(where `biasvar sample` wrote its run files)")
        try:
            runs, bad = run_store.scan_runs(runs_dir)
        except StoreError as e:
            raise AnalysisError(f"cannot list runs in {runs_dir}: {e}") from e
        left_out = tuple(f"{b.path}: {b.problem} ({b.reason}); left out" for b in bad)
        if runs or snapshot is None:
            try:
                runs = _only_snapshot(runs, runs_dir, snapshot) if runs else runs
            except AnalysisError:
                if _store_in(runs_dir, snapshot) is None:
                    raise
                runs = []
        if not runs:
            store = _store_in(runs_dir, snapshot)
            if store is None and bad:
                raise AnalysisError(f"no readable runs in {runs_dir}: {len(bad)} run files are damaged or misplaced "
                                    f"(first: {left_out[0]}); see `biasvar ls --runs-dir {runs_dir}`")
    if store is not None:
        state = gramstore.read_store(store)
        runs = _only_snapshot(gramstore.stored_runs(state, Path(store).parent), store, snapshot)
        report = analyze(runs, gram=state.gram, store=str(store), runs_dir=str(runs_dir), **kw)
    else:
        report = analyze(runs, load=lambda r: run_store.read_run(r.path), runs_dir=str(runs_dir), **kw)
    return replace(report, notes=report.notes + left_out) if left_out else report


__all__ = ["REPORT_SCHEMA", "Report", "RunResult", "analyze", "analyze_runs", "identity", "mark_pareto",
           "pareto_front", "remark_pareto", "run_row", "sort_key"]
