"""The multi-model study's synthetic kind (biasvar/studies/coverage/gauss_kind.py): biases placed at a chosen
alignment on the noise's spectrum, exact truth, and a setting on which the study fails the narrow intervals
the way the real-gradient VAE does (issue 24). (~20 s of one CPU.)"""

from __future__ import annotations

import numpy as np
import pytest

from biasvar.studies.coverage import multi
from biasvar.studies.coverage.alignment import alignment
from biasvar.studies.coverage.gauss_kind import aligned_weights, alignment_of, gauss_tables, spectrum

TOP = next(m for m in multi.GAUSS_MODELS if m.name == "gauss-top")
ALIGNED = multi.MSetting("zgr", "rf(M=4)", 1024, 32)  # b2 ~ 1.7 V/n on the strong directions
FLOOR = multi.MSetting("zgr", "exact", 128, 64)  # b2 ~ 0.3 V/n, same bias


@pytest.mark.parametrize("align", [0.1, 1.0, 2.5])
def test_the_bias_is_placed_at_the_chosen_alignment(align):
    lam = spectrum(500, 1.1)
    w = aligned_weights(lam, align)
    assert w.sum() == pytest.approx(1.0) and alignment_of(w, lam) == pytest.approx(align, rel=1e-6)
    with pytest.raises(ValueError, match="out of reach"):
        aligned_weights(lam, 1.01 * alignment_of(np.eye(500)[0], lam))


def test_runs_are_unbiased_around_the_bias_with_the_spectrum_as_their_noise():
    tab = gauss_tables(rank=50, decay=1.0, align=2.5, seed=3, dim=80)
    assert tab.truth["zgr"] == pytest.approx(float(tab.bias["zgr"] @ tab.bias["zgr"]) / 80)
    rng = np.random.default_rng(0)
    runs = [tab.run("zgr", 64, 8, rng) for _ in range(400)]
    means = np.array([r.block_sum.sum(0) / 64 for r in runs])
    np.testing.assert_allclose(means.mean(0), tab.bias["zgr"], atol=5 * np.sqrt(tab.lam.max() / 64 / 400))
    # within-block m2: (block size - 1) tr(lam) per block on average; block sums: block size x lam per coordinate
    m2 = np.array([r.block_m2[:, 0] for r in runs])
    assert m2.mean() == pytest.approx(7 * tab.lam.sum(), rel=0.02)
    dev = np.concatenate([r.block_sum - 8 * tab.bias["zgr"] for r in runs])
    np.testing.assert_allclose(dev.var(0), 8 * tab.lam, rtol=0.15)


def test_eq16_is_unbiased_and_the_study_measures_the_chosen_alignment():
    tab = TOP.tables()
    grams = multi.setting_grams(tab, TOP, 7, ALIGNED, 150)
    est = np.array([multi.eq16_of(pg)[0][-1] for pg in grams])
    assert abs(est.mean() - tab.truth["zgr"]) < 4 * est.std(ddof=1) / np.sqrt(len(est))
    al = alignment(grams)
    assert 2.0 < al["alignment"] < 3.0  # placed at 2.5 on the tested run's noise (the reference's alike)


def _ends(k: int, st: multi.MSetting, pairs: int) -> tuple[dict, float]:
    tab = TOP.tables()
    grams = multi.setting_grams(tab, TOP, k, st, pairs)
    raw = {"b2": np.array([multi.eq16_of(pg)[0][-1] for pg in grams])}
    for m in ("pivot", "jackknife-t", "gauss-eb"):
        rng = np.random.default_rng((TOP.seed, k, 5))
        e = np.array([multi._interval(pg, m, rng, 400) for pg in grams])
        raw[f"{m}:low"], raw[f"{m}:high"] = e[:, 0], e[:, 1]
    return raw, tab.truth["zgr"]


@pytest.fixture(scope="module")
def aligned():
    return _ends(7, ALIGNED, 250)


@pytest.fixture(scope="module")
def floor():
    return _ends(1, FLOOR, 250)


def _rows(raw, truth, name, ends):
    r = {**raw, f"{name}:low": ends[:, 0], f"{name}:high": ends[:, 1]}
    return multi.summarize_setting(r, truth, (name, "pivot", "jackknife-t", "gauss-eb"), ALIGNED.n)


def test_the_aligned_setting_fails_the_narrow_intervals_as_the_real_vae_does(aligned):
    """pivot and jackknife-t cover 0.85-0.90 here (0.83 and 0.88 over the study's 400 pairs), as they do on
    the real-gradient VAE's ZGR (0.88): the misses are on one side, a cancelled bias above the upper end."""
    raw, truth = aligned
    for m in ("pivot", "jackknife-t"):
        rows = multi.summarize_setting(raw, truth, (m,), ALIGNED.n)
        assert any("coverage" in f for f in multi.gate_failures(rows, m)), rows
        assert rows[0]["miss_above"] > 3 * rows[0]["miss_below"]


def _scaled(raw, s):
    est, lo, hi = raw["b2"], raw["gauss-eb:low"], raw["gauss-eb:high"]
    return np.c_[est - s * (est - lo), est + s * (hi - est)]


def test_the_gate_fails_a_1_5x_wide_interval_near_the_floor_of_the_aligned_model(floor):
    """Here gauss-eb and jackknife-t cover (0.96, 0.94 on these pairs): gauss-eb made 1.5x wider fails by width."""
    raw, truth = floor
    assert any("width" in f for f in multi.gate_failures(_rows(raw, truth, "wide", _scaled(raw, 1.5)), "wide"))
    assert multi.gate_failures(_rows(raw, truth, "same", _scaled(raw, 1.0)), "same") == []


def test_the_gate_fails_an_85_percent_interval_on_the_aligned_setting(aligned):
    """Where no method covers 0.93 (gauss-eb 0.92 on these pairs) the coverage alone decides."""
    raw, truth = aligned
    est, lo, hi = raw["b2"], raw["gauss-eb:low"], raw["gauss-eb:high"]
    for s in np.arange(1.0, 0.2, -0.01):
        shrunk = np.c_[est - s * (est - lo), est + s * (hi - est)]
        if np.mean((shrunk[:, 0] <= truth) & (truth <= shrunk[:, 1])) <= 0.85:
            break
    assert any("coverage" in f for f in multi.gate_failures(_rows(raw, truth, "shrunk", shrunk), "shrunk"))
