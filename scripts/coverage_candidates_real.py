"""Coverage of b2 interval methods (the table's and the candidates') on the real-gradient VAE pairs of
tests/test_coverage_real.py: the same draws (pair i: rf(M=4) seed 20000 + i, ZGR seed 10000 + i, 192 draws in
32 blocks) and settings, each method with its own rng (default_rng(0), 400 resamples, through the pairs in
the test's order, so the default's numbers are the test's).

    OMP_NUM_THREADS=1 nice -n 10 python scripts/coverage_candidates_real.py --data-dir ../shared/data \
        --out results/coverage/candidates-real
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from biasvar.provenance import device_name, git_commit
from biasvar.studies import coverage
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.alignment import alignment
from biasvar.studies.coverage.study import real_test_pairs

N, BLOCKS = 192, 32
SETTINGS = ("rf(M=4) vs exact (b2 = 0)", "zgr vs rf(M=4)", "zgr vs exact")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", default="results/coverage/candidates-real")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--methods", default="gauss-eb,gauss-fit,pivot,jackknife-t,gauss-fit-s,gauss-theta",
                    help="comma-separated; empty: the alignment of each setting's bias alone")
    args = ap.parse_args(argv)
    from biasvar.stats.intervals import METHODS
    from biasvar.stats.intervals.candidates import CANDIDATES

    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS and m not in CANDIDATES]
    if bad or args.pairs < 1 or not Path(args.data_dir).is_dir():
        print(f"error: unknown methods {bad}, pairs < 1 or no data dir {args.data_dir}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    t0 = time.time()
    truth, grams = real_test_pairs(args.data_dir, args.pairs, N, BLOCKS)
    v_n = np.array([[float(sum(multi.eq16_of(pg)[1:])[-1]) / N for pg in gs] for gs in grams])
    t_draw = time.time() - t0
    rows = []
    for m in methods:
        rng = np.random.default_rng(0)
        ends = np.zeros((3, args.pairs, 2))
        for i in range(args.pairs):
            for k in range(3):
                ends[k, i] = multi._interval(grams[k][i], m, rng, 400)
        for k in range(3):
            lo, hi, t = ends[k, :, 0], ends[k, :, 1], truth[k]
            hits = int(((lo <= t) & (t <= hi)).sum())
            rows.append({"setting": SETTINGS[k], "method": m, "truth": t, "ratio": t / float(v_n[k].mean()),
                         "coverage": hits / args.pairs, "wilson": list(coverage.wilson(hits, args.pairs)),
                         "miss_below": int((t < lo).sum()), "miss_above": int((t > hi).sum()),
                         "mean_width": float(np.mean(hi - lo))})
    aligned = [{"setting": SETTINGS[k], **alignment(grams[k])} for k in (1, 2)]  # b2 > 0
    doc = {"schema": 1, "alignment": aligned, "what": "coverage of 95% b2 intervals on the real-gradient VAE pairs of "
           "tests/test_coverage_real.py", "pairs": args.pairs, "methods": methods, "rows": rows,
           "provenance": {"command": "python scripts/coverage_candidates_real.py " + " ".join(
               sys.argv[1:] if argv is None else argv), "git_commit": git_commit(),
               "device": device_name(torch.device("cpu")), "threads": 1, "nice": os.nice(0),
               "wall_seconds": time.time() - t0, "draw_seconds": t_draw}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(to_markdown(doc))
    print(to_markdown(doc))
    return 0


def to_markdown(doc: dict) -> str:
    """The JSON's numbers as a page: how it was made, then coverage and width per setting and method."""
    p = doc["provenance"]
    lines = ["# b2 intervals on the real-gradient VAE pairs of tests/test_coverage_real.py", "",
             f"Produced by `{p['command']}` (commit {p['git_commit']}, {p['device']}, one thread, "
             f"{p['wall_seconds'] / 60:.1f} min on a 2-core machine at nice {p.get('nice', 10)}). "
             f"{doc['pairs']} pairs: pair i draws rf(M=4) with seed 20000 + i and ZGR with seed 10000 + i (192 "
             "draws, 32 blocks), the test's "
             "draws; each method's rng is default_rng(0) over the pairs in the test's order (400 resamples). "
             "Coverage (misses below/above), Wilson 95%, mean width over gauss-eb's:", "",
             "| setting | b2/(V/n) | " + " | ".join(doc["methods"]) + " |", "|---|---|" + "---|" * len(doc["methods"])]
    for s in dict.fromkeys(r["setting"] for r in doc["rows"]):
        rs = {r["method"]: r for r in doc["rows"] if r["setting"] == s}
        base = rs.get("gauss-eb", next(iter(rs.values())))["mean_width"]
        cells = [f"{r['coverage']:.3f} ({r['miss_below']}/{r['miss_above']}) [{r['wilson'][0]:.3f}, "
                 f"{r['wilson'][1]:.3f}] w {r['mean_width'] / base:.2f}" for r in rs.values()]
        lines.append(f"| {s} | {next(iter(rs.values()))['ratio']:.3g} | " + " | ".join(cells) + " |")
    lines += ["", "How far the bias leans onto the noise's strong directions over the pairs "
              "(`biasvar/studies/coverage/alignment.py`; 1: shaped like the noise, max: on the strongest direction):",
              "", "| setting | alignment | max | b2/(tr C) |", "|---|---|---|---|"]
    lines += [f"| {a['setting']} | {a['alignment']:.2f} | {a['max']:.2f} | {a['b2_over_trace']:.2f} |"
              for a in doc.get("alignment", [])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
