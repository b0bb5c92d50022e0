"""The analysis: a reference, every run's Eq. 16 against it through the anchored Gram matrix, contrasts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.errors import AnalysisError
from biasvar.gramstore.anchored import AnchoredGram, RunRows
from biasvar.gramstore.anchored import pair_gram as gram_pair
from biasvar.gramstore.anchored import single_gram as gram_single
from biasvar.gramstore.build import array_sha256, compute
from biasvar.report.pareto import beats_by_intervals, mark_pareto, sort_key
from biasvar.report.rows import run_rng, run_row
from biasvar.report.types import Report, RunResult
from biasvar.spec import parse_spec
from biasvar.stats.compare import (
    check_compatible,
    comparison,
    describe_run,
    run_attr,
    run_name,
)
from biasvar.stats.contrast import Contrast, contrast, total_layer
from biasvar.stats.gram import PairGram, kept_blocks
from biasvar.stats.intervals import DEFAULT_METHOD, Bootstrap, bootstrap_pair


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
    iv = bootstrap_pair(pg, boot, rng=run_rng(boot.seed, run))
    if run_attr(run, "status", "complete") != "complete":
        notes.append(f"{run_name(run)}: status {run_attr(run, 'status')!r} (partial run: committed blocks only)")
    row = run_row(run, comparison(iv, list(run.groups), pg.dims, with_b2=True, cosine=cosine), role="test")
    return row, total_layer(pg)


def _contrast_beats(grams: dict[tuple[str, int], PairGram], level: float) -> Callable[[RunResult, RunResult], bool]:
    """``beats(a, b)``: the paired contrast ``a - b`` has intervals below 0 in both b2 and V."""
    def beats(a: RunResult, b: RunResult) -> bool:
        ga, gb = grams.get((a.spec, a.seed)), grams.get((b.spec, b.seed))
        if ga is None or gb is None:
            return beats_by_intervals(a, b)
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
        comp = describe_run(ref_run, boot, rng=run_rng(boot.seed, ref_run), pg=gram_single(gram, ref_rows))
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
