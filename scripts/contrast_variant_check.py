"""Does contrast-eb's gain over jackknife-t on gauss-top carry over to nearby synthetic models? (issue 24 item 2)

Four variants of the synthetic gauss kind with the bias on the strong noise directions (rank 1000, decay 1.2,
alignment 2.5, model seed 21; A = zgr, B = st), 400 triples each (seeds (21, i)): 95% coverage, TOST error at
the margin (the true |difference|) and mean 95% width over jackknife-t's, for jackknife-t and contrast-eb.
Output in results/coverage/contrast4/variant-check.md.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python scripts/contrast_variant_check.py
"""

from __future__ import annotations

import time

import numpy as np

from biasvar.stats.contrast import contrast_parts
from biasvar.stats.contrast_model import contrast_eb
from biasvar.studies.coverage.gauss_kind import gauss_tables

CONFIGS = (dict(n=1024, nb=16, ref=True), dict(n=512, nb=16, ref=True), dict(n=1024, nb=32, ref=True),
           dict(n=256, nb=16, ref=False))


def main() -> None:
    tab = gauss_tables(rank=1000, decay=1.2, align=2.5, seed=21)
    d = tab.truth["zgr"] - tab.truth["st"]
    pairs = 400
    for c in CONFIGS:
        t0 = time.time()
        res = {"jackknife-t": [0, 0, 0.0], "contrast-eb": [0, 0, 0.0]}
        for i in range(pairs):
            rng = np.random.default_rng((21, i))
            ra, rb = tab.run("zgr", c["n"], c["nb"], rng), tab.run("st", c["n"], c["nb"], rng)
            rr = tab.run("rf(M=4)", c["n"], c["nb"], rng) if c["ref"] else None
            pa, pb = tab.pair(ra, rr), tab.pair(rb, rr)
            for k in res:
                if k == "jackknife-t":
                    e95, e90 = (contrast_parts(pa, pb, lvl)["b2"] for lvl in (0.95, 0.90))
                else:
                    e95, e90 = (contrast_eb(pa, pb, lvl) for lvl in (0.95, 0.90))
                res[k][0] += e95.low <= d <= e95.high
                res[k][1] += e90.low >= -abs(d) and e90.high <= abs(d)
                res[k][2] += e95.high - e95.low
        ref = "rf(M=4)" if c["ref"] else "exact"
        print(f"| {ref} | {c['n']} | {c['nb']} | " + " | ".join(
            f"{v[0] / pairs:.3f} / {v[1] / pairs:.3f} / {v[2] / res['jackknife-t'][2]:.2f}" for v in res.values())
            + f" | {time.time() - t0:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
