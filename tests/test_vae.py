"""The ``vae`` and ``hvae`` problems (App. B.3, B.3.1) against independent references.

The references here are written out from the paper's formulas (explicit matrix products, a
hand-written Bernoulli log-likelihood, bit codes listed by hand) and enumerate every latent
configuration; they share no code with the problems or the estimators.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import draw_moments
from torch.distributions import Categorical, kl_divergence

from biasvar.estimators import build, sample_onehot, zgr_y
from biasvar.problems.base import draw_loss, noise_requests
from biasvar.problems.hvae import HVAE
from biasvar.problems.registry import make_problem
from biasvar.problems.vae import VAE, bit_codes, kl_uniform
from biasvar.rng import draw_noise, stream_key

SPECS = ["st", "st(t=2)", "darn", "zgr", "st-zgr(alpha=0.5)", "gs(t=0.5)", "gs-st(t=0.5)",
         "gr-mc(t=0.5,M=3)", "rf(M=2)"]
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")

# -- independent references ---------------------------------------------------------------------

CODES = {2: [[-1.0], [1.0]], 4: [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]}


def lin(p, name, h):
    return h @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def lrelu(h):
    return torch.where(h > 0, h, 0.2 * h)


def log_bernoulli(logits, x):
    s = torch.sigmoid(logits)
    return (x * torch.log(s) + (1 - x) * torch.log(1 - s)).sum(-1)


def embed(y, C):
    return (y @ torch.tensor(CODES[C], dtype=y.dtype)).flatten(-2)


def ref_vae_loss(p, x, y, C):
    """Negative ELBO of App. B.3 for a given sample y [B, V, C]: -log p(x|z) + KL(q || uniform)."""
    B = x.shape[0]
    logits = lin(p, "encoder.4", lrelu(lin(p, "encoder.2", lrelu(lin(p, "encoder.0", x))))).reshape(B, -1, C)
    q = torch.softmax(logits, -1)
    kl = (q * torch.log(q * C)).sum((-1, -2))
    z = embed(y, C)
    xl = lin(p, "decoder.4", lrelu(lin(p, "decoder.2", lrelu(lin(p, "decoder.0", z)))))
    return -log_bernoulli(xl, x) + kl, logits


def ref_vae_exact(p, x, C, V):
    """d/dparams of mean_b sum_z q(z|x_b) L_b(z), enumerating all C**V configurations."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    total = 0.0
    for cfg in itertools.product(range(C), repeat=V):
        y = torch.zeros(x.shape[0], V, C, dtype=x.dtype)
        y[:, torch.arange(V), list(cfg)] = 1.0
        f, logits = ref_vae_loss(p, x, y, C)
        q = (torch.softmax(logits, -1) * y).sum(-1).prod(-1)  # [B]
        total = total + (q * f).mean()
    return dict(zip(p, torch.autograd.grad(total, list(p.values())), strict=True))


