"""The multi-model coverage study: b2 intervals and paired contrasts on several tiny enumerable models.

Every draw comes from :mod:`~biasvar.studies.coverage.tables` (exact outcome tables; the truth is exact),
so thousands of pairs cost seconds to draw and the study's time is the interval methods' own. The models
(:data:`MODELS`) are split into a **tuning** part (which may be used to choose anything) and a **holdout**
(model kinds, and a tuning kind at a fresh model seed, never looked at while choosing; pairs use seeds
from :data:`HOLDOUT_SEED`). A setting (:class:`MSetting`) is (tested estimator, reference, n, blocks);
its pairs are independent of each other (seeded by ``(model seed, setting, pair)``) and of every other
setting's. Per setting and method: coverage of the true b2, mean width, and the width relative to the
narrowest method that covers at least :data:`COVERS` there. :data:`GAUSS_MODELS` are a synthetic kind
(:mod:`~biasvar.studies.coverage.gauss_kind`: block sums drawn directly, the bias placed on or off the noise's
strong directions, any d) run by the same code (``scripts/coverage_multi.py --kind gauss``), tune and holdout alike.

Paired contrasts (:data:`CONTRASTS`): ``b2_A - b2_B`` against one shared reference, the interval of
:func:`biasvar.stats.contrast.contrast_parts`; its coverage, and the rate at which an equivalence test
with the margin set at the true difference (``|A - B| <= margin`` when the 90% interval lies inside
``[-margin, margin]``, a TOST at 5%) wrongly declares equivalence (it should be at most 0.05).

Resumable: one ``.npz`` per (model, setting) in ``raw/`` holds each method's per-pair ends; what is there
is not recomputed, so adding a method evaluates that method alone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.studies.coverage.summary import wilson

#: a method "covers" a setting when its coverage is at least this (the width reference)
COVERS = 0.93
#: the band a method's coverage should lie in, and the widest it may be against the narrowest covering method
BAND = (0.93, 0.97)
WIDTH_LIMIT = 1.15
#: pairs of the holdout start at this seed offset
HOLDOUT_SEED = 1_000_000


@dataclass(frozen=True)
class Model:
    """One model instance of the study: its kind, constructor arguments and role."""

    name: str
    kind: str  # vae | hvae | toy-cat | gauss (synthetic, :mod:`~biasvar.studies.coverage.gauss_kind`)
    args: tuple[tuple[str, Any], ...]
    seed: int
    batch: int  # data points of the gradient's batch (random binary images; toy-cat: 1)
    role: str  # tune | holdout

    def problem(self) -> Any:
        import torch

        from biasvar.problems.hvae import HVAE
        from biasvar.problems.toy import ToyCat
        from biasvar.problems.vae import VAE

        kw = dict(self.args)
        if self.kind == "toy-cat":
            return ToyCat(seed=self.seed, **kw)
        cls = {"vae": VAE, "hvae": HVAE}[self.kind]
        p = cls(seed=self.seed, dtype=torch.float64, **kw)
        g = torch.Generator().manual_seed(self.seed + 17)
        p.batch = (torch.rand(self.batch, 784, generator=g, dtype=torch.float64) < 0.3).double()
        return p

    def tables(self, specs: Sequence[str] = ()) -> Any:
        """The model's sampler: :func:`~biasvar.studies.coverage.tables.outcome_tables` of its problem for
        ``specs`` (default :data:`SPECS`), or the synthetic kind's :class:`~.gauss_kind.GaussTables`."""
        if self.kind == "gauss":
            from biasvar.studies.coverage.gauss_kind import gauss_tables

            return gauss_tables(seed=self.seed, **dict(self.args))
        from biasvar.studies.coverage.tables import outcome_tables

        return outcome_tables(self.problem(), list(specs or SPECS))


