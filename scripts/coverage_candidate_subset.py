"""Evaluate one interval method on the first pairs of a multi-model study already run (its raw/ ends kept).

The method is computed on the first ``--pairs`` pairs of every (model, setting) of ``--study`` (the same draws:
pairs are seeded one by one, :func:`biasvar.studies.coverage.multi.pair_seed`), and every method's coverage and
width are summarised over those pairs alone, so the new one is compared on equal draws. Nothing in raw/ changes.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/coverage_candidate_subset.py --study results/coverage/multi-gauss \\
        --kind gauss --method gauss-adapt --pairs 100 --out results/coverage/adapt/gauss
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from biasvar.provenance import git_commit
from biasvar.studies.coverage import multi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--kind", choices=("enumerable", "gauss"), default="enumerable")
    ap.add_argument("--method", default="gauss-adapt")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--settings", default="", help="comma-separated setting indices (default: all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.time()
    models = multi.MODELS if args.kind == "enumerable" else multi.GAUSS_MODELS
    keys = [int(k) for k in args.settings.split(",")] if args.settings else list(range(len(multi.SETTINGS)))
    rows = []
    for model in models:
        tables = model.tables()
        truth = {**tables.truth, multi.REFERENCE: 0.0}
        for k in keys:
            st = multi.SETTINGS[k]
            raw = dict(np.load(Path(args.study) / "raw" / f"{model.name}-{k}.npz"))
            P = min(args.pairs, len(raw["b2"]))
            methods = sorted({key.split(":")[0] for key in raw if ":" in key} - {args.method})
            sub = {key: v[:P] for key, v in raw.items()}
            rng = np.random.default_rng((model.seed, k, 99))
            ends = np.array([multi._interval(pg, args.method, rng, 1000)
                             for pg in multi.setting_grams(tables, model, k, st, P)])
            sub[f"{args.method}:low"], sub[f"{args.method}:high"] = ends[:, 0], ends[:, 1]
            var_n = float(np.mean(sub["v"])) / st.n
            for r in multi.summarize_setting(sub, truth[st.spec], [args.method, *methods], st.n):
                rows.append({"model": model.name, "role": model.role, **st.__dict__, "true_b2": truth[st.spec],
                             "ratio": truth[st.spec] / var_n, **r})
            print(model.name, st.key, f"{time.time() - t0:.0f} s", flush=True)
    doc = {"what": f"{args.method} against the stored methods on the first {args.pairs} pairs of {args.study}",
           "method": args.method, "pairs": args.pairs, "rows": rows,
           "verdict": multi.verdict(rows, sorted({r["method"] for r in rows})),
           "provenance": {"command": "python scripts/coverage_candidate_subset.py " + " ".join(
               sys.argv[1:] if argv is None else argv), "git_commit": git_commit(), "threads": 1,
               "wall_seconds": time.time() - t0}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    lines = [f"# {doc['what']}", "", f"`{doc['provenance']['command']}` (commit {doc['provenance']['git_commit']}, "
             f"one thread, {doc['provenance']['wall_seconds'] / 60:.1f} min). Coverage (misses below/above), width "
             f"over the narrowest method covering >= {multi.COVERS} on these pairs:", "",
             "| model | role | setting | b2/(V/n) | " + " | ".join(sorted({r['method'] for r in rows})) + " |",
             "|---|---|---|---|" + "---|" * len({r['method'] for r in rows})]
    by: dict = {}
    for r in rows:
        by.setdefault((r["model"], r["role"], f"{r['spec']}|{r['reference']}|{r['n']}|{r['blocks']}", r["ratio"]),
                      {})[r["method"]] = r
    for (mo, role, key, ratio), rs in by.items():
        cells = [f"{rs[m]['coverage']:.3f} ({rs[m]['miss_below']}/{rs[m]['miss_above']}) w "
                 + ("-" if rs[m]["width_vs_narrowest"] is None else f"{rs[m]['width_vs_narrowest']:.2f}")
                 for m in sorted(rs)]
        lines.append(f"| {mo} | {role} | `{key}` | {ratio:.3g} | " + " | ".join(cells) + " |")
    lines += ["", "| role | method | coverage range | in band | width ok | both | of |",
              "|---|---|---|---|---|---|---|"]
    for role, v in doc["verdict"].items():
        for m, x in v.items():
            lines.append(f"| {role} | {m} | {x['coverage_range'][0]:.3f}-{x['coverage_range'][1]:.3f} | "
                         f"{x['settings'] - x['outside_band']} | {x['settings'] - x['wider_than_limit']} | "
                         f"{x['both']} | {x['settings']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
