"""Exact references by enumeration: true gradients and exact estimator expectations.

For a few independent categorical variables (logits ``[V, K]``, ``K**V`` small) and a
differentiable loss of their one-hot samples ``loss(y [N, V, K]) -> [N]``:

* :func:`true_gradient` — d/d logits of ``E[L] = sum_x p(x) L(y_x)``;
* :func:`outcome_gradients` — the gradient an x-only estimator (``st``, ``darn``, ``zgr``,
  ``st-zgr``) returns for every outcome x, with p(x): its exact mean and variance follow;
* :func:`expected_estimator` — ``E[J] = sum_x p(x) J(x)``;
* :func:`expected_gr` — the common expectation of GS-ST(t) and GR-MC(t, M) (Eq. 9: the value is
  fixed by x, so ``E[J | x]`` is GR with M -> inf), by large-M Monte Carlo over ``G | x`` for
  every outcome x.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

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
