"""The no-gradient core of GR-MC (Eq. 9) in closed form: M conditional samples cost one pass.

GR-MC's surrogate is ``d = mean_m softmax((logp + sg(G_m)) / t)`` with ``G_m ~ G | x``. Its value
(at the current ``logp``) is ``S = mean_m s_m`` with ``s_m = softmax(z_m / t)``, ``z_m`` the
conditional perturbed logits, and its Jacobian in ``logp`` is the symmetric

    J = (diag(S) - C) / t,   C = mean_m s_m s_m^T,

so ``d = S + (logp - sg(logp)) J`` has the same value and the same gradient as the M-sample
softmax, while autograd only sees [..., K] and [..., K, K] tensors instead of [..., M, K].

The samples need no logarithm of a Gumbel: with ``E ~ Exp(1)`` [..., M, K] and ``x`` the sampled
class, ``z_x = -log E_x`` is the maximum and, for ``k != x``, ``z_k - z_x = -log1p(E_k / (p_k E_x))``
(the truncated-Gumbel construction), so ``s_m`` is ``w / sum(w)`` with ``w_x = 1`` and
``w_k = exp(-log1p(r_k) / t)``, ``r_k = E_k / (p_k E_x)``: finite for any logits (``p_k = 0``
gives ``w_k = 0``), no max-subtraction needed.

:func:`grmc_moments` (noise given as a tensor) and :func:`grmc_counter_moments` (noise given by its
address, the engine's path) are ``torch.library`` custom ops with vmap rules, so the engine's
``vmap(grad(...))`` calls them once per chunk on plain tensors. The counter op generates a draw's
conditional uniforms itself (:func:`biasvar.rng.counter_uniforms`, the same bits as the noise kind
``"uniform"``), :data:`BLOCK_ELEMENTS` numbers at a time, and reduces each block to its rows'
``(S, C)`` before making the next: the M x K numbers per variable (20 MB for a Fig. 1 draw) never
exist for a whole draw, let alone a chunk, so GR-MC's chunks are sized like any other estimator's.
Blocks of at least :data:`FUSED_MIN_ELEMENTS` numbers run through ``torch.compile``d kernels (M and
K fixed in the code, the row count symbolic, ``t`` a tensor input: one compilation per (M, K, power)),
smaller ones (and any machine without a compiler) through the same formulas in plain torch ops;
the two agree to float rounding. A draw's blocks depend only on its shape, so its numbers are the
same bits in any chunk. When ``1/t`` is a whole number (t = 0.1: 10), ``w = (1 + r)^(-1/t)`` is
computed by repeated squaring (:func:`power_of`), about half the kernel's time of ``exp``/``log``
on the CPU, equal to float rounding.

On the CPU in float32 the counter op runs instead through a native kernel
(:mod:`biasvar.estimators.grmc_native`, built once per machine where a C++ compiler is found): the
same uniforms, weights and moments in one pass per row, C accumulated in registers, products also
for half-whole ``1/t`` (t = 2: ``1/sqrt``); 2.5x faster than the compiled torch path on a Fig. 1
draw. The torch path above stays for CUDA, float64, and machines without a compiler.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from biasvar import rng
from biasvar.errors import ShapeError
from biasvar.estimators import grmc_native

FUSED_MIN_ELEMENTS = 1 << 18  # noise numbers per block from which the compiled kernel is used
BLOCK_ELEMENTS = 1 << 20  # counter noise: numbers generated and consumed per block (4 MB: cache, no page faults)
MAX_POWER = 128  # 1/t up to this integer: w = (1 + r)^(-1/t) by multiplications


def power_of(t: float) -> int:
    """``1/t`` when it is a whole number in [1, :data:`MAX_POWER`] (t = 0.1 gives 10), else 0.

    Then ``w = (1 + r)^(-1/t)`` is computed by repeated squaring, with no logarithm or exponential;
    it equals ``exp(-log(1 + r) / t)`` to float rounding (both lose ``1/t`` ulps to the rounding of
    ``1 + r``; the products lose at most a few more).
    """
    inv = 1.0 / float(t)
    p = round(inv)
    return int(p) if p == inv and 1 <= p <= MAX_POWER else 0


def _inv_power(v: Tensor, p: int) -> Tensor:
    """``v^(-p)`` for a whole ``p >= 1`` by repeated squaring (``inf`` powers give 0)."""
    acc, sq = None, v
    while p:
        if p & 1:
            acc = sq if acc is None else acc * sq
        p >>= 1
        if p:
            sq = sq * sq
    return 1 / acc


def _weights(logp: Tensor, idx: Tensor, noise: Tensor, coef: Tensor, p: int, uniform: bool) -> Tensor:
    """s [B, M, K] (each row sums to 1) from logp [B, K], the sampled class idx [B] and noise [B, M, K].

    ``coef`` = -1/t (a 0-dim tensor, so a new t is not a new compilation); ``p`` = 1/t when it is a
    whole number (:func:`power_of`), else 0.
    """
    E = -torch.log(noise) if uniform else noise
    Ex = torch.gather(E, -1, idx[:, None, None].expand(-1, E.shape[1], 1))  # [B, M, 1]
    r = E * (torch.exp(-logp).unsqueeze(-2) / Ex)  # E_k / (p_k E_x)
    # log(1 + r), not log1p: its absolute error (~1 ulp of 1) is below what the M-sample softmax
    # of the perturbed logits loses to rounding, and it is several times cheaper
    w = _inv_power(1 + r, p) if p else torch.exp(torch.log(1 + r) * coef)
    w = torch.where(torch.arange(E.shape[-1], device=E.device) == idx[:, None, None], 1.0, w)
    return w / w.sum(-1, keepdim=True)


def _moments_idx(logp: Tensor, idx: Tensor, noise: Tensor, t: float, uniform: bool,
                 fused: bool) -> tuple[Tensor, Tensor]:
    p = power_of(t)
    coef = torch.tensor(-1.0 / float(t), dtype=noise.dtype, device=noise.device)
    s = None
    if fused:  # M and K fixed in the compiled code, the row count symbolic: one compilation per (M, K, p)
        s = rng._call_compiled("grmc_weights", _weights, logp, idx, noise, coef, p, bool(uniform), dynamic=None,
                               dynamic_dims={0: (0,), 1: (0,), 2: (0,)})
    if s is None:
        s = _weights(logp, idx, noise, coef, p, bool(uniform))
    C = torch.matmul(s.transpose(-1, -2), s).div_(s.shape[-2])  # [B, K, K]
    return C.sum(-1), C  # rows of s sum to 1, so the rows of C sum to S


def moments(logp: Tensor, y: Tensor, noise: Tensor, t: float, *, uniform: bool = False,
            fused: bool = False) -> tuple[Tensor, Tensor]:
    """``(S, C)`` [B, K], [B, K, K] for logp, one-hot y [B, K] and noise [B, M, K] (plain tensors).

    ``fused``: the weights through the compiled kernel where available (same formulas).
    """
    return _moments_idx(logp, y.argmax(-1), noise, t, uniform, fused)


def counter_moments(logp: Tensor, y: Tensor, counter: Tensor, t: float, M: int, *,
                    native: bool | None = None) -> tuple[Tensor, Tensor]:
    """``(S, C)`` [n, R, K], [n, R, K, K] for logp, one-hot y [n, R, K] and the addresses [n, 3] of
    each draw's R x M x K conditional uniforms (:func:`biasvar.rng.counter_noise`).

    The uniforms are generated here. On the CPU in float32 the native kernel
    (:mod:`biasvar.estimators.grmc_native`) does a row at a time in one pass (``native``: None = where
    it can be built, False = never, True = required); otherwise a block of at most
    :data:`BLOCK_ELEMENTS` numbers at a time, each block turned into its rows' moments before the next
    is made. A draw's rows and blocks depend only on R, M and K, so its numbers are the same bits
    whatever the number n of draws in the call.
    """
    n, R, K = logp.shape
    ctr = counter.reshape(n, 3)
    numel = R * int(M) * K
    if n and not bool((ctr[:, 2] == numel).all()):
        raise ShapeError(f"gr-mc: {int(ctr[0, 2])} conditional noise numbers per draw for {R} x {M} x {K}")
    idx = y.argmax(-1)
    S = logp.new_empty(n, R, K)
    C = logp.new_empty(n, R, K, K)
    fn = None
    if native is not False and logp.device.type == "cpu" and logp.dtype == torch.float32:
        fn = grmc_native.kernel()
    if native and fn is None:
        raise RuntimeError("gr-mc: the native CPU kernel is not available here (float32 on a CPU, a C++ compiler)")
    if fn is not None and n:
        twice = grmc_native.twice_power_of(t, MAX_POWER)
        words, offsets = ctr[:, 0].tolist(), ctr[:, 1].tolist()
        # draws of one request share the element offset: one call, each row's element words made once
        groups = [range(n)] if len(set(offsets)) == 1 else [range(i, i + 1) for i in range(n)]
        for g in groups:
            grmc_native.counter_rows(fn, logp[g.start:g.stop], idx[g.start:g.stop], words[g.start:g.stop],
                                     int(offsets[g.start]), t, int(M), twice, S[g.start:g.stop], C[g.start:g.stop])
        return S, C
    rows = max(1, BLOCK_ELEMENTS // (int(M) * K))
    for i in range(n):
        for r0 in range(0, R, rows):
            r1 = min(R, r0 + rows)
            b = (r1 - r0) * M * K
            fused = b >= FUSED_MIN_ELEMENTS  # by the block's size alone: the same kernels in any chunk
            U = rng.counter_uniforms(ctr[i], start=r0 * M * K, count=b, dtype=logp.dtype, fused=fused or None)
            S[i, r0:r1], C[i, r0:r1] = _moments_idx(logp[i, r0:r1], idx[i, r0:r1], U.view(r1 - r0, M, K), t, True,
                                                    fused)
    return S, C


@torch.library.custom_op("biasvar::grmc_moments", mutates_args=())
def grmc_moments(logp: Tensor, y: Tensor, noise: Tensor, t: float, uniform: bool,
                 fused: bool) -> tuple[Tensor, Tensor]:
    """``(S, C)`` of GR-MC for logp, y [..., K] and noise [..., M, K] (Exp(1), or U(0,1) if ``uniform``)."""
    K, M = noise.shape[-1], noise.shape[-2]
    lead = noise.shape[:-2]
    lp = logp.detach().expand(*lead, K).reshape(-1, K)
    yy = y.detach().expand(*lead, K).reshape(-1, K)
    S, C = moments(lp, yy, noise.detach().reshape(-1, M, K), t, uniform=uniform, fused=fused)
    return S.reshape(*lead, K), C.reshape(*lead, K, K)


@grmc_moments.register_fake
def _(logp, y, noise, t, uniform, fused):
    lead, K = noise.shape[:-2], noise.shape[-1]
    return noise.new_empty((*lead, K)), noise.new_empty((*lead, K, K))


@grmc_moments.register_vmap
def _(info, in_dims, logp, y, noise, t, uniform, fused):
    size = info.batch_size

    def front(x: Tensor, d: int | None) -> Tensor:
        return x.unsqueeze(0).expand(size, *x.shape) if d is None else x.movedim(d, 0)

    ld, yd, nd = in_dims[:3]
    noise_b = front(noise, nd)
    lead = noise_b.shape[:-2]
    K = noise_b.shape[-1]
    logp_b, y_b = front(logp, ld), front(y, yd)
    S, C = grmc_moments(logp_b.expand(*lead, K), y_b.expand(*lead, K), noise_b, t, uniform, fused)
    return (S, C), (0, 0)


@torch.library.custom_op("biasvar::grmc_counter_moments", mutates_args=())
def grmc_counter_moments(logp: Tensor, y: Tensor, counter: Tensor, t: float, M: int) -> tuple[Tensor, Tensor]:
    """``(S, C)`` of GR-MC for logp, y [n, R, K] and counter noise [n, 3] (:func:`counter_moments`)."""
    return counter_moments(logp.detach(), y.detach(), counter, t, M)


@grmc_counter_moments.register_fake
def _(logp, y, counter, t, M):
    n, R, K = logp.shape
    return logp.new_empty((n, R, K)), logp.new_empty((n, R, K, K))


@grmc_counter_moments.register_vmap
def _(info, in_dims, logp, y, counter, t, M):
    size = info.batch_size

    def front(x: Tensor, d: int | None) -> Tensor:
        return x.unsqueeze(0).expand(size, *x.shape) if d is None else x.movedim(d, 0)

    lp, yy, ctr = (front(x, d) for x, d in zip((logp, y, counter), in_dims[:3], strict=True))
    n, R, K = lp.shape[1:]
    S, C = grmc_counter_moments(lp.reshape(size * n, R, K), yy.reshape(size * n, R, K),
                                ctr.reshape(size * n, 3), t, M)
    return (S.reshape(size, n, R, K), C.reshape(size, n, R, K, K)), (0, 0)


def _surrogate(logp: Tensor, S: Tensor, C: Tensor, t: float) -> Tensor:
    """``S + delta J`` with ``J = (diag(S) - C) / t`` and ``delta = logp - sg(logp)`` (value 0), written
    without forming J: ``(S delta - delta C) / t``, one [..., K, K] product each way."""
    delta = logp - logp.detach()  # value 0, gradient: identity in logp
    # a [1, K] x [K, K] product per row: under vmap (delta shared by the draws, C per draw) the
    # elementwise form broadcast delta along both C's last axis and the draws, several times slower
    return S + (S * delta - torch.matmul(delta.unsqueeze(-2), C).squeeze(-2)) / t


def gr_mc_counter_surrogate(logp: Tensor, y: Tensor, counter: Tensor, t: float, M: int) -> Tensor:
    """:func:`gr_mc_surrogate` with the conditional noise given by its address.

    ``counter``: int64 [*D, 3] (:func:`biasvar.rng.counter_noise`), one row per draw; ``logp`` and
    ``y`` are [*D, *L, K] and each row addresses its draw's uniforms [*L, M, K] in the request's
    element order, generated inside the kernel. In the engine D is empty (one draw; under vmap the
    draws are the batch).
    """
    D = counter.shape[:-1]
    if counter.shape[-1:] != (3,) or logp.shape[:len(D)] != D:
        raise ShapeError(f"gr-mc: counter noise [*D, 3] for logits [*D, ..., K], got {list(counter.shape)} "
                         f"and {list(logp.shape)}")
    K = logp.shape[-1]
    n, R = math.prod(D), math.prod(logp.shape[len(D):-1])
    yb = y.detach().expand(logp.shape)
    S, C = grmc_counter_moments(logp.detach().reshape(n, R, K), yb.reshape(n, R, K), counter.reshape(n, 3),
                                float(t), int(M))
    return _surrogate(logp, S.reshape(logp.shape), C.reshape(*logp.shape, K), t)


def gr_mc_surrogate(logp: Tensor, y: Tensor, noise: Tensor, t: float, *, uniform: bool = False) -> Tensor:
    """``d`` of GR-MC with the value S and the Jacobian (diag(S) - C) / t in ``logp`` (see the module doc)."""
    lead = torch.broadcast_shapes(logp.shape[:-1], noise.shape[:-2])
    K = logp.shape[-1]
    # the kernel is chosen by the noise of ONE draw (under vmap, noise.shape is per draw), so a
    # draw's arithmetic does not depend on the chunk it is computed in
    fused = noise.numel() >= FUSED_MIN_ELEMENTS
    S, C = grmc_moments(logp.detach().expand(*lead, K), y.detach().expand(*lead, K), noise.detach(), float(t),
                        bool(uniform), fused)
    return _surrogate(logp, S, C, t)
