"""The draw path of a run, settled once: the prepared problem, the estimator, the differentiated
parameters, the chunk sizing and the gradient path (vmap or loop), and the iterator over draws.

:func:`plan_draws` makes a :class:`DrawPath` from a problem already prepared on its device
(:func:`~biasvar.engine.settings.prepare`); a run plan (:mod:`biasvar.engine.plan`) makes one per
run and every fill of the run (the whole run, or its shards in this process) draws through it.
:func:`sample_gradients` is the standalone form (it prepares the problem itself) for callers that
want gradients without a run file.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from biasvar import rng
from biasvar.device import matmul_precision, resolve_device, resolve_dtype
from biasvar.engine import gradients
from biasvar.engine.calibration import PROCESS, Calibration
from biasvar.engine.chunks import ChunkSizer, is_oom, make_sizer
from biasvar.engine.gradients import GradChunk
from biasvar.engine.settings import parse_memory, prepare, select_params
from biasvar.errors import SpecError
from biasvar.estimators import Estimator, UserPlugIn, build
from biasvar.estimators.plugin import vmap_refusal
from biasvar.problems.base import Problem, noise_requests
from biasvar.spec import EstimatorSpec, parse_spec


def choose_method(device: torch.device, method: str = "auto", problem: Problem | None = None,
                  est: Estimator | None = None, names: Sequence[str] | None = None, chunk: int = 8,
                  calibration: Calibration | None = None) -> str:
    """``auto`` -> the faster of vmap and loop for this problem and estimator on this device
    (:meth:`Calibration.method` of ``calibration``, default the process's); ``auto`` without a
    problem answers ``auto``."""
    if method == "auto":
        if problem is None or est is None:
            return "auto"
        return (calibration or PROCESS).method(problem, est, list(names or problem.params), device, chunk=chunk)
    if method not in gradients.METHODS:
        raise SpecError(f"unknown method {method!r}; expected auto, vmap or loop")
    return method


@dataclass(frozen=True)
class DrawPath:
    """How a run's draws are computed: fixed for the run (the sizer is copied per fill)."""

    problem: Problem  # prepared: on the run's device and dtype, detached
    estimator: Estimator
    names: tuple[str, ...]
    device: torch.device
    sizer: ChunkSizer  # the initial sizing; :meth:`draws` works on a copy
    method: str  # "vmap" or "loop": the path taken
    method_requested: str  # "auto", "vmap" or "loop"
    refusal: str | None = None  # why a plug-in estimator runs on the loop (not vmap-safe)

    def record(self) -> dict[str, Any]:
        """What a run header records of the path: the path taken, the one asked for (``auto`` =
        calibrated) and the chunk (draws per call; ``adaptive`` where the size follows measured
        memory, on CUDA without a fixed chunk)."""
        s = self.sizer
        out = {"method": self.method, "chunk": int(s.size) if s.fixed or s.memory is None else "adaptive",
               "method_requested": self.method_requested}
        if self.refusal:
            out["vmap_refused"] = self.refusal
        return out

    def draws(self, seed: int, start: int, end: int, *, aligned: bool = False,
              run_end: int | None = None) -> Iterator[GradChunk]:
        """Draws ``start .. end`` of the run ``(problem, spec, seed)``, in chunks (see
        :func:`sample_gradients` for ``aligned`` and ``run_end``)."""
        prob, est, names, dev = self.problem, self.estimator, list(self.names), self.device
        key = rng.stream_key(seed, str(est.spec))
        requests = noise_requests(prob, est)
        noise_dtype = prob.params[names[0]].dtype
        sizer = dataclasses.replace(self.sizer)
        fn = gradients.METHODS[self.method]
        i, end = int(start), int(end)
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


def plan_draws(problem: Problem, est: Estimator, names: Sequence[str], *, chunk: int | None = None,
               max_memory: int | None = None, method: str = "auto",
               calibration: Calibration | None = None, draws: int | None = None) -> DrawPath:
    """The :class:`DrawPath` of a prepared problem: sizes the chunks and chooses the path (``auto``
    runs, or reuses, a calibration) once.

    ``draws``: how many draws the path will compute (a run's n), where known. When they fit in
    :data:`UNTIMED_CHUNKS` chunks, ``auto`` takes vmap without timing: a calibration times a whole
    chunk through vmap three times, about as long as such a run takes, so it would cost more than
    it could save (both paths give the same numbers up to rounding). Where vmap's chunk is that
    large against the run (tiny models: 4096 draws of toy-cat), vmap is the faster path anyway."""
    names = list(names)
    dtype = problem.params[names[0]].dtype
    if not dtype.is_floating_point:
        raise SpecError(f"parameter {names[0]!r} is {dtype}; only floating parameters have gradients")
    dev = next(iter(problem.params.values())).device
    sizer = make_sizer(dev, problem, est, names, chunk, max_memory)
    refusal = vmap_refusal(est) if isinstance(est, UserPlugIn) and method != "loop" else None
    if refusal:  # the user's function is not vmap-safe: one line, then the per-draw loop
        if refusal not in _REFUSED:
            _REFUSED.add(refusal)
            print(refusal, file=sys.stderr)
        return DrawPath(problem, est, tuple(names), dev, sizer, "loop", method, refusal)
    if method == "auto" and draws is not None and int(draws) <= UNTIMED_CHUNKS * sizer.size:
        return DrawPath(problem, est, tuple(names), dev, sizer, "vmap", method)
    chosen = choose_method(dev, method, problem, est, names, sizer.size, calibration)
    return DrawPath(problem, est, tuple(names), dev, sizer, chosen, method)


#: a run of at most this many chunks takes vmap without a calibration (see :func:`plan_draws`)
UNTIMED_CHUNKS = 3

_REFUSED: set[str] = set()  # refusals printed in this process (once each)


def _standalone(problem: Problem, spec: str | EstimatorSpec, device: str | torch.device | None,
                dtype: str | torch.dtype | None, params: str | None, chunk: int | None,
                max_memory: int | str | None, method: str) -> DrawPath:
    est = build(parse_spec(spec))
    dev = resolve_device(device) if device is not None else None
    matmul_precision(dtype, dev if dev is not None else next(iter(problem.params.values())).device)
    prob = prepare(problem, device=dev, dtype=resolve_dtype(dtype))
    return plan_draws(prob, est, select_params(prob, params), chunk=chunk, max_memory=parse_memory(max_memory),
                      method=method)


def engine_path(problem: Problem, spec: str | EstimatorSpec, *, device: str | torch.device | None = None,
                dtype: str | torch.dtype | None = None, params: str | None = None, chunk: int | None = None,
                max_memory: int | str | None = None, method: str = "auto") -> dict:
    """The path :func:`sample_gradients` takes with these arguments, without drawing:
    ``{"method": "vmap" | "loop", "method_requested": method, "chunk": int | "adaptive"}``."""
    return _standalone(problem, spec, device, dtype, params, chunk, max_memory, method).record()


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
    path = _standalone(problem, spec, device, dtype, params, chunk, max_memory, method)
    yield from path.draws(seed, int(start), int(start) + int(n), aligned=aligned, run_end=run_end)


__all__ = ["UNTIMED_CHUNKS", "DrawPath", "choose_method", "engine_path", "plan_draws", "sample_gradients"]
