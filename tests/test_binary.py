"""Binary (Bernoulli) sites against native Bernoulli formulas and exact enumeration.

A binary site is measured as the 2-category variable with logits [0, l]; these tests never use that
representation for the truth: true gradients sum over {0,1}^V with sigma(l), per-outcome estimates
are the Bernoulli closed forms (ST: sigma(1 - sigma); DARN: (b - sigma)^2; ZGR = DARN(1/2):
(b - 1/2)(b - sigma)), GS is the binary Concrete and the GS-ST / GR-MC expectation is a quadrature
over the logistic noise.
"""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from biasvar import Site, UserProblem
from biasvar.estimators import build
from biasvar.problems.base import draw_loss, noise_requests
from biasvar.rng import draw_noise, stream_key

D = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def quad_coef(V, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(V, V, generator=g, dtype=D)
    return (A + A.T) / 2, torch.randn(V, generator=g, dtype=D), torch.randn(V, generator=g, dtype=D)


def quad_loss(coef, kind="quadratic"):
    A, b, a = coef
    if kind == "linear":
        return lambda z: z @ b
    if kind == "quadratic":
        return lambda z: 0.5 * ((z @ A) * z).sum(-1) + z @ b
    return lambda z: (z @ a) ** 4 / 4 + z @ b  # quartic: ZGR biased


def bits_problem(logits, loss, *, binary_flag=False):
    """V binary variables whose logits are the parameter; loss of the bits b [B, V]."""
    V = logits.shape[0]

    def forward(params, x, sample):
        lg = params["l"].unsqueeze(0).expand(x.shape[0], V)
        b = sample("b", lg) if binary_flag else sample("b", lg.unsqueeze(-1)).squeeze(-1)
        return loss(b)

    site = Site((V,), binary=True) if binary_flag else Site((V, 1))
    return UserProblem({"l": logits}, torch.zeros(1, 0, dtype=D), forward, {"b": site})


def all_bits(V):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=V)), dtype=D)  # [2^V, V]


def native_true_gradient(logits, loss):
    lg = logits.detach().clone().requires_grad_(True)
    Bs = all_bits(len(logits))
    p = torch.sigmoid(lg)
    prob = (Bs * p + (1 - Bs) * (1 - p)).prod(-1)
    (g,) = torch.autograd.grad((prob * loss(Bs)).sum(), lg)
    return g


def forcing_noise(est, prob, bits):
    """Noise of one draw whose hard sample is ``bits`` [V] (Gumbel +-40 on the 'on' category)."""
    req = noise_requests(prob, est)
    noise = {}
    for node, d in req.items():
        noise[node] = {}
        for name, (shape, kind) in d.items():
            if kind == "gumbel":
                G = torch.zeros(shape, dtype=D)
                G[..., 1] = 40 * (2 * bits - 1)
                noise[node][name] = G
            else:
                noise[node][name] = torch.ones(shape, dtype=D)
    return noise


def outcome_grad(prob, est, bits):
    params = {"l": prob.params["l"].clone().requires_grad_(True)}
    (g,) = torch.autograd.grad(draw_loss(prob, est, params, forcing_noise(est, prob, bits)), params["l"])
    return g


def native_outcome(spec_name, bits, logits, loss, t=1.0, alpha=0.5):
    """The Bernoulli closed form J(b) = L'(b) * c(b, sigma)."""
    Bg = bits.clone().requires_grad_(True)
    (Lp,) = torch.autograd.grad(loss(Bg.unsqueeze(0)).sum(), Bg)
    s = torch.sigmoid(logits)
    st_t = torch.sigmoid(logits / t) * (1 - torch.sigmoid(logits / t)) / t
    c = {
        "st": st_t,
        "darn": (bits - s) ** 2,
        "zgr": (bits - 0.5) * (bits - s),
        "st-zgr": (1 - alpha) * st_t + alpha * (bits - 0.5) * (bits - s),
    }[spec_name]
    return Lp * c


SPECS = [("st", "st", {}), ("st(t=2)", "st", {"t": 2.0}), ("darn", "darn", {}), ("zgr", "zgr", {}),
         ("st-zgr(alpha=0.3,t=2)", "st-zgr", {"alpha": 0.3, "t": 2.0})]


@given(V=st.integers(1, 4), seed=st.integers(0, 10_000), scale=st.floats(0.1, 4.0),
       kind=st.sampled_from(["linear", "quadratic", "quartic"]))
def test_x_only_estimators_match_bernoulli_closed_forms_for_every_outcome(V, seed, scale, kind):
    g = torch.Generator().manual_seed(seed + 1)
    logits = scale * torch.randn(V, generator=g, dtype=D)
    loss = quad_loss(quad_coef(V, seed), kind)
    prob = bits_problem(logits, loss)
    for spec, name, kw in SPECS:
        est = build(spec)
        for bits in all_bits(V):
            assert_close(outcome_grad(prob, est, bits), native_outcome(name, bits, logits, loss, **kw),
                         rtol=1e-10, atol=1e-12, msg=spec)


