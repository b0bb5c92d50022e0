"""Fig. B.5 at the paper's temperature t = 0.1: run the single-quantizer study, save its numbers as
JSON, draw the figure from that JSON.

    python figures/b5-quant-unit/make.py run  figures/b5-quant-unit/figB5-quant-unit.json   # ~3 min, 1 thread
    python figures/b5-quant-unit/make.py plot figures/b5-quant-unit/figB5-quant-unit.json

`biasvar plot quant-unit` runs the same study (`biasvar.studies.quantstudy.quant_unit_study`) but
with its default estimators (GS-ST and GR-MC at t = 0.5) and no option to choose them or to save
the numbers; this script passes the estimators of Fig. B.5 at t = 0.1 and keeps the numbers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

SPECS = ("st", "darn", "zgr", "gs-st(t=0.1)", "gr-mc(t=0.1,M=100)", "rf(M=2)")
N, POINTS, SEED = 10_000, 61, 0


def run(path: Path) -> None:
    import torch

    from biasvar.studies.quantstudy import quant_unit_study

    torch.set_num_threads(1)
    t0 = time.time()
    study = quant_unit_study(specs=SPECS, n=N, points=POINTS, seed=SEED)
    out = {"figure": "B.5", "K": 4, "n": N, "points": POINTS, "seed": SEED, "specs": list(SPECS),
           "panels": [{"loss": loss, "noise": noise,
                       "curves": {s: {"eta": c.eta.tolist(), "mean": c.mean.tolist(), "std": c.std.tolist(),
                                      "exact": c.exact.tolist(), "n": c.n} for s, c in panel.items()}}
                      for (loss, noise), panel in study.items()]}
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path} ({time.time() - t0:.0f} s)")


def plot(path: Path) -> None:
    from biasvar.plots import plot_quant_unit

    raw = json.loads(path.read_text())
    data = {(p["loss"], p["noise"]): {s: (c["eta"], c["mean"], c["std"], c["exact"]) for s, c in p["curves"].items()}
            for p in raw["panels"]}
    res = plot_quant_unit(data, path.with_suffix(".png"))
    print("wrote", ", ".join(res.paths))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "plot"):
        sys.exit("usage: make.py run|plot FILE.json")
    (run if sys.argv[1] == "run" else plot)(Path(sys.argv[2]))