def ref_hvae_exact(p, x, C, V):
    """Eq. 87 enumerated: sum q(z1|x) q(z2|z1) [-log p(x|z1) - log p(z1|z2) - log p(z2) + log q1 + log q2]."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    B = x.shape[0]
    total = 0.0
    cfgs = list(itertools.product(range(C), repeat=V))
    for c1, c2 in itertools.product(cfgs, cfgs):
        y1 = torch.zeros(B, V, C, dtype=x.dtype)
        y1[:, torch.arange(V), list(c1)] = 1.0
        y2 = torch.zeros(B, V, C, dtype=x.dtype)
        y2[:, torch.arange(V), list(c2)] = 1.0
        q1 = (torch.softmax(lin(p, "q_z1", x).reshape(B, V, C), -1) * y1).sum(-1).prod(-1)
        q2 = (torch.softmax(lin(p, "q_z2", embed(y1, C)).reshape(B, V, C), -1) * y2).sum(-1).prod(-1)
        pz1 = (torch.softmax(lin(p, "p_z1", embed(y2, C)).reshape(B, V, C), -1) * y1).sum(-1).prod(-1)
        log_px = log_bernoulli(lin(p, "p_x", embed(y1, C)), x)
        f = -log_px - torch.log(pz1) + V * math.log(C) + torch.log(q1) + torch.log(q2)
        total = total + (q1 * q2 * f).mean()
    return dict(zip(p, torch.autograd.grad(total, list(p.values())), strict=True))


def expected_plugin(problem, y_fn):
    """Exact E[J] of an x-only plug-in estimator: sum over configurations of sg(q) grad L(y_fn(logits, y))."""
    B = problem.batch.shape[0]
    shapes = problem.node_shapes(1)
    V, C = next(iter(shapes.values()))[1:]
    cfgs = list(itertools.product(range(C), repeat=V))
    params = {k: v.detach().clone().requires_grad_(True) for k, v in problem.params.items()}
    total = 0.0
    for joint in itertools.product(cfgs, repeat=len(shapes)):
        ys = {}
        for node, cfg in zip(shapes, joint, strict=True):
            y = torch.zeros(B, V, C, dtype=F64)
            y[:, torch.arange(V), list(cfg)] = 1.0
            ys[node] = y
        weight = []

        def sample(node, logits, ys=ys, weight=weight):
            weight.append((logits.detach().softmax(-1) * ys[node]).sum(-1).prod(-1))
            return y_fn(logits, ys[node])

        f = problem.forward(params, problem.batch, sample)
        total = total + (torch.stack(weight).prod(0) * f).mean()
    return dict(zip(params, torch.autograd.grad(total, list(params.values())), strict=True))


def binary_batch(B, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((B, 784), 0.3, dtype=F64), generator=g)


def tiny_vae(V=3, C=2, B=2):
    prob = VAE(categories=C, vars=V, hidden=(5, 4), seed=3, dtype=F64)
    prob.params = {k: 3 * v for k, v in prob.params.items()}  # sharper posteriors, larger effects
    prob.batch = binary_batch(B, 1)
    return prob


def tiny_hvae(V=2, C=2, B=2):
    prob = HVAE(categories=C, vars=V, seed=4, dtype=F64)
    prob.params = {k: 3 * v for k, v in prob.params.items()}
    prob.batch = binary_batch(B, 2)
    return prob


def flat(g):
    return torch.cat([v.flatten() for v in g.values()])


# -- structure ----------------------------------------------------------------------------------


def test_fig1_vae_shapes_and_parameter_count():
    prob = VAE(categories=16, vars=16)
    assert prob.kind == "vae" and prob.bits == 64
    assert prob.dim == 1_149_456
    shapes = {k: tuple(v.shape) for k, v in prob.params.items()}
    assert shapes == {
        "encoder.0.weight": (512, 784), "encoder.0.bias": (512,),
        "encoder.2.weight": (256, 512), "encoder.2.bias": (256,),
        "encoder.4.weight": (256, 256), "encoder.4.bias": (256,),
        "decoder.0.weight": (256, 64), "decoder.0.bias": (256,),
        "decoder.2.weight": (512, 256), "decoder.2.bias": (512,),
        "decoder.4.weight": (784, 512), "decoder.4.bias": (784,),
    }
    assert prob.node_shapes(7) == {"z": (7, 16, 16)}
    assert tuple(prob.batch.shape) == (200, 784)
    # default nn.Linear init bounds, and cls(**config) rebuilds the same parameters
    assert prob.params["encoder.0.weight"].abs().max() <= 1 / math.sqrt(784)
    assert prob.params["decoder.0.weight"].abs().max() <= 1 / math.sqrt(64)
    again = make_problem("vae", prob.config)
    assert all(torch.equal(again.params[k], v) for k, v in prob.params.items())
    other = VAE(seed=1)
    assert not torch.equal(other.params["encoder.0.weight"], prob.params["encoder.0.weight"])
    # float64 is the float32 model upcast
    p64 = VAE(dtype=F64)
    assert torch.equal(p64.params["decoder.4.bias"], prob.params["decoder.4.bias"].double())


def test_hvae_shapes():
    prob = HVAE(categories=4, vars=96)  # 192 bits per layer, as in Table 2
    assert prob.bits == 192
    assert prob.node_shapes(3) == {"z1": (3, 96, 4), "z2": (3, 96, 4)}
    assert {k: tuple(v.shape) for k, v in prob.params.items()} == {
        "q_z1.weight": (384, 784), "q_z1.bias": (384,), "q_z2.weight": (384, 192), "q_z2.bias": (384,),
        "p_z1.weight": (384, 192), "p_z1.bias": (384,), "p_x.weight": (784, 192), "p_x.bias": (784,),
    }
    assert prob.dim == (384 * 784 + 384) + 2 * (384 * 192 + 384) + (784 * 192 + 784)


def test_bit_codes_are_the_binary_expansion():
    assert bit_codes(2).tolist() == CODES[2]
    assert bit_codes(4).tolist() == CODES[4]
    c16 = bit_codes(16)
    assert c16.shape == (16, 4)
    assert len({tuple(r) for r in c16.tolist()}) == 16
    assert set(c16.unique().tolist()) == {-1.0, 1.0}


def test_kl_matches_torch_distributions():
    logits = torch.randn(5, 7, 8, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    ref = kl_divergence(Categorical(logits=logits), Categorical(logits=torch.zeros_like(logits))).sum(-1)
    torch.testing.assert_close(kl_uniform(logits), ref)


def test_forward_matches_reference_formula():
    prob = tiny_vae(V=3, C=4, B=3)
    G = -torch.log(-torch.log(torch.rand(3, 3, 4, generator=torch.Generator().manual_seed(5), dtype=F64)))
    ys = {}

    def sample(node, logits):
        ys[node] = sample_onehot(logits, G)
        return ys[node]

    out = prob.forward(prob.params, prob.batch, sample)
    ref, _ = ref_vae_loss(prob.params, prob.batch, ys["z"], 4)
    torch.testing.assert_close(out, ref)


def test_zgr_gradient_for_fixed_noise_matches_hand_written_zgr():
    """draw_loss's gradient with zgr == autograd of the reference loss with ZGR written inline (Eq. 13)."""
    prob = tiny_vae(V=3, C=4, B=2)
    est = build("zgr")
    noise = draw_noise(noise_requests(prob, est), stream_key(7, "zgr"), torch.arange(1), dtype=F64)
    noise = {n: {k: v[0] for k, v in d.items()} for n, d in noise.items()}
    got = torch.func.grad(lambda p: draw_loss(prob, est, p, noise))(prob.params)

    p = {k: v.detach().clone().requires_grad_(True) for k, v in prob.params.items()}
    x = prob.batch
    logits = lin(p, "encoder.4", lrelu(lin(p, "encoder.2", lrelu(lin(p, "encoder.0", x))))).reshape(2, 3, 4)
    G = noise["z"]["G"]
    x_idx = (logits.detach().log_softmax(-1) + G).argmax(-1)
    y = torch.nn.functional.one_hot(x_idx, 4).to(F64)
    logp = logits.log_softmax(-1)
    prob_ = logp.exp()
    d = 0.5 * (prob_ + (y - prob_.detach()) * (y * logp).sum(-1, keepdim=True))
    y_zgr = y + d - d.detach()
    f, _ = ref_vae_loss(p, x, y_zgr, 4)
    want = dict(zip(p, torch.autograd.grad(f.mean(), list(p.values())), strict=True))
    for k in p:
        torch.testing.assert_close(got[k], want[k])


