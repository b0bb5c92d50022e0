"""Plug-in gradient estimators for categorical variables (the paper's Sec. 2-3; docs/estimators.md).

Notation: logits ``eta`` [..., K]; ``logp = log_softmax(eta)``; ``p = exp(logp)``; ``y`` one-hot
[..., K]; ``sg`` = ``.detach()``. Every estimator returns a tensor whose **value** is what the
forward pass uses (``y``, or the relaxed sample for ``gs``) and whose **gradient** is the
estimator: ``y + (d - sg(d))`` for a surrogate ``d``. A model maps ``y`` to its embedding by a
fixed linear map (``y @ codes``), which keeps every formula exact for any embedding.

All functions work on any leading batch shape, in float32 and float64, on CPU and CUDA, and
under ``torch.func.vmap``: no data-dependent Python control flow, no ``.item()``, no
``F.one_hot``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from biasvar.estimators.grmc import gr_mc_counter_surrogate, gr_mc_surrogate


def sample_onehot(logits: Tensor, G: Tensor) -> Tensor:
    """One-hot ``y`` of ``x = argmax(logp + G)`` (Eq. 6), as a float tensor [..., K] without gradient.

    Uses argmax (first index on ties) and a comparison with ``arange``, so it is vmap-safe.
    """
    z = logits.detach().log_softmax(-1) + G
    idx = z.argmax(-1, keepdim=True)  # [..., 1]
    K = logits.shape[-1]
    return (torch.arange(K, device=logits.device) == idx).to(logits.dtype)


def _swap(y: Tensor, d: Tensor) -> Tensor:
    """Value of y (exactly: ``d - sg(d)`` is exactly 0), gradient of d."""
    return y + (d - d.detach())


def st_y(logits: Tensor, y: Tensor, t: float = 1.0) -> Tensor:
    """ST (Eq. 4) and temperatured ST(t) (Sec. 4.2): d = softmax(logp / t)."""
    logp = logits.log_softmax(-1)
    d = logp.exp() if t == 1.0 else (logp / t).softmax(-1)
    return _swap(y, d)


def darn_y(logits: Tensor, y: Tensor) -> Tensor:
    """DARN(phi_bar = p) (Eq. 5): d = (y - sg(p)) * log p(x)."""
    logp = logits.log_softmax(-1)
    logp_x = (y * logp).sum(-1, keepdim=True)  # [..., 1], keeps its gradient
    d = (y - logp.exp().detach()) * logp_x
    return _swap(y, d)


def zgr_y(logits: Tensor, y: Tensor) -> Tensor:
    """ZGR (Eq. 13, 14): d = (p + (y - sg(p)) * log p(x)) / 2 = (ST + DARN) / 2."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    logp_x = (y * logp).sum(-1, keepdim=True)  # [..., 1]
    d = (p + (y - p.detach()) * logp_x) / 2
    return _swap(y, d)


