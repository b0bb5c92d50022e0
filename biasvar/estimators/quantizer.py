"""The stochastic quantizer (Louizos et al. 2019; the paper's Sec. 4.3, App. B.5).

A quantized weight or activation ``x`` takes one of ``K`` ordered levels ``0..K-1`` and is driven
by one real input ``eta`` through injected noise ``z``::

    x = clamp(round(eta + z), 0, K-1),        z ~ noise (cdf F, density f)

so ``x`` is a categorical variable with

    p(x=k) = F(k + 1/2 - eta) - F(k - 1/2 - eta)     (first / last interval open to -inf / +inf)

and embedding ``phi(x) = x`` (Sec. 2). Every categorical estimator of
:mod:`biasvar.estimators.categorical` applied to the logits ``log p_k(eta)`` (:func:`level_logprobs`)
and mapped back by ``x = y @ arange(K)`` *is* the corresponding quantizer estimator: the ST
surrogate ``p @ arange(K)`` is the mean embedding ``phi_bar(eta)`` and ZGR's is
``(phi_bar + (x - sg(phi_bar)) log p(x)) / 2``. So a model only calls
``sample(node, level_logprobs(eta, K, noise)) @ levels(K)``; the closed forms below
(:func:`st_level`, :func:`darn_level`, :func:`zgr_level`) are the O(1)-per-sample versions, used
in the tests to show the equivalence.

Noises (:class:`QuantNoise`):

* ``logistic`` with standard deviation ``sigma`` (default 1/3, Louizos et al.'s initialization),
  scale ``s = sigma * sqrt(3) / pi``. Here ``p_k = F(b) * (1 - F(a)) * (1 - exp(-(b - a) / s))`` for
  an interval ``[a, b]``, so ``log p_k = logsigmoid(b/s) + logsigmoid(-a/s) + log(-expm1(-(b-a)/s))``
  exactly: no difference of cdfs, finite values and gradients for any ``eta`` (e.g. +-1e3).
* ``triangular`` with density ``max(0, 1 - |z| / w) / w``; the paper's default ``w = 1`` is
  ``sigma = 1/sqrt(6)``. Its support is compact, so ``p_k`` is exactly 0 for levels more than
  ``w + 1/2`` away from ``eta``. Differences of cdfs are taken on the side of the noise mode
  (``F(b) - F(a)`` left of it, ``S(a) - S(b)`` with ``S(z) = F(-z)`` right of it) so there is no
  cancellation, and **probabilities below** ``sqrt(finfo.tiny)`` **are floored**: their log is
  :data:`LOG_FLOOR` (-1e4, ``exp`` of it is 0 in every float type) with zero gradient. That keeps
  values and gradients finite (``d log p = f / p`` is at most ``~1/sqrt(tiny)``) and changes the
  distribution by less than ``K * sqrt(tiny)`` (1e-19 in float32).

All functions broadcast over any leading shape, work in float32/float64 on CPU and CUDA and under
``torch.func.vmap`` (no ``.item()``, no data-dependent control flow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from biasvar.errors import ShapeError

NOISES = ("logistic", "triangular")
LOG_FLOOR = -1.0e4  # log-probability given to levels of (numerically) zero probability


@dataclass(frozen=True)
class QuantNoise:
    """Injected noise of the quantizer: ``kind`` and standard deviation ``sigma``.

    Args:
        kind: ``"logistic"`` or ``"triangular"``.
        sigma: standard deviation in level units; ``None`` takes the paper's default for the
            kind: 1/3 for logistic, 1/sqrt(6) for triangular (density ``max(0, 1 - |z|)``).

    >>> QuantNoise("triangular").width
    1.0
    """

    kind: str = "logistic"
    sigma: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in NOISES:
            raise ShapeError(f"unknown quantizer noise {self.kind!r}; expected one of: {', '.join(NOISES)}")
        sigma = (1 / 3 if self.kind == "logistic" else 1 / math.sqrt(6)) if self.sigma is None else self.sigma
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ShapeError(f"quantizer noise sigma must be a positive number, got {self.sigma!r}")
        object.__setattr__(self, "sigma", float(sigma))

    @property
    def scale(self) -> float:
        """Logistic scale ``s = sigma sqrt(3) / pi``."""
        return self.sigma * math.sqrt(3) / math.pi

    @property
    def width(self) -> float:
        """Triangular half-width ``w = sigma sqrt(6)`` (support ``[-w, w]``)."""
        return self.sigma * math.sqrt(6)

    def cdf(self, z: Tensor) -> Tensor:
        """F(z)."""
        if self.kind == "logistic":
            return torch.sigmoid(z / self.scale)
        u = (z / self.width).clamp(-1.0, 1.0)
        return torch.where(u <= 0, (1 + u) ** 2 / 2, 1 - (1 - u) ** 2 / 2)

    def pdf(self, z: Tensor) -> Tensor:
        """f(z)."""
        if self.kind == "logistic":
            v = z / self.scale
            return torch.sigmoid(v) * torch.sigmoid(-v) / self.scale
        return (1 - (z / self.width).abs()).clamp_min(0.0) / self.width

    def icdf(self, u: Tensor) -> Tensor:
        """F^{-1}(u) for u in (0, 1): injected noise from uniforms (used to sample by rounding)."""
        if self.kind == "logistic":
            return self.scale * (torch.log(u) - torch.log1p(-u))
        lo = -1 + torch.sqrt(2 * u)
        hi = 1 - torch.sqrt(2 * (1 - u))
        return self.width * torch.where(u <= 0.5, lo, hi)

    def describe(self) -> str:
        return f"{self.kind}(sigma={self.sigma:.4g})"


def as_noise(noise: QuantNoise | str, sigma: float | None = None) -> QuantNoise:
    """A :class:`QuantNoise` from an instance or a kind name."""
    return noise if isinstance(noise, QuantNoise) else QuantNoise(str(noise), sigma)


def levels(K: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The embedding ``phi(k) = k`` of the K levels: ``arange(K)`` [K]."""
    return torch.arange(K, dtype=dtype, device=device)


