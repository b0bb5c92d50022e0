"""GR-MC's closed-form core (biasvar.estimators.grmc): the fused kernel, the plain fallback and the
M-sample softmax of the conditional Gumbels agree; the choice of kernel does not depend on chunking."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from biasvar import engine, rng
from biasvar.estimators import grmc
from biasvar.estimators.categorical import conditional_gumbel, sample_onehot
from biasvar.problems.toy import ToyCat

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(B=40, M=30, K=6, dtype=torch.float64, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(B, K, generator=g, dtype=dtype)
    G = -torch.log(-torch.log(torch.rand(B, K, generator=g, dtype=dtype)))
    y = sample_onehot(logits, G)
    U = torch.rand(B, M, K, generator=g, dtype=dtype).clamp_min(1e-12)
    return logits, y, U


@pytest.mark.parametrize("t", [0.05, 0.3, 2.0])
def test_moments_equal_the_m_sample_softmax(t):
    """S = mean_m s_m and C = mean_m s_m s_m^T with s_m = softmax((logp + G_m) / t), G_m ~ G | x."""
    logits, y, U = _inputs()
    logp = logits.log_softmax(-1)
    s = ((logp.unsqueeze(-2) + conditional_gumbel(logits, y, -torch.log(U))) / t).softmax(-1)  # [B, M, K]
    for uniform, noise in ((True, U), (False, -torch.log(U))):
        S, C = grmc.moments(logp, y, noise, t, uniform=uniform)
        assert_close(S, s.mean(1), rtol=1e-9, atol=1e-12)
        assert_close(C, torch.einsum("bmk,bml->bkl", s, s) / s.shape[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernel_equals_the_plain_one(dtype):
    logits, y, U = _inputs(B=300, M=50, K=16, dtype=dtype)
    logp = logits.log_softmax(-1)
    a = grmc.moments(logp, y, U, 0.1, uniform=True, fused=True)
    b = grmc.moments(logp, y, U, 0.1, uniform=True, fused=False)
    tol = {"rtol": 2e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-11, "atol": 1e-13}
    for x, z in zip(a, b, strict=True):
        assert_close(x, z, **tol)


def test_extreme_logits_are_finite():
    """p_k = 0 in floating point gives weight 0, not NaN."""
    logits = torch.tensor([[90.0, -90.0, 0.0, 89.0], [-200.0, 200.0, 199.0, 0.0]])
    y = sample_onehot(logits, torch.zeros_like(logits))
    U = torch.rand(2, 64, 4).clamp_min(1e-7)
    for fused in (False, True):
        S, C = grmc.moments(logits.log_softmax(-1), y, U, 0.01, uniform=True, fused=fused)
        assert torch.isfinite(S).all() and torch.isfinite(C).all()
        assert_close(S.sum(-1), torch.ones(2))


def test_surrogate_gradient_is_the_jacobian_of_the_mean_softmax():
    logits, y, U = _inputs(B=5, M=20, K=4)
    t = 0.4
    lg = logits.clone().requires_grad_(True)
    w = torch.randn(5, 4, dtype=torch.float64)
    (J1,) = torch.autograd.grad((grmc.gr_mc_surrogate(lg.log_softmax(-1), y, U, t, uniform=True) * w).sum(), lg)
    Gm = conditional_gumbel(logits, y, -torch.log(U))
    lg2 = logits.clone().requires_grad_(True)
    d = ((lg2.log_softmax(-1).unsqueeze(-2) + Gm) / t).softmax(-1).mean(-2)
    (J2,) = torch.autograd.grad((d * w).sum(), lg2)
    assert_close(J1, J2, rtol=1e-9, atol=1e-12)


def test_the_kernel_is_chosen_per_draw_so_chunking_does_not_matter(monkeypatch):
    """With a threshold below one draw's noise the fused kernel serves every chunk size alike."""
    monkeypatch.setattr(grmc, "FUSED_MIN_ELEMENTS", 100)
    calls = []
    real = rng._call_compiled
    monkeypatch.setattr(rng, "_call_compiled", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    problem = ToyCat(vars=3, categories=4)
    spec = "gr-mc(t=0.3,M=20)"  # 3 x 20 x 4 = 240 noise numbers per draw
    a = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=7, seed=1, chunk=1)])
    b = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=7, seed=1, chunk=7)])
    assert any(n.startswith("grmc_weights") for n in calls)
    assert_close(a, b, rtol=1e-5, atol=1e-6)
