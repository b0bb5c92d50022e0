"""Exact references for problems whose stochastic nodes can all be enumerated (``vae``, ``hvae``, ``toy-cat``).

:func:`enumerate_gradient` is the gradient of the expected loss, summed over every joint
configuration of the nodes (per data point); :func:`enumerate_expectation` is ``E[J]`` of an
estimator (exact for x-only estimators and ``rf(M)``, by conditional Monte Carlo for the Gumbel
family). :class:`Enumerable` is the base of the problems that answer ``exact_gradient`` and
``exact_expectation`` this way. Nothing here is specific to one model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from biasvar.exact import Expectation
from biasvar.problems.base import Params, Problem

ENUM_LIMIT = 1 << 16  # joint latent configurations x data points that enumerate_gradient accepts


class Enumerable(Problem):
    """A problem small enough (in its tiny configurations) to be enumerated: its exact gradient and
    the exact expectation of an estimator come from :func:`enumerate_gradient` and
    :func:`enumerate_expectation` (None where the problem is too large)."""

    def exact_gradient(self) -> dict[str, Tensor] | None:
        """Exact gradient of the mean loss on ``batch`` by enumeration (tiny models only)."""
        return enumerate_gradient(self)

    def exact_expectation(self, spec: Any, **kw: Any) -> Expectation | None:
        """``E[J]`` of an estimator on ``batch`` by enumeration, exact for x-only estimators (tiny models
        only; :func:`enumerate_expectation`)."""
        return enumerate_expectation(self, spec, **kw)


def _joint_configs(problem: Problem, B: int, device: torch.device, dtype: torch.dtype,
                   limit: int) -> tuple[int, dict[str, Tensor]] | None:
    """Every joint configuration of the problem's nodes for each of B data points.

    Returns ``(N, configs)`` with ``configs[node]`` one-hot [N*B, *vars, C] (row ``j*B + b``: the
    j-th joint configuration for data point b), or None when ``N * B`` exceeds ``limit``.
    """
    shapes = problem.node_shapes(1)
    sizes = [(node, s[1:-1], s[-1]) for node, s in shapes.items()]  # node, (V,), C
    n_vars = [math.prod(v) for _, v, _ in sizes]
    N = math.prod(C**n for (_, _, C), n in zip(sizes, n_vars, strict=True))
    if N * B > limit:
        return None
    # every joint configuration: one index per variable of every node, [N, total variables]
    idx = torch.tensor(list(itertools.product(*[range(C) for (_, _, C), n in zip(sizes, n_vars, strict=True)
                                                 for _ in range(n)])), device=device)
    configs, col = {}, 0
    for (node, vshape, C), n in zip(sizes, n_vars, strict=True):
        onehot = (torch.arange(C, device=device) == idx[:, col:col + n, None]).to(dtype)  # [N, n, C]
        configs[node] = onehot.reshape(N, 1, *vshape, C).expand(N, B, *vshape, C).reshape(N * B, *vshape, C)
        col += n
    return N, configs


#: ``surrogate(node, logits, y)`` -> what the model uses for the one-hot outcome ``y`` of a node
Surrogate = Callable[[str, Tensor, Tensor], Tensor]


def _enumerated_mean(problem: Problem, params: Params, x: Tensor, limit: int,
                     surrogate: Surrogate | None) -> dict[str, Tensor] | None:
    """``d/dparams`` of ``mean_b sum_configs w(config) L_b``, the model fed ``surrogate`` of each outcome.

    With ``surrogate`` None the weights are the probabilities themselves, ``w = q(config)``, and the
    result is the gradient of the expected loss; otherwise ``w = sg(q(config))`` and the result is the
    expectation over outcomes of the gradient the surrogate gives at each outcome.
    """
    B = x.shape[0]
    found = _joint_configs(problem, B, x.device, x.dtype, limit)
    if found is None:
        return None
    N, configs = found
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    logq: list[Tensor] = []

    def sample(node: str, logits: Tensor) -> Tensor:
        y = configs[node]
        logq.append((y * logits.log_softmax(-1)).reshape(N * B, -1).sum(1))
        return y if surrogate is None else surrogate(node, logits, y)

    xr = x.unsqueeze(0).expand(N, *x.shape).reshape(N * B, *x.shape[1:])
    f = problem.forward(leaves, xr, sample)  # [N*B]
    w = torch.stack(logq).sum(0).exp()
    if surrogate is not None:
        w = w.detach()
    grads = torch.autograd.grad((w * f).sum() / B, list(leaves.values()), allow_unused=True)
    pairs = zip(leaves.items(), grads, strict=True)
    return {k: (torch.zeros_like(v) if g is None else g) for (k, v), g in pairs}


def enumerate_gradient(problem: Problem, params: Params | None = None, x: Tensor | None = None, *,
                       limit: int = ENUM_LIMIT) -> dict[str, Tensor] | None:
    """Gradient of ``mean_b E_q[L_b]`` by summing over every joint latent configuration.

    Works for any problem whose nodes are categorical and sampled in a fixed order (``vae``,
    ``hvae``, ``toy-cat``): each node is fed a fixed one-hot configuration, its log-probability under
    the logits the model computes at that point is accumulated, and
    ``sum_configs exp(sum_nodes logq) * L`` is differentiated. The latents of different data points
    are independent, so the sum is per data point: ``configurations x batch size`` terms. Returns
    None when that exceeds ``limit``.
    """
    params = problem.params if params is None else params
    x = problem.batch if x is None else x
    return _enumerated_mean(problem, params, x, limit, None)


MC_ELEMENTS = 1 << 22  # conditional-noise entries per replicate of enumerate_expectation (memory bound)


def enumerate_expectation(problem: Problem, spec: str | Any, params: Params | None = None, x: Tensor | None = None,
                          *, limit: int = ENUM_LIMIT, mc: int = 10_000, seed: int = 0,
                          dtype: torch.dtype | None = torch.float64) -> Expectation | None:
    """``E[J]`` of the estimator ``spec`` on the problem's batch: exact where the estimator allows it.

    The draw of a plug-in estimator is ``J = d/dparams mean_b L_b`` with every node fed the
    estimator's output; the outcomes of different data points are independent, so
    ``E[J] = mean_b sum_x q_b(x) E[J_b | x]`` with x the joint outcome of data point b's nodes
    (ancestral: for ``hvae`` ``q(x1, x2) = q(x1 | data) q(x2 | x1)``, the second layer's logits
    computed from the first layer's outcome, as the engine does). Hence:

    * ``st``, ``st(t)``, ``darn``, ``zgr``, ``st-zgr``: the draw is a function of the outcome alone
      (``y_fn``), so the sum is **exact** (up to float64 rounding), for ``vae`` and ``hvae`` alike;
    * ``rf(M)``: unbiased, ``E[J]`` is the gradient of the expected loss (:func:`enumerate_gradient`);
    * ``gs-st(t)`` and ``gr-mc(t, M)`` (one common expectation, Eq. 9): ``E[J | x]`` is the gradient
      with the surrogate ``d`` replaced by ``E[softmax((logp + G)/t) | x]`` (the draw is linear in
      the Jacobian of ``d``; in ``hvae`` the two layers' conditional noises are independent given the
      outcome, so a product of their Jacobians averages to the product of averages). It is
      estimated by Monte Carlo over ``G | x``, ``mc`` conditional samples per outcome and node,
      split into independent replicates whose spread gives the standard error ``se``;
    * ``gs(t)`` (relaxed value): by stratified Monte Carlo, one ``G | x`` per outcome per replicate,
      ``mc`` replicates.

    Args:
        problem: an enumerable problem (``vae``, ``hvae``, ``toy-cat``); its nodes categorical.
        spec: the estimator.
        params, x: default the problem's parameters and evaluation batch.
        limit: the largest ``configurations x batch size``; None is returned above it.
        mc: conditional samples per outcome (Monte Carlo families only).
        seed: of the Monte Carlo noise.
        dtype: computing precision (default float64; None keeps the problem's).

    Returns:
        :class:`biasvar.exact.Expectation`, or None where the problem is too large to enumerate.
    """
    from biasvar.errors import UnsupportedError
    from biasvar.estimators import PlugIn, ScoreFunction, build, gs
    from biasvar.estimators.categorical import conditional_gumbel
    from biasvar.spec import parse_spec

    spec = parse_spec(spec)
    est = build(spec)
    params = problem.params if params is None else params
    x = problem.batch if x is None else x
    if dtype is not None:
        params = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in params.items()}
        x = x.to(dtype)
    name = str(spec)
    if isinstance(est, ScoreFunction):
        g = _enumerated_mean(problem, params, x, limit, None)
        return None if g is None else Expectation(name, g, None, "exact: rf(M) is unbiased, E[J] is the gradient")
    if not isinstance(est, PlugIn) or (est.y_fn is None and spec.name not in ("gs", "gs-st", "gr-mc")):
        raise UnsupportedError(f"no exact expectation for {name}: enumeration covers x-only plug-in estimators, "
                               f"rf(M), and gs / gs-st / gr-mc by conditional Monte Carlo")
    if est.y_fn is not None:
        y_fn = est.y_fn
        m = _enumerated_mean(problem, params, x, limit, lambda node, logits, y: y_fn(logits, y))
        return None if m is None else Expectation(name, m, None, "exact: sum over every outcome")
    if _joint_configs(problem, x.shape[0], x.device, x.dtype, limit) is None:
        return None
    t = float(spec["t"])
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    if spec.name == "gs":
        per, reps = 1, int(mc)
        how = f"stratified Monte Carlo: one G|x per outcome per replicate, {reps} replicates"

        def surrogate(node: str, logits: Tensor, y: Tensor) -> Tensor:
            E = torch.empty((*logits.shape[:-1], 1, logits.shape[-1]), dtype=logits.dtype,
                            device=logits.device).exponential_(generator=gen)
            return gs(logits, conditional_gumbel(logits, y, E)[..., 0, :], t)
    else:
        n_entries = sum(math.prod(s[:-1]) * s[-1] for s in problem.node_shapes(1).values())
        N = _joint_configs(problem, 1, x.device, x.dtype, limit)[0]
        cap = max(1, MC_ELEMENTS // max(1, N * x.shape[0] * n_entries))
        per = max(1, min(cap, math.ceil(int(mc) / 20)))
        reps = max(2, math.ceil(int(mc) / per))
        how = f"conditional Monte Carlo over G|x: {per * reps} samples per outcome in {reps} replicates"

        def surrogate(node: str, logits: Tensor, y: Tensor) -> Tensor:
            E = torch.empty((*logits.shape[:-1], per, logits.shape[-1]), dtype=logits.dtype,
                            device=logits.device).exponential_(generator=gen)
            Gm = conditional_gumbel(logits, y, E)  # [..., per, K]
            d = ((logits.log_softmax(-1).unsqueeze(-2) + Gm) / t).softmax(-1).mean(-2)
            return y + (d - d.detach())

    draws = [_enumerated_mean(problem, params, x, limit, surrogate) for _ in range(reps)]
    mean = {k: torch.stack([d[k] for d in draws]).mean(0) for k in draws[0]}
    se = {k: torch.stack([d[k] for d in draws]).std(0) / math.sqrt(reps) for k in draws[0]}
    return Expectation(name, mean, se, how)
