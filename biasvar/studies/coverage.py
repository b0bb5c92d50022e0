"""Coverage of the b2 intervals on real gradients, against the true b2.

A small categorical VAE, trained briefly on MNIST-B, is small enough to enumerate per data point,
so the exact gradient ``g*`` of its expected loss and the expectation ``E[J]`` of every tested
estimator are known (:func:`biasvar.problems.enumeration.enumerate_expectation`: exact for x-only
estimators and rf, by conditional Monte Carlo with a stated error for gs-st / gr-mc). The true
per-parameter squared bias that Eq. 16 estimates is then ``||E[J] - g*||^2 / d`` (the reference
rf(M=4) is unbiased, so the truth is the same against ``exact`` and against ``rf(M=4)``).

For every pair ``i`` the study draws, through the engine and its counter-based noise, one run of
each tested estimator (seed ``i``) and one reference run of rf(M=4) (seed ``pairs + i``, so that
rf tested against rf is a pair of independent runs), forms the engine's block statistics at each
block count, and computes each interval method on the pair's Gram matrices with the same code a
report uses. A *setting* is (tested estimator, reference, block count); within a setting the
pairs are independent (runs are reused across settings, so settings are not independent of
each other). Coverage is the fraction of pairs whose interval holds the true b2, with a Wilson
95% interval; width is the mean interval width.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
import torch

DEFAULT_ESTIMATORS = ("rf(M=4)", "zgr", "st", "st(t=2)", "gs-st(t=0.5)", "gr-mc(M=10,t=0.5)")
#: (tested, reference) pairs also analysed at the larger block counts: b2 = 0 and b2 ~ V/n
MORE_BLOCKS = (("rf(M=4)", "rf(M=4)"), ("zgr", "rf(M=4)"), ("zgr", "exact"))


@dataclass(frozen=True)
class StudyConfig:
    """What the study measures; every field is recorded in its JSON output."""

    categories: int = 4
    vars: int = 4
    hidden: tuple[int, ...] = (32, 16)
    eval_batch: int = 8  # data points of the evaluation batch (the gradient's batch)
    params: str = "encoder.*"  # the measured parameters (where the estimators differ; decoder grads are unbiased)
    train_steps: int = 100  # Adam steps of rf(M=4), batch 50 (a briefly trained model)
    lr: float = 1e-4
    seed: int = 0  # model init, training, evaluation batch
    n: int = 192  # draws per run
    blocks: tuple[int, ...] = (32, 96)  # block counts analysed (each must divide n)
    pairs: int = 500
    estimators: tuple[str, ...] = DEFAULT_ESTIMATORS
    reference: str = "rf(M=4)"
    against_reference: tuple[str, ...] = ("rf(M=4)", "zgr", "st(t=2)", "gr-mc(M=10,t=0.5)")
    methods: tuple[str, ...] = ("gauss-eb", "pivot", "jackknife-t", "percentile")
    n_resamples: int = 1000
    confidence_level: float = 0.95
    mc: int = 2_000  # conditional Monte Carlo samples per outcome for gs-st / gr-mc expectations
    first_seed: int = 0  # pair i uses seeds first_seed + i (tested) and first_seed + pairs + i (reference)

    def __post_init__(self) -> None:
        for nb in self.blocks:
            if nb < 2 or self.n % nb:
                raise ValueError(f"block count {nb} must be >= 2 and divide n = {self.n}")


def wilson(hits: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (scipy's ``binomtest(...).proportion_ci``;
    ``(0, 1)`` without trials).

    >>> [round(v, 3) for v in wilson(475, 500)]
    [0.927, 0.966]
    """
    if total == 0:
        return (0.0, 1.0)
    ci = scipy.stats.binomtest(int(hits), int(total)).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


# ---------------------------------------------------------------------------------------------
# the model and the truth


@dataclass(frozen=True)
class Truth:
    """The true per-parameter squared bias of one estimator (against the exact gradient)."""

    spec: str
    b2: float
    b2_se: float  # Monte Carlo error of b2 (0 where E[J] is exact)
    how: str


