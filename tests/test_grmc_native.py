"""GR-MC's native CPU kernel (biasvar.estimators.grmc_native): the same moments as float64 arithmetic
on the same counter uniforms (as close as the torch path), for the power, square-root and exp/log
forms of the weights and for K equal to or unlike the vector width; the same bits for a draw in any
call and with any number of threads; the other instruction sets it builds for agree."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from biasvar import rng
from biasvar.estimators import grmc, grmc_native
from biasvar.estimators.categorical import sample_onehot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def native():
    fn = grmc_native.kernel()
    if fn is None:
        pytest.skip("no C++ compiler here: the torch path answers")
    return fn


def _inputs(n=2, R=60, M=40, K=16, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, R, K, generator=g)
    y = sample_onehot(logits, -torch.log(-torch.log(torch.rand(n, R, K, generator=g))))
    ctr = rng.counter_noise((21, 22), torch.arange(7, 7 + n), 96, R * M * K)
    return logits.log_softmax(-1), y, ctr


@pytest.mark.parametrize("K", [16, 6])
@pytest.mark.parametrize("t", [0.1, 2.0, 0.0376, 0.01, 0.7])  # v^-10, 1/sqrt(v), exp/log (underflowing), v^-100
def test_native_moments_are_as_close_to_float64_as_the_torch_path(native, t, K):
    n, R, M = 2, 60, 40
    logp, y, ctr = _inputs(n, R, M, K)
    S, C = grmc.counter_moments(logp, y, ctr, t, M, native=True)
    S1, C1 = grmc.counter_moments(logp, y, ctr, t, M, native=False)
    U = rng.counter_uniforms(ctr).reshape(n * R, M, K).double()  # the same float32 numbers, in float64
    S0, C0 = grmc.moments(logp.reshape(n * R, K).double(), y.reshape(n * R, K).double(), U, t, uniform=True)
    for got, torch_path, exact in ((S, S1, S0), (C, C1, C0)):
        err = (got.reshape(exact.shape).double() - exact).abs().max().item()
        ref = (torch_path.reshape(exact.shape).double() - exact).abs().max().item()
        assert err <= 2 * ref + 1e-7 and err < 1e-5, (err, ref)
    assert_close(S.sum(-1), torch.ones(n, R))


def test_a_draw_is_the_same_bits_alone_in_a_call_and_with_threads(native, monkeypatch):
    logp, y, ctr = _inputs(3, 50, 30, 16, seed=1)
    S, C = grmc.counter_moments(logp, y, ctr, 0.3, 30, native=True)
    for i in range(3):
        Si, Ci = grmc.counter_moments(logp[i:i + 1], y[i:i + 1], ctr[i:i + 1], 0.3, 30, native=True)
        assert torch.equal(Si[0], S[i]) and torch.equal(Ci[0], C[i])
    monkeypatch.setattr(grmc_native, "MIN_ROWS_PER_THREAD", 4)
    torch.set_num_threads(3)
    try:
        S3, C3 = grmc.counter_moments(logp, y, ctr, 0.3, 30, native=True)
    finally:
        torch.set_num_threads(1)
    assert torch.equal(S3, S) and torch.equal(C3, C)


def test_extreme_logits_give_finite_moments(native):
    """p_k = 0 in floating point gives weight 0, not NaN; huge weights stay finite."""
    logits = torch.tensor([[[90.0, -90.0, 0.0, 89.0], [-200.0, 200.0, 199.0, 0.0]]])
    y = sample_onehot(logits, torch.zeros_like(logits))
    ctr = rng.counter_noise((1, 2), torch.arange(1), 0, 2 * 64 * 4)
    for t in (0.01, 0.0376, 2.0):
        S, C = grmc.counter_moments(logits.log_softmax(-1), y, ctr, t, 64, native=True)
        assert torch.isfinite(S).all() and torch.isfinite(C).all()
        assert_close(S.sum(-1), torch.ones(1, 2))


@pytest.mark.parametrize("t, twice", [(0.1, 20), (2.0, 1), (0.5, 4), (1.0, 2), (0.01, 200), (2 / 3, 3), (0.3, 0),
                                      (0.0376, 0), (1e-3, 0), (4.0, 0)])
def test_whole_or_half_inverse_temperatures_use_products(t, twice):
    assert grmc_native.twice_power_of(t, grmc.MAX_POWER) == twice


@pytest.mark.parametrize("cap", ["AVX2", "DEFAULT"])
def test_the_other_instruction_sets_agree(native, cap):
    """The AVX2 and portable builds (what other CPUs get) give the moments of this CPU's build."""
    here = grmc_native.capability()
    if cap == here or (cap == "AVX2" and here != "AVX512"):
        pytest.skip(f"{cap} is this CPU's build, or not runnable here ({here})")
    fn = grmc_native.kernel(cap)
    assert fn is not None, f"the {cap} build failed"
    logp, y, ctr = _inputs(1, 40, 30, 16, seed=2)
    idx = y.argmax(-1)
    for t in (0.1, 2.0, 0.3):
        out = []
        for f in (native, fn):
            S, C = torch.empty(1, 40, 16), torch.empty(1, 40, 16, 16)
            grmc_native.counter_rows(f, logp, idx, [int(ctr[0, 0])], int(ctr[0, 1]), t, 30,
                                     grmc_native.twice_power_of(t, grmc.MAX_POWER), S, C)
            out.append((S, C))
        assert_close(out[0], out[1], rtol=1e-5, atol=1e-7)


def test_compile_switch_off_means_the_torch_path(monkeypatch):
    monkeypatch.setenv("BIASVAR_COMPILE", "0")
    assert grmc_native.kernel() is None
    logp, y, ctr = _inputs(1, 10, 8, 6)
    with pytest.raises(RuntimeError, match="native CPU kernel"):
        grmc.counter_moments(logp, y, ctr, 0.1, 8, native=True)
    S, C = grmc.counter_moments(logp, y, ctr, 0.1, 8)  # the torch path answers
    assert_close(S.sum(-1), torch.ones(1, 10))


def test_a_forked_child_splits_rows_across_threads_again(native, monkeypatch):
    """The row threads do not survive a fork: a child (ray and multiprocessing workers) gets a new pool
    instead of waiting forever on the parent's."""
    import multiprocessing as mp

    monkeypatch.setattr(grmc_native, "MIN_ROWS_PER_THREAD", 4)
    logp, y, ctr = _inputs(1, 40, 10, 16, seed=3)
    torch.set_num_threads(2)
    try:
        S, _ = grmc.counter_moments(logp, y, ctr, 0.3, 10, native=True)  # the parent's pool now exists
        ctx = mp.get_context("fork")
        q = ctx.Queue()

        def child():
            torch.set_num_threads(2)  # (a forked child may start with one)
            q.put(grmc.counter_moments(logp, y, ctr, 0.3, 10, native=True)[0].tolist())

        p = ctx.Process(target=child)
        p.start()
        p.join(60)
        alive = p.is_alive()
        if alive:
            p.kill()
    finally:
        torch.set_num_threads(1)
    assert not alive, "the child waited on the parent's threads"
    assert torch.equal(torch.tensor(q.get(timeout=10)), S)
