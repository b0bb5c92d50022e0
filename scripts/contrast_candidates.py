"""Candidate intervals for paired contrasts against jackknife-t, on the multi-model studies' contrast triples.

Regenerates the triples of every contrast setting (``multi.CONTRASTS``) of the synthetic (``GAUSS_MODELS``)
and enumerable (``MODELS``) studies with the seeds of ``multi.run_contrast`` (the first ``--pairs`` of them,
tune and holdout alike) and reports per setting and method: 95% coverage (Wilson), the TOST error at the
margin (margin = the true |difference|; 90% interval inside [-margin, margin]) and the mean width over
jackknife-t's. The triples' Gram matrices are cached under ``--cache`` (not committed).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python scripts/contrast_candidates.py --pairs 1000 \\
        --out results/coverage/contrast4
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from biasvar.provenance import git_commit
from biasvar.stats.contrast import contrast_parts
from biasvar.stats.contrast_model import contrast_bt_levels, contrast_cv, contrast_eb
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.summary import wilson

LEVELS = (0.95, 0.90)
METHODS = {  # name -> f(pa, pb) -> [95% Estimate, 90% Estimate]
    "jackknife-t": lambda pa, pb: [contrast_parts(pa, pb, lvl)["b2"] for lvl in LEVELS],
    "contrast-eb": lambda pa, pb: [contrast_eb(pa, pb, lvl) for lvl in LEVELS],
    "contrast-eb-worst": lambda pa, pb: [contrast_eb(pa, pb, lvl, split="worst") for lvl in LEVELS],
    "contrast-eb-p1": lambda pa, pb: [contrast_eb(pa, pb, lvl, power=1.0) for lvl in LEVELS],
    "contrast-eb-p2": lambda pa, pb: [contrast_eb(pa, pb, lvl, power=2.0) for lvl in LEVELS],
    "contrast-eb-denoise": lambda pa, pb: [contrast_eb(pa, pb, lvl, denoise=True) for lvl in LEVELS],
    "contrast-eb-denoise-noprior": lambda pa, pb: [contrast_eb(pa, pb, lvl, denoise=True, prior=False)
                                                   for lvl in LEVELS],
    "contrast-eb-noprior": lambda pa, pb: [contrast_eb(pa, pb, lvl, prior=False) for lvl in LEVELS],
    "contrast-cv": lambda pa, pb: [contrast_cv(pa, pb, lvl) for lvl in LEVELS],
    "contrast-bt": lambda pa, pb: contrast_bt_levels(pa, pb, LEVELS),
    "contrast-bt-noprior": lambda pa, pb: contrast_bt_levels(pa, pb, LEVELS, prior=False),
    "contrast-bt-w": lambda pa, pb: contrast_bt_levels(pa, pb, LEVELS, wishart=True),
    "contrast-bt-2k": lambda pa, pb: contrast_bt_levels(pa, pb, LEVELS, draws=2000),
}


def triples(model: multi.Model, tables, j: int, pairs: int, cache: Path) -> list:
    """The Gram matrices ``(pa, pb)`` of the first ``pairs`` triples of contrast ``j`` (seeds of run_contrast)."""
    path = cache / f"{model.name}-c{j}.pkl"
    have: list = pickle.loads(path.read_bytes()) if path.exists() else []
    if len(have) >= pairs:
        return have[:pairs]
    for i in range(len(have), pairs):
        have.append(multi.contrast_triple(tables, model, j, i))
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(have))
    return have


def evaluate(trip: list, truth: float, methods: list[str]) -> dict[str, dict]:
    out = {}
    for m in methods:
        f = METHODS[m]
        t0 = time.process_time()
        both = [f(pa, pb) for pa, pb in trip]
        r95, r90 = [e[0] for e in both], [e[1] for e in both]
        cpu = time.process_time() - t0
        lo95, hi95 = np.array([e.low for e in r95]), np.array([e.high for e in r95])
        lo90, hi90 = np.array([e.low for e in r90]), np.array([e.high for e in r90])
        P = len(trip)
        hits = int(((lo95 <= truth) & (truth <= hi95)).sum())
        margin = abs(truth)
        equiv = int(((lo90 >= -margin) & (hi90 <= margin)).sum())
        far90 = int(((truth < lo90) if truth < 0 else (truth > hi90)).sum())  # truth beyond the end away from 0
        out[m] = {"pairs": P, "covered": hits, "coverage": hits / P, "wilson": list(wilson(hits, P)),
                  "miss_low95": int((truth < lo95).sum()), "miss_high95": int((truth > hi95).sum()),
                  "tost_error": equiv / P, "tost_wilson": list(wilson(equiv, P)), "far_miss90": far90 / P,
                  "mean_width": float(np.mean(hi95 - lo95)), "ms_per_triple": 1000 * cpu / P}
    ref = out["jackknife-t"]["mean_width"]
    for m in methods:
        out[m]["width_vs_jackknife"] = out[m]["mean_width"] / ref
    return out


def passes(r: dict) -> bool:
    lo, hi = r["wilson"]
    return not (hi < multi.BAND[0] or lo > multi.BAND[1]) and r["tost_wilson"][0] <= 0.05


def to_markdown(doc: dict) -> str:
    p = doc["provenance"]
    lines = ["# Candidate intervals for paired contrasts `b2_A - b2_B` against jackknife-t", "",
             f"Produced by `{p['command']}` (commit {p['git_commit']}, {p['cpu']}, {p['wall_seconds'] / 60:.1f} min "
             f"wall on a shared 2-core machine). The first {doc['pairs']} triples of every contrast setting of the "
             "multi-model studies (seeds of `multi.run_contrast`; synthetic `GAUSS_MODELS` and enumerable `MODELS`). "
             "Per method: 95% coverage (misses below/above the interval) with its Wilson 95% interval, the TOST "
             "error at the margin (margin = true |difference|; the 90% interval inside [-margin, margin]; should be "
             "<= 0.05; Wilson lower end in brackets), the 90% interval's misses beyond the end away from 0 (`far`), "
             "and the mean 95% width over jackknife-t's. `ok`: Wilson interval of the coverage meets [0.93, 0.97] "
             "and the TOST error's Wilson lower end is <= 0.05.", ""]
    methods = doc["methods"]
    lines += ["| model | role | ref | n | blocks | true diff | " + " | ".join(methods) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(methods)]
    for s in doc["settings"]:
        cells = []
        for m in methods:
            r = s["methods"][m]
            cells.append(f"{r['coverage']:.3f} ({r['miss_low95']}/{r['miss_high95']}) [{r['wilson'][0]:.3f}, "
                         f"{r['wilson'][1]:.3f}]; TOST {r['tost_error']:.3f} [{r['tost_wilson'][0]:.3f}]; far "
                         f"{r['far_miss90']:.3f}; w {r['width_vs_jackknife']:.2f}; {'ok' if passes(r) else 'FAIL'}")
        lines.append(f"| {s['model']} | {s['role']} | {s['reference']} | {s['n']} | {s['blocks']} | "
                     f"{s['true_diff']:.3g} | " + " | ".join(cells) + " |")
    lines += ["", "Settings passing both criteria, per method and role:", "", "| method | role | ok | of |",
              "|---|---|---|---|"]
    for m in methods:
        for role in ("tune", "holdout"):
            mine = [s["methods"][m] for s in doc["settings"] if s["role"] == role]
            if not mine:
                continue
            lines.append(f"| {m} | {role} | {sum(passes(r) for r in mine)} | {len(mine)} |")
    lines += ["", "CPU time per triple (its 95% and 90% intervals), ms: "
              + ", ".join(f"{m} {np.mean([s['methods'][m]['ms_per_triple'] for s in doc['settings']]):.2f}"
                          for m in methods) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--kind", choices=("gauss", "enumerable", "all"), default="all")
    ap.add_argument("--role", choices=("tune", "holdout", "all"), default="all")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all of --kind/--role)")
    ap.add_argument("--methods", default="jackknife-t,contrast-eb")
    ap.add_argument("--cache", default="/tmp/contrast4-cache")
    ap.add_argument("--out", default="")
    ap.add_argument("--tag", default="", help="appended to the output files' names")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    pool = {"gauss": multi.GAUSS_MODELS, "enumerable": multi.MODELS,
            "all": multi.GAUSS_MODELS + multi.MODELS}[args.kind]
    models = [m for m in pool if args.role in ("all", m.role) and (not args.models or m.name in args.models.split(","))]
    methods = args.methods.split(",")
    t0 = time.time()
    settings = []
    for model in models:
        tables = model.tables()
        truth = {**tables.truth, multi.REFERENCE: 0.0}
        for j, c in enumerate(multi.CONTRASTS):
            trip = triples(model, tables, j, args.pairs, Path(args.cache))
            d = truth[c[0]] - truth[c[1]]
            res = evaluate(trip, d, methods)
            settings.append({"model": model.name, "role": model.role, "a": c[0], "b": c[1], "reference": c[2],
                             "n": c[3], "blocks": c[4], "true_diff": d, "methods": res})
            print(f"{model.name:12s} {model.role:7s} {c[2]:8s} {c[3]:5d} {c[4]:3d} " + " | ".join(
                f"{m}: cov {r['coverage']:.3f} TOST {r['tost_error']:.3f} far {r['far_miss90']:.3f} "
                f"w {r['width_vs_jackknife']:.2f}" for m, r in res.items()) + f"  [{time.time() - t0:.0f} s]",
                flush=True)
    words = sys.argv[1:] if argv is None else argv
    doc = {"schema": 1, "pairs": args.pairs, "methods": methods, "settings": settings,
           "provenance": {"command": "python scripts/contrast_candidates.py " + " ".join(words),
                          "git_commit": git_commit(), "cpu": "Intel Xeon, one thread",
                          "wall_seconds": time.time() - t0}}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"contrast-{args.kind}-{args.role}-{args.pairs}" + (f"-{args.tag}" if args.tag else "")
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
        (out / f"{stem}.md").write_text(to_markdown(doc))
    return 0 if all(math.isfinite(s["methods"][m]["coverage"]) for s in settings for m in methods) else 1


if __name__ == "__main__":
    sys.exit(main())
