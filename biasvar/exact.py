"""Exact references by enumeration: true gradients and exact estimator expectations.

For a few independent categorical variables (logits ``[V, K]``, ``K**V`` small) and a
differentiable loss of their one-hot samples ``loss(y [N, V, K]) -> [N]``:

* :func:`true_gradient` — d/d logits of ``E[L] = sum_x p(x) L(y_x)``;
* :func:`outcome_gradients` — the gradient an x-only estimator (``st``, ``darn``, ``zgr``,
  ``st-zgr``) returns for every outcome x, with p(x): its exact mean and variance follow;
* :func:`expected_estimator` — ``E[J] = sum_x p(x) J(x)``;
* :func:`expected_gr` — the common expectation of GS-ST(t) and GR-MC(t, M) (Eq. 9: the value is
  fixed by x, so ``E[J | x]`` is GR with M -> inf), by large-M Monte Carlo over ``G | x`` for
  every outcome x;
* :class:`Expectation`, :func:`true_squared_bias` — ``E[J]`` of an estimator on a whole problem
  (``biasvar.problems.enumeration.enumerate_expectation``: vae, hvae, toy-cat) and the true per-parameter
  squared bias ``||E[J] - g*||^2 / d`` that Eq. 16 estimates, with its Monte Carlo error where
  ``E[J]`` is itself estimated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from biasvar.errors import ShapeError
from biasvar.estimators.categorical import conditional_gumbel

LossFn = Callable[[Tensor], Tensor]


def check_enumerable(V: int, K: int, limit: int = 200_000) -> None:
    """Refuse problems whose K**V outcomes are too many to sum over."""
    if K**V > limit:
        raise ShapeError(f"{V} variables of {K} categories have {K**V} outcomes; enumeration allows {limit}")


def enumerate_onehot(V: int, K: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """All K**V joint outcomes as one-hot tensors [K**V, V, K] (first variable slowest)."""
    check_enumerable(V, K)
    idx = torch.tensor(list(itertools.product(range(K), repeat=V)), device=device)  # [N, V]
    return (torch.arange(K, device=device) == idx.unsqueeze(-1)).to(dtype)


def outcome_probs(logits: Tensor, Y: Tensor) -> Tensor:
    """p(x) for every outcome: [N] (differentiable in logits)."""
    logp = logits.log_softmax(-1)  # [V, K]
    return (Y * logp).sum((-1, -2)).exp()


def true_gradient(logits: Tensor, loss: LossFn) -> Tensor:
    """Gradient of ``sum_x p(x) L(y_x)`` in the logits [V, K]."""
    V, K = logits.shape
    logits = logits.detach().requires_grad_(True)
    Y = enumerate_onehot(V, K, dtype=logits.dtype, device=logits.device)
    (g,) = torch.autograd.grad((outcome_probs(logits, Y) * loss(Y)).sum(), logits)
    return g


def outcome_gradients(logits: Tensor, loss: LossFn, y_fn: Callable[[Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """Per-outcome estimates ``J(x)`` [N, V, K] of an x-only estimator, and ``p(x)`` [N]."""
    V, K = logits.shape
    Y = enumerate_onehot(V, K, dtype=logits.dtype, device=logits.device)
    N = Y.shape[0]
    lg = logits.detach().unsqueeze(0).expand(N, V, K).clone().requires_grad_(True)
    (J,) = torch.autograd.grad(loss(y_fn(lg, Y)).sum(), lg)  # each outcome's own gradient
    return J, outcome_probs(logits.detach(), Y)


def expected_estimator(logits: Tensor, loss: LossFn, y_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``E[J] = sum_x p(x) J(x)`` [V, K] of an x-only estimator."""
    J, p = outcome_gradients(logits, loss, y_fn)
    return (p[:, None, None] * J).sum(0)


