"""Where a b2 interval's width goes at b2 = 0: each method's chance of holding c, against the floor's beta(c).

Pratt: a method's mean width (clipped at 0) is the area under ``c -> P(c ∈ I)``; the floor is the area under
``beta(c)``, the least chance at each c that any interval valid for the family can have
(:mod:`biasvar.studies.coverage.floor`). Reads the per-pair ends and the floor's grid of a spectrum run of
``scripts/coverage_floor.py`` (``--ends``, b2 = 0 settings only), and optionally the floor of another run of
the same settings (``--floor``, e.g. the least-favourable mixtures'); writes ``curves.png`` and ``curves.md``.

    python scripts/coverage_floor_curves.py --ends results/coverage/floor-spectrum \\
        --floor results/coverage/floor-mixtures --out results/coverage/floor-mixtures
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from biasvar.provenance import git_commit

METHODS = ("gauss-eb", "pivot", "jackknife-t", "gauss-fit")


def curves(ends: Path, floor: Path, name: str) -> dict:
    raw = np.load(ends / "raw" / f"{name}.npz")
    row = json.loads((ends / "raw" / f"{name}.spec.json").read_text())
    src = floor / "raw" / f"{name}.spec.json"
    fl = json.loads(src.read_text()) if src.exists() else row
    grid, beta = np.array(fl["grid"]), np.array(fl["beta"])
    out = {"name": name, "reference": row["reference"], "n": row["n"], "sd": row["sd"], "pairs": len(raw["b2"]),
           "floor_from": str(src if src.exists() else ends / "raw" / f"{name}.spec.json"),
           "grid": grid.tolist(), "beta": beta.tolist(), "methods": {}}
    area = float(np.trapezoid(beta, grid))
    for m in METHODS:
        if f"{m}:low" not in raw:
            continue
        lo, hi = raw[f"{m}:low"], raw[f"{m}:high"]
        held = np.array([np.mean((lo <= c) & (c <= hi)) for c in grid])
        gap = held - beta
        out["methods"][m] = {"held": held.tolist(), "area_over_floor": float(np.trapezoid(held, grid)) / area,
                             "most_above": float(grid[int(np.argmax(gap))] / row["sd"]),
                             "most_above_by": float(gap.max())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ends", default="results/coverage/floor-spectrum")
    ap.add_argument("--floor", default="results/coverage/floor-mixtures")
    ap.add_argument("--settings", default="vae-cat-0,vae-cat-6,vae-bin-0,vae-bin-6,toy-quartic-0,toy-sigmoid-0")
    ap.add_argument("--out", default="results/coverage/floor-mixtures")
    args = ap.parse_args(argv)
    t0 = time.time()
    ends, floor, out = Path(args.ends), Path(args.floor), Path(args.out)
    names = args.settings.split(",")
    missing = [n for n in names if not (ends / "raw" / f"{n}.npz").exists()]
    if missing:
        print(f"error: no ends for {', '.join(missing)} under {ends}/raw", file=sys.stderr)
        return 2
    rows = [curves(ends, floor, n) for n in names]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, figsize=(12, 3.4 * ((len(rows) + 2) // 3)),
                             squeeze=False)
    for ax, r in zip(axes.ravel(), rows, strict=False):
        x = np.array(r["grid"]) / r["sd"]
        ax.plot(x, r["beta"], "k-", lw=2.2, label="floor beta(c)")
        for m, v in r["methods"].items():
            ax.plot(x, v["held"], lw=1.2, label=f"{m} ({v['area_over_floor']:.2f}x)")
        ax.set_title(f"{r['name']}: {r['reference']}, n={r['n']}, {r['pairs']} pairs", fontsize=9)
        ax.set_xlim(0, 8)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("c / sd of Eq. 16")
        ax.set_ylabel("P(c in interval), b2 = 0")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(rows):]:
        ax.set_visible(False)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "curves.tmp.png"
    fig.savefig(tmp, dpi=90)
    tmp.replace(out / "curves.png")
    command = "python scripts/coverage_floor_curves.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Where the width goes at b2 = 0: P(c in interval) against the floor's beta(c)", "",
             f"Produced by `{command}` (commit {git_commit()}, {time.time() - t0:.0f} s). Ends from "
             f"`{args.ends}/raw/*.npz` (b2 = 0, Gaussian models with the named model's rf(M=4) spectrum), the floor "
             f"from `{args.floor}/raw/` where it has the setting, else from the ends' own run. A method's mean width "
             "clipped at 0 is the area under its curve (Pratt); `area/floor` is that area over the floor's; "
             "`most above` is the c (in sd of Eq. 16) where its curve is furthest above beta, and by how much.",
             "",
             "| setting | reference | n | pairs | "
             + " | ".join(f"{m}: area/floor, most above" for m in METHODS) + " |",
             "|---|---|---|---|" + "---|" * len(METHODS)]
    for r in rows:
        cells = [f"{v['area_over_floor']:.2f}, {v['most_above_by']:+.2f} at {v['most_above']:.1f} sd"
                 if (v := r["methods"].get(m)) else "-" for m in METHODS]
        lines.append(f"| {r['name']} | {r['reference']} | {r['n']} | {r['pairs']} | " + " | ".join(cells) + " |")
    (out / "curves.md").write_text("\n".join(lines) + "\n")
    (out / "curves.json").write_text(json.dumps({"command": command, "commit": git_commit(), "rows": rows}) + "\n")
    print(f"wrote {out}/curves.png, curves.md, curves.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