def st_zgr_y(logits: Tensor, y: Tensor, alpha: float, t: float = 1.0) -> Tensor:
    """ST-ZGR (Eq. 17): d = (1 - alpha) d_ST(t) + alpha d_ZGR."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    logp_x = (y * logp).sum(-1, keepdim=True)
    d_st = p if t == 1.0 else (logp / t).softmax(-1)
    d_zgr = (p + (y - p.detach()) * logp_x) / 2
    d = (1 - alpha) * d_st + alpha * d_zgr
    return _swap(y, d)


def st_zgr_author_y(logits: Tensor, y: Tensor, alpha: float, t: float = 1.0) -> Tensor:
    """ST-ZGR as the paper's author trains with it (``st-zgr-author``): one temperature
    ``t' = (1 - alpha) t + alpha`` for the whole interpolated estimator,
    ``d = (1 - alpha/2) p' + (alpha/2) (y - sg(p')) log p'(x)`` with ``p' = softmax(logp / t')``
    (= ``(1 - alpha) ST(t') + alpha ZGR(t')``). Equal to :func:`st_zgr_y` (Eq. 17) at t = 1 and at
    alpha in {0, 1}; different elsewhere (module docstring of :mod:`biasvar.estimators`)."""
    t_eff = (1.0 - alpha) * t + alpha
    logq = (logits.log_softmax(-1) / t_eff).log_softmax(-1)
    q = logq.exp()
    logq_x = (y * logq).sum(-1, keepdim=True)
    d = (1 - alpha / 2) * q + (alpha / 2) * (y - q.detach()) * logq_x
    return _swap(y, d)


def gs(logits: Tensor, G: Tensor, t: float) -> Tensor:
    """Gumbel-Softmax (Eq. 7): the relaxed sample s = softmax((logp + G) / t) is the value."""
    return ((logits.log_softmax(-1) + G) / t).softmax(-1)


def gs_st(logits: Tensor, G: Tensor, t: float) -> Tensor:
    """GS-ST (Eq. 8): value y = onehot(argmax(logp + G)), gradient of s with the same G."""
    y = sample_onehot(logits, G)
    return _swap(y, gs(logits, G, t))


def conditional_gumbel(logits: Tensor, y: Tensor, E: Tensor) -> Tensor:
    """Samples of G | x (truncated-Gumbel construction), in log space; no gradient.

    Args:
        logits: [..., K]; y: one-hot [..., K] of the sampled x; E: Exp(1) noise [..., M, K].

    Returns:
        G [..., M, K] such that argmax(logp + G) = x for every m. For the sampled class
        ``logp_x + G_x = -log E_x``; for k != x, ``logp_k + G_k = -logaddexp(log E_k - logp_k, log E_x)``.
    """
    logp = logits.detach().log_softmax(-1).unsqueeze(-2)  # [..., 1, K]
    yy = y.detach().unsqueeze(-2)  # [..., 1, K]
    logE = E.log()  # [..., M, K]
    logE_x = (logE * yy).sum(-1, keepdim=True)  # [..., M, 1]
    top = -logE_x  # max of the perturbed logits, [..., M, 1]
    others = -torch.logaddexp(logE - logp, logE_x)  # [..., M, K]
    z = torch.where(yy > 0, top.expand_as(others), others)  # perturbed logits logp + G
    return z - logp


def gr_mc(logits: Tensor, G: Tensor, E: Tensor, t: float) -> Tensor:
    """GR-MC (Eq. 9): value y from G; d = mean_m softmax((logp + sg(G_m)) / t), G_m ~ G | x.

    ``E``: Exp(1) noise [..., M, K] of the conditional samples. Computed in closed form (value
    mean_m s_m, Jacobian (diag - mean_m s_m s_m^T) / t; see :mod:`biasvar.estimators.grmc`), equal
    to the M-sample softmax to float rounding.
    """
    y = sample_onehot(logits, G)
    return _swap(y, gr_mc_surrogate(logits.log_softmax(-1), y, E, t))


def gr_mc_uniform(logits: Tensor, G: Tensor, U: Tensor, t: float) -> Tensor:
    """:func:`gr_mc` with the conditional samples' noise given as uniforms, ``E = -log U`` (fused)."""
    y = sample_onehot(logits, G)
    return _swap(y, gr_mc_surrogate(logits.log_softmax(-1), y, U, t, uniform=True))


def gr_mc_counter(logits: Tensor, G: Tensor, counter: Tensor, t: float, M: int) -> Tensor:
    """:func:`gr_mc` of one draw with the conditional samples' uniforms given by their address
    (``counter``: int64 [3], kind ``"counter"`` of :mod:`biasvar.rng`), ``E = -log U``: the M x K
    numbers per variable are generated inside GR-MC's kernel, never stored for the whole draw."""
    y = sample_onehot(logits, G)
    return _swap(y, gr_mc_counter_surrogate(logits.log_softmax(-1), y, counter, t, M))


def rf_surrogate(f: Tensor, logq: Tensor) -> Tensor:
    """REINFORCE with leave-one-out baseline (Kool et al. 2019, Eq. 8), averaged over data points.

    Args:
        f: per-data-point losses of M independent draws, [M, B] (keeps its own gradient).
        logq: total log-probability of each draw's discrete samples, [M, B].

    Returns:
        scalar ``mean_{m,b} [f + sg(A) * logq]`` with ``A_m = M/(M-1) (f_m - mean_j f_j)``.
        Its gradient is the unbiased rf(M) estimate (its value is not the mean loss: it includes
        the ``A * logq`` term).
    """
    M = f.shape[0]
    A = (f - f.mean(0, keepdim=True)) * (M / (M - 1))
    return (f + A.detach() * logq).mean()
