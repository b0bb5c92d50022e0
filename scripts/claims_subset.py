"""Write a claims ledger that is the paper's (``biasvar/claims/paper.json``) restricted to a few
temperatures: what a CPU can run at n = 10^4 (issue 22: "a few temperatures, not whole grids").

Each claim over a grid of t keeps the t values given here (a monotone claim needs two, a slope two);
a claim left with too few is dropped and listed in the file's note; claims without a grid are kept
whole. Every kept claim's note says which temperatures of the paper's grid it is judged at, so a
verdict on the subset is never read as one on the whole grid.

    python scripts/claims_subset.py --t 0.01,0.141,1 --out results/claims-cpu/claims-subset.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from biasvar.claims.load import paper_path

MIN_T = {"monotone": 2, "slope": 2}


def subset(ledger: dict, keep: list[float]) -> dict:
    out, dropped = [], []
    for c in ledger["claims"]:
        grid = c.get("t")
        if not grid:
            out.append(c)
            continue
        ts = [t for t in grid if any(abs(t - k) <= 1e-9 * max(1.0, abs(k)) for k in keep)]
        if len(ts) < MIN_T.get(c["kind"], 1):
            dropped.append(c["id"])
            continue
        c = dict(c, t=ts)
        c["note"] = (c.get("note", "") + f" Judged here at t = {', '.join(f'{t:g}' for t in ts)} only, of the "
                     f"paper's {len(grid)} temperatures.").strip()
        out.append(c)
    note = (f"The paper's ledger (biasvar/claims/paper.json) restricted to t in {{{', '.join(f'{t:g}' for t in keep)}}}"
            " by scripts/claims_subset.py: the runs a CPU can make at n = 10^4."
            + (f" Dropped (fewer temperatures left than the test needs): {', '.join(dropped)}." if dropped else ""))
    return {"title": ledger["title"] + f" -- at t in {{{', '.join(f'{t:g}' for t in keep)}}}",
            "source": ledger["source"], "note": note, "claims": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t", required=True, help="comma-separated temperatures to keep")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--claims", type=Path, default=None, help="ledger to restrict (default: the paper's)")
    args = ap.parse_args()
    keep = [float(x) for x in args.t.split(",") if x.strip()]
    ledger = json.loads((args.claims or paper_path()).read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(subset(ledger, keep), indent=1) + "\n")
    print(f"{args.out}: {len(subset(ledger, keep)['claims'])} of {len(ledger['claims'])} claims")


if __name__ == "__main__":
    main()
