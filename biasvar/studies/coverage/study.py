"""Running the coverage study: train, enumerate the truth, draw and analyse every pair (:func:`run_study`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.studies.coverage.config import Setting, StudyConfig, settings_of
from biasvar.studies.coverage.grams import GramStore, gram_of, intervals_from_gram
from biasvar.studies.coverage.pairs import MemoryRun, draw_runs
from biasvar.studies.coverage.truth import make_problem, true_b2s


def analyse_pair(settings: Sequence[Setting], runs: dict[str, dict[int, MemoryRun]], ref: dict[int, MemoryRun],
                 g: np.ndarray, cfg: StudyConfig, rng: np.random.Generator,
                 grams: list[Any] | None = None) -> list[dict[str, Any]]:
    """For every setting: Eq. 16's b2, V_T, V_R and each method's ``(low, high)``; the pair's Gram
    matrices are appended to ``grams`` when given."""
    out = []
    for st in settings:
        if runs:
            test = runs[st.spec][st.blocks]
            r = None if st.reference == "exact" else ref[st.blocks]
            pg = gram_of(r, test, g if r is None else None)
        else:  # re-evaluation: the Gram matrices are given
            pg = grams[len(out)]
        if runs and grams is not None:
            grams.append(pg)
        out.append(intervals_from_gram(pg, st.methods, n_resamples=cfg.n_resamples,
                                       confidence_level=cfg.confidence_level, rng=rng))
    return out


def run_study(cfg: StudyConfig, data_dir: str | Path | None, *, more_blocks: Sequence[tuple[str, str]] | None = None,
              settings: Sequence[Setting] | None = None,
              progress: Callable[[int, int, float], None] | None = None,
              checkpoint: Callable[[dict[str, Any]], None] | None = None, every: int = 50,
              grams: str | Path | None = None, reuse_grams: bool = False) -> dict[str, Any]:
    """Train, enumerate the truth, draw ``cfg.pairs`` independent pairs, analyse; the raw results.

    ``settings`` (default :func:`settings_of`) may name a subset; the reference is only drawn when
    a setting uses it. ``checkpoint`` receives the results of the pairs done so far every ``every`` pairs.
    ``grams``: a file keeping every pair's Gram matrices (:class:`GramStore`); with ``reuse_grams`` the
    pairs are not drawn but read from it (same settings and config), so that the interval methods
    (``cfg.methods``) are re-evaluated on the very same draws in minutes.
    """
    t0 = time.perf_counter()
    snap = make_problem(cfg, data_dir)
    problem = snap.problem
    settings = list(settings_of(cfg, more_blocks) if settings is None else settings)
    specs = sorted({st.spec for st in settings})
    g, truths = true_b2s(problem, specs, mc=cfg.mc, seed=cfg.seed, params=cfg.params)
    t_truth = time.perf_counter() - t0
    with_ref = any(st.reference != "exact" for st in settings)
    S, P = len(settings), cfg.pairs
    store = GramStore.load(grams) if reuse_grams else (GramStore() if grams is not None else None)
    if reuse_grams and store.pairs_done() < P:
        raise ValueError(f"{grams} holds {store.pairs_done()} pairs, fewer than the {P} asked for")
    M = max(len(s.methods) for s in settings)
    est = np.full((S, P), np.nan)
    v_t = np.full((S, P), np.nan)
    v_r = np.full((S, P), np.nan)
    low = np.full((S, M, P), np.nan)
    high = np.full((S, M, P), np.nan)
    rng = np.random.default_rng(cfg.seed)

    def _raw(done: int) -> dict[str, Any]:
        return {
            "config": cfg, "settings": settings, "truths": truths, "snapshot_hash": snap.hash, "pairs_done": done,
            "estimate": est[:, :done], "v_t": v_t[:, :done], "v_r": v_r[:, :done], "low": low[..., :done],
            "high": high[..., :done], "seconds": time.perf_counter() - t0, "seconds_truth": t_truth,
        }

    for i in range(P):
        seed = cfg.first_seed + i
        if reuse_grams:
            runs, ref, pair_grams = {}, {}, [store.get(k, i) for k in range(S)]
        else:
            runs = {s: draw_runs(problem, s, seed, cfg.n, cfg.blocks, cfg.params) for s in specs}
            ref = (draw_runs(problem, cfg.reference, cfg.first_seed + P + i, cfg.n, cfg.blocks, cfg.params)
                   if with_ref else {})
            pair_grams = [] if store is not None else None
        for k, res in enumerate(analyse_pair(settings, runs, ref, g, cfg, rng, pair_grams)):
            est[k, i], v_t[k, i], v_r[k, i] = res["b2"], res["v_t"], res["v_r"]
            for j, m in enumerate(settings[k].methods):
                low[k, j, i], high[k, j, i] = res[m]
        if store is not None and not reuse_grams:
            for k, pg in enumerate(pair_grams):
                store.put(k, i, P, pg)
        if progress is not None:
            progress(i + 1, P, time.perf_counter() - t0)
        if (i + 1) % every == 0 and i + 1 < P:
            if checkpoint is not None:
                checkpoint(_raw(i + 1))
            if store is not None and not reuse_grams:
                store.save(grams)
    if store is not None and not reuse_grams:
        store.save(grams)
    return _raw(P)


#: the settings of tests/test_coverage_real.py: (reference, tested) per setting, "exact" the exact gradient
TEST_SETTINGS: tuple[tuple[str, str], ...] = (("exact", "rf(M=4)"), ("rf(M=4)", "zgr"), ("exact", "zgr"))


def real_test_pairs(data_dir: str | Path, pairs: int, n: int = 192,
                    blocks: int = 32) -> tuple[list[float], list[list[Any]]]:
    """The pairs of ``tests/test_coverage_real.py`` (pair i: rf(M=4) seed 20000 + i, ZGR seed 10000 + i, ``n``
    draws in ``blocks`` blocks, the default :class:`StudyConfig`'s VAE): the true b2 and the Gram matrices of
    each of :data:`TEST_SETTINGS`."""
    cfg = StudyConfig()
    snap = make_problem(cfg, data_dir)
    g, truths = true_b2s(snap.problem, ["rf(M=4)", "zgr"], mc=0, params=cfg.params)
    grams: list[list[Any]] = [[] for _ in TEST_SETTINGS]
    for i in range(pairs):
        runs = {"rf(M=4)": draw_runs(snap.problem, "rf(M=4)", 20_000 + i, n, (blocks,), cfg.params)[blocks],
                "zgr": draw_runs(snap.problem, "zgr", 10_000 + i, n, (blocks,), cfg.params)[blocks]}
        for k, (ref, test) in enumerate(TEST_SETTINGS):
            grams[k].append(gram_of(None if ref == "exact" else runs[ref], runs[test], g if ref == "exact" else None))
    return [truths[t].b2 for _, t in TEST_SETTINGS], grams

