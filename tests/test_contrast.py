"""Paired contrasts (``biasvar.stats.contrast``) against simulations with known truth, and the
interval-aware Pareto marks of reports.

Runs are Gaussian draws in blocks with known means and variances, so the true
``b2_A - b2_B = (||mu_A - g||^2 - ||mu_B - g||^2) / d`` (g the reference's mean) and
``V_A - V_B`` are known exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from conftest import fig_runs, gaussian_run

from biasvar import formats as F
from biasvar import report as R
from biasvar.errors import AnalysisError
from biasvar.stats.contrast import contrast, split_pair, verdict
from biasvar.stats.gram import pair_gram, run_mean
from biasvar.stats.intervals import Estimate


def _world(rng, *, dim, b2_a, b2_b, cos_ab, exact=False, sigma_r=3.0, sigma_a=0.3, sigma_b=0.4, nb=16, bs=8):
    """Reference and two tested runs; the biases have squared norms b2 * dim and cosine cos_ab."""
    g = rng.standard_normal(dim)
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    w = rng.standard_normal(dim)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    bias_a = u * math.sqrt(b2_a * dim)
    bias_b = (cos_ab * u + math.sqrt(1 - cos_ab**2) * w) * math.sqrt(b2_b * dim)
    a = gaussian_run(rng, g + bias_a, sigma_a, nb=nb, bs=bs, spec="st", exact=g if exact else None)
    b = gaussian_run(rng, g + bias_b, sigma_b, nb=nb, bs=bs, spec="zgr", exact=g if exact else None)
    ref = None if exact else gaussian_run(rng, g, sigma_r, nb=nb, bs=bs, spec="rf(M=4)")
    return ref, a, b, g


def _pairs(ref, a, b, g):
    if ref is None:
        return pair_gram(None, a, exact=g)[0], pair_gram(None, b, exact=g)[0]
    m = run_mean(ref)
    return pair_gram(ref, a, ref_mean=m)[0], pair_gram(ref, b, ref_mean=m)[0]


def _study(*, reps, seed, **world):
    """Coverage of the joint interval and of the one that treats the two b2 as independent."""
    rng = np.random.default_rng(seed)
    truth = world["b2_a"] - world["b2_b"]
    v_truth = world.get("sigma_a", 0.3) ** 2 - world.get("sigma_b", 0.4) ** 2
    hit = hit_indep = hit_v = 0
    ratios, d_b2 = [], []
    for _ in range(reps):
        c = contrast(*_pairs(*_world(rng, **world)), a="st", b="zgr")
        hit += c.b2.low <= truth <= c.b2.high
        hit_v += c.variance.low <= v_truth <= c.variance.high
        q = scipy.stats.t.ppf(0.975, c.df_b2)
        hit_indep += abs(c.b2.value - truth) <= q * c.b2_se_independent
        ratios.append(c.b2_se_independent / c.b2.se)
        d_b2.append(c.b2.value)
    return hit / reps, hit_indep / reps, float(np.median(ratios)), float(np.mean(d_b2)), hit_v / reps


@pytest.mark.parametrize("case", ["alike", "opposite", "exact"])
def test_contrast_covers_the_true_difference_and_independence_would_not(case):
    """300 independent worlds per case (dim 60, 16 blocks of 8 draws per run, sigma_R = 3, b2_A = 0.5).

    alike: A and B biased in the same direction (cosine 1, b2_B = 0.3): R's noise cancels in the
    difference; treating the b2 as independent gives intervals ~5x too wide (coverage 1). opposite
    (cosine -1, b2_B = 0.45): R's noise adds up; the independent interval is too narrow (0.76x).
    exact: no reference noise; both agree. Observed with these seeds (joint / independent
    coverage): alike 0.957 / 1.0, opposite 0.950 / 0.863, exact 0.967 / 0.967; of V_A - V_B: 0.957,
    0.963, 0.943.
    """
    b2_b = {"alike": 0.3, "opposite": 0.45, "exact": 0.3}[case]
    world = dict(dim=60, b2_a=0.5, b2_b=b2_b, cos_ab={"alike": 1.0, "opposite": -1.0, "exact": 0.3}[case],
                 exact=case == "exact")
    cov, cov_indep, ratio, mean_d, cov_v = _study(reps=300, seed={"alike": 1, "opposite": 2, "exact": 3}[case], **world)
    assert 0.92 <= cov <= 0.985, cov
    assert 0.92 <= cov_v <= 0.985, cov_v  # V_A - V_B = 0.3^2 - 0.4^2 (independent runs)
    assert abs(mean_d - (0.5 - b2_b)) < 0.02  # the difference itself is unbiased (loose: 300 worlds)
    if case == "alike":
        assert ratio > 2.0 and cov_indep > 0.99, (ratio, cov_indep)
    elif case == "opposite":
        assert ratio < 0.8 and cov_indep < 0.88, (ratio, cov_indep)
    else:
        assert ratio == pytest.approx(1.0, rel=1e-9)


def test_contrast_of_a_run_with_itself_is_zero_and_antisymmetric():
    rng = np.random.default_rng(4)
    ref, a, b, g = _world(rng, dim=30, b2_a=0.05, b2_b=0.02, cos_ab=0.5)
    pa, pb = _pairs(ref, a, b, g)
    ab = contrast(pa, pb, a="st", b="zgr")
    ba = contrast(pb, pa, a="zgr", b="st")
    assert ab.b2.value == pytest.approx(-ba.b2.value) and ab.b2.se == pytest.approx(ba.b2.se)
    assert ab.variance.value == pytest.approx(-ba.variance.value)
    assert contrast(pa, pa, a="st", b="st").b2.value == 0
    # the point difference equals the difference of the two reports' Eq. 16 values
    from biasvar.stats import compare
    d = compare(ref, a, n_resamples=0).b2.value - compare(ref, b, n_resamples=0).b2.value
    assert ab.b2.value == pytest.approx(d, rel=1e-9)


def test_contrast_refuses_pairs_with_different_references():
    rng = np.random.default_rng(5)
    ref, a, b, g = _world(rng, dim=20, b2_a=0.05, b2_b=0.02, cos_ab=0.5)
    pa = pair_gram(ref, a)[0]
    pb = pair_gram(None, b, exact=g)[0]
    with pytest.raises(AnalysisError, match="same reference"):
        contrast(pa, pb, a="st", b="zgr")


def test_split_pair_and_verdict():
    assert split_pair("gr-mc(M=100,t=0.01),zgr") == ("gr-mc(M=100,t=0.01)", "zgr")
    assert split_pair(" st(t=2) , st-zgr(alpha=0,t=2)") == ("st(t=2)", "st-zgr(alpha=0,t=2)")
    for bad in ("zgr", "a,b,c", ",zgr", "gr-mc(M=100,t=0.01)"):
        with pytest.raises(AnalysisError, match="--contrast"):
            split_pair(bad)
    assert verdict(Estimate(-1.0, -2.0, -0.5)) == "A < B"
    assert verdict(Estimate(1.0, 0.5, 2.0)) == "A > B"
    assert verdict(Estimate(0.1, -0.5, 2.0)) == "A ~ B"
    assert verdict(Estimate(0.1)) == "A ~ B"


# ---------------------------------------------------------------------------------------------
# reports: --contrast and interval-aware Pareto marks


def test_report_contrasts_round_trip_and_show_in_markdown():
    runs = fig_runs(["rf(M=4)", "zgr", "st", "gs(t=0.5)"])
    rep = R.analyze(runs, n_resamples=100, contrasts=[("zgr", "st"), ("st", "gs(t=0.5)")])
    assert [c.label for c in rep.contrasts] == ["zgr - st", "st - gs(t=0.5)"]
    c = rep.contrasts[0]
    assert c.b2.value == pytest.approx(rep.row("zgr").b2.value - rep.row("st").b2.value, rel=1e-9)
    assert c.variance.value == pytest.approx(rep.row("zgr").variance.value - rep.row("st").variance.value,
                                             rel=1e-9)
    assert F.report_from_json(F.report_to_json(rep)) == rep
    md = F.report_to_markdown(rep)
    assert "zgr - st" in md and "jackknife-t" in md
    with pytest.raises(AnalysisError, match="no tested row"):
        R.analyze(runs, n_resamples=0, contrasts=[("zgr", "darn")])
    with pytest.raises(AnalysisError, match="reference"):
        R.analyze(runs, n_resamples=0, contrasts=[("zgr", "rf(M=4)")])


def _row(spec, b2, b2_lo, b2_hi, v, v_lo, v_hi, seed=0):
    return R.RunResult(spec=spec, family=spec.split("(")[0], hyper={}, seed=seed, role="test", status="complete",
                       n=100, n_blocks=10, dim=5, b2=Estimate(b2, b2_lo, b2_hi), variance=Estimate(v, v_lo, v_hi),
                       mse=Estimate(b2 + v), ref_share=None, ref_only_width=None, cost=1.0, draws_per_s=None,
                       variance_x_cost=v, cosine=None, nonfinite=0, pareto=False, snapshot_hash="", path="",
                       versions={})


def test_pareto_marks_use_intervals_near_ties_and_identities():
    rows = [
        _row("zgr", 2.49, 2.0, 3.0, 9.22, 9.18, 9.26),
        _row("st-zgr(alpha=1)", 2.70, 2.1, 3.3, 9.23, 9.19, 9.26),  # = zgr by definition
        _row("gr-mc(M=100,t=0.01)", 2.05, 1.3, 2.9, 15.1, 14.9, 15.3),  # lower b2, not resolved
        _row("st(t=2)", 50.1, 48.7, 51.7, 1.65, 1.64, 1.66),
        _row("st-zgr(alpha=0,t=2)", 50.0, 48.6, 51.5, 1.65, 1.64, 1.66),  # = st(t=2) by definition
        _row("gs(t=0.342)", 61.1, 58.4, 63.7, 9.08, 9.04, 9.11),  # beaten beyond intervals by st(t=2)
        _row("st(t=4)", 84.5, 82.7, 86.5, 1.66, 1.60, 1.70),  # worse b2, V tie with st(t=2): near-tie
    ]
    marks = {r.spec: r.pareto_mark for r in R.mark_pareto(rows)}
    assert marks["zgr"] == marks["st-zgr(alpha=1)"] == "*"
    assert marks["st(t=2)"] == marks["st-zgr(alpha=0,t=2)"] == "*"
    assert marks["gr-mc(M=100,t=0.01)"] == "*"
    assert marks["gs(t=0.342)"] == ""
    assert marks["st(t=4)"] == "~"
    assert {r.spec: r.pareto for r in R.mark_pareto(rows)}["st(t=4)"]  # not dominated beyond intervals
    assert R.identity("st-zgr(alpha=1,t=2)") == "zgr" and R.identity("st-zgr(alpha=0,t=2)") == "st(t=2)"
    assert R.identity("st-zgr(alpha=0)") == "st" and R.identity("st-zgr(alpha=0.5)") == "st-zgr(alpha=0.5)"


def test_pareto_marks_from_contrasts_in_analyze():
    runs = fig_runs(["rf(M=4)", "zgr", "st", "st-zgr(alpha=1)", "gs(t=0.5)", "gs(t=1)"], nb=12)
    rep = R.analyze(runs, n_resamples=50)
    marks = {r.spec: r.pareto_mark for r in rep.rows if r.role == "test"}
    assert marks["zgr"] == marks["st-zgr(alpha=1)"]
    assert set(marks.values()) <= {"*", "~", ""}
    for r in rep.rows:
        assert r.pareto == (r.pareto_mark in ("*", "~"))


def test_analyze_marks_resolved_dominance_blank_and_noise_level_dominance_as_near_tie():
    """A beats B by far in both b2 and V: B is unmarked. C is A's twin up to noise (same mean and
    sigma, other draws): whichever is behind at the point estimates is a near-tie, never unmarked
    (6 worlds: the twin behind is "~" in 4 of them, both "*" in 2, with these seeds)."""
    ties = 0
    for seed in range(11, 17):
        rng = np.random.default_rng(seed)
        dim = 200
        g = rng.standard_normal(dim)
        u = rng.standard_normal(dim)
        u /= np.linalg.norm(u)
        ref = gaussian_run(rng, g, 2.0, nb=16, bs=10, spec="rf(M=4)")
        a = gaussian_run(rng, g + u * math.sqrt(0.05 * dim), 0.5, nb=16, bs=10, spec="st")
        b = gaussian_run(rng, g + u * math.sqrt(0.5 * dim), 1.5, nb=16, bs=10, spec="gs(t=1)")
        c = gaussian_run(rng, g + u * math.sqrt(0.05 * dim), 0.5, nb=16, bs=10, spec="st(t=2)")
        rep = R.analyze([ref, a, b, c], n_resamples=0)
        marks = {r.spec: r.pareto_mark for r in rep.rows}
        assert marks["gs(t=1)"] == "" and marks["rf(M=4)"] == ""
        assert sorted([marks["st"], marks["st(t=2)"]]) in (["*", "*"], ["*", "~"])
        ties += "~" in marks.values()
    assert ties == 4