def estimator_variance(logits: Tensor, loss: LossFn, y_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Exact per-coordinate variance [V, K] of an x-only estimator."""
    J, p = outcome_gradients(logits, loss, y_fn)
    mean = (p[:, None, None] * J).sum(0)
    return (p[:, None, None] * (J - mean) ** 2).sum(0)


def expected_gr(logits: Tensor, loss: LossFn, t: float, *, M: int = 20000, generator: torch.Generator | None = None,
                chunk: int = 5000) -> Tensor:
    """E[J] of GS-ST(t) = E[J] of GR-MC(t, M) for any M, by Monte Carlo over G | x for every x.

    Returns [V, K]. The Monte Carlo error per outcome is O(1/sqrt(M)).
    """
    V, K = logits.shape
    Y = enumerate_onehot(V, K, dtype=logits.dtype, device=logits.device)  # [N, V, K]
    N = Y.shape[0]
    lg = logits.detach()
    # d_bar(x) = E_{G|x}[softmax((logp + G) / t)] and its Jacobian in the logits: accumulate the
    # gradient of <c_x, d_bar(x)> with c_x = dL/dy at y_x, which is the GR estimate for outcome x.
    Yg = Y.clone().requires_grad_(True)
    (c,) = torch.autograd.grad(loss(Yg).sum(), Yg)  # [N, V, K] = dL/dy at each outcome
    total = torch.zeros_like(lg)
    done = 0
    while done < M:
        m = min(chunk, M - done)
        E = torch.empty(N, V, m, K, dtype=lg.dtype, device=lg.device).exponential_(generator=generator)
        Gm = conditional_gumbel(lg.expand(N, V, K), Y, E)  # [N, V, m, K]
        lx = lg.clone().requires_grad_(True)
        d = ((lx.log_softmax(-1).unsqueeze(-2) + Gm) / t).softmax(-1).sum(-2)  # [N, V, K], sum over m
        (g,) = torch.autograd.grad((c * d).sum((-1, -2)) @ outcome_probs(lg, Y), lx)
        total += g
        done += m
    return total / M


@dataclass(frozen=True)
class Expectation:
    """``E[J]`` of one estimator on one problem, per parameter tensor.

    Attributes:
        spec: the estimator's canonical spec.
        mean: parameter name -> ``E[J]`` (same shape as the parameter).
        se: parameter name -> per-coordinate Monte Carlo standard error of ``mean``; None where
            ``mean`` is exact (a finite sum).
        how: how it was computed, in words.
    """

    spec: str
    mean: dict[str, Tensor]
    se: dict[str, Tensor] | None
    how: str

    @property
    def exact(self) -> bool:
        return self.se is None

    def flat(self, names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(mean, se)`` as float64 vectors over ``names`` (default all), in that order."""
        names = list(self.mean) if names is None else list(names)

        def cat(d: dict[str, Tensor]) -> np.ndarray:
            return torch.cat([d[k].detach().reshape(-1).to("cpu", torch.float64) for k in names]).numpy()

        return cat(self.mean), (None if self.se is None else cat(self.se))


def true_squared_bias(mean: np.ndarray, exact: np.ndarray, se: np.ndarray | None = None) -> tuple[float, float]:
    """The per-parameter squared bias ``||E[J] - g*||^2 / d`` (the quantity Eq. 16 estimates) and its error.

    With an exact ``mean`` the error is 0. With a Monte Carlo ``mean`` (independent per-coordinate
    errors of standard deviation ``se``) ``E||mean - g*||^2 = ||E[J] - g*||^2 + sum se^2``: that
    excess is subtracted, and the standard error is ``sqrt(4 sum (mean - g*)^2 se^2 + 2 sum se^4) / d``.

    >>> true_squared_bias(np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    (2.0, 0.0)
    """
    mean, exact = np.asarray(mean, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    if mean.shape != exact.shape:
        raise ShapeError(f"mean {list(mean.shape)} vs exact gradient {list(exact.shape)}")
    d = mean.size
    diff2 = np.square(mean - exact)
    if se is None:
        return float(diff2.sum() / d), 0.0
    s2 = np.square(np.asarray(se, dtype=np.float64))
    value = float((diff2.sum() - s2.sum()) / d)
    return value, float(math.sqrt(4 * (diff2 * s2).sum() + 2 * np.square(s2).sum()) / d)
