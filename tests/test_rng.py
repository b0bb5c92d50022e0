"""The counter-based noise stream: its contract (a pure function of the address, bit-identical
across chunkings, shards, element ranges, thread counts and implementations) and its statistics.

The statistical suite runs on the real stream and on deliberately broken variants of the same
construction (a constant draw key, a dropped mix round, a float64 path without its second word):
each broken variant must fail it, so the suite is shown to have power, not just to pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from biasvar import rng

pytestmark = pytest.mark.usefixtures("one_thread")

M32 = 0xFFFFFFFF
KEY = rng.stream_key(7, "zgr")


# ------------------------------------------------------------------ reference implementation
def mix(x: torch.Tensor, rounds: int = 2) -> torch.Tensor:
    """lowbias32 on int64 holding [0, 2^32); ``rounds`` < 2 drops multiply rounds (broken variants)."""
    x = x ^ (x >> 16)
    if rounds >= 1:
        x = (x * 0x7FEB352D) & M32
        x = x ^ (x >> 15)
    if rounds >= 2:
        x = (x * 0x846CA68B) & M32
        x = x ^ (x >> 16)
    return x


def reference_hd(key, draws):
    draws = torch.as_tensor(draws, dtype=torch.int64)
    lo, hi = draws & M32, (draws >> 32) & M32
    h = mix(hi ^ 0x9E3779B9)
    h = mix(lo ^ h)
    h = mix(h ^ key[0])
    return mix(h ^ key[1])


def reference(key, draws, numel, *, offset=0, dtype=torch.float32, final_rounds=2, constant_draw=False,
              f64_second_word=True, words=False):
    """The documented construction, written plainly in int64 (the specification the fast code must match).

    ``words``: return the 32-bit words instead of uniforms. The other options break it on purpose.
    """
    draws = torch.as_tensor(draws, dtype=torch.int64)
    hd = reference_hd(key, torch.zeros_like(draws) if constant_draw else draws)
    he = mix((torch.arange(offset, offset + numel, dtype=torch.int64) & M32) ^ 0x85EBCA6B)
    a = mix(hd[:, None] ^ he[None, :], final_rounds)
    if words:
        return a
    if dtype == torch.float64:
        b = mix(a ^ 0xC2B2AE35) if f64_second_word else torch.zeros_like(a)
        u = (((a << 21) | (b >> 11)).to(torch.float64) + 0.5) * 2.0**-53
    else:
        u = ((a >> 8).to(torch.float32) + 0.5) * 2.0**-24
    return u.clamp_(max=1.0 - torch.finfo(u.dtype).eps / 2)


# ------------------------------------------------------------------ the contract
DRAWS = [torch.arange(6), torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40 + 3, 2**63 - 1])]


@pytest.mark.parametrize("draws", DRAWS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [False, True])
def test_stream_is_the_reference_bit_for_bit(draws, dtype, fused):
    """Plain int32 path and fused kernel both give the reference's bits (float32: the same as ever)."""
    for offset, numel in [(0, 1000), (123_456, 777), (2**31 - 5, 5)]:
        want = reference(KEY, draws, numel, offset=offset, dtype=dtype)
        got = rng.uniforms(KEY, draws, numel, offset=offset, dtype=dtype, fused=fused)
        assert got.dtype == dtype and got.shape == (len(draws), numel)
        assert torch.equal(got, want), (offset, numel)


def test_fused_and_plain_agree_on_a_large_request():
    """Above COMPILE_MIN_ELEMENTS the fused kernel is the default; it gives the plain path's bits."""
    draws = torch.arange(3) + 10**9
    a = rng.uniforms(KEY, draws, 600_000, offset=51_200)
    b = rng.uniforms(KEY, draws, 600_000, offset=51_200, fused=False)
    assert torch.equal(a, b)


