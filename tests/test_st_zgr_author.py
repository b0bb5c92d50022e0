"""``st-zgr-author(alpha,t)``: ST-ZGR as in the author's training code (one temperature
``t' = (1 - alpha) t + alpha`` for the whole estimator), against exact enumeration and Eq. 17."""

import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_estimators import SEEDS, SHAPES, _logits, _loss
from torch.testing import assert_close

from biasvar.estimators import build, st_y, st_zgr_y, zgr_y
from biasvar.estimators.categorical import st_zgr_author_y
from biasvar.exact import estimator_variance, expected_estimator, outcome_gradients
from biasvar.problems import ToyCat, draw_loss, noise_requests
from biasvar.report import identity
from biasvar.rng import draw_noise, stream_key
from biasvar.spec import parse_spec

D = torch.float64


@settings(max_examples=40, deadline=None)
@given(shape=SHAPES, seed=SEEDS, alpha=st.floats(0.0, 1.0), t=st.floats(0.2, 5.0))
def test_is_the_mix_of_st_and_zgr_both_at_the_common_temperature(shape, seed, alpha, t):
    """Outcome by outcome: (1 - alpha) ST(t') + alpha ZGR(logits / t'), t' = (1 - alpha) t + alpha."""
    V, K = shape
    logits, loss = _logits(seed, V, K), _loss("quadratic", V, K, seed + 1)
    tp = (1 - alpha) * t + alpha
    J, _ = outcome_gradients(logits, loss, partial(st_zgr_author_y, alpha=alpha, t=t))
    J_st, _ = outcome_gradients(logits, loss, partial(st_y, t=tp))
    J_z, _ = outcome_gradients(logits, loss, lambda lg, y: zgr_y(lg / tp, y))
    assert_close(J, (1 - alpha) * J_st + alpha * J_z, rtol=1e-10, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(shape=SHAPES, seed=SEEDS, alpha=st.floats(0.0, 1.0), t=st.floats(0.2, 5.0))
def test_agrees_with_eq17_at_t1_and_at_the_ends(shape, seed, alpha, t):
    V, K = shape
    logits, loss = _logits(seed, V, K), _loss("quadratic", V, K, seed + 1)
    for a, tt in ((alpha, 1.0), (0.0, t), (1.0, t)):
        J_a, _ = outcome_gradients(logits, loss, partial(st_zgr_author_y, alpha=a, t=tt))
        J_p, _ = outcome_gradients(logits, loss, partial(st_zgr_y, alpha=a, t=tt))
        assert_close(J_a, J_p, rtol=1e-10, atol=1e-12)


def test_differs_from_eq17_between_the_ends():
    """At alpha = 0.5, t = 2 the two variants have different exact means and variances."""
    logits, loss = _logits(3, 3, 4), _loss("quadratic", 3, 4, 4)
    author = partial(st_zgr_author_y, alpha=0.5, t=2.0)
    paper = partial(st_zgr_y, alpha=0.5, t=2.0)
    m_a, m_p = expected_estimator(logits, loss, author), expected_estimator(logits, loss, paper)
    v_a, v_p = estimator_variance(logits, loss, author).sum(), estimator_variance(logits, loss, paper).sum()
    assert (m_a - m_p).abs().max() > 1e-3 * m_p.abs().max()
    assert abs(float(v_a / v_p) - 1) > 0.05


def test_sampled_mean_matches_the_exact_expectation():
    """The estimator as the engine draws it (counter-based noise, vmap over draws) averages to the
    exact expectation by enumeration (biasvar.exact), within 5 standard errors per coordinate."""
    prob = ToyCat(vars=2, categories=3, loss="quadratic", seed=3)
    spec = "st-zgr-author(alpha=0.5,t=2)"
    est = build(spec)
    assert str(est.spec) == spec and est.cost == 1
    exact = expected_estimator(prob.params["logits"].detach(), prob.loss_fn(), est.y_fn)
    nz = draw_noise(noise_requests(prob, est), stream_key(0, spec), torch.arange(40_000), dtype=D)
    J = torch.func.vmap(torch.func.grad(lambda p, z: draw_loss(prob, est, p, z)), in_dims=(None, 0))(
        prob.params, nz)["logits"]
    se = J.std(0) / math.sqrt(J.shape[0])
    assert ((J.mean(0) - exact).abs() < 5 * se + 1e-12).all()


def test_spec_and_identity():
    assert str(parse_spec("st-zgr-author(0.5, 2)")) == "st-zgr-author(alpha=0.5,t=2)"
    assert identity("st-zgr-author(alpha=1,t=2)") == "zgr" and identity("st-zgr-author(alpha=0,t=2)") == "st(t=2)"
    with pytest.raises(Exception, match="alpha"):
        parse_spec("st-zgr-author(alpha=2)")