def _check_K(K: int) -> int:
    if int(K) != K or K < 2:
        raise ShapeError(f"a quantizer needs K >= 2 integer levels, got K={K!r}")
    return int(K)


def _tri_tail(z: Tensor, w: float) -> Tensor:
    """Mass of the triangular noise beyond |z| on one side: ``F(-|z|) = (1 - min(|z|/w, 1))^2 / 2``.

    ``|z|`` is taken as ``-z`` at ``z = 0`` so that the gradient there is that of ``F`` (used for
    ``z <= 0``), not the zero subgradient of ``abs``.
    """
    return (1 - (torch.where(z > 0, z, -z) / w).clamp(max=1.0)) ** 2 / 2


def _tri_logprob(T_lo: Tensor, T_hi: Tensor, pos_lo: Tensor, pos_hi: Tensor) -> Tensor:
    """log P(a <= z <= b) of the triangular noise from the one-sided tails ``T(a)``, ``T(b)`` and the
    signs ``a > 0``, ``b > 0``. Differences are of tails on one side only (no cancellation); masses
    below ``sqrt(tiny)`` get :data:`LOG_FLOOR` with zero gradient."""
    p = torch.where(pos_lo, T_lo - T_hi, torch.where(pos_hi, 1 - T_lo - T_hi, T_hi - T_lo))
    ok = p > math.sqrt(torch.finfo(p.dtype).tiny)
    return torch.where(ok, torch.log(torch.where(ok, p, torch.ones_like(p))), torch.full_like(p, LOG_FLOOR))


def _logistic_width(noise: QuantNoise) -> float:
    """log(1 - exp(-1/s)): the factor of a unit interval in ``p = F(b) S(a) (1 - e^{-(b-a)/s})``."""
    return math.log(-math.expm1(-1.0 / noise.scale))