def make_problem(cfg: StudyConfig, data_dir: str | Path | None) -> Any:
    """The study's VAE: ``cfg.train_steps`` Adam steps of rf(M=4) on MNIST-B from ``data_dir``; its
    evaluation batch (``cfg.eval_batch`` training images chosen by the seed) is the gradient's batch."""
    from biasvar.problems.vae import VAE
    from biasvar.train import load_data, train

    prob = VAE(categories=cfg.categories, vars=cfg.vars, hidden=cfg.hidden, seed=cfg.seed)
    data = load_data("vae", "mnist-b", data_dir=data_dir, download=False)
    snap = train(prob, data=data, estimator="rf(M=4)", epochs=1, batch_size=50, lr=cfg.lr, seed=cfg.seed,
                 eval_batch_size=cfg.eval_batch, steps_per_epoch=cfg.train_steps)
    return snap


def true_b2s(problem: Any, specs: Sequence[str], *, mc: int, seed: int = 0,
             params: str | None = None) -> tuple[np.ndarray, dict[str, Truth]]:
    """``g*`` (float64, flat over the parameters ``params`` selects) and the true b2 of every spec."""
    from biasvar.engine import select_params
    from biasvar.exact import true_squared_bias
    from biasvar.problems.enumeration import enumerate_gradient
    from biasvar.spec import parse_spec

    names = select_params(problem, params)
    params64 = {k: v.double() for k, v in problem.params.items()}
    g = enumerate_gradient(problem, params64, problem.batch.double())
    if g is None:
        raise ValueError("the study's problem is too large to enumerate")
    g_flat = np.concatenate([g[k].reshape(-1).numpy() for k in names])
    out: dict[str, Truth] = {}
    shared: dict[float, Truth] = {}  # gs-st(t) and gr-mc(t, M) have one expectation (Eq. 9)
    for s in specs:
        spec = parse_spec(s)
        if spec.name in ("gs-st", "gr-mc") and float(spec["t"]) in shared:
            out[str(spec)] = Truth(str(spec), *list(asdict(shared[float(spec["t"])]).values())[1:])
            continue
        e = problem.exact_expectation(spec, params=params64, x=problem.batch.double(), mc=mc, seed=seed)
        mean, se = e.flat(names)
        b2, b2_se = true_squared_bias(mean, g_flat, se)
        out[str(spec)] = Truth(str(spec), b2, b2_se, e.how)
        if spec.name in ("gs-st", "gr-mc"):
            shared[float(spec["t"])] = out[str(spec)]
    return g_flat, out


# ---------------------------------------------------------------------------------------------
# runs in memory: engine draws, engine blocks


@dataclass(frozen=True)
class MemoryRun:
    """The block statistics of one run, as a run file would hold them (one parameter group)."""

    spec: str
    seed: int
    group_sizes: np.ndarray
    block_count: np.ndarray
    block_sum: np.ndarray
    block_m2: np.ndarray
    groups: tuple[str, ...] = ("all",)
    path: str = ""
    attrs: dict = field(default_factory=dict)
    exact: Any = None

    @property
    def n(self) -> int:
        return int(self.block_count.sum())


def draw_runs(problem: Any, spec: str, seed: int, n: int, blocks: Sequence[int],
              params: str | None = None) -> dict[int, MemoryRun]:
    """One run of ``n`` engine draws (noise keyed by ``(seed, spec)``), blocked at every block count."""
    from biasvar.engine import BlockBuilder, sample_gradients

    x = torch.cat([c.grads for c in sample_gradients(problem, spec, n=n, seed=seed, params=params, device="cpu")])
    dim = x.shape[1]
    out = {}
    for nb in sorted(set(blocks)):
        bs = n // nb
        stats = []
        for b in range(nb):
            bb = BlockBuilder([(0, dim)], np.zeros(0, dtype=np.int64), x.device)
            bb.add(x[b * bs:(b + 1) * bs])
            stats.append(bb.stats(dim))
        out[nb] = MemoryRun(spec, seed, np.array([dim]), np.array([s.count for s in stats]),
                            np.stack([s.sum for s in stats]), np.stack([s.m2 for s in stats]))
    return out


