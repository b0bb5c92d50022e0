"""Run (or resume) the multi-model coverage study (biasvar/studies/coverage/multi.py) and write its JSON.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/coverage_multi.py --out results/coverage/multi
    OMP_NUM_THREADS=1 nice -n 10 python scripts/coverage_multi.py --kind gauss --out results/coverage/multi-gauss
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from biasvar.provenance import git_commit
from biasvar.studies.coverage import multi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/coverage/multi")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--contrast-pairs", type=int, default=400)
    ap.add_argument("--methods", default="gauss-eb,pivot,jackknife-t")
    ap.add_argument("--n-resamples", type=int, default=1000)
    ap.add_argument("--role", choices=("tune", "holdout", "all"), default="all")
    ap.add_argument("--kind", choices=("enumerable", "gauss", "all"), default="enumerable",
                    help="the tiny enumerable models (MODELS), the synthetic kind (GAUSS_MODELS) or both")
    ap.add_argument("--note", default="", help="a sentence recorded with the provenance (how the raw ends were made)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    pool = {"enumerable": multi.MODELS, "gauss": multi.GAUSS_MODELS,
            "all": multi.MODELS + multi.GAUSS_MODELS}[args.kind]
    models = [m for m in pool if args.role in ("all", m.role)]
    out = Path(args.out)
    t0 = time.time()
    doc = multi.run_study(out, args.methods.split(","), pairs=args.pairs, contrast_pairs=args.contrast_pairs,
                          n_resamples=args.n_resamples, models=models, progress=lambda s: print(s, flush=True))
    words = list(sys.argv[1:] if argv is None else argv)
    if "--note" in words:  # the note is recorded on its own
        i = words.index("--note")
        del words[i:i + 2]
    doc["provenance"] = {"command": "python scripts/coverage_multi.py " + " ".join(words),
                         "git_commit": git_commit(), "torch": torch.__version__, "threads": 1,
                         "wall_seconds": time.time() - t0, "device": "CPU", "note": args.note,
                         "json": f"multi-{args.role}.json"}
    out.mkdir(parents=True, exist_ok=True)
    multi.write_json(doc, out / f"multi-{args.role}.json")
    (out / f"multi-{args.role}.md").write_text(multi.to_markdown(doc))
    for role, v in doc["verdict"].items():
        for m, s in v.items():
            print(role, m, s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