@pytest.mark.parametrize("kind", ["vae", "hvae"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_every_estimator_runs_under_vmap_grad(kind, dtype):
    prob = (VAE(categories=4, vars=3, hidden=(6, 5), dtype=dtype) if kind == "vae"
            else HVAE(categories=4, vars=3, dtype=dtype))
    prob.batch = binary_batch(3, 0).to(dtype)
    for spec in SPECS:
        est = build(spec)
        noise = draw_noise(noise_requests(prob, est), stream_key(0, spec), torch.arange(4), dtype=dtype)
        g = torch.func.vmap(torch.func.grad(lambda p, z, est=est: draw_loss(prob, est, p, z)),
                            in_dims=(None, 0))(prob.params, noise)
        for k, v in g.items():
            assert v.shape == (4, *prob.params[k].shape), (spec, k)
            assert v.dtype == dtype
            assert torch.isfinite(v).all(), (spec, k)
        assert flat(g).abs().sum() > 0, spec


def test_exact_gradient_matches_independent_enumeration():
    vae = tiny_vae(V=3, C=2, B=2)
    want = ref_vae_exact(vae.params, vae.batch, 2, 3)
    got = vae.exact_gradient()
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    hv = tiny_hvae(V=2, C=2, B=2)
    want = ref_hvae_exact(hv.params, hv.batch, 2, 2)
    got = hv.exact_gradient()
    for k in want:
        torch.testing.assert_close(got[k], want[k])
    assert VAE().exact_gradient() is None  # 16**16 configurations: refuses


def _assert_within_se(mean_se, exact, k=5.0):
    for name, (mean, se) in mean_se.items():
        z = (mean - exact[name]).abs() / (se + 1e-12)
        assert (z < k).all(), f"{name}: max |z| = {z.max():.2f}"


@pytest.mark.parametrize(("make", "exact_of", "V"), [
    (lambda: tiny_vae(V=3, C=2, B=2), ref_vae_exact, 3),
    (lambda: tiny_hvae(V=2, C=2, B=2), ref_hvae_exact, 2),
], ids=["vae", "hvae"])
def test_rf_is_unbiased_and_zgr_is_not(make, exact_of, V):
    """rf(4) mean over many draws == exact gradient (5 SE); ZGR's exact mean differs (non-quadratic)."""
    prob = make()
    exact = exact_of(prob.params, prob.batch, 2, V)
    _assert_within_se(draw_moments(prob, "rf(M=4)", 3000), exact)
    bias = flat(expected_plugin(prob, zgr_y)) - flat(exact)
    assert bias.norm() > 1e-2 * flat(exact).norm()


def test_to_moves_codes_and_keeps_forward():
    prob = tiny_vae(V=3, C=4, B=2)
    est = build("st")
    noise = draw_noise(noise_requests(prob, est), stream_key(0, "st"), torch.arange(1))
    noise = {n: {k: v[0] for k, v in d.items()} for n, d in noise.items()}
    ref = draw_loss(prob, est, prob.params, noise).item()
    prob.to("cpu", torch.float32)
    assert prob.codes.dtype == torch.float32 and prob.params["encoder.0.weight"].dtype == torch.float32
    assert draw_loss(prob, est, prob.params, noise).item() == pytest.approx(ref, rel=1e-5)