MODELS: tuple[Model, ...] = (
    Model("vae-cat", "vae", (("categories", 4), ("vars", 2), ("hidden", (8,))), 1, 4, "tune"),
    Model("vae-bin", "vae", (("categories", 2), ("vars", 4), ("hidden", (6,))), 2, 3, "tune"),
    Model("toy-quartic", "toy-cat", (("vars", 3), ("categories", 3), ("loss", "quartic")), 3, 1, "tune"),
    Model("hvae-bin", "hvae", (("categories", 2), ("vars", 3)), 4, 2, "holdout"),
    Model("toy-sigmoid", "toy-cat", (("vars", 2), ("categories", 4), ("loss", "sigmoid")), 5, 1, "holdout"),
    Model("vae-cat-s7", "vae", (("categories", 4), ("vars", 3), ("hidden", (4,))), 7, 2, "holdout"),
)
#: the synthetic kind (:mod:`~biasvar.studies.coverage.gauss_kind`): biases on the strong noise directions
#: (alignment 2.5, beyond the real VAE's 1.5-1.6), shaped like the noise (1) or off it (0.1); d 128 to 10^4
GAUSS_MODELS: tuple[Model, ...] = (
    Model("gauss-top", "gauss", (("rank", 2000), ("decay", 1.2), ("align", 2.5)), 11, 0, "tune"),
    Model("gauss-off", "gauss", (("rank", 128), ("decay", 1.0), ("align", 0.1)), 12, 0, "tune"),
    Model("gauss-top-h", "gauss", (("rank", 10000), ("decay", 1.1), ("align", 2.5), ("ref_power", 0.9)), 13, 0,
          "holdout"),
    Model("gauss-mid-h", "gauss", (("rank", 400), ("decay", 0.8), ("align", 1.0), ("dim", 4000)), 14, 0,
          "holdout"),
)
SPECS = ("zgr", "st", "st(t=2)")  # x-only estimators tabulated; rf(M=4) is always available
REFERENCE = "rf(M=4)"


@dataclass(frozen=True)
class MSetting:
    """Tested estimator against a reference (``exact`` or rf(M=4)), ``n`` draws per run in ``blocks`` blocks."""

    spec: str
    reference: str
    n: int
    blocks: int

    @property
    def key(self) -> str:
        return f"{self.spec}|{self.reference}|{self.n}|{self.blocks}"


SETTINGS: tuple[MSetting, ...] = (
    MSetting("rf(M=4)", "exact", 128, 64),  # b2 = 0, blocks of 2 draws
    MSetting("zgr", "exact", 128, 64),
    MSetting("zgr", "exact", 1024, 32),
    MSetting("zgr", "exact", 8192, 32),  # blocks of 256 draws
    MSetting("st", "exact", 1024, 8),
    MSetting("st(t=2)", "exact", 8192, 32),  # b2 >> V/n
    MSetting("rf(M=4)", "rf(M=4)", 1024, 32),  # b2 = 0 against a reference run
    MSetting("zgr", "rf(M=4)", 1024, 32),
)
#: paired contrasts (A, B, reference, n, blocks)
CONTRASTS: tuple[tuple[str, str, str, int, int], ...] = (
    ("zgr", "st", "rf(M=4)", 1024, 32),
    ("zgr", "st", "exact", 128, 16),
)


def pair_seed(model: Model, k: int, i: int) -> tuple[int, ...]:
    """The seed of pair ``i`` of setting ``k`` (holdout models: pairs from :data:`HOLDOUT_SEED`)."""
    return (model.seed, k, i + (HOLDOUT_SEED if model.role == "holdout" else 0))


def setting_grams(tables: Any, model: Model, k: int, st: MSetting, pairs: int, first: int = 0) -> list[Any]:
    """The Gram matrices of pairs ``first .. pairs - 1`` of setting ``k`` (drawn from the tables; deterministic)."""
    out = []
    for i in range(first, pairs):
        rng = np.random.default_rng(pair_seed(model, k, i))
        test = tables.run(st.spec, st.n, st.blocks, rng)
        ref = None if st.reference == "exact" else tables.run(st.reference, st.n, st.blocks, rng)
        out.append(tables.pair(test, ref))
    return out