def test_compile_failure_falls_back_to_the_same_bits(monkeypatch):
    """No compiler, a failing compile, or BIASVAR_COMPILE=0: same numbers through the plain path."""
    want = rng.uniforms(KEY, torch.arange(2), 5000, fused=False)
    monkeypatch.setattr(rng.KERNELS, "kernels", {})
    monkeypatch.setenv("BIASVAR_COMPILE", "0")
    assert rng.compiled("x", lambda t: t) is None
    assert torch.equal(rng.uniforms(KEY, torch.arange(2), 5000, fused=True), want)
    monkeypatch.setenv("BIASVAR_COMPILE", "1")

    def broken(*a, **k):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    assert torch.equal(rng.uniforms(KEY, torch.arange(2), 5000, fused=True), want)
    monkeypatch.setattr(rng.KERNELS, "kernels", {"uniforms_f32": lambda *a: (_ for _ in ()).throw(RuntimeError("x"))})
    assert torch.equal(rng.uniforms(KEY, torch.arange(2), 5000, fused=True), want)
    assert rng.KERNELS.kernels["uniforms_f32"] is None  # remembered: the plain path from now on


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunks_shards_and_element_ranges_give_the_same_numbers(dtype):
    """Draw i's numbers do not depend on which draws or which element range are requested with it."""
    full = rng.uniforms(KEY, torch.arange(100, 112), 3000, dtype=dtype)
    for lo, hi in [(0, 1), (3, 7), (7, 12)]:
        assert torch.equal(rng.uniforms(KEY, torch.arange(100 + lo, 100 + hi), 3000, dtype=dtype), full[lo:hi])
    shuffled = torch.tensor([111, 100, 105])
    assert torch.equal(rng.uniforms(KEY, shuffled, 3000, dtype=dtype), full[shuffled - 100])
    assert torch.equal(rng.uniforms(KEY, torch.arange(100, 112), 1000, offset=1500, dtype=dtype),
                       full[:, 1500:2500])


