"""GR-MC's closed-form core (biasvar.estimators.grmc): the fused kernel, the plain fallback and the
M-sample softmax of the conditional Gumbels agree; the choice of kernel does not depend on chunking."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from biasvar import engine, rng
from biasvar.errors import ShapeError
from biasvar.estimators import build, grmc
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


# ---------------------------------------------------------------- counter noise, powers, compilation
def _counter_inputs(n=3, R=50, M=40, K=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, R, K, generator=g, dtype=dtype)
    y = sample_onehot(logits, -torch.log(-torch.log(torch.rand(n, R, K, generator=g, dtype=dtype))))
    ctr = rng.counter_noise((11, 12), torch.arange(100, 100 + n), 64, R * M * K)
    return logits.log_softmax(-1), y, ctr


@pytest.mark.parametrize("native", [False, None])  # the torch path; the native CPU kernel where it builds
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t", [0.1, 0.3, 2.0])
def test_counter_moments_equal_the_moments_of_the_materialized_uniforms(dtype, t, native, monkeypatch):
    """Generating the uniforms inside the kernel, block by block, gives GR-MC's moments of the same
    numbers (kind "uniform"); a draw's result does not depend on the other draws of the call."""
    n, R, M, K = 3, 50, 40, 16
    logp, y, ctr = _counter_inputs(n, R, M, K, dtype)
    monkeypatch.setattr(grmc, "BLOCK_ELEMENTS", 7 * M * K)  # several blocks per draw, a short last one
    monkeypatch.setattr(grmc, "FUSED_MIN_ELEMENTS", 1000)  # the compiled kernels, on small blocks
    S, C = grmc.counter_moments(logp, y, ctr, t, M, native=native)
    U = rng.counter_uniforms(ctr, dtype=dtype).reshape(n * R, M, K)
    S0, C0 = grmc.moments(logp.reshape(n * R, K), y.reshape(n * R, K), U, t, uniform=True)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    assert_close(S.reshape(n * R, K), S0, **tol)
    assert_close(C.reshape(n * R, K, K), C0, **tol)
    for i in range(n):  # alone: the same bits
        Si, Ci = grmc.counter_moments(logp[i:i + 1], y[i:i + 1], ctr[i:i + 1], t, M, native=native)
        assert torch.equal(Si[0], S[i]) and torch.equal(Ci[0], C[i])


def test_counter_noise_of_the_wrong_size_is_refused():
    logp, y, ctr = _counter_inputs(1, 10, 4, 6)
    with pytest.raises(ShapeError, match="noise numbers"):
        grmc.counter_moments(logp, y, ctr, 0.5, 5)


@pytest.mark.parametrize("t, p", [(0.1, 10), (0.01, 100), (1.0, 1), (0.5, 2), (0.3, 0), (2.0, 0), (1e-3, 0)])
def test_whole_inverse_temperatures_use_powers(t, p):
    assert grmc.power_of(t) == p


@pytest.mark.parametrize("t", [0.1, 0.05, 0.5])
def test_the_power_path_is_as_accurate_as_exp_log(t):
    """(1 + r)^(-1/t) by multiplications and exp(-log(1 + r)/t) in float32 are as close to float64
    arithmetic on the same inputs (a wrong power would be off by far more)."""
    logits, y, U = _inputs(B=200, M=50, K=8, dtype=torch.float64, seed=3)
    logp = logits.log_softmax(-1)
    idx = y.argmax(-1)
    l32, u32 = logp.float(), U.float()
    exact = grmc._weights(l32.double(), idx, u32.double(), torch.tensor(-1 / t, dtype=torch.float64), 0, True)
    coef = torch.tensor(-1 / t)
    by_pow = grmc._weights(l32, idx, u32, coef, grmc.power_of(t), True).double()
    by_exp = grmc._weights(l32, idx, u32, coef, 0, True).double()
    err_pow, err_exp = (by_pow - exact).abs().max().item(), (by_exp - exact).abs().max().item()
    assert err_pow <= 1.5 * err_exp + 1e-7 and err_pow < 1e-5, (err_pow, err_exp)


