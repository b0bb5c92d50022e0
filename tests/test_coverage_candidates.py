"""The candidate b2 intervals of issue 24 (:mod:`biasvar.stats.intervals.candidates`): not offered by reports,
evaluated by name in the multi-model study; gauss-fit-s is gauss-fit with the likelihood's noise variances
shrunk; gauss-theta's weights are the prior at theta = 0 and move to the highest power far above the floor.
"""

from __future__ import annotations

import numpy as np
import pytest

import biasvar.stats.intervals.candidates as cand
import biasvar.stats.intervals.gauss_eb as ge
import biasvar.stats.intervals.gauss_fit as gf
from biasvar.errors import AnalysisError
from biasvar.stats.intervals import METHODS, Bootstrap, bootstrap_pair
from biasvar.stats.intervals.resample import pivot_parts
from biasvar.studies.coverage import gaussian_problem, gram_of, memory_run, multi

pytestmark = pytest.mark.usefixtures("one_thread")

D, N, NB = 2000, 192, 32


def _pairs(ratio: float, reps: int, seed: int = 0) -> list:
    """Pairs against the exact gradient, the bias (``ratio`` V/n) on the strongest noise direction."""
    rng = np.random.default_rng(seed)
    mu, a, _ = gaussian_problem(rng, D, 1.0, ratio, N, "top")
    return [gram_of(None, memory_run(mu + rng.standard_normal((N, D)) @ a.T, NB), np.zeros(D)) for _ in range(reps)]


def _model(pg) -> ge.GaussModel:
    return ge.gauss_model(pg, pivot_parts(pg), len(pg.dims) - 1)


def test_candidates_are_not_offered_by_reports_but_the_study_runs_them():
    assert set(cand.CANDIDATES) == {"gauss-fit-s", "gauss-theta", "gauss-adapt", "gauss-adapt-eb", "gauss-lr",
                                    "gauss-eb-s", "gauss-eb-mm"}
    assert not set(cand.CANDIDATES) & set(METHODS)
    with pytest.raises(AnalysisError, match="unknown bootstrap method 'gauss-theta'"):
        Bootstrap(100, "gauss-theta")
    pg = _pairs(2.65, 1)[0]
    for m in cand.CANDIDATES:
        lo, hi = multi._interval(pg, m, np.random.default_rng(0), 100)
        assert lo < float(multi.eq16_of(pg)[0][-1]) < hi


def test_with_the_sample_eigenvalues_as_noise_gauss_fit_s_is_gauss_fit(monkeypatch):
    pg = _pairs(2.65, 1, seed=3)[0]
    b2, v_t, _ = multi.eq16_of(pg)
    boot = Bootstrap(100, "gauss-fit")
    fit = bootstrap_pair(pg, boot, rng=np.random.default_rng(1), share=False).b2
    s = cand.CANDIDATES["gauss-fit-s"](pg, b2, v_t, boot, np.random.default_rng(1), share=False).b2
    assert (s.low[-1], s.high[-1]) != (fit.low[-1], fit.high[-1])
    monkeypatch.setattr(cand, "quad_eigenvalues", lambda m: m.lam)
    s = cand.CANDIDATES["gauss-fit-s"](pg, b2, v_t, boot, np.random.default_rng(1), share=False).b2
    assert (s.low[-1], s.high[-1]) == (fit.low[-1], fit.high[-1])  # the same simulated draws


def test_the_shrunk_noise_moves_the_weight_off_the_low_powers_where_the_bias_is_on_the_strong_direction():
    # sample eigenvalues understate the noise along the weak sample directions: the offset's share there
    # reads as a bias on the weak directions and the low powers (too narrow) gain weight
    raw, shrunk = [], []
    for pg in _pairs(2.65, 12):
        m = _model(pg)
        raw.append(gf.power_weights(m.lam, m.y))
        shrunk.append(gf.power_weights(m.lam, m.y, ge.quad_eigenvalues(m)))
    low = gf.POWERS <= 1.0
    assert np.mean(raw, 0)[low].sum() > 0.1
    assert np.mean(shrunk, 0)[low].sum() < 0.05


def test_gauss_theta_weighs_by_the_prior_at_zero_and_by_the_highest_power_far_above_the_floor():
    for pg in _pairs(0.0, 3) + _pairs(2.65, 3):
        m = _model(pg)
        noise = ge.quad_eigenvalues(m)
        np.testing.assert_allclose(cand.theta_weights(m, noise, 0.0), gf.POWER_PRIOR, rtol=1e-12)
        np.testing.assert_allclose(cand.theta_weights(m, noise, -1.0), gf.POWER_PRIOR, rtol=1e-12)
        tr = float(m.lam.sum()) + m.iso * m.n_iso
        far = cand.theta_weights(m, noise, 20 * tr / m.dim)  # 20 V/n
        assert far[-1] > 0.8 and abs(far.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("align", ["top", "low"])
def test_the_alignment_tells_a_bias_on_the_strong_directions_from_one_off_them(align):
    from biasvar.studies.coverage.alignment import alignment

    rng = np.random.default_rng(2)
    mu, a, _ = gaussian_problem(rng, 300, 1.0, 6.0, N, align)
    grams = [gram_of(None, memory_run(mu + rng.standard_normal((N, 300)) @ a.T, NB), np.zeros(300))
             for _ in range(60)]
    al = alignment(grams)
    assert 4.0 < al["b2_over_trace"] < 8.0  # 6 V/n
    if align == "top":  # the strongest direction: near the maximum
        assert al["alignment"] > 0.7 * al["max"] and al["max"] > 2.0
    else:  # the weakest: far below a noise-shaped bias
        assert al["alignment"] < 0.3