def eq16_of(pg: Any) -> tuple[np.ndarray, ...]:
    """Eq. 16 of a pair with every block once: ``(b2, V_T, V_R)``, each [K]."""
    from biasvar.stats.gram import eq16

    return eq16(pg, np.ones(len(pg.ref_count)), np.ones(len(pg.test_count)))


def _interval(pg: Any, method: str, rng: np.random.Generator, n_resamples: int) -> tuple[float, float]:
    """The 95% b2 interval (all parameters) of ``method``: a name of :data:`biasvar.stats.intervals.METHODS`,
    through the report's code, or of :data:`biasvar.stats.intervals.candidates.CANDIDATES`, called alike."""
    from biasvar.stats import intervals as iv
    from biasvar.stats.intervals.candidates import CANDIDATES

    if method in CANDIDATES:
        b2, v_t, _ = eq16_of(pg)
        res = CANDIDATES[method](pg, b2, v_t, iv.Bootstrap(n_resamples, iv.DEFAULT_METHOD, 0.95), rng, share=False)
    else:
        res = iv.bootstrap_pair(pg, iv.Bootstrap(n_resamples, method, 0.95), rng=rng, share=False)
    return float(res.b2.low[-1]), float(res.b2.high[-1])


def run_setting(path: Path, tables: Any, model: Model, k: int, st: MSetting, methods: Sequence[str], pairs: int,
                n_resamples: int) -> dict[str, np.ndarray]:
    """Each method's per-pair ends of one setting, read from ``path`` where already computed, saved after."""
    have = dict(np.load(path)) if path.exists() else {}
    if have and len(have["b2"]) > pairs:
        have = {k_: v[:pairs] for k_, v in have.items()}
    done = len(have.get("b2", ()))
    todo = [m for m in methods if f"{m}:low" not in have]
    if done == pairs and not todo:
        return have
    grams = setting_grams(tables, model, k, st, pairs)
    if done < pairs:  # more pairs than were kept: the first ones are the same draws
        est = [eq16_of(pg) for pg in grams[done:]]
        have["b2"] = np.concatenate([have.get("b2", np.zeros(0)), [float(e[0][-1]) for e in est]])
        have["v"] = np.concatenate([have.get("v", np.zeros(0)), [float(e[1][-1] + e[2][-1]) for e in est]])
    for m in methods:
        first = len(have[f"{m}:low"]) if f"{m}:low" in have else 0
        if first == pairs:
            continue
        rng = np.random.default_rng((model.seed, k, 99) if first == 0 else (model.seed, k, 99, first))
        ends = np.array([_interval(pg, m, rng, n_resamples) for pg in grams[first:]]).reshape(-1, 2)
        for j, side in enumerate(("low", "high")):
            have[f"{m}:{side}"] = np.concatenate([have.get(f"{m}:{side}", np.zeros(0))[:first], ends[:, j]])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **have)
    tmp.replace(path)
    return have


def contrast_triple(tables: Any, model: Model, j: int, i: int,
                    c: tuple[str, str, str, int, int] | None = None) -> tuple[Any, Any]:
    """The two pairs ``(A, R)``, ``(B, R)`` of triple ``i`` of contrast ``j`` (``c``, default
    ``CONTRASTS[j]``), sharing R's run; seeded ``(model seed, 1000 + j, i)`` (holdout: from :data:`HOLDOUT_SEED`)."""
    a, b, ref, n, nb = CONTRASTS[j] if c is None else c
    rng = np.random.default_rng((model.seed, 1000 + j, i + (HOLDOUT_SEED if model.role == "holdout" else 0)))
    ra, rb = tables.run(a, n, nb, rng), tables.run(b, n, nb, rng)
    rr = None if ref == "exact" else tables.run(ref, n, nb, rng)
    return tables.pair(ra, rr), tables.pair(rb, rr)