def memory_run(x: np.ndarray, nb: int, groups: Sequence[int] | None = None) -> MemoryRun:
    """The block statistics of draws ``x`` [n, d] in ``nb`` equal blocks (``groups``: parameter group
    sizes, default one group), for simulations with a known truth."""
    n, d = x.shape
    bs = n // nb
    xb = x[: nb * bs].reshape(nb, bs, d)
    dev2 = (xb - xb.mean(1, keepdims=True)) ** 2
    sizes = np.array(groups if groups else (d,))
    cuts = np.cumsum(sizes)[:-1]
    m2 = np.stack([part.sum((1, 2)) for part in np.split(dev2, cuts, axis=2)], axis=1)
    return MemoryRun("sim", 0, sizes, np.full(nb, bs), xb.sum(1), m2)


def gaussian_problem(rng: np.random.Generator, d: int, decay: float, ratio: float, n: int, align: str = "top",
                     with_ref: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """A synthetic pair with known truth: per-draw noise with eigenvalues ``j^-decay`` (random
    eigenvectors) and a bias of ``b2 = ratio * V/n`` (``V/n`` the noise floor of Eq. 16: both runs'
    with a reference run) along the strongest noise direction (``top``), the weakest (``low``) or a
    random one (``rand``). Returns ``(mu, a, b2)``: draws are ``mu + z @ a.T``."""
    lam = np.arange(1, d + 1, dtype=float) ** -decay
    u = np.linalg.qr(rng.standard_normal((d, d)))[0]
    direction = {"top": u[:, 0], "low": u[:, -1]}.get(align)
    if direction is None:
        direction = rng.standard_normal(d)
    direction = direction / np.linalg.norm(direction)
    mu = direction * np.sqrt(ratio * lam.sum() * (2 if with_ref else 1) / n)
    return mu, u * np.sqrt(lam), float(mu @ mu / d)


# ---------------------------------------------------------------------------------------------
# intervals through the analysis code


def last_layer(pg: Any) -> Any:
    """The all-parameters layer of a :class:`~biasvar.stats.gram.PairGram` alone (K = 1): what the
    study analyses, half the numbers to keep."""
    from biasvar.stats.gram import PairGram

    return PairGram(pg.dims[-1:], pg.ref_count, pg.test_count, pg.ref_m2[:, -1:], pg.test_m2[:, -1:],
                    pg.rr[-1:], pg.rt[-1:], pg.tt[-1:], pg.exact)


def gram_of(ref: MemoryRun | None, test: MemoryRun, exact: np.ndarray | None) -> Any:
    """The pair's Gram matrices (all parameters), as a report forms them."""
    from biasvar.stats.gram import pair_gram

    return last_layer(pair_gram(ref, test, exact=exact)[0])


def intervals_from_gram(pg: Any, methods: Sequence[str], *, n_resamples: int, confidence_level: float,
                        rng: np.random.Generator) -> dict[str, Any]:
    """Eq. 16 (all parameters) with each method's interval, from one pair of Gram matrices, by the
    functions a report calls (:mod:`biasvar.stats.intervals`): ``{"b2", "v_t", "v_r", method: (low, high)}``.

    The reference's share (which a report adds) is not computed: it does not change the interval.
    """
    from biasvar.stats import intervals as iv
    from biasvar.stats.gram import eq16

    nbr, nbt = len(pg.ref_count), len(pg.test_count)
    b2, v_t, v_r = eq16(pg, np.ones(nbr), np.ones(nbt))
    out: dict[str, Any] = {"b2": float(b2[-1]), "v_t": float(v_t[-1]), "v_r": float(v_r[-1])}
    for m in methods:
        res = iv.bootstrap_pair(pg, iv.Bootstrap(n_resamples, m, confidence_level), rng=rng, share=False)
        out[m] = (float(res.b2.low[-1]), float(res.b2.high[-1]))
    return out


def intervals_of(ref: MemoryRun | None, test: MemoryRun, exact: np.ndarray | None, methods: Sequence[str], *,
                 n_resamples: int, confidence_level: float, rng: np.random.Generator) -> dict[str, Any]:
    """:func:`intervals_from_gram` of a pair of runs (or a run and the ``exact`` gradient)."""
    return intervals_from_gram(gram_of(ref, test, exact), methods, n_resamples=n_resamples,
                               confidence_level=confidence_level, rng=rng)


class GramStore:
    """Every pair's Gram matrices, per setting, kept so that interval methods can be re-evaluated on
    the same draws without drawing again (``scripts/coverage_study.py --grams``). One ``.npz`` file,
    about 1 MB per pair at the default settings (never committed)."""

    FIELDS = ("ref_count", "test_count", "ref_m2", "test_m2", "rr", "rt", "tt")

    def __init__(self, arrays: dict[str, np.ndarray] | None = None) -> None:
        self.arrays = arrays if arrays is not None else {}

    def put(self, k: int, i: int, pairs: int, pg: Any) -> None:
        for f in self.FIELDS:
            v = np.asarray(getattr(pg, f))
            key = f"{f}{k}"
            if key not in self.arrays:
                self.arrays[key] = np.full((pairs,) + v.shape, np.nan)
            self.arrays[key][i] = v
        self.arrays[f"dims{k}"] = np.asarray(pg.dims)
        self.arrays[f"exact{k}"] = np.asarray(pg.exact)

    def get(self, k: int, i: int) -> Any:
        from biasvar.stats.gram import PairGram

        a = self.arrays
        return PairGram(a[f"dims{k}"], *(a[f"{f}{k}"][i] for f in self.FIELDS), bool(a[f"exact{k}"]))

    def pairs_done(self) -> int:
        tc = self.arrays["test_count0"]
        return int(np.isfinite(tc).all(axis=tuple(range(1, tc.ndim))).sum())

    def save(self, path: str | Path) -> None:
        from biasvar.atomic import atomic_path

        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self.arrays)

    @classmethod
    def load(cls, path: str | Path) -> GramStore:
        with np.load(path) as z:
            return cls({k: z[k] for k in z.files})


