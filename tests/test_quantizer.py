"""The stochastic quantizer (Sec. 4.3, App. B.5) against numerical integration, and quant-unit (Fig. B.5).

References are independent of the code under test: level probabilities and the mean embedding by
``scipy.integrate.quad`` of the noise density, derivatives by finite differences of those integrals,
estimator expectations by enumerating the K levels.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from scipy import integrate
from scipy import stats as sps
from torch.testing import assert_close

from biasvar.errors import ShapeError
from biasvar.estimators import build, darn_y, st_y, st_zgr_y, zgr_y
from biasvar.estimators.quantizer import (
    LOG_FLOOR,
    QuantNoise,
    darn_level,
    level_logprobs,
    log_prob_level,
    mean_embedding,
    mean_embedding_grad,
    round_level,
    sample_level,
    st_level,
    zgr_level,
)
from biasvar.problems.base import draw_loss, noise_requests
from biasvar.problems.quant import QuantUnit, unit_loss
from biasvar.problems.registry import make_problem
from biasvar.rng import draw_noise, stream_key

D = torch.float64
NOISES = [QuantNoise("logistic"), QuantNoise("triangular"), QuantNoise("logistic", 0.8),
          QuantNoise("triangular", 0.6)]
SPECS = ["st", "st(t=2)", "darn", "zgr", "st-zgr(alpha=0.5)", "gs(t=0.5)", "gs-st(t=0.5)",
         "gr-mc(t=0.5,M=10)", "rf(M=2)"]


# -- slow, obviously correct twins (numpy / scipy) -------------------------------------------------
def _pdf(noise: QuantNoise, z: float) -> float:
    if noise.kind == "logistic":
        return float(sps.logistic.pdf(z, scale=noise.scale))
    return max(0.0, 1 - abs(z) / noise.width) / noise.width


def _integral(noise: QuantNoise, a: float, b: float) -> float:
    """Integral of the noise density over [a, b] (triangular: over its overlap with [-w, w], split at 0)."""
    if noise.kind == "triangular":
        a, b = max(a, -noise.width), min(b, noise.width)
        if a >= b:
            return 0.0
        pts = [0.0] if a < 0.0 < b else None
        return integrate.quad(lambda z: _pdf(noise, z), a, b, points=pts, epsabs=1e-14, epsrel=1e-12)[0]
    return integrate.quad(lambda z: _pdf(noise, z), a, b, epsabs=1e-14, epsrel=1e-12)[0]


def _quad_probs(noise: QuantNoise, eta: float, K: int) -> np.ndarray:
    """p_k = integral of the noise density over {z : clamp(round(eta + z)) = k}."""
    lo = [-np.inf] + [k - 0.5 - eta for k in range(1, K)]
    hi = [k + 0.5 - eta for k in range(K - 1)] + [np.inf]
    return np.array([_integral(noise, a, b) for a, b in zip(lo, hi, strict=True)])


# -- the noise --------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise", NOISES, ids=str)
def test_noise_density_has_the_stated_std_and_cdf(noise):
    w = noise.width if noise.kind == "triangular" else np.inf
    var = integrate.quad(lambda z: z * z * _pdf(noise, z), -w, w, points=[0.0] if w < np.inf else None)[0]
    assert math.isclose(math.sqrt(var), noise.sigma, rel_tol=1e-8)
    z = torch.linspace(-3, 3, 61, dtype=D)
    cdf = [_integral(noise, -np.inf, float(v)) for v in z]
    assert_close(noise.cdf(z), torch.tensor(cdf, dtype=D), rtol=0, atol=1e-10)
    assert_close(noise.pdf(z), torch.tensor([_pdf(noise, float(v)) for v in z], dtype=D), rtol=0, atol=1e-12)
    u = torch.linspace(1e-6, 1 - 1e-6, 101, dtype=D)
    assert_close(noise.cdf(noise.icdf(u)), u, rtol=0, atol=1e-10)


def test_paper_default_noises():
    assert QuantNoise("logistic").sigma == pytest.approx(1 / 3)
    tri = QuantNoise("triangular")  # density max(0, 1 - |z|)
    assert tri.width == pytest.approx(1.0)
    assert float(tri.pdf(torch.tensor(0.25, dtype=D))) == pytest.approx(0.75)


@pytest.mark.parametrize("kind,sigma", [("gauss", None), ("logistic", 0.0), ("logistic", -1.0),
                                        ("triangular", float("nan"))])
def test_bad_noise_is_rejected_with_the_valid_choices(kind, sigma):
    with pytest.raises(ShapeError, match="logistic|positive"):
        QuantNoise(kind, sigma)


def test_K_below_two_is_rejected():
    with pytest.raises(ShapeError, match="K >= 2"):
        level_logprobs(torch.zeros(1), 1)


# -- level probabilities ----------------------------------------------------------------------------
@given(eta=st.floats(-2.5, 9.5), K=st.sampled_from([2, 3, 4, 8]), i=st.integers(0, len(NOISES) - 1))
def test_level_probabilities_match_numerical_integration(eta, K, i):
    noise = NOISES[i]
    lp = level_logprobs(torch.tensor(eta, dtype=D), K, noise)
    ref = _quad_probs(noise, eta, K)
    assert_close(lp.exp(), torch.tensor(ref, dtype=D), rtol=0, atol=1e-10)
    pos = ref > 1e-12  # log-probabilities where they are meaningful in float64
    assert_close(lp[torch.tensor(pos)], torch.tensor(np.log(ref[pos]), dtype=D), rtol=1e-7, atol=1e-9)
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("eta", [-50.0, -12.0, 14.0, 53.0])
def test_logistic_log_probabilities_are_accurate_deep_in_the_tails(eta):
    """Far from eta every p_k underflows a cdf difference; the log form keeps ~all digits."""
    noise, K = QuantNoise("logistic"), 4
    lp = level_logprobs(torch.tensor(eta, dtype=D), K, noise)
    s = noise.scale
    ref = []
    for k in range(K):  # log P(a < z < b) with scipy's log-cdf / log-sf of the logistic
        a, b = (k - 0.5 - eta), (k + 0.5 - eta)
        if k == 0:
            ref.append(sps.logistic.logcdf(b, scale=s))
        elif k == K - 1:
            ref.append(sps.logistic.logsf(a, scale=s))
        elif a > 0:
            la, lb = sps.logistic.logsf(a, scale=s), sps.logistic.logsf(b, scale=s)
            ref.append(la + np.log1p(-np.exp(lb - la)))
        else:
            la, lb = sps.logistic.logcdf(a, scale=s), sps.logistic.logcdf(b, scale=s)
            ref.append(lb + np.log1p(-np.exp(la - lb)))
    assert_close(lp, torch.tensor(ref, dtype=D), rtol=1e-9, atol=1e-9)
    assert lp.min() < -50  # really in the tail


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("noise", NOISES[:2], ids=str)
def test_probabilities_and_gradients_finite_far_outside_and_at_support_edges(noise, dtype):
    K = 4
    eta = torch.tensor([-1e3, -50.0, -1.5, -1.5 + 1e-7, -0.5, 0.5, 2.5 + 1e-9, 4.5, 50.0, 1e3], dtype=dtype)
    eta.requires_grad_(True)
    lp = level_logprobs(eta, K, noise)
    assert torch.isfinite(lp).all() and lp.max() <= 1e-6 and lp.min() >= LOG_FLOOR
    assert_close(lp.exp().sum(-1), torch.ones_like(eta), rtol=0, atol=1e-6)
    for k in range(K):
        (g,) = torch.autograd.grad(lp[:, k].sum(), eta, retain_graph=True)
        assert torch.isfinite(g).all(), (k, g)
    for fn in (mean_embedding, mean_embedding_grad):
        (g,) = torch.autograd.grad(fn(eta, K, noise).sum(), eta)
        assert torch.isfinite(g).all()


def test_triangular_probabilities_are_exactly_zero_off_support_with_zero_gradient():
    eta = torch.tensor([0.0, 3.0, -4.0], dtype=D, requires_grad=True)
    lp = level_logprobs(eta, 4, "triangular")  # w = 1: only levels within 1.5 of eta have mass
    assert (lp[0, 2:] == LOG_FLOOR).all() and (lp[1, :2] == LOG_FLOOR).all()
    assert (lp[2, 1:] == LOG_FLOOR).all()
    assert lp.exp()[0, 2:].eq(0).all()
    (g,) = torch.autograd.grad(lp[:, 3].sum(), eta)
    assert g[0] == 0 and g[2] == 0


@given(eta=st.floats(-3.0, 6.0), K=st.sampled_from([2, 3, 5]), i=st.integers(0, len(NOISES) - 1))
@example(eta=0.5, K=2, i=1)  # an interval edge exactly at the noise mode
@example(eta=1.5, K=3, i=1)
@example(eta=-0.5, K=3, i=1)  # support edge exactly at an interval edge
def test_probability_derivatives_match_differences_of_the_density(eta, K, i):
    """d p_k / d eta = f(k - 1/2 - eta) - f(k + 1/2 - eta) (open ends: one term)."""
    noise = NOISES[i]
    e = torch.tensor(eta, dtype=D, requires_grad=True)
    p = level_logprobs(e, K, noise).exp()
    for k in range(K):
        (g,) = torch.autograd.grad(p[k], e, retain_graph=True)
        ref = ((0.0 if k == 0 else _pdf(noise, k - 0.5 - eta))
               - (0.0 if k == K - 1 else _pdf(noise, k + 0.5 - eta)))
        assert float(g) == pytest.approx(ref, abs=1e-9)


@given(eta=st.floats(-4.0, 8.0), i=st.integers(0, len(NOISES) - 1))
def test_log_prob_of_the_sample_equals_the_full_table(eta, i):
    K = 5
    e = torch.full((K,), eta, dtype=D)
    x = torch.arange(K, dtype=D)
    assert_close(log_prob_level(e, x, K, NOISES[i]), level_logprobs(e[0], K, NOISES[i]), rtol=0, atol=1e-12)


# -- mean embedding ---------------------------------------------------------------------------------
@given(eta=st.floats(-2.0, 6.0), K=st.sampled_from([2, 3, 4, 8]), i=st.integers(0, len(NOISES) - 1))
def test_mean_embedding_and_its_derivative_in_closed_form(eta, K, i):
    noise = NOISES[i]
    ref = float(np.arange(K) @ _quad_probs(noise, eta, K))
    assert float(mean_embedding(torch.tensor(eta, dtype=D), K, noise)) == pytest.approx(ref, abs=1e-9)
    h = 1e-5  # central difference of the quad reference
    fd = (np.arange(K) @ (_quad_probs(noise, eta + h, K) - _quad_probs(noise, eta - h, K))) / (2 * h)
    assert float(mean_embedding_grad(torch.tensor(eta, dtype=D), K, noise)) == pytest.approx(fd, abs=1e-5)


def test_noise_off_rounding_is_the_mode_for_the_paper_noises():
    """Away from the half-levels; wide noise (or eta within ~0.01 of the outer half-levels) can make the
    open end intervals the mode, so rounding is defined as noise off, not as the mode."""
    g = torch.Generator().manual_seed(0)
    eta = torch.rand(4000, generator=g, dtype=D) * 8 - 2.0
    eta = eta[((eta - eta.floor()) - 0.5).abs() > 0.05]
    for noise in NOISES[:2]:
        assert torch.equal(level_logprobs(eta, 4, noise).argmax(-1).to(D), round_level(eta, 4))
    wide = level_logprobs(torch.tensor(2.4, dtype=D), 4, QuantNoise("logistic", 0.8)).argmax()
    assert wide == 3 and round_level(torch.tensor(2.4), 4) == 2


@pytest.mark.parametrize("noise", NOISES[:2], ids=str)
def test_categorical_view_samples_like_injected_noise(noise):
    """The Gumbel-max sample of the logits and clamp(round(eta + z)) have the same distribution (5 SE)."""
    n, K, eta = 200_000, 4, 1.3
    g = torch.Generator().manual_seed(1)
    u = torch.rand(n, generator=g, dtype=D).clamp(1e-12, 1 - 1e-12)
    x = sample_level(torch.full((n,), eta, dtype=D), K, noise, u)
    freq = torch.stack([(x == k).to(D).mean() for k in range(K)])
    p = level_logprobs(torch.tensor(eta, dtype=D), K, noise).exp()
    se = torch.sqrt(p * (1 - p) / n)
    assert ((freq - p).abs() <= 5 * se + 1e-12).all(), (freq, p)


# -- every categorical estimator on the quantizer logits IS the quantizer estimator -----------------
@pytest.mark.parametrize("noise", NOISES[:2], ids=str)
@pytest.mark.parametrize("name", ["st", "darn", "zgr"])
def test_categorical_estimators_through_the_logits_equal_the_closed_forms(noise, name):
    """docs/estimators.md: st d = phi_bar, darn d = (x - sg phi_bar) log p(x), zgr their mean."""
    K = 4
    cat = {"st": st_y, "darn": darn_y, "zgr": zgr_y}[name]
    closed = {"st": st_level, "darn": darn_level, "zgr": zgr_level}[name]
    L = lambda v: torch.sin(2 * v) + v**2 / 3  # any smooth loss of the level value
    for eta0 in torch.linspace(-1.2, 4.2, 23, dtype=D):
        for x in range(K):
            e1 = eta0.clone().requires_grad_(True)
            y = (torch.arange(K) == x).to(D)
            v_cat = cat(level_logprobs(e1, K, noise), y) @ torch.arange(K, dtype=D)
            (g_cat,) = torch.autograd.grad(L(v_cat), e1)
            e2 = eta0.clone().requires_grad_(True)
            v_closed = closed(e2, torch.tensor(float(x), dtype=D), K, noise)
            (g_closed,) = torch.autograd.grad(L(v_closed), e2)
            assert float(v_cat.detach()) == float(v_closed.detach()) == x
            assert float(g_cat) == pytest.approx(float(g_closed), rel=1e-9, abs=1e-12), (float(eta0), x)


def test_st_through_the_logits_is_the_mean_embedding_derivative():
    noise, K = QuantNoise("logistic"), 4
    eta = torch.linspace(-1, 4, 11, dtype=D).requires_grad_(True)
    y = torch.zeros(11, K, dtype=D)
    y[:, 1] = 1
    v = st_y(level_logprobs(eta, K, noise), y) @ torch.arange(K, dtype=D)
    (g,) = torch.autograd.grad(v.sum(), eta)
    assert_close(g, mean_embedding_grad(eta.detach(), K, noise), rtol=1e-12, atol=1e-14)


# -- quant-unit (Fig. B.5) ---------------------------------------------------------------------------
def _fd_exact(unit: QuantUnit, h: float = 1e-5) -> float:
    """Finite difference of E[L(x)] with quad probabilities: independent of the code under test."""
    eta, K = float(unit.params["eta"]), unit.K
    Lk = unit_loss(unit.loss_kind, torch.arange(K, dtype=D), K).numpy()
    return float(Lk @ (_quad_probs(unit.noise, eta + h, K) - _quad_probs(unit.noise, eta - h, K)) / (2 * h))


ETAS = [-1.0, -0.4, 0.0, 0.3, 0.5, 0.9, 1.5, 2.2, 3.0, 3.6, 4.0]


@pytest.mark.parametrize("noise", ["logistic", "triangular"])
@pytest.mark.parametrize("loss", ["linear", "quadratic", "sigmoid"])
def test_exact_gradient_matches_a_finite_difference_of_the_integrated_expectation(noise, loss):
    for eta in ETAS:
        unit = QuantUnit(loss=loss, noise=noise, eta=eta)
        # the finite difference is O(h) accurate at the kinks of the triangular density
        assert float(unit.exact_gradient()["eta"]) == pytest.approx(_fd_exact(unit), abs=1e-5)


@pytest.mark.parametrize("noise", ["logistic", "triangular"])
@pytest.mark.parametrize("loss", ["linear", "quadratic"])
def test_zgr_unbiased_for_linear_and_quadratic_losses(noise, loss):
    for eta in ETAS:
        unit = QuantUnit(loss=loss, noise=noise, eta=eta)
        J, p = unit.outcome_gradients(zgr_y)
        assert float(p @ J) == pytest.approx(float(unit.exact_gradient()["eta"]), abs=1e-10), eta


@pytest.mark.parametrize("noise", ["logistic", "triangular"])
def test_st_exact_for_the_linear_loss(noise):
    for eta in ETAS:
        unit = QuantUnit(loss="linear", noise=noise, eta=eta)
        J, p = unit.outcome_gradients(st_y)
        truth = float(unit.exact_gradient()["eta"])
        assert torch.allclose(J, torch.full_like(J, truth), rtol=0, atol=1e-12)  # zero variance
        assert truth == pytest.approx(float(mean_embedding_grad(torch.tensor(eta, dtype=D), 4, unit.noise)),
                                      abs=1e-12)


@pytest.mark.parametrize("noise", ["logistic", "triangular"])
def test_biased_estimators_are_biased_where_the_paper_says(noise):
    """ST is biased for the quadratic loss, ZGR for the sigmoid: the tests above can fail.

    ST's bias for the quadratic is -Var(x)'/2. With triangular noise Var(x) is constant while the
    noise stays within the levels (eta in [0.5, K-1.5]: the triangular-dither property), so there
    ST is unbiased too; near the ends it is not.
    """
    unit = QuantUnit(loss="quadratic", noise=noise, eta=0.3)
    J, p = unit.outcome_gradients(st_y)
    assert abs(float(p @ J) - float(unit.exact_gradient()["eta"])) > 1e-1
    if noise == "triangular":
        J, p = unit.at(0.9).outcome_gradients(st_y)
        assert float(p @ J) == pytest.approx(float(unit.at(0.9).exact_gradient()["eta"]), abs=1e-12)
    unit = QuantUnit(loss="sigmoid", noise=noise, eta=0.9)
    J, p = unit.outcome_gradients(zgr_y)
    assert abs(float(p @ J) - float(unit.exact_gradient()["eta"])) > 1e-3


def test_mean_embedding_derivative_equals_a_finite_difference_of_the_exact_expectation():
    for noise in ("logistic", "triangular"):
        unit = QuantUnit(loss="linear", noise=noise)
        for eta in ETAS:
            e = torch.tensor(eta, dtype=D)
            h = 1e-6
            fd = (unit.expected_loss(e + h) - unit.expected_loss(e - h)) / (2 * h)
            assert float(mean_embedding_grad(e, 4, unit.noise)) == pytest.approx(float(fd), abs=1e-6)  # O(h)


def _draws(unit, spec, n, seed=0):
    est = build(spec)
    dtype = unit.batch.dtype
    noise = draw_noise(noise_requests(unit, est), stream_key(seed, spec), torch.arange(n), dtype=dtype)
    grad = torch.func.vmap(torch.func.grad(lambda p, z: draw_loss(unit, est, p, z)), in_dims=(None, 0))
    return grad(unit.params, noise)["eta"].reshape(n)


@pytest.mark.parametrize("spec", ["zgr", "rf(M=2)"])
def test_unbiased_estimators_through_draw_loss_match_the_exact_gradient_within_5_se(spec):
    """The engine path (counter-based noise, vmap(grad(draw_loss))) on quadratic and sigmoid units."""
    for loss, noise in [("quadratic", "triangular"), ("quadratic", "logistic"), ("sigmoid", "logistic")]:
        if spec == "zgr" and loss == "sigmoid":
            continue
        unit = QuantUnit(loss=loss, noise=noise, eta=1.2)
        J = _draws(unit, spec, 20_000)
        se = float(J.std()) / math.sqrt(J.numel())
        assert abs(float(J.mean()) - float(unit.exact_gradient()["eta"])) < 5 * se + 1e-12, (loss, noise)


def test_st_zgr_interpolates_between_st_and_zgr_exactly():
    unit = QuantUnit(loss="sigmoid", noise="logistic", eta=0.7)
    m = {a: float((lambda J, p: p @ J)(*unit.outcome_gradients(lambda lg, y, a=a: st_zgr_y(lg, y, alpha=a))))
         for a in (0.0, 0.3, 1.0)}
    assert m[0.3] == pytest.approx(0.7 * m[0.0] + 0.3 * m[1.0], abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("noise", ["logistic", "triangular"])
@pytest.mark.parametrize("eta", [-50.0, 50.0, -1e3])
def test_every_estimator_finite_far_outside_the_levels(eta, noise, dtype):
    for loss in ("linear", "sigmoid"):
        unit = QuantUnit(loss=loss, noise=noise, eta=eta, dtype=dtype)
        for spec in SPECS:
            g = _draws(unit, spec, 64)
            assert torch.isfinite(g).all(), (spec, eta, noise)
            assert g.abs().max() < 1e-6  # the level is certain: no gradient signal


def test_quant_unit_contract():
    unit = make_problem("quant-unit", {"K": 4, "loss": "quadratic", "noise": "triangular", "eta": 0.25})
    assert unit.kind == "quant-unit" and unit.node_shapes(7) == {"x": (7, 1, 4)}
    assert unit.batch.shape == (1, 0) and unit.params["eta"].shape == (1,)
    again = QuantUnit(**unit.config)
    assert torch.equal(again.params["eta"], unit.params["eta"]) and again.config == unit.config
    assert unit.at(1.0).config["eta"] == 1.0
    grid = unit.eta_grid(51)
    assert grid[0] == -1 and grid[-1] == 4 and grid.numel() == 51
    with pytest.raises(ShapeError, match="linear, quadratic, sigmoid"):
        QuantUnit(loss="cubic")
