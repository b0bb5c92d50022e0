"""Does a BCa-style skew correction (jackknife acceleration over the three runs) fix the paired contrasts' TOST error?

Redraws the multi-model study's contrast triples (the seeds of ``multi.run_contrast``) for six settings and prints,
for jackknife-t and for its skew-corrected ends ``d + se q / (1 -+ a q)`` (``a`` the multi-sample jackknife
acceleration), the 95% coverage, the TOST error at the margin (the true difference) and the mean width.
Output in results/coverage/contrast-skew.md: no change (the acceleration is tiny; HELPER-NOTE.md).

    OMP_NUM_THREADS=1 nice -n 5 python scripts/contrast_skew_check.py
"""

from __future__ import annotations

import math

import numpy as np

from biasvar.stats.contrast import total_layer
from biasvar.stats.gram import eq16
from biasvar.stats.intervals.jackknife import jack_var, loo_weights
from biasvar.stats.intervals.welch import welch_t
from biasvar.studies.coverage import multi

CASES = (("gauss-top", 0), ("gauss-top-h", 1), ("gauss-top-h", 0), ("toy-quartic", 1), ("hvae-bin", 0),
         ("vae-cat-s7", 0))


def parts(pa, pb) -> tuple[float, float, list, float]:
    """``(b2_A - b2_B, se, Welch parts, acceleration)`` of a triple, as contrast_parts forms them."""
    pa, pb = total_layer(pa), total_layer(pb)
    nr, na, nb = len(pa.ref_count), len(pa.test_count), len(pb.test_count)
    one_r = None if pa.exact else np.ones(nr)
    ba = eq16(pa, one_r, np.ones(na))[0][0]
    bb = eq16(pb, one_r, np.ones(nb))[0][0]
    b_a = eq16(pa, None if pa.exact else np.ones((na, nr)), loo_weights(na))[0][:, 0]
    b_b = eq16(pb, None if pb.exact else np.ones((nb, nr)), loo_weights(nb))[0][:, 0]
    reps = [(b_a - bb, na), (ba - b_b, nb)]
    if not pa.exact:
        r_a = eq16(pa, loo_weights(nr), np.ones((nr, na)))[0][:, 0]
        r_b = eq16(pb, loo_weights(nr), np.ones((nr, nb)))[0][:, 0]
        reps.append((r_a - r_b, nr))
    var = sum(jack_var(r) for r, _ in reps)
    u = np.concatenate([(n - 1) * (r.mean() - r) for r, n in reps])
    acc = float(np.sum(u**3) / (6 * np.sum(u**2) ** 1.5))
    return float(ba - bb), math.sqrt(var), [(jack_var(r), n) for r, n in reps], acc


def main() -> None:
    pool = {m.name: m for m in multi.MODELS + multi.GAUSS_MODELS}
    for name, j in CASES:
        model = pool[name]
        tab = model.tables()
        a_, b_, ref, n, nb = multi.CONTRASTS[j]
        truth = tab.truth[a_] - tab.truth[b_]
        pairs = 1000 if model.kind == "gauss" else 400
        res: dict[str, list] = {"t": [], "skew": []}
        for i in range(pairs):
            seed = i + (multi.HOLDOUT_SEED if model.role == "holdout" else 0)
            rng = np.random.default_rng((model.seed, 1000 + j, seed))
            ra, rb = tab.run(a_, n, nb, rng), tab.run(b_, n, nb, rng)
            rr = None if ref == "exact" else tab.run(ref, n, nb, rng)
            d, se, pr, acc = parts(tab.pair(ra, rr), tab.pair(rb, rr))
            for lvl in (0.95, 0.90):
                q = float(np.asarray(welch_t(pr, 0.5 + lvl / 2)[0]))
                res["t"].append((lvl, d - q * se, d + q * se))
                res["skew"].append((lvl, d - se * q / (1 + acc * q), d + se * q / (1 - acc * q)))
        out = []
        for k, rows in res.items():
            r95 = np.array([(lo, hi) for lvl, lo, hi in rows if lvl == 0.95])
            r90 = np.array([(lo, hi) for lvl, lo, hi in rows if lvl == 0.90])
            cov = np.mean((r95[:, 0] <= truth) & (truth <= r95[:, 1]))
            tost = np.mean((r90[:, 0] >= -abs(truth)) & (r90[:, 1] <= abs(truth)))
            out.append(f"{k}: cov95 {cov:.3f} TOST {tost:.3f} width {np.mean(r95[:, 1] - r95[:, 0]):.3g}")
        print(name, ref, n, nb, " | ".join(out), flush=True)


if __name__ == "__main__":
    main()