def run_contrast(path: Path, tables: Any, model: Model, j: int, c: tuple[str, str, str, int, int],
                 pairs: int) -> dict[str, np.ndarray]:
    """The contrast ``A - B``'s 95% and 90% intervals over ``pairs`` independent triples (A, B, reference)."""
    from biasvar.stats.contrast import contrast_parts

    if path.exists():
        have = dict(np.load(path))
        if len(have["est"]) == pairs:
            return have
    rows = []
    for i in range(pairs):
        pa, pb = contrast_triple(tables, model, j, i, c)
        p95, p90 = contrast_parts(pa, pb, 0.95)["b2"], contrast_parts(pa, pb, 0.90)["b2"]
        rows.append((p95.value, p95.low, p95.high, p90.low, p90.high))
    arr = np.array(rows, dtype=float)
    have = {"est": arr[:, 0], "low95": arr[:, 1], "high95": arr[:, 2], "low90": arr[:, 3], "high90": arr[:, 4]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **have)
    tmp.replace(path)
    return have


def summarize_setting(raw: dict[str, np.ndarray], truth: float, methods: Sequence[str], n: int) -> list[dict]:
    """Coverage, Wilson interval, mean width and width over the narrowest covering method, per method."""
    rows = []
    for m in methods:
        lo, hi = raw[f"{m}:low"], raw[f"{m}:high"]
        ok = np.isfinite(lo) & np.isfinite(hi)
        hits = int(((lo <= truth) & (truth <= hi) & ok).sum())
        P = len(lo)
        rows.append({"method": m, "pairs": P, "covered": hits, "coverage": hits / P, "wilson": list(wilson(hits, P)),
                     "miss_below": int(((truth < lo) & ok).sum()), "miss_above": int(((truth > hi) & ok).sum()),
                     "mean_width": float(np.nanmean(hi - lo))})
    covering = [r["mean_width"] for r in rows if r["coverage"] >= COVERS]
    narrow = min(covering) if covering else None
    for r in rows:
        r["width_vs_narrowest"] = r["mean_width"] / narrow if narrow else None
    return rows


