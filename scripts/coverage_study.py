"""Run the real-gradient coverage study and write results/coverage/ (see biasvar/studies/coverage/).

    OMP_NUM_THREADS=1 python scripts/coverage_study.py --data-dir ../shared/data --out results/coverage
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from biasvar.provenance import git_commit
from biasvar.studies import coverage


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--out", default="results/coverage")
    ap.add_argument("--pairs", type=int, default=coverage.StudyConfig.pairs)
    ap.add_argument("--n", type=int, default=coverage.StudyConfig.n)
    ap.add_argument("--blocks", default=",".join(map(str, coverage.StudyConfig.blocks)))
    ap.add_argument("--eval-batch", type=int, default=coverage.StudyConfig.eval_batch)
    ap.add_argument("--n-resamples", type=int, default=coverage.StudyConfig.n_resamples)
    ap.add_argument("--mc", type=int, default=coverage.StudyConfig.mc)
    ap.add_argument("--rewrite", action="store_true",
                    help="recompute coverage.json and README.md of --out from its pairs.npz (no sampling)")
    ap.add_argument("--methods", default=",".join(coverage.StudyConfig.methods),
                    help="interval methods compared (biasvar.stats.intervals.METHODS)")
    ap.add_argument("--grams", help="keep every pair's Gram matrices in this .npz (about 1 MB a pair; not committed)")
    ap.add_argument("--reuse-grams", action="store_true",
                    help="do not draw: re-evaluate the methods on the pairs kept in --grams (same settings)")
    ap.add_argument("--first-seed", type=int, default=coverage.StudyConfig.first_seed,
                    help="pair i uses seeds FIRST + i (tested) and FIRST + pairs + i (reference): fresh draws")
    ap.add_argument("--note", help="a sentence recorded with the provenance (e.g. how the kept pairs were drawn)")
    args = ap.parse_args(argv)
    if args.reuse_grams and not args.grams:
        ap.error("--reuse-grams needs --grams FILE")
    if args.rewrite:
        raw, prov = coverage.load_raw(args.out)
        doc = coverage.write_outputs(raw, args.out, {**prov, "summary_rewritten_at": git_commit()})
        print(coverage.to_markdown(doc))
        return 0
    torch.set_num_threads(1)
    if not args.data_dir:
        ap.error("--data-dir is required (MNIST-B)")
    cfg = coverage.StudyConfig(pairs=args.pairs, n=args.n, blocks=tuple(int(b) for b in args.blocks.split(",")),
                               eval_batch=args.eval_batch, n_resamples=args.n_resamples, mc=args.mc,
                               methods=tuple(args.methods.split(",")), first_seed=args.first_seed)
    t0 = time.time()

    def progress(i: int, total: int, elapsed: float) -> None:
        if i % 10 == 0 or i == total:
            print(f"pair {i}/{total}  {elapsed / 60:.1f} min  (~{elapsed / i * (total - i) / 60:.1f} min left)",
                  flush=True)

    prov = {"command": "python scripts/coverage_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "git_commit": git_commit(), "torch": torch.__version__, "threads": 1,
            **({"note": args.note} if args.note else {})}

    def checkpoint(raw: dict) -> None:  # partial results, overwritten by the final ones
        coverage.write_outputs(raw, args.out, {**prov, "partial": True, "wall_s": time.time() - t0})

    raw = coverage.run_study(cfg, args.data_dir, progress=progress, checkpoint=checkpoint, grams=args.grams,
                             reuse_grams=args.reuse_grams)
    doc = coverage.write_outputs(raw, args.out, {**prov, "wall_s": time.time() - t0})
    print(coverage.to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
