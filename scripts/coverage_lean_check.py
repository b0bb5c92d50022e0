"""Coverage of the methods at the family's leans on an enumerable model's noise (the floor's own family).

A Gaussian model (:class:`~biasvar.studies.coverage.gauss_kind.GaussTables`) with the model's rf(M=4)
spectrum (as ``scripts/coverage_floor.py --kind spectrum`` builds it) and a bias ``b`` with squared profile
``∝ s^q`` at alignment ``--lean`` and ``||b||^2 = x tr C_mean`` for each ``--sizes`` x (so b2 is x V/n), run
at one setting of ``multi.SETTINGS`` (default 1: the tested run against the exact gradient, n = 128, 64
blocks); pair i seeded as the study seeds it, under the model's seed. Prints and writes one markdown row
per size: coverage (misses with the truth below the lower end / above the upper end) per method.

    python scripts/coverage_lean_check.py --model vae-cat --lean 2.0 --sizes 1,2 --pairs 2000 --out OUT
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
from biasvar.studies.coverage.floor import model_spectrum, reference_spectrum
from biasvar.studies.coverage.gauss_kind import UNBIASED, GaussTables, aligned_weights


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vae-cat")
    ap.add_argument("--lean", type=float, default=2.0)
    ap.add_argument("--sizes", default="1,2", help="comma-separated b2 in V/n")
    ap.add_argument("--setting", type=int, default=1, help="index into multi.SETTINGS (its spec takes the bias)")
    ap.add_argument("--methods", default="jackknife-t,gauss-eb,pivot")
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.time()
    found = [m for m in multi.MODELS if m.name == args.model]
    if not found:
        print(f"error: unknown model {args.model!r}; expected one of {', '.join(m.name for m in multi.MODELS)}",
              file=sys.stderr)
        return 2
    model, st = found[0], multi.SETTINGS[args.setting]
    if st.spec == multi.REFERENCE:
        print(f"error: setting {args.setting} tests {st.spec}, which is unbiased; pick a biased one", file=sys.stderr)
        return 2
    tables0 = model.tables()
    lam = model_spectrum(reference_spectrum(model, tables0))  # the reference's, used for the tested run too
    try:
        w = aligned_weights(lam, args.lean)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    methods = tuple(args.methods.split(","))
    out = Path(args.out)
    rows = []
    for x in (float(v) for v in args.sizes.split(",")):
        c = x * float(lam.sum()) / st.n * (1.0 if st.reference == "exact" else 2.0)
        tables = GaussTables(tables0.dim, lam, lam, {st.spec: np.sqrt(c * w)},
                             {UNBIASED: 0.0, st.spec: c / tables0.dim})
        raw = multi.run_setting(out / "raw" / f"{args.model}-lean{args.lean:g}-x{x:g}.npz", tables, model,
                                args.setting, st, methods, args.pairs, 1000)
        truth = c / tables0.dim
        row = {"size": x, "b2": truth, "methods": {}}
        for m in methods:
            lo, hi = raw[f"{m}:low"], raw[f"{m}:high"]
            row["methods"][m] = {"coverage": float(np.mean((lo <= truth) & (truth <= hi))),
                                 "below": int(np.sum(truth < lo)), "above": int(np.sum(truth > hi))}
        rows.append(row)
        print(f"{args.model} lean {args.lean:g}, b2 {x:g} V/n: " + ", ".join(
            f"{m} {v['coverage']:.3f} ({v['below']}/{v['above']})" for m, v in row["methods"].items()), flush=True)
    command = "python scripts/coverage_lean_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Coverage at lean {args.lean:g} on {args.model}'s noise ({st.spec} against {st.reference}, "
             f"n = {st.n}, {st.blocks} blocks)", "",
             f"Produced by `{command}` (commit {git_commit()}, one thread, {(time.time() - t0) / 60:.1f} min; "
             f"{args.pairs} pairs per size). Coverage of the 95% interval (misses with the truth below the lower "
             "end / above the upper end); binomial standard error about "
             f"{np.sqrt(0.95 * 0.05 / args.pairs):.3f}.", "",
             "| b2 (V/n) | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for r in rows:
        lines.append(f"| {r['size']:g} | " + " | ".join(
            f"{r['methods'][m]['coverage']:.3f} ({r['methods'][m]['below']}/{r['methods'][m]['above']})"
            for m in methods) + " |")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lean-{args.model}-{args.lean:g}"
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"command": command, "commit": git_commit(), "rows": rows,
                                                  "wall_s": time.time() - t0}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
