"""Estimators against exact enumeration and the paper's closed forms (Thm. 1, 2; Cor. 1, 2; Eq. 12)."""

import math
from functools import partial

import pytest
import torch
from conftest import enum_logits as _logits
from conftest import enum_loss as _loss
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from biasvar import rng
from biasvar.estimators import build, darn_y, gr_mc, gs, gs_st, sample_onehot, st_y, st_zgr_y, zgr_y
from biasvar.estimators.categorical import conditional_gumbel
from biasvar.exact import enumerate_onehot, estimator_variance, expected_estimator, expected_gr, true_gradient
from biasvar.rng import TRANSFORMS

D = torch.float64




# (V, K) with K in {2, 3, 4, 8} and at most 512 outcomes
SHAPES = st.sampled_from([(1, 2), (1, 3), (1, 4), (1, 8), (2, 2), (2, 3), (2, 4), (2, 8), (3, 2), (3, 3), (3, 4)])
SEEDS = st.integers(min_value=0, max_value=10_000)


@given(shape=SHAPES, seed=SEEDS, scale=st.floats(min_value=0.1, max_value=3.0))
def test_zgr_unbiased_for_quadratic(shape, seed, scale):
    """Theorem 2 (one variable) and Corollary 2 (several, with interactions)."""
    V, K = shape
    logits, loss = _logits(seed, V, K, scale), _loss("quadratic", V, K, seed + 1)
    assert_close(expected_estimator(logits, loss, zgr_y), true_gradient(logits, loss), rtol=0, atol=1e-10)


@given(shape=SHAPES, seed=SEEDS)
def test_st_and_darn_unbiased_for_linear(shape, seed):
    V, K = shape
    logits, loss = _logits(seed, V, K), _loss("linear", V, K, seed + 1)
    truth = true_gradient(logits, loss)
    assert_close(expected_estimator(logits, loss, st_y), truth, rtol=0, atol=1e-10)
    assert_close(expected_estimator(logits, loss, darn_y), truth, rtol=0, atol=1e-10)


@given(K=st.sampled_from([2, 3, 4, 8]), seed=SEEDS)
def test_st_exact_for_linear_loss_of_one_variable(K, seed):
    logits, loss = _logits(seed, 1, K), _loss("linear", 1, K, seed + 1)
    assert estimator_variance(logits, loss, st_y).abs().max() < 1e-20


def test_darn_not_exact_for_linear_loss():
    logits, loss = _logits(0, 1, 4), _loss("linear", 1, 4, 1)
    assert estimator_variance(logits, loss, darn_y).max() > 1e-3


@given(shape=SHAPES, seed=SEEDS)
def test_st_and_darn_biases_are_opposite_for_quadratic(shape, seed):
    V, K = shape
    logits, loss = _logits(seed, V, K), _loss("quadratic", V, K, seed + 1)
    truth = true_gradient(logits, loss)
    b_st = expected_estimator(logits, loss, st_y) - truth
    b_darn = expected_estimator(logits, loss, darn_y) - truth
    assert_close(b_st, -b_darn, rtol=0, atol=1e-10)


@pytest.mark.parametrize("V,K", [(1, 2), (1, 4), (2, 3), (3, 2)])
def test_st_and_darn_biased_for_some_quadratic(V, K):
    logits, loss = _logits(0, V, K), _loss("quadratic", V, K, 1)
    truth = true_gradient(logits, loss)
    assert (expected_estimator(logits, loss, st_y) - truth).abs().max() > 1e-3
    assert (expected_estimator(logits, loss, darn_y) - truth).abs().max() > 1e-3


@pytest.mark.parametrize("V,K", [(1, 3), (1, 8), (2, 4)])
def test_zgr_biased_for_some_quartic(V, K):
    logits, loss = _logits(0, V, K), _loss("quartic", V, K, 1)
    bias = expected_estimator(logits, loss, zgr_y) - true_gradient(logits, loss)
    assert bias.abs().max() > 1e-4  # vs 1e-10 for the unbiased cases