def test_thread_count_does_not_change_the_bits():
    a = rng.uniforms(KEY, torch.arange(4), 300_000, fused=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        b = rng.uniforms(KEY, torch.arange(4), 300_000, fused=False)
        c = rng.uniforms(KEY, torch.arange(4), 300_000, fused=True)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_lower_precisions_are_the_float32_numbers_rounded_and_below_one():
    u32 = rng.uniforms(KEY, torch.arange(3), 4096)
    for dt in (torch.float16, torch.bfloat16):
        u = rng.uniforms(KEY, torch.arange(3), 4096, dtype=dt)
        assert u.dtype == dt and (u > 0).all() and (u < 1).all()
        assert torch.equal(u, u32.to(dt).clamp_(max=1.0 - torch.finfo(dt).eps / 2))


def test_bad_element_range_is_refused():
    with pytest.raises(ValueError, match="element range"):
        rng.uniforms(KEY, torch.arange(1), 10, offset=2**31 - 5)


def test_transforms_are_exact_functions_of_the_uniforms():
    u = rng.uniforms(KEY, torch.arange(2), 1000)
    assert torch.equal(rng.TRANSFORMS["exponential"](u.clone()), -torch.log(u))
    assert torch.equal(rng.TRANSFORMS["gumbel"](u.clone()), -torch.log(-torch.log(u)))
    noise = rng.draw_noise({"z": {"G": ((4, 5), "gumbel"), "E": ((2, 4, 5), "uniform")}}, KEY, torch.arange(3))
    assert noise["z"]["E"].shape == (3, 2, 4, 5) and noise["z"]["G"].shape == (3, 4, 5)
    assert torch.equal(noise["z"]["E"].reshape(3, -1), rng.uniforms(KEY, torch.arange(3), 40))  # "E" sorts first
    assert torch.equal(noise["z"]["G"].reshape(3, -1), -torch.log(-torch.log(rng.uniforms(KEY, torch.arange(3), 20,
                                                                                           offset=40))))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_gives_the_cpu_bits(dtype):
    draws = DRAWS[1]
    cpu = rng.uniforms(KEY, draws, 70_000, offset=9, dtype=dtype)
    for fused in (False, True):
        assert torch.equal(rng.uniforms(KEY, draws.cuda(), 70_000, offset=9, dtype=dtype, fused=fused).cpu(), cpu)


# ------------------------------------------------------------------ the statistical suite
def _bits24(words: torch.Tensor) -> np.ndarray:
    """The top 24 bits of 32-bit words (what a float32 uniform is made of)."""
    return ((words.to(torch.int64) & M32) >> 8).numpy()


def _bit_balance_p(words: np.ndarray, nbits: int) -> float:
    """Chi-square over ``nbits`` bit positions of the count of ones (each ~ Bin(N, 1/2))."""
    n = words.size
    ones = np.array([((words >> b) & 1).sum() for b in range(nbits)], dtype=np.float64)
    z2 = ((ones - n / 2) ** 2 / (n / 4)).sum()
    return float(stats.chi2.sf(z2, nbits))


def _xor_hist_p(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square over 4096 bins of the top 12 bits of ``a ^ b`` (24-bit words): a differential test.

    Two independent words give a uniform XOR; a weak mix of inputs that differ by a fixed pattern
    (adjacent draws, elements, seeds) concentrates it on few differentials.
    """
    h = np.bincount(((a ^ b) >> 12).ravel(), minlength=4096)
    return float(stats.chisquare(h).pvalue)


def _pair_chi2_p(a: np.ndarray, b: np.ndarray, bins: int = 16) -> float:
    """Chi-square of independence and uniformity of the pairs (a, b) on a bins x bins grid."""
    h, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=bins, range=[[0, 1], [0, 1]])
    e = a.size / bins**2
    return float(stats.chi2.sf(((h - e) ** 2 / e).sum(), bins**2 - 1))


def suite(gen, *, draws: int = 64, numel: int = 16_384) -> dict[str, float]:
    """p-values of the suite on ``gen(key, draws, numel) -> 32-bit words [draws, numel]``.

    Bit-level tests on the top 24 bits; value tests on the uniforms (k + 1/2) 2^-24 they make.
    """
    key2 = rng.stream_key(8, "zgr")  # another seed
    key3 = rng.stream_key(7, "zgr(x)")  # another stream
    w = _bits24(gen(KEY, torch.arange(draws), numel))
    v = (w + 0.5) * 2.0**-24
    out = {
        "ks": float(stats.kstest(v.ravel(), "uniform").pvalue),
        "chi2_256": float(stats.chisquare(np.bincount(w.ravel() >> 16, minlength=256)).pvalue),
        "bits": _bit_balance_p(w, 24),
        "xor_adjacent_draws": _bit_balance_p(w[1:] ^ w[:-1], 24),
        "xor_adjacent_elements": _bit_balance_p(w[:, 1:] ^ w[:, :-1], 24),
        "xor_hist_adjacent_draws": _xor_hist_p(w[1:], w[:-1]),
        "xor_hist_adjacent_elements": _xor_hist_p(w[:, 1:], w[:, :-1]),
        "pairs_adjacent_draws": _pair_chi2_p(v[1:], v[:-1]),
        "pairs_adjacent_elements": _pair_chi2_p(v[:, 1:], v[:, :-1]),
    }
    for name, other in (("seeds", key2), ("streams", key3)):
        o = _bits24(gen(other, torch.arange(draws), numel))
        out[f"xor_{name}"] = _bit_balance_p(w ^ o, 24)
        out[f"xor_hist_{name}"] = _xor_hist_p(w, o)
        out[f"pairs_{name}"] = _pair_chi2_p(v, (o + 0.5) * 2.0**-24)
    # a correlation would show as a Pearson r of order 1/sqrt(N); test it as a z score
    n = v[1:].size
    for name, (a, b) in {"corr_draws": (v[1:], v[:-1]), "corr_elements": (v[:, 1:], v[:, :-1])}.items():
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        out[name] = float(2 * stats.norm.sf(abs(r) * np.sqrt(n)))
    return out


def test_the_stream_passes_the_suite():
    """Every p-value of the real stream is unremarkable (the stream is fixed, so this is deterministic),
    on the integer words and on the float32 uniforms themselves."""
    p = suite(lambda key, d, n: rng.bits(key, d, n))
    assert min(p.values()) > 1e-4, p
    u = rng.uniforms(KEY, torch.arange(64), 16_384).double().numpy()
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-4
    assert _pair_chi2_p(u[1:], u[:-1]) > 1e-4 and _pair_chi2_p(u[:, 1:], u[:, :-1]) > 1e-4
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)


def test_bits_are_the_reference_words():
    draws = DRAWS[1]
    want = mix(reference_hd(KEY, draws)[:, None] ^ mix((torch.arange(5, 905) & M32) ^ 0x85EBCA6B))
    assert torch.equal(rng.bits(KEY, draws, 900, offset=5).to(torch.int64) & M32, want)


@pytest.mark.parametrize("broken", [
    {"constant_draw": True},  # the draw index is not in the key
    {"final_rounds": 0},  # the per-element mix reduced to one xorshift
    {"final_rounds": 1},  # one multiply round dropped
])
def test_broken_generators_fail_the_suite(broken):
    p = suite(lambda key, d, n: reference(key, d, n, words=True, **broken))
    assert min(p.values()) < 1e-12, p


def test_the_real_stream_extremes():
    """Over 2^24 float32 numbers: none is 0 or 1, and the extremes are on the 24-bit grid."""
    u = rng.uniforms(KEY, torch.arange(64), 1 << 18)
    assert (u > 0).all() and (u < 1).all()
    assert float(u.min()) >= 2.0**-25 and float(u.max()) <= 1 - 2.0**-24
    assert float(u.min()) < 1e-6 and float(u.max()) > 1 - 1e-6  # reaches close to both ends


def test_float64_path_has_53_random_bits():
    """The 53-bit integers behind float64 uniforms: all 53 bits balanced (also the 21 low ones past a
    float32's reach), the values are off the float32 grid, and nothing is 0 or 1."""
    u = rng.uniforms(KEY, torch.arange(16), 16_384, dtype=torch.float64)
    assert (u > 0).all() and (u < 1).all()
    # from 1/2 up (and for the top bit's midpoint below) the last of the 53 bits is lost to round-to-even,
    # as in float32; test the 52 above it
    k = np.floor(u.numpy() * 2.0**53).astype(np.uint64) >> np.uint64(1)
    assert _bit_balance_p(k, 52) > 1e-4
    assert (u.float().double() != u).float().mean() > 0.99
    bad = reference(KEY, torch.arange(16), 16_384, dtype=torch.float64, f64_second_word=False)
    kb = np.floor(bad.numpy() * 2.0**53).astype(np.uint64) >> np.uint64(1)
    assert _bit_balance_p(kb, 52) < 1e-12  # the test has power: low bits that are always zero fail


def test_stream_keys_differ_by_seed_and_stream():
    keys = {rng.stream_key(s, st) for s in range(20) for st in ("zgr", "rf(M=4)", "gr-mc(t=0.1,M=100)")}
    assert len(keys) == 60
    assert rng.stream_key(3, "zgr") == rng.stream_key(3, "zgr")


# ---------------------------------------------------------------- counter noise (kind "counter")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [False, True])
def test_counter_uniforms_are_the_uniforms_bit_for_bit(dtype, fused):
    """An address (word, offset, numel) regenerates any sub-range of the draw's numbers exactly."""
    draws = torch.tensor([0, 5, 2**40 + 3, 2**63 - 1])
    ctr = rng.counter_noise(KEY, draws, 1000, 3000)
    assert ctr.shape == (4, 3) and ctr.dtype == torch.int64
    full = rng.uniforms(KEY, draws, 3000, offset=1000, dtype=dtype)
    assert torch.equal(rng.counter_uniforms(ctr, dtype=dtype, fused=fused), full)
    for start, count in ((0, 1), (7, 993), (2999, 1), (1500, 0)):
        part = rng.counter_uniforms(ctr, start=start, count=count, dtype=dtype, fused=fused)
        assert torch.equal(part, full[:, start:start + count])
    assert torch.equal(rng.counter_uniforms(ctr[2], start=10, count=5, dtype=dtype), full[2:3, 10:15])
    with pytest.raises(ValueError, match="outside"):
        rng.counter_uniforms(ctr, start=2999, count=2)


def test_draw_noise_hands_counter_kinds_their_address_at_the_same_offsets():
    """A counter request keeps its place in the layout: the other noise is unchanged, and the
    address regenerates exactly what kind "uniform" would have drawn."""
    req_u = {"z": {"G": ((4, 5), "gumbel"), "E": ((2, 4, 5), "uniform")}}
    req_c = {"z": {"G": ((4, 5), "gumbel"), "E": ((2, 4, 5), rng.COUNTER)}}
    draws = torch.arange(3, 9)
    a, b = rng.draw_noise(req_u, KEY, draws), rng.draw_noise(req_c, KEY, draws)
    assert torch.equal(a["z"]["G"], b["z"]["G"])
    assert b["z"]["E"].shape == (6, 3) and b["z"]["E"][:, 1:].tolist() == [[0, 40]] * 6
    assert torch.equal(rng.counter_uniforms(b["z"]["E"]).reshape(6, 2, 4, 5), a["z"]["E"])
    with pytest.raises(ValueError, match="share"):
        rng.counter_uniforms(torch.cat([b["z"]["E"][:1], rng.counter_noise(KEY, draws[:1], 7, 40)]))