def test_compiled_kernel_serves_every_chunk_and_view_without_recompiling(monkeypatch):
    """Chunks of different sizes, and inputs that are views of tensors of different sizes, reuse one
    compiled kernel per (M, K, power). (A GPU run of an earlier version recompiled for each new view
    base until dynamo's recompile limit, then silently ran eagerly.) With ``error_on_recompile`` a
    recompilation raises inside the kernel call, the caller falls back to the plain path and the
    compiled kernel is dropped: the test sees that."""
    if not rng.compile_enabled() or rng.compiled("grmc_weights", grmc._weights, dynamic=None) is None:
        pytest.skip("no compiler here")
    monkeypatch.setattr(grmc, "FUSED_MIN_ELEMENTS", 1000)
    M, K = 30, 8
    big_logits, big_y, _ = _counter_inputs(1, 400, M, K)
    big_logp, big_y = big_logits[0], big_y[0]
    U = torch.rand(400, M, K).clamp_min(1e-7)
    for p_t in (0.1, 0.3):  # warm up: the first call of each configuration compiles
        grmc.moments(big_logp[:10], big_y[:10], U[:10], p_t, uniform=True, fused=True)
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    # config.patch, not monkeypatch: undoing a monkeypatch deletes the option from dynamo's config
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (10, 13, 64, 200, 399):
            for t in (0.1, 0.3, 0.7):  # 0.3 and 0.7: the same kernel (t is a tensor input)
                lp = big_logp[400 - rows:]  # a view with an offset
                noise = U.transpose(0, 1).contiguous().transpose(0, 1)[:rows]  # a view of a permuted base
                if t == 0.7:  # a contiguous view of the start of a larger tensor (passed without a copy)
                    noise = U.reshape(-1)[: rows * M * K].view(rows, M, K)
                a = grmc.moments(lp, big_y[400 - rows:], noise, t, uniform=True, fused=True)
                b = grmc.moments(lp.clone(), big_y[400 - rows:].clone(), noise.clone(), t, uniform=True,
                                 fused=False)
                assert_close(a, b, rtol=2e-5, atol=1e-6)
    assert rng.KERNELS.kernels.get("grmc_weights") is not None, "the kernel recompiled and was dropped"
    assert counters["stats"]["unique_graphs"] == graphs  # no new compilation


def test_the_compiled_kernel_compiles_once_per_power_across_the_papers_t_grid(monkeypatch):
    """The Fig. 1 sweep's temperatures (biasvar.presets): t is a tensor input of the compiled weights,
    so every t whose 1/t is not whole shares one compilation, and the whole grid needs one per
    distinct power (here 1/t = 100, 1, other) -- no recompilation from one t to the next (dynamo's
    recompile limit would otherwise turn the kernel eager midway through a sweep)."""
    if not rng.compile_enabled() or rng.compiled("grmc_weights", grmc._weights, dynamic=None) is None:
        pytest.skip("no compiler here")
    from torch._dynamo.utils import counters

    from biasvar.presets import preset_specs
    from biasvar.spec import parse_spec

    ts = sorted({float(parse_spec(s)["t"]) for s in preset_specs("fig1")[1] if s.startswith("gr-mc")})
    assert len(ts) >= 8 and {grmc.power_of(t) for t in ts} == {100, 1, 0}
    monkeypatch.setattr(grmc, "FUSED_MIN_ELEMENTS", 1000)
    monkeypatch.setattr(grmc, "BLOCK_ELEMENTS", 1 << 14)
    M, K = 20, 16
    logp, y, ctr = _counter_inputs(2, 120, M, K)
    for t in (0.01, 1.0, 0.3):  # one call per power: the compilations the grid needs
        grmc.counter_moments(logp, y, ctr, t, M, native=False)
    graphs = counters["stats"]["unique_graphs"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t in ts:
            S, C = grmc.counter_moments(logp, y, ctr, t, M, native=False)
            assert torch.isfinite(C).all()
    assert rng.KERNELS.kernels.get("grmc_weights") is not None, "the kernel recompiled and was dropped"
    assert counters["stats"]["unique_graphs"] == graphs  # no new compilation


def test_gr_mc_takes_its_noise_as_an_address_or_as_the_uniforms():
    """The estimator given the address (the engine) or the same uniforms drawn by the caller
    (``rng.MATERIALIZE``, e.g. a study with its own generator) gives the same sample and gradient."""
    est = build("gr-mc(t=0.3,M=20)")
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 3, 5, generator=g)
    G = rng.gumbel_from_uniform(torch.rand(6, 3, 5, generator=g))
    ctr = rng.counter_noise((5, 6), torch.tensor([9]), 30, 6 * 3 * 20 * 5)[0]
    U = rng.counter_uniforms(ctr).reshape(6, 3, 20, 5)
    w = torch.randn(6, 3, 5, generator=g)
    out = []
    for E in (ctr, U):
        lg = logits.clone().requires_grad_(True)
        y = est(lg, {"G": G, "E": E})
        out.append((y.detach(), torch.autograd.grad((y * w).sum(), lg)[0]))
    assert torch.equal(out[0][0], out[1][0])
    assert_close(out[0][1], out[1][1], rtol=1e-5, atol=1e-6)
    assert rng.MATERIALIZE[rng.COUNTER] is rng.TRANSFORMS["uniform"]
