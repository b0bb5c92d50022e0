"""Exact expectations of estimators on whole problems (``enumerate_expectation``), hence true b2.

Checked three ways: against the single-problem enumeration of ``biasvar.exact`` on toy-cat
(where both apply), against the mean of many engine draws on tiny ``vae`` and ``hvae`` models
(within the draws' standard errors), and by the defining properties (rf is unbiased; ZGR is not on
a VAE; a Monte Carlo expectation's own error is stated and honest).
"""

import math

import numpy as np
import pytest
import torch

from biasvar import exact
from biasvar.engine import sample_gradients
from biasvar.errors import UnsupportedError
from biasvar.estimators import build
from biasvar.exact import true_squared_bias
from biasvar.problems.hvae import HVAE
from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import VAE, enumerate_expectation

pytestmark = pytest.mark.usefixtures("one_thread")

X_ONLY = ["st", "st(t=2)", "darn", "zgr", "st-zgr(alpha=0.5,t=2)", "st-zgr(alpha=0.3)"]


@pytest.mark.parametrize("loss", ["quadratic", "quartic", "sigmoid"])
@pytest.mark.parametrize("spec", X_ONLY)
def test_x_only_expectation_matches_the_toy_enumeration(loss, spec):
    prob = ToyCat(vars=3, categories=4, loss=loss, seed=2)
    got = prob.exact_expectation(spec)
    want = exact.expected_estimator(prob.params["logits"], prob.loss_fn(), build(spec).y_fn)
    assert got.exact and got.se is None
    torch.testing.assert_close(got.mean["logits"], want, rtol=1e-10, atol=1e-12)


