"""``toy-cat``: a few categorical variables with a loss of their one-hot samples.

The parameters are the logits themselves (``logits`` [V, K]), so a gradient sample *is* the
estimator's gradient in the logits, and the exact gradient of the expected loss is computed by
enumerating all ``K**V`` outcomes. The loss acts on the flattened samples ``z = y.flatten()``
(dimension V*K) with seeded random coefficients:

* ``quadratic`` (default): ``L = 1/2 z^T A z + b^T z`` with symmetric A (interactions between
  variables included) — ZGR is unbiased here (Thm. 2, Cor. 2);
* ``linear``: ``L = b^T z`` — ST and DARN are unbiased, ST exact for V = 1;
* ``quartic``: ``L = (a^T z)^4 / 4 + b^T z`` — ZGR is biased;
* ``sigmoid``: ``L = sigmoid(2 (a^T z))`` — a smooth non-polynomial loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from biasvar.errors import ShapeError
from biasvar.exact import check_enumerable, true_gradient
from biasvar.problems.base import Params, SampleFn
from biasvar.problems.enumeration import Enumerable

LOSSES = ("quadratic", "linear", "quartic", "sigmoid")


def make_loss(kind: str, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """Seeded coefficients of a toy loss on z in R^n."""
    if kind not in LOSSES:
        raise ShapeError(f"unknown toy loss {kind!r}; expected one of: {', '.join(LOSSES)}")
    g = torch.Generator().manual_seed(int(seed))
    A = torch.randn(n, n, generator=g, dtype=dtype)
    A = (A + A.T) / 2
    a = torch.randn(n, generator=g, dtype=dtype)
    b = torch.randn(n, generator=g, dtype=dtype)
    return {"A": A, "a": a / a.norm() * 1.5, "b": b}


def apply_loss(kind: str, coef: dict[str, Tensor], y: Tensor) -> Tensor:
    """Loss of samples y [..., V, K] -> [...]."""
    z = y.flatten(-2)  # [..., n]
    if kind == "linear":
        return z @ coef["b"]
    if kind == "quadratic":
        return 0.5 * ((z @ coef["A"]) * z).sum(-1) + z @ coef["b"]
    if kind == "quartic":
        return (z @ coef["a"]) ** 4 / 4 + z @ coef["b"]
    if kind == "sigmoid":
        return torch.sigmoid(2 * (z @ coef["a"]))
    raise ShapeError(f"unknown toy loss {kind!r}")


class ToyCat(Enumerable):
    """V independent categorical variables of K categories, logits as parameters; ``exact_expectation``
    by enumeration (:func:`biasvar.problems.enumeration.enumerate_expectation`)."""

    kind = "toy-cat"

    def __init__(self, *, vars: int = 3, categories: int = 4, loss: str = "quadratic", seed: int = 0,
                 logits: Tensor | None = None, dtype: torch.dtype = torch.float64) -> None:
        check_enumerable(vars, categories)
        self.V, self.K, self.loss_kind = int(vars), int(categories), loss
        self.config: dict[str, Any] = {"vars": self.V, "categories": self.K, "loss": loss, "seed": int(seed)}
        self.coef = make_loss(loss, self.V * self.K, seed=seed + 1, dtype=dtype)
        if logits is None:
            g = torch.Generator().manual_seed(int(seed))
            logits = 1.5 * torch.randn(self.V, self.K, generator=g, dtype=dtype)
        if tuple(logits.shape) != (self.V, self.K):
            raise ShapeError(f"logits {list(logits.shape)} vs (vars, categories) = ({self.V}, {self.K})")
        self.params = {"logits": logits.detach().clone()}
        self.batch = torch.zeros(1, 0, dtype=dtype)

    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {"z": (batch_size, self.V, self.K)}

    def loss_fn(self) -> Callable[[Tensor], Tensor]:
        return lambda y: apply_loss(self.loss_kind, self.coef, y)

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        B = x.shape[0]
        logits = params["logits"].unsqueeze(0).expand(B, self.V, self.K)  # [B, V, K]
        y = sample("z", logits)
        return apply_loss(self.loss_kind, self.coef, y)  # [B]

    def exact_gradient(self) -> dict[str, Tensor]:
        return {"logits": true_gradient(self.params["logits"], self.loss_fn())}

    def _moved(self, mv: Callable[[Tensor], Tensor]) -> None:
        self.coef = {k: mv(v) for k, v in self.coef.items()}