# ---------------------------------------------------------------------------------------------
# the study


@dataclass(frozen=True)
class Setting:
    """Tested estimator, reference (``exact`` or a spec) and block count; the methods applied."""

    spec: str
    reference: str
    blocks: int
    methods: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.spec} vs {self.reference}, {self.blocks} blocks"


def settings_of(cfg: StudyConfig, more_blocks: Sequence[tuple[str, str]] | None = None) -> list[Setting]:
    """Every estimator against ``exact`` and those of ``cfg.against_reference`` against the reference, at
    the first block count with every method; at the other block counts the (estimator, reference)
    pairs of ``more_blocks`` (default :data:`MORE_BLOCKS`) with the model-based methods only
    (gauss-eb, pivot, jackknife-t)."""
    from biasvar.spec import parse_spec

    def canon(s: str) -> str:
        return s if s == "exact" else str(parse_spec(s))

    ref = canon(cfg.reference)
    against = {canon(s) for s in cfg.against_reference}
    out = []
    bootstrap_only = ("percentile", "basic", "bca")  # known to fail in high dimension: not against rf(M) estimators
    for s in map(canon, cfg.estimators):
        out.append(Setting(s, "exact", cfg.blocks[0], tuple(cfg.methods)))
        if s in against:
            keep = tuple(m for m in cfg.methods if s == ref or m not in bootstrap_only)
            out.append(Setting(s, ref, cfg.blocks[0], keep))
    fine = tuple(m for m in cfg.methods if m in ("gauss-eb", "pivot", "jackknife-t"))
    for nb in cfg.blocks[1:]:
        out += [Setting(canon(s), canon(r), nb, fine) for s, r in (MORE_BLOCKS if more_blocks is None else more_blocks)]
    return out


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