def run_study(out: Path, methods: Sequence[str], *, pairs: int, contrast_pairs: int, n_resamples: int = 1000,
              models: Sequence[Model] = MODELS, settings: Sequence[MSetting] = SETTINGS,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the study under ``out``; the summary document (also the JSON written)."""
    from biasvar.studies.coverage.alignment import alignment

    t0 = time.perf_counter()
    doc_models, rows, crow = [], [], []
    for model in models:
        tables = model.tables()
        doc_models.append({**asdict(model), "args": dict(model.args), "dim": tables.dim, "rank": tables.rank,
                           "true_b2": tables.truth})
        truth = {**tables.truth, REFERENCE: 0.0}
        for k, st in enumerate(settings):
            raw = run_setting(out / "raw" / f"{model.name}-{k}.npz", tables, model, k, st, methods, pairs,
                              n_resamples)
            var_n = float(np.mean(raw["v"])) / st.n
            al = alignment(setting_grams(tables, model, k, st, pairs)) if truth[st.spec] > 0 else {}
            for r in summarize_setting(raw, truth[st.spec], methods, st.n):
                rows.append({"model": model.name, "role": model.role, **asdict(st), "true_b2": truth[st.spec],
                             "V_over_n": var_n, "ratio": truth[st.spec] / var_n, "alignment": al.get("alignment"),
                             "alignment_max": al.get("max"), **r})
            if progress:
                progress(f"{model.name} {st.key} {time.perf_counter() - t0:.0f} s")
        for j, c in enumerate(CONTRASTS):
            raw = run_contrast(out / "raw" / f"{model.name}-c{j}.npz", tables, model, j, c, contrast_pairs)
            d = truth[c[0]] - truth[c[1]]
            hits = int(((raw["low95"] <= d) & (d <= raw["high95"])).sum())
            margin = abs(d)
            equiv = int(((raw["low90"] >= -margin) & (raw["high90"] <= margin)).sum())
            P = len(raw["est"])
            crow.append({"model": model.name, "role": model.role, "a": c[0], "b": c[1], "reference": c[2],
                         "n": c[3], "blocks": c[4], "true_diff": d, "pairs": P, "covered": hits,
                         "coverage": hits / P, "wilson": list(wilson(hits, P)),
                         "mean_width": float(np.mean(raw["high95"] - raw["low95"])),
                         "equivalent_at_margin": equiv / P,
                         "mean_estimate": float(np.mean(raw["est"])),
                         "estimate_se": float(np.std(raw["est"], ddof=1) / math.sqrt(P))})
    return {"schema": 1, "what": "coverage and width of 95% b2 intervals and of paired contrasts on tiny "
            "enumerable models (exact truth)", "methods": list(methods), "pairs": pairs,
            "contrast_pairs": contrast_pairs, "n_resamples": n_resamples, "band": list(BAND), "covers": COVERS,
            "width_limit": WIDTH_LIMIT, "models": doc_models, "settings": [asdict(s) for s in settings],
            "rows": rows, "contrasts": crow, "verdict": verdict(rows, methods),
            "seconds": time.perf_counter() - t0}


def verdict(rows: Sequence[dict], methods: Sequence[str]) -> dict[str, Any]:
    """Per method and role: coverage range, settings outside the band, settings wider than the limit."""
    out: dict[str, Any] = {}
    for role in ("tune", "holdout"):
        for m in methods:
            mine = [r for r in rows if r["method"] == m and r["role"] == role]
            if not mine:
                continue
            wide = [r for r in mine if r["width_vs_narrowest"] is not None and r["width_vs_narrowest"] > WIDTH_LIMIT]
            out.setdefault(role, {})[m] = {
                "coverage_range": [min(r["coverage"] for r in mine), max(r["coverage"] for r in mine)],
                "outside_band": sum(not BAND[0] <= r["coverage"] <= BAND[1] for r in mine),
                "wider_than_limit": len(wide), "settings": len(mine),
                "max_width_vs_narrowest": max((r["width_vs_narrowest"] or 0.0) for r in mine),
                "both": sum(BAND[0] <= r["coverage"] <= BAND[1] and (r["width_vs_narrowest"] or 0) <= WIDTH_LIMIT
                            for r in mine)}
    return out


def gate_failures(rows: Sequence[dict], method: str) -> list[str]:
    """Why ``method`` fails the CI gate at one setting (empty: it passes), from :func:`summarize_setting`'s
    rows: the Wilson 95% interval of its coverage must meet :data:`BAND`, and its mean width must be at most
    :data:`WIDTH_LIMIT` times that of the narrowest method covering at least :data:`COVERS` there."""
    r = next(x for x in rows if x["method"] == method)
    out = []
    lo, hi = r["wilson"]
    if hi < BAND[0] or lo > BAND[1]:
        out.append(f"coverage {r['coverage']:.3f} (Wilson [{lo:.3f}, {hi:.3f}]) outside {list(BAND)}")
    if r["width_vs_narrowest"] is not None and r["width_vs_narrowest"] > WIDTH_LIMIT:
        out.append(f"width {r['width_vs_narrowest']:.2f} x the narrowest covering method's, above {WIDTH_LIMIT}")
    return out


def to_markdown(doc: dict[str, Any]) -> str:
    """A short page of the study's JSON: how it was run, then its numbers (nothing the JSON does not hold)."""
    prov = doc.get("provenance", {})
    methods = doc["methods"]
    lines = [
        "# Multi-model coverage of the b2 intervals and paired contrasts (exact truth)",
        "",
        f"Produced by `{prov.get('command', '?')}` (commit {prov.get('git_commit', '?')}, "
        f"{prov.get('device', 'CPU')}, one thread, {doc['seconds'] / 60:.1f} min for this call). "
        f"{prov.get('note', '')}. Numbers in `{prov.get('json', 'multi-all.json')}`, per-pair ends in `raw/`. "
        f"{doc['pairs']} independent pairs per setting, {doc['contrast_pairs']} triples per contrast; "
        f"pair i of setting k of a model with seed s is seeded (s, k, i) (tuning models) or "
        f"(s, k, {HOLDOUT_SEED} + i) (holdout). Models (`role`: tune = may be used to choose; holdout = not "
        "used to choose any method's constants):",
        "",
        "| model | kind | role | arguments | batch | d | rank | true b2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in doc["models"]:
        tb = ", ".join(f"{k} {v:.3g}" for k, v in m["true_b2"].items())
        lines.append(f"| {m['name']} | {m['kind']} | {m['role']} | {m['args']} | {m['batch']} | {m['dim']} | "
                     f"{m['rank']} | {tb} |")
    lines += ["", "Per setting: coverage of the 95% interval (misses below/above) and mean width over that of the "
              f"narrowest method covering >= {doc['covers']} there (`-`: none does). `b2/(V/n)`: true b2 over "
              "V_T/n + V_R/n. `align (max)`: how far the bias leans onto the noise's strong directions, "
              "(m'Cm / ||m||^2) / (tr C^2 / tr C) estimated over the setting's pairs (1: shaped like the noise; "
              "max: all on the strongest direction; `biasvar/studies/coverage/alignment.py`).", "",
              "| model | tested | reference | n | blocks | b2/(V/n) | align (max) | " + " | ".join(methods) + " |",
              "|---|---|---|---|---|---|---|" + "---|" * len(methods)]
    by: dict[tuple, dict[str, dict]] = {}
    for r in doc["rows"]:
        by.setdefault((r["model"], r["spec"], r["reference"], r["n"], r["blocks"], r["ratio"]), {})[r["method"]] = r
    for (model, spec, ref, n, nb, ratio), rs in by.items():
        r0 = next(iter(rs.values()))
        al = "-" if r0.get("alignment") is None else f"{r0['alignment']:.2f} ({r0['alignment_max']:.2f})"
        cells = []
        for m in methods:
            r = rs[m]
            w = "-" if r["width_vs_narrowest"] is None else f"{r['width_vs_narrowest']:.2f}"
            cells.append(f"{r['coverage']:.3f} ({r['miss_below']}/{r['miss_above']}) w {w}")
        lines.append(f"| {model} | `{spec}` | {ref} | {n} | {nb} | {ratio:.3g} | {al} | " + " | ".join(cells) + " |")
    lines += ["", f"Per method and role: settings with coverage in {doc['band']}, with width <= {doc['width_limit']} x "
              "the narrowest covering method, and both:", "",
              "| role | method | coverage range | in band | width ok | both | of |", "|---|---|---|---|---|---|---|"]
    for role, v in doc["verdict"].items():
        for m, x in v.items():
            lines.append(f"| {role} | {m} | {x['coverage_range'][0]:.3f}-{x['coverage_range'][1]:.3f} | "
                         f"{x['settings'] - x['outside_band']} | {x['settings'] - x['wider_than_limit']} | "
                         f"{x['both']} | {x['settings']} |")
    lines += ["", "Paired contrasts `b2_A - b2_B` (jackknife-t, shared reference): coverage of the 95% interval, and "
              "how often a TOST at 5% (the 90% interval inside [-margin, margin]) declares equivalence with the margin "
              "at the true difference (should be <= 0.05):", "",
              "| model | role | A - B | reference | n | blocks | true diff | coverage | Wilson 95% "
              "| equivalent at margin |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in doc["contrasts"]:
        lines.append(f"| {c['model']} | {c['role']} | `{c['a']}` - `{c['b']}` | {c['reference']} | {c['n']} | "
                     f"{c['blocks']} | {c['true_diff']:.3g} | {c['coverage']:.3f} | "
                     f"[{c['wilson'][0]:.3f}, {c['wilson'][1]:.3f}] | {c['equivalent_at_margin']:.3f} |")
    return "\n".join(lines) + "\n"


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")


__all__ = ["BAND", "CONTRASTS", "COVERS", "GAUSS_MODELS", "HOLDOUT_SEED", "MODELS", "MSetting", "Model", "SETTINGS",
           "SPECS", "WIDTH_LIMIT", "contrast_triple", "eq16_of", "gate_failures", "pair_seed", "run_contrast",
           "run_setting", "run_study", "setting_grams", "summarize_setting", "to_markdown", "verdict", "write_json"]
