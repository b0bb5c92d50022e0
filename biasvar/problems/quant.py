"""``quant-unit``: one stochastic quantizer and a test function of its level (App. B.5, Fig. B.5).

The parameter is the quantizer input ``eta`` (shape [1]); the level ``x`` in ``0..K-1`` is a
categorical variable with logits ``log p_k(eta)`` (:func:`biasvar.estimators.quantizer.level_logprobs`)
and embedding ``phi(x) = x``, so every estimator spec works on it unchanged. Test functions, with
``c = (K - 1) / 2``:

* ``linear``: ``L(x) = x`` — ST is exact (zero variance), DARN and ZGR unbiased;
* ``quadratic``: ``L(x) = (x - c)^2 / 2`` — ZGR unbiased (Thm. 2), ST and DARN biased;
* ``sigmoid``: ``L(x) = sigmoid(2 (x - c))`` — every biased estimator is biased.

The exact gradient ``d/d eta sum_k p_k(eta) L(k)`` is computed by enumerating the K levels;
:meth:`QuantUnit.outcome_gradients` gives an x-only estimator's value for every level, hence its
exact mean and standard deviation (the references of Fig. B.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from biasvar.errors import ShapeError
from biasvar.estimators.quantizer import QuantNoise, level_logprobs, levels
from biasvar.problems.base import Params, Problem, SampleFn

LOSSES = ("linear", "quadratic", "sigmoid")


def unit_loss(kind: str, x: Tensor, K: int) -> Tensor:
    """Test function L(x) of App. B.5 on level values x (any shape), ``c = (K - 1) / 2``."""
    c = (K - 1) / 2
    if kind == "linear":
        return x
    if kind == "quadratic":
        return (x - c) ** 2 / 2
    if kind == "sigmoid":
        return torch.sigmoid(2 * (x - c))
    raise ShapeError(f"unknown quant-unit loss {kind!r}; expected one of: {', '.join(LOSSES)}")


class QuantUnit(Problem):
    """One K-level stochastic quantizer with input ``eta`` and a test function of its level.

    Args:
        K: number of levels (Fig. B.5: 4).
        loss: ``"linear"``, ``"quadratic"`` or ``"sigmoid"``.
        noise: ``"logistic"`` or ``"triangular"``.
        sigma: noise standard deviation; ``None`` = the paper's default (1/3 logistic,
            1/sqrt(6) triangular, i.e. density ``max(0, 1 - |z|)``).
        eta: the quantizer input (the parameter).
        dtype: dtype of the parameter and batch (float64 by default: exact references).
    """

    kind = "quant-unit"

    def __init__(self, *, K: int = 4, loss: str = "linear", noise: str = "logistic",
                 sigma: float | None = None, eta: float = 0.0, dtype: torch.dtype = torch.float64) -> None:
        if loss not in LOSSES:
            raise ShapeError(f"unknown quant-unit loss {loss!r}; expected one of: {', '.join(LOSSES)}")
        if int(K) != K or K < 2:
            raise ShapeError(f"quant-unit needs K >= 2 levels, got K={K!r}")
        self.K, self.loss_kind = int(K), loss
        self.noise = QuantNoise(noise, sigma)
        self.config: dict[str, Any] = {"K": self.K, "loss": loss, "noise": noise, "sigma": sigma,
                                       "eta": float(eta)}
        self.params = {"eta": torch.tensor([float(eta)], dtype=dtype)}
        self.batch = torch.zeros(1, 0, dtype=dtype)

    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {"x": (batch_size, 1, self.K)}

    def logits(self, eta: Tensor) -> Tensor:
        """The quantizer's categorical logits ``log p_k(eta)`` [..., K]."""
        return level_logprobs(eta, self.K, self.noise)

    def loss_fn(self) -> Callable[[Tensor], Tensor]:
        """L as a function of one-hot samples y [..., 1, K] -> [...]."""
        lv = levels(self.K, dtype=self.batch.dtype, device=self.batch.device)
        return lambda y: unit_loss(self.loss_kind, y @ lv, self.K).sum(-1)

    def batch_logits(self, eta: Tensor, B: int) -> Tensor:
        """The logits [B, 1, K] of the B data points' levels: here all B share the one input ``eta`` [1]."""
        return self.logits(eta).unsqueeze(0).expand(B, 1, self.K)

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        logits = self.batch_logits(params["eta"], x.shape[0])  # [B, 1, K]
        y = sample("x", logits)  # [B, 1, K], one-hot (relaxed for gs)
        lv = levels(self.K, dtype=logits.dtype, device=logits.device)
        return unit_loss(self.loss_kind, y @ lv, self.K).sum(-1)  # [B]

    def expected_loss(self, eta: Tensor) -> Tensor:
        """``E[L(x)] = sum_k p_k(eta) L(k)`` for eta [...] -> [...] (differentiable)."""
        lv = levels(self.K, dtype=eta.dtype, device=eta.device)
        return (self.logits(eta).exp() * unit_loss(self.loss_kind, lv, self.K)).sum(-1)

    def exact_gradient(self) -> dict[str, Tensor]:
        """``d E[L] / d eta`` by enumerating the K levels (per input, for a grid of inputs)."""
        eta = self.params["eta"].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.expected_loss(eta).sum(), eta)
        return {"eta": g}

    def outcome_gradients(self, y_fn: Callable[[Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """An x-only estimator (``PlugIn.y_fn``: st, darn, zgr, st-zgr) for every level.

        Returns:
            ``(J [K], p [K])``: the estimate of d E[L] / d eta when level k is sampled, and p_k.
            Its exact mean is ``p @ J`` and its variance ``p @ (J - mean)^2``.
        """
        K = self.K
        eta = self.params["eta"].detach().expand(K).clone().requires_grad_(True)  # one copy per level
        Y = torch.eye(K, dtype=eta.dtype, device=eta.device).unsqueeze(1)  # [K, 1, K]
        y = y_fn(self.logits(eta).unsqueeze(1), Y)
        (J,) = torch.autograd.grad(self.loss_fn()(y).sum(), eta)
        return J, self.logits(self.params["eta"].detach()).exp().reshape(K)

    def eta_grid(self, n: int = 101, *, low: float = -1.0, high: float | None = None) -> Tensor:
        """Inputs eta for the Fig. B.5 sweep: ``linspace(low, high, n)``, default ``[-1, K]``."""
        return eta_grid(self.K, n, low=low, high=high, dtype=self.batch.dtype)

    def at(self, eta: float) -> QuantUnit:
        """The same unit at another input ``eta`` (a fresh problem)."""
        return QuantUnit(**{**self.config, "eta": float(eta)}, dtype=self.batch.dtype)


def eta_grid(K: int = 4, n: int = 101, *, low: float = -1.0, high: float | None = None,
             dtype: torch.dtype = torch.float64) -> Tensor:
    """``linspace(low, high, n)`` with ``high = K`` by default: the eta axis of Fig. B.5."""
    return torch.linspace(low, float(K) if high is None else high, n, dtype=dtype)
