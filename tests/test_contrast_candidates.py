"""The candidate contrast intervals of ``biasvar.stats.contrast_model`` (issue 24, item 2) against the synthetic
gauss kind (known truth), and against jackknife-t (``biasvar.stats.contrast``) on the same triples.

Each check redraws triples (A = zgr, B = st, reference rf(M=4) or exact) as ``multi.run_contrast`` does. The
measured study is ``results/coverage/contrast4/`` (``scripts/contrast_candidates.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from biasvar.stats.contrast import contrast_parts
from biasvar.stats.contrast_model import contrast_bt_levels, contrast_eb, pair_moments
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.gauss_kind import gauss_tables


def _triples(tables, n, nb, ref, pairs, seed):
    out = []
    for i in range(pairs):
        rng = np.random.default_rng((seed, i))
        ra, rb = tables.run("zgr", n, nb, rng), tables.run("st", n, nb, rng)
        rr = tables.run("rf(M=4)", n, nb, rng) if ref else None
        out.append((tables.pair(ra, rr), tables.pair(rb, rr)))
    return out


def _rates(intervals, truth):
    """(95% coverage, TOST error at the margin |truth|, mean 95% width) of [(e95, e90)] intervals."""
    cov = np.mean([e95.low <= truth <= e95.high for e95, _ in intervals])
    tost = np.mean([e90.low >= -abs(truth) and e90.high <= abs(truth) for _, e90 in intervals])
    return float(cov), float(tost), float(np.mean([e95.high - e95.low for e95, _ in intervals]))


def test_contrast_model_variance_needs_no_cross_gram_and_matches_the_spread():
    """The model's standard error at the estimate (two pairs' Grams only) against the spread of the estimate
    over 300 triples (rank 300, bias on the strong directions, shared reference): within 12% on average
    (observed: the model's rms se 0.95x the empirical SD on this draw; jackknife-t's 1.01x)."""
    tab = gauss_tables(rank=300, decay=1.2, align=2.0, seed=5)
    trip = _triples(tab, 512, 16, True, 300, 31)
    est = np.array([contrast_eb(pa, pb).value for pa, pb in trip])
    se = np.array([contrast_eb(pa, pb).se for pa, pb in trip])
    sd = float(np.std(est, ddof=1))
    assert abs(float(np.mean(est)) - (tab.truth["zgr"] - tab.truth["st"])) < 3 * sd / np.sqrt(len(est))
    assert 0.88 < float(np.sqrt(np.mean(se**2))) / sd < 1.12
    # the shared reference enters only through R's block projections: swapping A and B flips the sign
    pa, pb = trip[0]
    ab, ba = contrast_eb(pa, pb), contrast_eb(pb, pa)
    assert ab.value == pytest.approx(-ba.value) and ab.low == pytest.approx(-ba.high, rel=1e-6)
    ma = pair_moments(pa)
    assert ma.tr2_x > 0 and ma.tr_rx > 0 and len(ma.yr) == 16


def test_contrast_eb_lowers_the_tost_error_of_jackknife_t_on_gauss_top():
    """gauss-top's shared-reference contrast (the study's model and its first 1000 triples, seeds of
    ``multi.run_contrast``, as in results/coverage/contrast4): jackknife-t declares equivalence at the true margin
    too often (0.076), contrast-eb near the nominal 0.05 (0.055; on the first 600 only: 0.087 and 0.068). The
    improvement is small and not general: on the holdout gauss-top-h (same contrast) contrast-eb errs more than
    jackknife-t (0.069 against 0.063), and a rank-1000 variant with 16 blocks shows none."""
    model = next(m for m in multi.GAUSS_MODELS if m.name == "gauss-top")
    tab = model.tables()
    a, b, ref, n, nb = multi.CONTRASTS[0]
    trip = []
    for i in range(1000):
        rng = np.random.default_rng((model.seed, 1000, i))
        ra, rb, rr = tab.run(a, n, nb, rng), tab.run(b, n, nb, rng), tab.run(ref, n, nb, rng)
        trip.append((tab.pair(ra, rr), tab.pair(rb, rr)))
    truth = tab.truth[a] - tab.truth[b]
    jk = _rates([(contrast_parts(pa, pb, 0.95)["b2"], contrast_parts(pa, pb, 0.90)["b2"]) for pa, pb in trip], truth)
    eb = _rates([(contrast_eb(pa, pb, 0.95), contrast_eb(pa, pb, 0.90)) for pa, pb in trip], truth)
    assert jk[1] > 0.07, jk
    assert eb[1] < jk[1] - 0.015 and eb[1] <= 0.06, (eb, jk)
    assert 0.93 <= eb[0] <= 0.97, eb
    assert eb[2] / jk[2] < 1.1


def test_contrast_eb_is_conservative_where_the_bias_is_off_the_strong_directions():
    """Bias off the noise's strong directions (alignment 0.1; 300 triples, shared reference, n 1024 in 32 blocks):
    the prior of gauss-eb (power 1.5) puts the unseen bias on the strong directions, so contrast-eb is wider than
    jackknife-t (observed here: 1.43x, coverage 0.997 against 0.983; gauss-off in results/coverage/contrast4:
    0.998, 1.42x): it must not be wildly wider (< 1.6x)."""
    tab = gauss_tables(rank=128, decay=1.0, align=0.1, seed=12)
    trip = _triples(tab, 1024, 32, True, 300, 41)
    truth = tab.truth["zgr"] - tab.truth["st"]
    jk = _rates([(contrast_parts(pa, pb, 0.95)["b2"], contrast_parts(pa, pb, 0.90)["b2"]) for pa, pb in trip], truth)
    eb = _rates([(contrast_eb(pa, pb, 0.95), contrast_eb(pa, pb, 0.90)) for pa, pb in trip], truth)
    assert eb[0] >= 0.95 and eb[1] <= 0.05
    assert 1.0 < eb[2] / jk[2] < 1.6, (eb, jk)


def test_contrast_bt_levels_nest_and_run_without_a_reference():
    tab = gauss_tables(rank=200, decay=1.2, align=2.0, seed=7)
    for ref in (True, False):
        pa, pb = _triples(tab, 256, 16, ref, 1, 3)[0]
        e95, e90 = contrast_bt_levels(pa, pb, (0.95, 0.90), draws=2000)
        assert e95.low < e90.low < e95.value < e90.high < e95.high
        m95 = contrast_eb(pa, pb, 0.95)
        assert m95.low < m95.value < m95.high
