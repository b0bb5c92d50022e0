"""Per-draw gradients: the vectorized engine and its per-draw twin, and the draw iterator.

A *draw* is one gradient sample: the gradient in the selected parameters of
``draw_loss(problem, estimator, params, noise_i)``. :func:`vmap_gradients` computes a chunk of m
draws as ``torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(selected_params, noise)``:
one batched forward and one batched backward, the parameters shared, the noise batched.
:func:`loop_gradients` is the slow, obviously correct twin (one ``torch.autograd.grad`` per draw
on the same noise) used by the tests and ``biasvar bench``. :mod:`biasvar.engine.draws` runs them
over a run's draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from biasvar.estimators import Estimator
from biasvar.problems.base import Problem, draw_loss


def _loss_fn(problem: Problem, est: Estimator, names: Sequence[str]) -> Callable[[dict, Mapping], Tensor]:
    """``loss(selected_params, noise_of_one_draw) -> scalar``; the other parameters are constants."""
    order, fixed, chosen = list(problem.params), problem.params, set(names)

    def loss(sel: dict[str, Tensor], noise: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
        params = {k: (sel[k] if k in chosen else fixed[k]) for k in order}
        return draw_loss(problem, est, params, noise)

    return loss


def _draws_in(noise: Mapping[str, Mapping[str, Tensor]]) -> int:
    return next(iter(next(iter(noise.values())).values())).shape[0]


def vmap_gradients(problem: Problem, est: Estimator, names: Sequence[str],
                   noise: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
    """Per-draw flat gradients [m, dim] of m draws at once (one batched forward/backward).

    Args:
        noise: node -> name -> Tensor [m, *shape], the noise of m draws (``rng.draw_noise``).
    """
    m = _draws_in(noise)
    sel = {k: problem.params[k] for k in names}
    grads = torch.func.vmap(torch.func.grad(_loss_fn(problem, est, names)), in_dims=(None, 0))(sel, noise)
    return torch.cat([grads[k].reshape(m, -1) for k in names], 1)


def loop_gradients(problem: Problem, est: Estimator, names: Sequence[str],
                   noise: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
    """The slow twin of :func:`vmap_gradients`: one ``torch.autograd.grad`` per draw, same noise."""
    m = _draws_in(noise)
    order, chosen = list(problem.params), set(names)
    rows = []
    for i in range(m):
        leaves = {k: problem.params[k].detach().requires_grad_(True) for k in names}
        params = {k: (leaves[k] if k in chosen else problem.params[k]) for k in order}
        noise_i = {node: {name: t[i] for name, t in d.items()} for node, d in noise.items()}
        loss = draw_loss(problem, est, params, noise_i)
        grads = torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(leaves[k])).reshape(-1)
                               for g, k in zip(grads, names, strict=True)]))
    return torch.stack(rows)


METHODS: Mapping[str, Callable[..., Tensor]] = {"vmap": vmap_gradients, "loop": loop_gradients}


@dataclass(frozen=True)
class GradChunk:
    """Draws ``start .. start + grads.shape[0]`` of a run: flat per-draw gradients [m, dim]."""

    start: int
    grads: Tensor


__all__ = ["METHODS", "GradChunk", "loop_gradients", "vmap_gradients"]