@given(eta=st.floats(min_value=-6, max_value=6), seed=SEEDS)
def test_binary_zgr_is_darn_half_draw_by_draw(eta, seed):
    """Corollary 1: K = 2, embedding x in {0, 1}: J = L'(x) (x - 1/2) d log p(x) / d eta."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(3, generator=g, dtype=D)
    L = lambda z: c[0] * z + c[1] * z**3 + torch.sin(c[2] * z)  # any smooth loss of the bit
    Lp = lambda z: c[0] + 3 * c[1] * z**2 + c[2] * torch.cos(c[2] * z)
    codes = torch.tensor([0.0, 1.0], dtype=D)
    logits0 = torch.tensor([0.3, 0.3 + eta], dtype=D)
    for x in (0, 1):
        y = torch.tensor([1.0 - x, float(x)], dtype=D)
        logits = logits0.clone().requires_grad_(True)
        (J,) = torch.autograd.grad(L(zgr_y(logits, y) @ codes), logits)
        p = logits0.softmax(-1)
        dlogp = y - p  # d log p(x) / d logits
        expected = Lp(torch.tensor(float(x), dtype=D)) * (x - 0.5) * dlogp
        assert_close(J, expected, rtol=1e-12, atol=1e-12)


@given(shape=SHAPES, seed=SEEDS, t=st.floats(min_value=0.2, max_value=5.0))
def test_st_zgr_endpoints(shape, seed, t):
    """Eq. 17: alpha = 0 is ST(t), alpha = 1 is ZGR, outcome by outcome."""
    from biasvar.exact import outcome_gradients

    V, K = shape
    logits, loss = _logits(seed, V, K), _loss("quadratic", V, K, seed + 1)
    J0, _ = outcome_gradients(logits, loss, partial(st_zgr_y, alpha=0.0, t=t))
    Jst, _ = outcome_gradients(logits, loss, partial(st_y, t=t))
    J1, _ = outcome_gradients(logits, loss, partial(st_zgr_y, alpha=1.0, t=t))
    Jz, _ = outcome_gradients(logits, loss, zgr_y)
    assert_close(J0, Jst, rtol=1e-12, atol=1e-12)
    assert_close(J1, Jz, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- closed forms (value and gradient)
def _upstream(y, seed):
    """A random loss L(y) = <c, y> + <y, A y>/2 and its gradient dL/dy at y."""
    g = torch.Generator().manual_seed(seed)
    n = y.numel()
    c = torch.randn(n, generator=g, dtype=D)
    A = torch.randn(n, n, generator=g, dtype=D)
    A = A + A.T
    L = lambda v: v.flatten() @ c + 0.5 * v.flatten() @ A @ v.flatten()
    gy = (c + A @ y.flatten()).reshape(y.shape)
    return L, gy


def _softmax_jac(s, t=1.0):
    """d softmax(z/t) / dz  for s = softmax(z/t): (diag(s) - s s^T) / t, batched [..., K, K]."""
    return (torch.diag_embed(s) - s.unsqueeze(-1) * s.unsqueeze(-2)) / t


@given(K=st.sampled_from([2, 3, 4, 8]), seed=SEEDS, t=st.floats(min_value=0.05, max_value=4.0))
def test_closed_forms(K, seed, t):
    g = torch.Generator().manual_seed(seed)
    eta = 2 * torch.randn(K, generator=g, dtype=D)
    G = -torch.log(torch.empty(K, dtype=D).exponential_(generator=g))
    y = sample_onehot(eta, G)
    x = int(y.argmax())
    p = eta.softmax(-1)
    L, gy = _upstream(y, seed)

    def grad(fn):
        e = eta.clone().requires_grad_(True)
        out = fn(e)
        (J,) = torch.autograd.grad(L(out), e)
        return out.detach(), J

    # ST(t): J = gy (diag(s) - s s^T)/t, s = softmax(logp/t)  (Eq. 4)
    val, J = grad(lambda e: st_y(e, y, t))
    s = (p.log() / t).softmax(-1)
    assert_close(val, y)
    assert_close(J, gy @ _softmax_jac(s, t), rtol=1e-10, atol=1e-12)
    # DARN(p): J = <gy, y - p> (y - p)  (Eq. 5; d log p(x)/d eta = y - p)
    val, J = grad(lambda e: darn_y(e, y))
    assert_close(val, y)
    assert_close(J, (gy @ (y - p)) * (y - p), rtol=1e-10, atol=1e-12)
    # ZGR, Eq. 12: i != x: (g_i - g_x) p_i / 2;  i = x: sum_{j != x} (g_x - g_j) p_j / 2
    val, J = grad(lambda e: zgr_y(e, y))
    eq12 = 0.5 * (gy - gy[x]) * p
    eq12[x] = 0.5 * ((gy[x] - gy) * p).sum()
    assert_close(val, y)
    assert_close(J, eq12, rtol=1e-10, atol=1e-12)
    # GS(t): value s = softmax((logp + G)/t), J = gs_L'(s) * Jac  (Eq. 7)
    sG = ((p.log() + G) / t).softmax(-1)
    e = eta.clone().requires_grad_(True)
    out = gs(e, G, t)
    Ls, gs_ = _upstream(out.detach(), seed)
    (J,) = torch.autograd.grad(Ls(out), e)
    assert_close(out.detach(), sG)
    assert_close(J, gs_ @ _softmax_jac(sG, t), rtol=1e-9, atol=1e-12)
    # GS-ST(t): value y, J = gy Jac(s_G)  (Eq. 8)
    val, J = grad(lambda e: gs_st(e, G, t))
    assert_close(val, y)
    assert_close(J, gy @ _softmax_jac(sG, t), rtol=1e-9, atol=1e-12)
    # GR-MC(t, M): value y, J = mean_m gy Jac(s_m), s_m = softmax((logp + G_m)/t), G_m ~ G|x  (Eq. 9)
    E = torch.empty(7, K, dtype=D).exponential_(generator=g)
    val, J = grad(lambda e: gr_mc(e, G, E, t))
    Gm = conditional_gumbel(eta, y, E)
    sm = ((p.log() + Gm) / t).softmax(-1)  # [M, K]
    assert_close(val, y)
    assert_close(J, (gy @ _softmax_jac(sm, t)).mean(0), rtol=1e-9, atol=1e-12)


@given(K=st.sampled_from([2, 3, 4, 8]), seed=SEEDS, scale=st.sampled_from([1.0, 10.0, 60.0]))
def test_conditional_gumbel_is_consistent_with_x(K, seed, scale):
    """Every G_m ~ G | x reproduces x as the argmax and is finite, even for logits of size 60."""
    g = torch.Generator().manual_seed(seed)
    eta = scale * torch.randn(K, generator=g, dtype=D)
    G = -torch.log(torch.empty(K, dtype=D).exponential_(generator=g))
    y = sample_onehot(eta, G)
    E = torch.empty(200, K, dtype=D).exponential_(generator=g)
    Gm = conditional_gumbel(eta, y, E)
    assert torch.isfinite(Gm).all()
    assert ((eta.log_softmax(-1) + Gm).argmax(-1) == y.argmax()).all()


def test_conditional_gumbel_distribution():
    """G | x has the law of G given argmax = x: compare moments with rejection sampling."""
    g = torch.Generator().manual_seed(0)
    eta = torch.tensor([0.5, -0.3, 1.2], dtype=D)
    logp = eta.log_softmax(-1)
    G = -torch.log(torch.empty(400_000, 3, dtype=D).exponential_(generator=g))
    x = (logp + G).argmax(-1)
    rej = G[x == 1]  # rejection samples of G | x = 1
    y = torch.tensor([0.0, 1.0, 0.0], dtype=D)
    E = torch.empty(200_000, 3, dtype=D).exponential_(generator=g)
    cond = conditional_gumbel(eta, y, E)
    se = (rej.var(0) / rej.shape[0] + cond.var(0) / cond.shape[0]).sqrt()
    assert ((rej.mean(0) - cond.mean(0)).abs() < 5 * se).all()
    se2 = (rej.var(0) * math.sqrt(2 / rej.shape[0])) + cond.var(0) * math.sqrt(2 / cond.shape[0])
    assert ((rej.var(0) - cond.var(0)).abs() < 5 * se2).all()


# ---------------------------------------------------------------- Monte Carlo claims (stated in SEs)
def _mc(fn, logits, loss, n, seed, extra=None):
    """n independent estimates [n, V, K] of a noise-driven estimator (vectorized over draws)."""
    g = torch.Generator().manual_seed(seed)
    V, K = logits.shape
    G = -torch.log(torch.empty(n, V, K, dtype=D).exponential_(generator=g))
    lg = logits.unsqueeze(0).expand(n, V, K).clone().requires_grad_(True)
    noise = {"G": G}
    if extra:
        noise["E"] = torch.empty(n, V, extra, K, dtype=D).exponential_(generator=g)
    (J,) = torch.autograd.grad(loss(fn(lg, noise)).sum(), lg)
    return J


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_gs_st_and_gr_mc_share_expectation_and_gr_has_lower_variance(t):
    V, K = 2, 3
    logits, loss = _logits(3, V, K, 1.0), _loss("quadratic", V, K, 4)
    ref = expected_gr(logits, loss, t, M=20000, generator=torch.Generator().manual_seed(5))
    n = 40_000
    J_gsst = _mc(lambda lg, nz: gs_st(lg, nz["G"], t), logits, loss, n, 1)
    J_gr10 = _mc(lambda lg, nz: gr_mc(lg, nz["G"], nz["E"], t), logits, loss, n, 2, extra=10)
    J_gr100 = _mc(lambda lg, nz: gr_mc(lg, nz["G"], nz["E"], t), logits, loss, n // 4, 3, extra=100)
    for J in (J_gsst, J_gr10, J_gr100):
        se = J.std(0) / math.sqrt(J.shape[0]) + 1e-3 * ref.abs().max() / math.sqrt(20000)
        assert ((J.mean(0) - ref).abs() <= 5 * se + 1e-12).all()
    v_gsst, v_gr10, v_gr100 = (J.var(0).mean() for J in (J_gsst, J_gr10, J_gr100))
    assert v_gr100 < v_gr10 < v_gsst


def test_gr_tends_to_zgr_conditionally_on_x():
    """Theorem 1: E[GR(t) | x] -> ZGR(x) as t -> 0; the gap shrinks roughly linearly in t."""
    V, K = 1, 4
    logits, loss = _logits(7, V, K, 1.0), _loss("quadratic", V, K, 8)
    Y = enumerate_onehot(V, K)
    g = torch.Generator().manual_seed(0)
    gaps = {}
    for t in (0.2, 0.05):
        gap = 0.0
        for y in Y:
            lg = logits.clone().requires_grad_(True)
            Yg = y.clone().requires_grad_(True)
            (c,) = torch.autograd.grad(loss(Yg.unsqueeze(0)).sum(), Yg)
            E = torch.empty(V, 200_000, K, dtype=D).exponential_(generator=g)
            Gm = conditional_gumbel(logits, y, E)
            d = ((lg.log_softmax(-1).unsqueeze(-2) + Gm) / t).softmax(-1).mean(-2)
            (J_gr,) = torch.autograd.grad((c * d).sum(), lg)
            lz = logits.clone().requires_grad_(True)
            (J_z,) = torch.autograd.grad(loss(zgr_y(lz, y).unsqueeze(0)).sum(), lz)
            gap = max(gap, float((J_gr - J_z).abs().max() / J_z.abs().max()))
        gaps[t] = gap
    assert gaps[0.05] < 0.06
    assert gaps[0.05] < gaps[0.2] / 2


def test_rf_unbiased_on_toy_problem():
    from biasvar.problems import ToyCat, draw_loss, noise_requests
    from biasvar.rng import draw_noise, stream_key

    prob = ToyCat(vars=2, categories=3, loss="quadratic", seed=3)
    truth = prob.exact_gradient()["logits"]
    for spec in ("rf(M=2)", "rf(M=4)"):
        est = build(spec)
        nz = draw_noise(noise_requests(prob, est), stream_key(0, spec), torch.arange(40_000), dtype=D)
        J = torch.func.vmap(torch.func.grad(lambda p, z, est=est: draw_loss(prob, est, p, z)), in_dims=(None, 0))(
            prob.params, nz
        )["logits"]
        se = J.std(0) / math.sqrt(J.shape[0])
        assert ((J.mean(0) - truth).abs() < 5 * se).all(), spec


# ---------------------------------------------------------------- shapes, dtypes, vmap, overflow
def _noise(est, shape, g, dtype, draws=None):
    """Noise of each kind the estimator asks for: uniforms through the kind's transform, or for kind
    ``counter`` (gr-mc's E) the address of counter-based uniforms, one row per leading index of
    ``shape`` when ``draws`` (tests that vmap over it) or one for the whole shape."""
    out = {}
    for k, r in est.noise(shape).items():
        if r.kind == rng.COUNTER:
            n = draws or 1
            key = tuple(int(v) for v in torch.randint(1 << 31, (2,), generator=g))
            ctr = rng.counter_noise(key, torch.arange(n), 0, math.prod(r.shape) // n)
            out[k] = ctr if draws else ctr[0]
        else:
            out[k] = TRANSFORMS[r.kind](torch.rand(r.shape, generator=g, dtype=dtype).clamp_min(1e-7))
    return out


@pytest.mark.parametrize("spec", ["st", "st(t=2)", "darn", "zgr", "st-zgr(alpha=0.3,t=2)", "gs(t=0.5)",
                                  "gs-st(t=0.5)", "gr-mc(t=0.1,M=7)"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plug_in_shapes_dtypes_vmap(spec, dtype):
    est = build(spec)
    shape = (5, 3, 4, 6)  # any leading batch shape
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g, dtype=dtype)
    noise = _noise(est, shape, g, dtype, draws=shape[0])  # each noise as its kind asks (gr-mc: an address)
    y = est(logits, noise)
    assert y.shape == shape and y.dtype == dtype
    if not est.relaxed:
        assert ((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all()
    w = torch.randn(shape, generator=g, dtype=dtype)
    f = lambda lg, nz: (est(lg, nz) * w[0]).sum()
    J = torch.func.vmap(torch.func.grad(f))(logits, noise)
    lg = logits.clone().requires_grad_(True)
    (J2,) = torch.autograd.grad((est(lg, noise) * w[0]).sum(), lg)
    assert_close(J, J2)


@pytest.mark.parametrize("spec", ["zgr", "darn", "st", "gs-st(t=0.1)", "gr-mc(t=0.1,M=50)", "gr-mc(t=0.01,M=5)"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_stay_finite(spec, dtype):
    est = build(spec)
    logits = torch.tensor([[60.0, -60.0, 0.0, 55.0], [-80.0, 80.0, 79.0, 0.0]], dtype=dtype, requires_grad=True)
    g = torch.Generator().manual_seed(1)
    noise = _noise(est, (2, 4), g, dtype)
    y = est(logits, noise)
    (J,) = torch.autograd.grad((y * torch.arange(4, dtype=dtype)).sum(), logits)
    assert torch.isfinite(y).all() and torch.isfinite(J).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    est = build("gr-mc(t=0.3,M=5)")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=g, dtype=D)
    noise = _noise(est, (4, 5), g, D)
    f = lambda lg, nz: (est(lg, nz) * torch.arange(5, dtype=D, device=lg.device)).sum()
    J = torch.func.grad(f)(logits, noise)
    Jc = torch.func.grad(f)(logits.cuda(), {k: v.cuda() for k, v in noise.items()})
    assert_close(J, Jc.cpu())