@given(eta=st.floats(-6, 6), seed=st.integers(0, 10_000))
def test_zgr_is_darn_half_for_binary_by_enumeration(eta, seed):
    """ZGR on a binary site = DARN(1/2): J = L'(b) (b - 1/2) d log p(b) / d l, for both outcomes."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(3, generator=g, dtype=D)
    loss = lambda z: (c[0] * z + c[1] * z**3 + torch.sin(c[2] * z)).sum(-1)
    logits = torch.tensor([eta], dtype=D)
    prob = bits_problem(logits, loss)
    for b in (0.0, 1.0):
        bits = torch.tensor([b], dtype=D)
        Lp = c[0] + 3 * c[1] * b**2 + c[2] * math.cos(c[2] * b)
        dlogp = b - torch.sigmoid(logits)  # d log p(b) / d l
        assert_close(outcome_grad(prob, build("zgr"), bits), Lp * (b - 0.5) * dlogp, rtol=1e-12, atol=1e-12)


@given(V=st.integers(1, 5), seed=st.integers(0, 10_000), scale=st.floats(0.1, 4.0))
def test_exact_gradient_of_binary_sites_is_the_bernoulli_one(V, seed, scale):
    g = torch.Generator().manual_seed(seed + 7)
    logits = scale * torch.randn(V, generator=g, dtype=D)
    loss = quad_loss(quad_coef(V, seed), "quartic")
    for flag in (False, True):
        exact = bits_problem(logits, loss, binary_flag=flag).exact_gradient()["l"]
        assert_close(exact, native_true_gradient(logits, loss), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theory_on_binary_sites(seed):
    """ZGR unbiased for quadratic losses (Thm. 2), ST and DARN unbiased for linear ones, and not
    for every quadratic; exact expectations by enumeration of the outcomes."""
    V = 3
    logits = 1.5 * torch.randn(V, generator=torch.Generator().manual_seed(seed), dtype=D)
    Bs = all_bits(V)
    p = torch.sigmoid(logits)
    prob_b = (Bs * p + (1 - Bs) * (1 - p)).prod(-1)

    def expected(spec, loss):
        prob = bits_problem(logits, loss)
        return sum(pb * outcome_grad(prob, build(spec), bits) for pb, bits in zip(prob_b, Bs, strict=True))

    coef = quad_coef(V, seed)
    quad, lin = quad_loss(coef, "quadratic"), quad_loss(coef, "linear")
    assert_close(expected("zgr", quad), native_true_gradient(logits, quad), rtol=1e-10, atol=1e-12)
    for spec in ("st", "darn", "zgr"):
        assert_close(expected(spec, lin), native_true_gradient(logits, lin), rtol=1e-10, atol=1e-12)
    gaps = [float((expected(s, quad) - native_true_gradient(logits, quad)).abs().max()) for s in ("st", "darn")]
    assert min(gaps) > 1e-3  # a wrong implementation that is always exact would pass the rest


def mc(prob, spec, n, seed=0):
    est = build(spec)
    nz = draw_noise(noise_requests(prob, est), stream_key(seed, spec), torch.arange(n), dtype=D)
    J = torch.func.vmap(torch.func.grad(lambda p, z: draw_loss(prob, est, p, z)), in_dims=(None, 0))(prob.params, nz)
    return J["l"]


def test_gs_value_is_the_binary_concrete():
    """GS on a binary site returns sigmoid((l + G1 - G0) / t), G1 - G0 logistic."""
    t, V = 0.7, 4
    logits = torch.randn(V, generator=torch.Generator().manual_seed(3), dtype=D)
    seen = {}

    def forward(params, x, sample):
        seen["b"] = sample("b", params["l"].expand(x.shape[0], V).unsqueeze(-1)).squeeze(-1)
        return seen["b"].sum(-1)

    prob = UserProblem({"l": logits}, torch.zeros(1, 0, dtype=D), forward)
    est = build(f"gs(t={t})")
    nz = draw_noise(noise_requests(prob, est), stream_key(0, "gs"), torch.arange(1), dtype=D)
    nz0 = {k: {n: v[0] for n, v in d.items()} for k, d in nz.items()}
    draw_loss(prob, est, prob.params, nz0)
    G = nz0["b"]["G"][0]  # [V, 2]
    assert_close(seen["b"][0], torch.sigmoid((logits + G[:, 1] - G[:, 0]) / t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("t", [0.3, 1.0])
def test_gs_st_and_gr_mc_expectation_is_the_logistic_quadrature(t):
    """E[GS-ST(t)] = E[GR-MC(t, M)] = E_L[L'(b) sigma'((l + L)/t)/t], b = [l + L > 0], L logistic."""
    eta, c = 0.4, (1.3, -0.8)
    loss = lambda z: (c[0] * z + c[1] * z**2).sum(-1)
    prob = bits_problem(torch.tensor([eta], dtype=D), loss)
    Lg = torch.linspace(-40, 40, 400_001, dtype=D)
    dens = torch.sigmoid(Lg) * torch.sigmoid(-Lg)
    b = (eta + Lg > 0).to(D)
    s = torch.sigmoid((eta + Lg) / t)
    integrand = (c[0] + 2 * c[1] * b) * s * (1 - s) / t * dens
    truth = torch.trapezoid(integrand, Lg)
    # GS (relaxed): L'(s) at the relaxed value
    integrand_gs = (c[0] + 2 * c[1] * s) * s * (1 - s) / t * dens
    truth_gs = torch.trapezoid(integrand_gs, Lg)
    for spec, ref in ((f"gs-st(t={t})", truth), (f"gr-mc(t={t},M=10)", truth), (f"gs(t={t})", truth_gs)):
        J = mc(prob, spec, 40_000)[:, 0]
        se = J.std() / math.sqrt(J.numel())
        assert abs(float(J.mean() - ref)) < 5 * float(se) + 1e-9, spec


def test_rf_unbiased_on_binary_sites():
    V = 3
    logits = torch.randn(V, generator=torch.Generator().manual_seed(5), dtype=D)
    loss = quad_loss(quad_coef(V, 5), "quartic")
    prob = bits_problem(logits, loss)
    truth = native_true_gradient(logits, loss)
    for spec in ("rf(M=2)", "rf(M=4)"):
        J = mc(prob, spec, 40_000)
        se = J.std(0) / math.sqrt(J.shape[0])
        assert ((J.mean(0) - truth).abs() < 5 * se).all(), spec


def test_mixed_binary_and_categorical_sites_enumerate_exactly():
    """A binary site and a categorical site in one model: enumerate_gradient vs a native sum."""
    g = torch.Generator().manual_seed(11)
    W = torch.randn(2, 3, generator=g, dtype=D)
    params = {"lb": torch.randn(2, generator=g, dtype=D), "lc": torch.randn(3, generator=g, dtype=D)}

    def loss(b, y):  # b [N, 2], y [N, 3]
        return ((b @ W) * y).sum(-1) ** 2 + b.sum(-1)

    def forward(p, x, sample):
        B = x.shape[0]
        b = sample("b", p["lb"].expand(B, 2).unsqueeze(-1)).squeeze(-1)
        y = sample("c", p["lc"].expand(B, 3))
        return loss(b, y)

    prob = UserProblem(params, torch.zeros(1, 0, dtype=D), forward)
    assert prob.node_shapes(1) == {"b": (1, 2, 2), "c": (1, 3)}
    exact = prob.exact_gradient()
    lb, lc = (params[k].clone().requires_grad_(True) for k in ("lb", "lc"))
    total = 0
    for bits in all_bits(2):
        pb = (bits * torch.sigmoid(lb) + (1 - bits) * torch.sigmoid(-lb)).prod()
        for k in range(3):
            y = torch.eye(3, dtype=D)[k]
            total = total + pb * lc.softmax(-1)[k] * loss(bits.unsqueeze(0), y.unsqueeze(0))[0]
    glb, glc = torch.autograd.grad(total, [lb, lc])
    assert_close(exact["lb"], glb, rtol=1e-10, atol=1e-12)
    assert_close(exact["lc"], glc, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", ["arsm", "indecater", "disarm"])
def test_multipass_estimators_unbiased_on_binary_sites(spec):
    """The unbiased multi-pass estimators apply to binary sites (2 categories; DisARM is K = 2 only)."""
    V = 3
    logits = torch.randn(V, generator=torch.Generator().manual_seed(9), dtype=D)
    loss = quad_loss(quad_coef(V, 9), "quartic")
    prob = bits_problem(logits, loss)
    truth = native_true_gradient(logits, loss)
    J = mc(prob, spec, 20_000)
    se = J.std(0) / math.sqrt(J.shape[0])
    assert ((J.mean(0) - truth).abs() < 5 * se + 1e-12).all(), (J.mean(0), truth)


def test_reinmax_runs_on_binary_sites_and_disarm_refuses_categorical_ones():
    from biasvar.errors import BiasvarError

    V = 2
    logits = torch.randn(V, generator=torch.Generator().manual_seed(2), dtype=D)
    J = mc(bits_problem(logits, quad_loss(quad_coef(V, 2), "quadratic")), "reinmax(t=2)", 100)
    assert torch.isfinite(J).all() and J.abs().max() > 0

    def forward(p, x, sample):
        return sample("c", p["l"].expand(x.shape[0], 3)) @ torch.arange(3, dtype=D)

    cat = UserProblem({"l": torch.zeros(3, dtype=D)}, torch.zeros(1, 0, dtype=D), forward)
    with pytest.raises(BiasvarError, match="(?i)disarm"):
        mc(cat, "disarm", 4)
