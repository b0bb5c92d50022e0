"""Per-draw gradients: the vectorized engine and its per-draw twin, and the draw iterator.

A *draw* is one gradient sample: the gradient in the selected parameters of
``draw_loss(problem, estimator, params, noise_i)``. :func:`vmap_gradients` computes a chunk of m
draws as ``torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(selected_params, noise)``:
one batched forward and one batched backward, the parameters shared, the noise batched.
:func:`loop_gradients` is the slow, obviously correct twin (one ``torch.autograd.grad`` per draw
on the same noise) used by the tests and ``biasvar bench``. :func:`sample_gradients` yields the
draws of a run in chunks sized by :mod:`biasvar.engine.chunks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from biasvar import rng
from biasvar.device import resolve_device, resolve_dtype
from biasvar.engine.chunks import is_oom, make_sizer
from biasvar.engine.settings import parse_memory, prepare, select_params
from biasvar.errors import SpecError
from biasvar.estimators import Estimator, build
from biasvar.problems.base import Problem, draw_loss, noise_requests
from biasvar.spec import EstimatorSpec, parse_spec


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


def choose_method(device: torch.device, method: str = "auto", problem: Problem | None = None,
                  est: Estimator | None = None, names: Sequence[str] | None = None, chunk: int = 8) -> str:
    """``auto`` -> the faster of vmap and loop for this problem and estimator on this device
    (:func:`biasvar.calibrate.calibrated_method`, cached per process); ``auto`` without a
    problem answers ``auto``."""
    if method == "auto":
        if problem is None or est is None:
            return "auto"
        from biasvar.calibrate import calibrated_method

        return calibrated_method(problem, est, list(names or problem.params), device, chunk=chunk)
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r}; expected auto, vmap or loop")
    return method


def resolved_path(method: str, sizer) -> dict:
    """What a run header records of the engine's path: the path taken (``vmap`` or ``loop``), the
    one asked for (``auto`` = calibrated) and the chunk (draws per call; ``adaptive`` where the size
    follows measured memory, on CUDA without a fixed chunk)."""
    return {"method": method, "chunk": int(sizer.size) if sizer.fixed or sizer.memory is None else "adaptive"}


def engine_path(problem: Problem, spec: str | EstimatorSpec, *, device: str | torch.device | None = None,
                dtype: str | torch.dtype | None = None, params: str | None = None, chunk: int | None = None,
                max_memory: int | str | None = None, method: str = "auto") -> dict:
    """The path :func:`sample_gradients` takes with these arguments, without drawing:
    ``{"method": "vmap" | "loop", "method_requested": method, "chunk": int | "adaptive"}``
    (``auto`` runs, or reuses, the per-process calibration :func:`choose_method` runs anyway)."""
    est = build(parse_spec(spec))
    dev = resolve_device(device) if device is not None else None
    prob = prepare(problem, device=dev, dtype=resolve_dtype(dtype))
    dev = next(iter(prob.params.values())).device
    names = select_params(prob, params)
    sizer = make_sizer(dev, prob, est, names, chunk, parse_memory(max_memory))
    chosen = choose_method(dev, method, prob, est, names, sizer.size)
    return {**resolved_path(chosen, sizer), "method_requested": method}


@dataclass(frozen=True)
class GradChunk:
    """Draws ``start .. start + grads.shape[0]`` of a run: flat per-draw gradients [m, dim]."""

    start: int
    grads: Tensor


def sample_gradients(
    problem: Problem,
    spec: str | EstimatorSpec,
    *,
    n: int,
    seed: int,
    start: int = 0,
    params: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    chunk: int | None = None,
    max_memory: int | str | None = None,
    method: str = "auto",
    aligned: bool = False,
    run_end: int | None = None,
) -> Iterator[GradChunk]:
    """Draws ``start .. start + n`` of the run ``(problem, spec, seed)``, in chunks.

    Args:
        problem: the model at its snapshot, with its evaluation batch (not modified).
        spec: the estimator.
        n: number of draws; seed: the run's seed; start: index of the first draw.
        params: glob of the parameters to differentiate (others are held fixed); None = all.
        device: None = the problem's device, "auto", "cpu", "cuda", ...
        dtype: None = the problem's dtype, or float32/float64.
        chunk: a fixed chunk size (draws per vectorized call); None = from the memory budget.
        max_memory: memory budget in bytes (or "4GB").
        method: "auto", "vmap" or "loop" (the per-draw twin).
        aligned: with a fixed chunk size m (the CPU, or ``chunk``), compute draws in the chunks
            ``[k m, (k + 1) m)`` counted from draw 0, recomputing the head of the chunk ``start``
            falls in (fewer than m draws): see below.
        run_end: with ``aligned``, the run's last draw (its n): the chunk that ``start + n`` falls
            in is computed whole up to there and its draws past ``start + n`` dropped, so a shard
            of a run (:mod:`biasvar.engine.shards`) computes its last draws in the same call as the
            whole run does. Default ``start + n``.

    Yields:
        :class:`GradChunk` in draw order. Draw i gets the same noise in any chunk, so its gradient
        is the same up to rounding; the last bits can depend on the vectorized call's size and on
        the draw's place in it (measured: ~1e-16 relative in float64 on the toy problems, for every
        estimator but rf). With ``aligned`` and the same m, a run resumed anywhere computes every
        draw in the same call as a run that never stopped: the same bits.
    """
    spec = parse_spec(spec)
    est = build(spec)
    dev = resolve_device(device) if device is not None else None
    prob = prepare(problem, device=dev, dtype=resolve_dtype(dtype))
    dev = next(iter(prob.params.values())).device
    names = select_params(prob, params)
    key = rng.stream_key(seed, str(spec))
    requests = noise_requests(prob, est)
    noise_dtype = prob.params[names[0]].dtype
    if not noise_dtype.is_floating_point:
        raise SpecError(f"parameter {names[0]!r} is {noise_dtype}; only floating parameters have gradients")
    sizer = make_sizer(dev, prob, est, names, chunk, parse_memory(max_memory))
    fn = METHODS[choose_method(dev, method, prob, est, names, sizer.size)]
    i, end = int(start), int(start) + int(n)
    grid = aligned and (sizer.fixed or sizer.memory is None)
    limit = max(end, int(run_end)) if grid and run_end is not None else end
    if grid:
        i = (i // sizer.size) * sizer.size
    while i < end:
        m = min(sizer.size, limit - i)
        draws = torch.arange(i, i + m, dtype=torch.int64, device=dev)
        grads = None
        try:
            sizer.start()
            noise = rng.draw_noise(requests, key, draws, dtype=noise_dtype, device=dev)
            grads = fn(prob, est, names, noise)
            del noise
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            if not is_oom(e):
                raise
        if grads is None:  # out of memory: free, halve, retry the same draws
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            sizer.failed(m)
            continue
        sizer.observed(m)
        lo, hi = max(i, int(start)), min(i + m, end)  # an aligned chunk's head or tail: drawn, dropped
        yield GradChunk(lo, grads[lo - i:hi - i] if (lo, hi) != (i, i + m) else grads)
        i += m


__all__ = ["METHODS", "GradChunk", "choose_method", "engine_path", "loop_gradients", "resolved_path",
           "sample_gradients", "vmap_gradients"]