def test_rf_expectation_is_the_true_gradient():
    prob = ToyCat(vars=2, categories=4, loss="quartic", seed=3)
    got = prob.exact_expectation("rf(M=4)")
    torch.testing.assert_close(got.mean["logits"], prob.exact_gradient()["logits"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", ["gr-mc(t=0.5,M=10)", "gs-st(t=0.5)"])
def test_gr_expectation_matches_the_toy_conditional_monte_carlo_within_its_error(spec):
    prob = ToyCat(vars=2, categories=4, loss="quartic", seed=4)
    got = prob.exact_expectation(spec, mc=8000, seed=1)
    assert not got.exact
    ref = exact.expected_gr(prob.params["logits"], prob.loss_fn(), 0.5, M=200_000,
                            generator=torch.Generator().manual_seed(2))
    se = got.se["logits"]
    assert (se > 0).all() and se.max() < 0.02 * got.mean["logits"].abs().max()
    # expected_gr's own error is ~se / 5: the z-scores are about standard normal
    z = ((got.mean["logits"] - ref) / se).flatten()
    assert z.abs().max() < 4.5, z
    assert 0.2 < float(z.square().mean()) < 2.5, z
    # ... and the expectation is not the true gradient (GR is biased at t = 0.5 on a quartic loss)
    g = prob.exact_gradient()["logits"]
    assert ((got.mean["logits"] - g).abs() / se).max() > 10


def _tiny_vae(seed=0):
    prob = VAE(categories=4, vars=2, hidden=(8, 4), seed=seed, dtype=torch.float64)
    prob.batch = (torch.rand(6, 784, generator=torch.Generator().manual_seed(seed)) < 0.3).double()
    return prob


def _tiny_hvae(seed=0):
    prob = HVAE(categories=4, vars=1, seed=seed, dtype=torch.float64)
    prob.batch = (torch.rand(6, 784, generator=torch.Generator().manual_seed(seed)) < 0.3).double()
    return prob


def _t_scores(prob, spec, mean, n=6000):
    """t-scores of ``mean`` against n engine draws along fixed directions: the difference from the
    true gradient, and a random direction within each parameter tensor (coordinates of one draw
    are strongly correlated, so scalar projections are the honest test, not a chi-square)."""
    x = torch.cat([c.grads for c in sample_gradients(prob, spec, n=n, seed=11)]).double().numpy()
    g = np.concatenate([v.reshape(-1).numpy() for v in prob.exact_gradient().values()])
    rng = np.random.default_rng(0)
    dirs, off = [], 0
    for v in prob.params.values():
        u = np.zeros_like(g)
        u[off:off + v.numel()] = rng.standard_normal(v.numel())
        dirs.append(u)
        off += v.numel()
    gap = _expectation(prob, spec)[0] - g
    dirs.append(gap / np.linalg.norm(gap))
    out = []
    for u in dirs:
        s = x @ u
        out.append((s.mean() - mean @ u) / (s.std(ddof=1) / math.sqrt(n)) if s.std() > 0 else 0.0)
    return np.asarray(out)


def _expectation(prob, spec):
    return prob.exact_expectation(spec, mc=4000, seed=5).flat()


@pytest.mark.slow
@pytest.mark.parametrize("make", [_tiny_vae, _tiny_hvae], ids=["vae", "hvae"])
@pytest.mark.parametrize("spec", ["zgr", "st(t=2)", "gr-mc(t=0.5,M=4)"])
def test_expectation_is_the_mean_of_engine_draws(make, spec):
    """The expectation agrees with 6000 engine draws along every tested direction (|t| < 4.5), and
    differs from the true gradient by far more than its own error."""
    prob = make()
    m, se = _expectation(prob, spec)
    t = _t_scores(prob, spec, m)
    assert np.abs(t).max() < 4.5, t
    g = np.concatenate([v.reshape(-1).numpy() for v in prob.exact_gradient().values()])
    b2, b2_se = true_squared_bias(m, g, se)
    assert b2 > 0 and b2 > 10 * b2_se


@pytest.mark.slow
@pytest.mark.parametrize(("make", "spec"), [(_tiny_vae, "zgr"), (_tiny_hvae, "st(t=2)")], ids=["vae", "hvae"])
def test_the_true_gradient_fails_the_same_check_for_a_biased_estimator(make, spec):
    """What the previous test rules out: the exact gradient in place of a biased estimator's expectation."""
    prob = make()
    g = np.concatenate([v.reshape(-1).numpy() for v in prob.exact_gradient().values()])
    assert np.abs(_t_scores(prob, spec, g)).max() > 8


def test_enumeration_refuses_large_problems_and_hvae_uses_both_layers():
    big = VAE(categories=16, vars=16, hidden=(8,), seed=0)
    assert enumerate_expectation(big, "zgr") is None
    prob = _tiny_hvae()
    e = prob.exact_expectation("zgr")
    # every parameter tensor of both layers gets an expectation (q_z2 and p_z1 depend on z1's outcome)
    assert set(e.mean) == set(prob.params)
    assert all(torch.isfinite(v).all() for v in e.mean.values())
    assert e.mean["q_z2.weight"].abs().max() > 0


def test_reinmax_is_exact_and_multi_pass_estimators_are_refused():
    prob = ToyCat(vars=2, categories=4, loss="quartic", seed=3)
    got = prob.exact_expectation("reinmax(t=2)")
    want = exact.expected_estimator(prob.params["logits"], prob.loss_fn(), build("reinmax(t=2)").y_fn)
    assert got.exact
    torch.testing.assert_close(got.mean["logits"], want, rtol=1e-10, atol=1e-12)
    with pytest.raises(UnsupportedError, match="no exact expectation"):
        prob.exact_expectation("indecater")


def test_true_squared_bias_removes_the_monte_carlo_excess():
    rng = np.random.default_rng(0)
    d = 400
    truth_mean, g = rng.standard_normal(d), rng.standard_normal(d)
    b2 = float(np.square(truth_mean - g).mean())
    se = np.full(d, 0.3)
    vals = []
    for _ in range(400):
        v, s = true_squared_bias(truth_mean + se * rng.standard_normal(d), g, se)
        vals.append(v)
    vals = np.asarray(vals)
    assert abs(vals.mean() - b2) < 4 * vals.std(ddof=1) / math.sqrt(len(vals))
    assert s == pytest.approx(vals.std(ddof=1), rel=0.2)  # the stated error is the real spread
    assert true_squared_bias(truth_mean, g) == (pytest.approx(b2), 0.0)
