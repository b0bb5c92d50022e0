"""Methods' coverage and width (clipped at 0) over the committed floors, on the b2 = 0 spectrum settings.

``scripts/coverage_floor.py --kind spectrum`` ran four methods on Gaussian models with the enumerable models'
rf(M=4) noise (b2 = 0, exact truth) and computed each setting's floor (``floor.json``). This script runs
further methods (candidates included) on the **same pairs** (the stored ends are copied under ``--out``, the
pairs drawn again from their seeds; a method's rng is the study's, (model seed, setting, 99)) and reports
each method's coverage of 0 and mean width clipped at 0 over the committed floor (the larger of the family's
and the real leans' estimates, as ``coverage_floor.py`` reports it). Resumable: per setting one npz under
``OUT/raw/``.

    OMP_NUM_THREADS=1 python scripts/coverage_floor_methods.py --methods gauss-eb-mm --pairs 400 --out OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from biasvar.provenance import device_name, git_commit
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.floor import clipped_width, model_spectrum, reference_spectrum
from biasvar.studies.coverage.gauss_kind import UNBIASED, GaussTables

RESULTS = Path(__file__).resolve().parent.parent / "results" / "coverage"
#: where the stored ends and the floors are: (raw/ of the ends, floor.json files)
STORED = ("floor-spectrum", ("floor-mixtures", "floor-mixtures-400"))
SPECTRUM_SETTINGS = (0, 6)  # the b2 = 0 settings: against the exact gradient, and against an rf(M=4) run


def committed_floors(results: Path = RESULTS) -> dict[tuple[str, int], float]:
    """(model, setting) -> the committed floor (b2 units) of the spectrum settings."""
    out = {}
    for name in STORED[1]:
        for r in json.loads((results / name / "floor.json").read_text())["rows"]:
            out[(r["model"].removesuffix("-spectrum"), int(r["setting"]))] = max(r["floor"], r["floor_real"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vae-cat,vae-bin,toy-quartic,vae-cat-s7,hvae-bin,toy-sigmoid")
    ap.add_argument("--methods", required=True, help="comma-separated methods or candidates to add")
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from biasvar.stats.intervals import METHODS
    from biasvar.stats.intervals.candidates import CANDIDATES

    t0 = time.time()
    added = tuple(m for m in args.methods.split(",") if m)
    known = {m.name for m in multi.MODELS}
    bad = [m for m in added if m not in METHODS and m not in CANDIDATES] or \
        [m for m in args.models.split(",") if m not in known]
    if bad or not added:
        print(f"error: unknown method or model {bad[0]!r}" if bad else "error: no --methods given", file=sys.stderr)
        return 2
    if not 1 <= args.pairs <= 400:
        print(f"error: --pairs {args.pairs}: the stored ends hold 400 pairs per setting", file=sys.stderr)
        return 2
    floors = committed_floors()
    out = Path(args.out)
    rows = []
    for name in args.models.split(","):
        model = next(m for m in multi.MODELS if m.name == name)
        tables0 = model.tables()
        lam = model_spectrum(reference_spectrum(model, tables0))
        tables = GaussTables(tables0.dim, lam, lam, {}, {UNBIASED: 0.0})
        for k in SPECTRUM_SETTINGS:
            t1 = time.time()
            path = out / "raw" / f"{name}-{k}.npz"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(RESULTS / STORED[0] / "raw" / f"{name}-{k}.npz", path)
            stored = sorted({key.split(":")[0] for key in np.load(path).files if ":" in key} - set(added))
            raw = multi.run_setting(path, tables, model, k, multi.SETTINGS[k], (*stored, *added), args.pairs, 1000)
            fl = floors[(name, k)]
            row = {"model": name, "setting": k, "reference": multi.SETTINGS[k].reference, "floor": fl,
                   "methods": {}}
            for m in (*stored, *added):
                lo, hi = raw[f"{m}:low"], raw[f"{m}:high"]
                clipped = np.maximum(hi, 0.0) - np.maximum(lo, 0.0)
                row["methods"][m] = {"coverage": float(np.mean((lo <= 0.0) & (0.0 <= hi))),
                                     "over_floor": clipped_width(lo, hi) / fl,
                                     "over_floor_se": float(np.nanstd(clipped) / np.sqrt(len(lo))) / fl,
                                     "width": float(np.nanmean(hi - lo))}
            rows.append(row)
            print(f"{name} {row['reference']} ({time.time() - t1:.0f} s): " + ", ".join(
                f"{m} {v['coverage']:.3f} {v['over_floor']:.2f}" for m, v in row["methods"].items()), flush=True)
    command = "python scripts/coverage_floor_methods.py " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = {"command": command, "commit": git_commit(), "device": device_name(torch.device("cpu")), "pairs": args.pairs,
           "wall_s": time.time() - t0, "rows": rows}
    methods = list(rows[0]["methods"])
    lines = [f"# Width over Pratt's floor at the b2 = 0 spectrum settings ({args.pairs} pairs)", "",
             f"Produced by `{command}` (commit {doc['commit']}, {doc['device']}, one thread, "
             f"{doc['wall_s'] / 60:.1f} min). Each cell: coverage of 0, mean width clipped at 0 over the committed "
             "floor (`floor-mixtures/`, `floor-mixtures-400/`); pairs and stored ends of `floor-spectrum/raw/`.", "",
             "| model | reference | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['reference']} | " + " | ".join(
            f"{r['methods'][m]['coverage']:.3f}, {r['methods'][m]['over_floor']:.2f}" for m in methods) + " |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor-methods.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "floor-methods.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