def summarize(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (setting, method): coverage with its Wilson interval, widths, misses."""
    cfg: StudyConfig = raw["config"]
    rows = []
    for k, st in enumerate(raw["settings"]):
        truth: Truth = raw["truths"][st.spec]
        est = raw["estimate"][k]
        P = int(np.isfinite(est).sum())
        var_n = (np.nanmean(raw["v_t"][k]) + np.nanmean(raw["v_r"][k])) / cfg.n
        for j, m in enumerate(st.methods):
            lo, hi = raw["low"][k, j], raw["high"][k, j]
            ok = np.isfinite(lo) & np.isfinite(hi)
            hits = int(((lo <= truth.b2) & (truth.b2 <= hi) & ok).sum())
            w = wilson(hits, P, 0.95)
            rows.append({
                "spec": st.spec, "reference": st.reference, "blocks": st.blocks, "method": m,
                "true_b2": truth.b2, "true_b2_se": truth.b2_se, "V_over_n": float(var_n),
                "ratio": float(truth.b2 / var_n) if var_n > 0 else None,
                "pairs": P, "covered": hits, "coverage": hits / P if P else None, "wilson": list(w),
                "miss_below": int(((truth.b2 < lo) & ok).sum()), "miss_above": int(((truth.b2 > hi) & ok).sum()),
                "undefined": int((~ok).sum()),
                "mean_width": float(np.nanmean(hi - lo)), "median_width": float(np.nanmedian(hi - lo)),
                "mean_estimate": float(np.nanmean(est)),
                "estimate_se": float(np.nanstd(est, ddof=1) / math.sqrt(max(P, 1))),
            })
    return rows


def recommend(rows: Sequence[dict[str, Any]], band: tuple[float, float] = (0.93, 0.97)) -> dict[str, Any]:
    """The method whose coverage lies in ``band`` at every setting it was applied to, with the
    narrowest intervals (geometric mean of its width over the pivot's, setting by setting); where no
    method does, ``recommended`` is None and ``safest`` names, among the methods whose worst-case
    coverage is statistically tied with the best one (the Wilson interval of their worst setting
    reaches the best worst-case coverage), the one with the narrowest intervals."""
    methods = sorted({r["method"] for r in rows})
    by = {(r["spec"], r["reference"], r["blocks"], r["method"]): r for r in rows}
    verdict = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        inside = all(band[0] <= r["coverage"] <= band[1] for r in mine)
        worst = min(r["coverage"] for r in mine), max(r["coverage"] for r in mine)
        ratios = [r["mean_width"] / by[(r["spec"], r["reference"], r["blocks"], "pivot")]["mean_width"]
                  for r in mine if (r["spec"], r["reference"], r["blocks"], "pivot") in by]
        verdict[m] = {"all_in_band": inside, "coverage_range": list(worst),
                      "width_vs_pivot": float(np.exp(np.mean(np.log(ratios)))) if ratios else None}
    ok = [m for m in methods if verdict[m]["all_in_band"]]
    best = min(ok, key=lambda m: verdict[m]["width_vs_pivot"] or 1.0) if ok else None
    worst = {m: min((r for r in rows if r["method"] == m), key=lambda r: r["coverage"]) for m in methods}
    best_worst = max(w["coverage"] for w in worst.values())
    tied = [m for m in methods if worst[m]["wilson"][1] >= best_worst]
    safest = min(tied, key=lambda m: verdict[m]["width_vs_pivot"] or 1.0)
    return {"band": list(band), "methods": verdict, "recommended": best, "safest": safest}


# ---------------------------------------------------------------------------------------------
# outputs


def _fmt(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def to_json(raw: dict[str, Any], rows: Sequence[dict[str, Any]], verdict: dict[str, Any],
            provenance: dict[str, Any]) -> dict[str, Any]:
    cfg = raw["config"]
    return {
        "schema": 1,
        "what": "coverage of 95% b2 intervals on real VAE gradients against the true b2 (enumeration)",
        "config": {**asdict(cfg), "hidden": list(cfg.hidden), "blocks": list(cfg.blocks)},
        "snapshot_hash": raw["snapshot_hash"],
        "pairs_done": raw["pairs_done"],
        "truths": {k: asdict(v) for k, v in raw["truths"].items()},
        "rows": list(rows),
        "verdict": verdict,
        "seconds": raw["seconds"], "seconds_truth": raw["seconds_truth"],
        "provenance": provenance,
    }


def to_markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    lines = [
        "# Coverage of the b2 intervals on real gradients with known truth",
        "",
        f"Produced by `{doc['provenance'].get('command', 'scripts/coverage_study.py')}` "
        f"(commit {doc['provenance'].get('git_commit', '?')}, {doc['seconds'] / 60:.1f} min on one thread; "
        "numbers in `coverage.json`, per-pair values in `pairs.npz`)."
        + (f" {doc['provenance']['note']}" if doc["provenance"].get("note") else ""),
        "",
        f"Model: categorical VAE, {cfg['vars']} variables x {cfg['categories']} categories, hidden "
        f"{'-'.join(map(str, cfg['hidden']))}, trained {cfg['train_steps']} Adam steps (lr {cfg['lr']}) of rf(M=4) "
        f"on MNIST-B; gradient batch {cfg['eval_batch']} images; parameters `{cfg['params']}`; "
        f"snapshot {doc['snapshot_hash'][:12]}. "
        f"Each run: {cfg['n']} engine draws; {doc['pairs_done']} independent pairs per setting "
        f"{'(PARTIAL: the study is still running) ' if doc['pairs_done'] < cfg['pairs'] else ''}"
        f"(tested seed {cfg.get('first_seed', 0)} + i, reference seed "
        f"{cfg.get('first_seed', 0) + cfg['pairs']} + i). True b2 = ||E[J] - g*||^2 / d by enumeration "
        "(x-only estimators and rf exact; gs-st / gr-mc by conditional Monte Carlo, error below).",
        "",
        "| estimator | true b2 | +- (MC) | how |",
        "|---|---|---|---|",
    ]
    for t in doc["truths"].values():
        lines.append(f"| `{t['spec']}` | {_fmt(t['b2'])} | {_fmt(t['b2_se'])} | {t['how']} |")
    lines += [
        "",
        "Coverage of the 95% interval of b2 (all parameters): covered / pairs, Wilson 95% interval, mean width. "
        "`b2/(V/n)`: the true b2 over `V_T/n + V_R/n` (the noise floor of Eq. 16).",
        "",
        "| tested | reference | blocks | b2/(V/n) | method | coverage | Wilson 95% | mean width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(f"| `{r['spec']}` | {r['reference']} | {r['blocks']} | {_fmt(r['ratio'])} | {r['method']} | "
                     f"{r['covered']}/{r['pairs']} = {r['coverage']:.3f} | "
                     f"[{r['wilson'][0]:.3f}, {r['wilson'][1]:.3f}] | {_fmt(r['mean_width'])} |")
    v = doc["verdict"]
    lines += ["", f"Methods against the band [{v['band'][0]}, {v['band'][1]}] at every setting:", ""]
    for m, d in v["methods"].items():
        lines.append(f"- `{m}`: coverage {d['coverage_range'][0]:.3f}-{d['coverage_range'][1]:.3f}, "
                     f"{'inside' if d['all_in_band'] else 'NOT inside'} the band; mean width "
                     f"{_fmt(d['width_vs_pivot'])} x the pivot's (geometric mean over settings)")
    lines += ["", f"In the band at every setting: **{v['recommended'] or 'no method'}**. Highest worst-case "
              f"coverage (methods tied within the Wilson interval of their worst setting, then the narrowest): "
              f"**{v['safest']}**.", ""]
    return "\n".join(lines)


def write_outputs(raw: dict[str, Any], out_dir: str | Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """``coverage.json``, ``README.md`` and ``pairs.npz`` in ``out_dir``; returns the JSON document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(raw)
    doc = to_json(raw, rows, recommend(rows), provenance)
    (out / "coverage.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "README.md").write_text(to_markdown(doc))
    np.savez_compressed(out / "pairs.npz", estimate=raw["estimate"], v_t=raw["v_t"], v_r=raw["v_r"],
                        low=raw["low"], high=raw["high"],
                        settings=np.array([f"{s.spec}|{s.reference}|{s.blocks}|{','.join(s.methods)}"
                                           for s in raw["settings"]]))
    return doc


def load_raw(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw results and provenance of a written study (``coverage.json`` + ``pairs.npz``), so that
    its summary can be recomputed without rerunning it."""
    out = Path(out_dir)
    doc = json.loads((out / "coverage.json").read_text())
    arr = np.load(out / "pairs.npz")
    c = dict(doc["config"])
    for k in ("hidden", "blocks", "estimators", "methods", "against_reference"):
        if k in c:
            c[k] = tuple(c[k])
    cfg = StudyConfig(**c)
    settings = []
    for s in arr["settings"]:
        spec, ref, nb, methods = str(s).split("|")
        settings.append(Setting(spec, ref, int(nb), tuple(methods.split(","))))
    raw = {"config": cfg, "settings": settings, "truths": {k: Truth(**v) for k, v in doc["truths"].items()},
           "snapshot_hash": doc["snapshot_hash"], "pairs_done": int(arr["estimate"].shape[1]),
           "seconds": doc["seconds"], "seconds_truth": doc["seconds_truth"],
           **{k: arr[k] for k in ("estimate", "v_t", "v_r", "low", "high")}}
    return raw, doc["provenance"]
