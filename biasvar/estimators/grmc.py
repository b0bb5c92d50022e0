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

:func:`grmc_moments` is a ``torch.library`` custom op with a vmap rule, so the engine's
``vmap(grad(...))`` calls it once per chunk on plain tensors; requests of at least
:data:`FUSED_MIN_ELEMENTS` noise numbers per draw run through a ``torch.compile``d kernel (one
pass over the noise) when one is available, smaller ones (and any machine without a compiler)
through the same formulas in plain torch ops. The two agree to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from biasvar import rng

FUSED_MIN_ELEMENTS = 1 << 18  # noise numbers per draw from which the compiled kernel is used


def _weights(logp: Tensor, idx: Tensor, noise: Tensor, t: float, uniform: bool) -> Tensor:
    """s [B, M, K] (each row sums to 1) from logp [B, K], the sampled class idx [B] and noise [B, M, K]."""
    E = -torch.log(noise) if uniform else noise
    Ex = torch.gather(E, -1, idx[:, None, None].expand(-1, E.shape[1], 1))  # [B, M, 1]
    r = E * (torch.exp(-logp).unsqueeze(-2) / Ex)  # E_k / (p_k E_x)
    # log(1 + r), not log1p: its absolute error (~1 ulp of 1) is below what the M-sample softmax
    # of the perturbed logits loses to rounding, and it is several times cheaper
    w = torch.exp(torch.log(1 + r) * (-1.0 / t))
    w = torch.where(torch.arange(E.shape[-1], device=E.device) == idx[:, None, None], 1.0, w)
    return w / w.sum(-1, keepdim=True)


def moments(logp: Tensor, y: Tensor, noise: Tensor, t: float, *, uniform: bool = False,
            fused: bool = False) -> tuple[Tensor, Tensor]:
    """``(S, C)`` [B, K], [B, K, K] for logp, one-hot y [B, K] and noise [B, M, K] (plain tensors).

    ``fused``: the weights through the compiled kernel where available (same formulas).
    """
    idx = y.argmax(-1)
    s = None
    if fused:
        s = rng._call_compiled(f"grmc_weights_{bool(uniform)}", _weights, logp, idx, noise, float(t), bool(uniform))
    if s is None:
        s = _weights(logp, idx, noise, float(t), bool(uniform))
    C = torch.matmul(s.transpose(-1, -2), s).div_(s.shape[-2])  # [B, K, K]
    return C.sum(-1), C  # rows of s sum to 1, so the rows of C sum to S


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


def gr_mc_surrogate(logp: Tensor, y: Tensor, noise: Tensor, t: float, *, uniform: bool = False) -> Tensor:
    """``d`` of GR-MC with the value S and the Jacobian (diag(S) - C) / t in ``logp`` (see the module doc)."""
    lead = torch.broadcast_shapes(logp.shape[:-1], noise.shape[:-2])
    K = logp.shape[-1]
    # the kernel is chosen by the noise of ONE draw (under vmap, noise.shape is per draw), so a
    # draw's arithmetic does not depend on the chunk it is computed in
    fused = noise.numel() >= FUSED_MIN_ELEMENTS
    S, C = grmc_moments(logp.detach().expand(*lead, K), y.detach().expand(*lead, K), noise.detach(), float(t),
                        bool(uniform), fused)
    J = (torch.diag_embed(S) - C) / t  # [..., K, K], symmetric
    delta = logp - logp.detach()  # value 0, gradient: identity in logp
    return S + (delta.unsqueeze(-1) * J).sum(-2)  # elementwise: tiny batched matmuls are slow on the CPU