def level_logprobs(eta: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """``log p(x=k | eta)`` for every level: the quantizer's categorical logits (Sec. 4.3).

    Computed from the K-1 interval edges ``e_j = j + 1/2 - eta`` shared by neighbouring levels.

    Args:
        eta: quantizer inputs [...] in level units (level k sits at eta = k).
        K: number of levels (>= 2).
        noise: a :class:`QuantNoise` or a kind name (default sigma).

    Returns:
        [..., K] log-probabilities, normalized (``logsumexp = 0`` up to rounding and the triangular
        floor), finite, with finite gradients for every finite eta.
    """
    K, noise = _check_K(K), as_noise(noise)
    e = (levels(K - 1, dtype=eta.dtype, device=eta.device) + 0.5) - eta.unsqueeze(-1)  # [..., K-1] edges
    pad = torch.zeros_like(e[..., :1])
    if noise.kind == "logistic":
        s = noise.scale
        logF = torch.cat([F.logsigmoid(e / s), pad], -1)  # log F(b_k); b_{K-1} = +inf
        logS = torch.cat([pad, F.logsigmoid(-e / s)], -1)  # log S(a_k); a_0 = -inf
        width = torch.full((K,), _logistic_width(noise), dtype=eta.dtype, device=eta.device)
        width[0] = width[-1] = 0.0  # open end intervals
        return logF + logS + width
    T = _tri_tail(e, noise.width)
    pos = e > 0
    return _tri_logprob(torch.cat([pad, T], -1), torch.cat([T, pad], -1),
                        torch.cat([torch.zeros_like(pos[..., :1]), pos], -1),
                        torch.cat([pos, torch.ones_like(pos[..., :1])], -1))


def level_probs(eta: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """p(x=k | eta) [..., K]."""
    return level_logprobs(eta, K, noise).exp()


def log_prob_level(eta: Tensor, x: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """``log p(x | eta)`` of given levels ``x`` in O(1) per element (broadcast ``eta`` with ``x``)."""
    K, noise = _check_K(K), as_noise(noise)
    x = x.to(eta.dtype)
    first, last = x <= 0, x >= K - 1
    inf = torch.full_like(x, math.inf)
    a = torch.where(first, -inf, x - 0.5) - eta  # interval of the noise that gives level x
    b = torch.where(last, inf, x + 0.5) - eta
    if noise.kind == "logistic":
        s = noise.scale
        width = torch.where(first | last, torch.zeros_like(a), torch.full_like(a, _logistic_width(noise)))
        return F.logsigmoid(b / s) + F.logsigmoid(-a / s) + width
    w = noise.width
    return _tri_logprob(_tri_tail(a, w), _tri_tail(b, w), a > 0, b > 0)


def mean_embedding(eta: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """``phi_bar(eta) = E[x] = sum_{k=1}^{K-1} (1 - F(k - 1/2 - eta))`` [...]."""
    K, noise = _check_K(K), as_noise(noise)
    t = levels(K, dtype=eta.dtype, device=eta.device)[1:] - 0.5 - eta.unsqueeze(-1)  # [..., K-1]
    return noise.cdf(-t).sum(-1)  # 1 - F(t) = F(-t) (symmetric noise)


def mean_embedding_grad(eta: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """``d phi_bar / d eta = sum_{k=1}^{K-1} f(k - 1/2 - eta)`` [...], in closed form."""
    K, noise = _check_K(K), as_noise(noise)
    t = levels(K, dtype=eta.dtype, device=eta.device)[1:] - 0.5 - eta.unsqueeze(-1)
    return noise.pdf(t).sum(-1)


def round_level(eta: Tensor, K: int) -> Tensor:
    """Deterministic mode (noise off, App. B.5): ``clamp(round(eta), 0, K-1)``.

    For the paper's noises this is the most probable level except within ~0.01 of the outer
    half-levels (where the open end interval can win); for wide noise it can differ more.
    """
    return torch.round(eta.detach()).clamp(0, _check_K(K) - 1)


def sample_level(eta: Tensor, K: int, noise: QuantNoise | str, u: Tensor) -> Tensor:
    """``x = clamp(round(eta + z), 0, K-1)``, ``z = F^{-1}(u)``: the generative definition (no gradient)."""
    z = as_noise(noise).icdf(u)
    return torch.round(eta.detach() + z).clamp(0, _check_K(K) - 1)


# -- closed forms (docs/estimators.md) for one quantizer (value x, gradient of the surrogate d) -----

def _swap(x: Tensor, d: Tensor) -> Tensor:
    return x + (d - d.detach())


def st_level(eta: Tensor, x: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """ST on the quantizer: value x, ``d = phi_bar(eta)``."""
    return _swap(x, mean_embedding(eta, K, noise))


def darn_level(eta: Tensor, x: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """DARN on the quantizer: ``d = (x - sg(phi_bar)) log p(x)``."""
    phi = mean_embedding(eta, K, noise).detach()
    return _swap(x, (x - phi) * log_prob_level(eta, x, K, noise))


def zgr_level(eta: Tensor, x: Tensor, K: int, noise: QuantNoise | str = "logistic") -> Tensor:
    """ZGR on the quantizer (Eq. 13, 14): ``d = (phi_bar + (x - sg(phi_bar)) log p(x)) / 2``."""
    phi = mean_embedding(eta, K, noise)
    return _swap(x, (phi + (x - phi.detach()) * log_prob_level(eta, x, K, noise)) / 2)


__all__ = [
    "LOG_FLOOR",
    "NOISES",
    "QuantNoise",
    "as_noise",
    "darn_level",
    "level_logprobs",
    "level_probs",
    "levels",
    "log_prob_level",
    "mean_embedding",
    "mean_embedding_grad",
    "round_level",
    "sample_level",
    "st_level",
    "zgr_level",
]
