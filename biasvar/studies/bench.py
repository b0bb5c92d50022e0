"""``biasvar bench``: draws/s of the vectorized engine against a plain per-draw ``autograd.grad`` loop.

For each estimator, on the same problem and the same counter-based noise:

* **engine**: :func:`biasvar.engine.sample_gradients` (vmap over draws, chunked to memory);
* **loop**: what one would write by hand, one draw at a time: that draw's noise, a forward pass,
  ``torch.autograd.grad`` (:func:`biasvar.engine.loop_gradients` on one draw);

their draws/s (best of ``repeats`` rounds; in each round every estimator's engine, loop and noise
are timed in turn, so a noisy shared machine favours no path and no estimator),
the ratio, the largest absolute difference between the two paths' gradients of the same draws,
the peak memory (CUDA: peak allocated by torch during the engine's timing; CPU: the process's
peak resident size so far), and the achieved matmul FLOP/s (matmul FLOPs of one draw counted by
``torch.utils.flop_counter.FlopCounterMode``, times the engine's draws/s; element-wise work
is not counted, so this is a lower bound).

Roofline and noise. The same run measures the device's fp32 GEMM rate (square ``torch.mm`` of
:data:`GEMM_SIZE` in the working dtype, best of a few, measured at the start and again after every
round so that a busy moment does not lower the roof; the best is used) and reports each estimator's matmul
FLOP/s as a fraction of it (``gemm_fraction``), and the time the engine's noise generation
(:func:`biasvar.rng.draw_noise` for the engine's chunks of the same draws) takes as a share of
a draw's time (``noise_share``). Noise of kind ``counter`` (gr-mc's conditional uniforms) is
generated inside its estimator's kernel, so it counts in the draw's gradient time, not in
``noise_share`` (which then covers the address and the other noise). ``engine_method`` is the
path ``method="auto"`` chose from its calibration (:mod:`biasvar.calibrate`).

CPU time. On a CPU every rate is also given per second of this process's CPU time
(``*_per_cpu_s``, ``noise_share_cpu``, ``gemm_fraction_cpu``): on a machine shared with other
jobs, wall time includes the waits for a core (the longer a kernel, the more time slices it
loses), while a one-thread run's CPU time is what the work costs on a core; with more threads it
is summed over them (work per core-second).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from biasvar import engine, provenance, rng
from biasvar.atomic import write_atomic
from biasvar.device import matmul_precision
from biasvar.errors import UnsupportedError
from biasvar.estimators import build, grmc_native
from biasvar.names import BENCH_ESTIMATORS
from biasvar.problems.base import Problem, noise_requests
from biasvar.spec import parse_spec

DEFAULT_ESTIMATORS = BENCH_ESTIMATORS
GEMM_SIZE = {"cpu": 2048, "cuda": 8192}  # square fp32 GEMM measured as the roofline


def _binary_batch(shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full(shape, 0.5), generator=g).to(dtype)


def _vae_fig1(seed: int) -> Problem:
    from biasvar.problems.vae import VAE

    p = VAE(categories=16, vars=16, seed=seed)
    p.batch = _binary_batch(tuple(p.batch.shape), seed + 1, p.batch.dtype)
    return p


def _hvae(seed: int) -> Problem:
    from biasvar.problems.hvae import HVAE

    p = HVAE(seed=seed)
    p.batch = _binary_batch(tuple(p.batch.shape), seed + 1, p.batch.dtype)
    return p


def _toy_cat(seed: int) -> Problem:
    from biasvar.problems.toy import ToyCat

    return ToyCat(vars=3, categories=4, seed=seed)


#: Bench problems: the Fig. 1 VAE (16 x 16, batch 200) at its random initialisation with a random
#: binary batch (timing does not depend on the data), the default hvae, and the toy problem.
PROBLEMS: MappingProxyType[str, Callable[[int], Problem]] = MappingProxyType(
    {"vae-fig1": _vae_fig1, "hvae": _hvae, "toy-cat": _toy_cat}
)


def bench_problem(name: str, *, seed: int = 0) -> Problem:
    """A bench problem by name (see :data:`PROBLEMS`)."""
    make = PROBLEMS.get(name)
    if make is None:
        raise UnsupportedError(f"unknown bench problem {name!r}; expected one of: {', '.join(PROBLEMS)}")
    return make(seed)


@dataclass(frozen=True)
class BenchRow:
    """One estimator's figures."""

    spec: str
    engine_draws_per_s: float
    loop_draws_per_s: float
    speedup: float  # engine / loop
    max_abs_diff: float  # between the two paths' gradients of the same draws
    max_abs_grad: float  # scale of those gradients
    peak_memory_bytes: int | None
    flops_per_draw: float | None  # matmul FLOPs of one draw (forward + backward)
    engine_flops_per_s: float | None
    engine_chunk: int  # largest chunk the engine used
    n_engine: int
    n_loop: int
    engine_method: str = "vmap"  # the path the engine ran (auto: the calibrated one)
    noise_s_per_draw: float | None = None  # rng.draw_noise time per draw, in the engine's chunks
    noise_share: float | None = None  # noise_s_per_draw x engine draws/s
    gemm_fraction: float | None = None  # engine_flops_per_s / the run's GEMM FLOP/s
    # the same per second of this process's CPU time (CPU device only): on a shared machine a
    # one-thread run's CPU time is what the work costs on a core, without the waits for one
    engine_draws_per_cpu_s: float | None = None
    loop_draws_per_cpu_s: float | None = None
    noise_cpu_s_per_draw: float | None = None
    noise_share_cpu: float | None = None
    gemm_fraction_cpu: float | None = None


@dataclass(frozen=True)
class BenchResult:
    """A bench run with its provenance."""

    problem: str
    problem_description: dict[str, Any]
    dim: int
    device: str
    dtype: str
    method: str
    environment: dict[str, Any]
    rows: list[BenchRow]
    command: str = ""
    gemm_flops_per_s: float | None = None  # best square GEMM of gemm_size in the working dtype, this run
    gemm_size: int | None = None
    gemm_flops_per_cpu_s: float | None = None  # the same per CPU second of this process (CPU device)
    created: str = field(default_factory=lambda: _now())


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clocks() -> tuple[float, float]:
    """Wall time and this process's CPU time (all threads)."""
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clocks()
    return max(wall - start[0], 1e-12), max(cpu - start[1], 1e-12)


def _time_engine(problem: Problem, spec: str, *, n: int, device: torch.device, chunk: int | None,
                 max_memory: int | None, method: str) -> tuple[float, float, int, int]:
    """Draws per wall second and per CPU second of the engine over n draws, the largest chunk it
    used, and (CUDA) the peak memory allocated during any of its chunks (the engine resets the peak
    counter at every chunk)."""
    _sync(device)
    t0, largest, peak = _clocks(), 0, 0
    for ch in engine.sample_gradients(problem, spec, n=n, seed=0, start=10_000_000, chunk=chunk,
                                      max_memory=max_memory, method=method):
        largest = max(largest, ch.grads.shape[0])
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
    _sync(device)
    wall, cpu = _since(t0)
    return n / wall, n / cpu, largest, peak


def _time_loop(problem: Problem, spec: str, *, n: int, device: torch.device) -> tuple[float, float]:
    """Draws per wall and per CPU second of the plain loop: per draw its noise, a forward pass and
    ``autograd.grad``."""
    est = build(spec)
    names = list(problem.params)
    requests, key = noise_requests(problem, est), rng.stream_key(0, str(parse_spec(spec)))
    dtype = next(iter(problem.params.values())).dtype
    _sync(device)
    t0 = _clocks()
    for i in range(n):
        draw = torch.tensor([20_000_000 + i], device=device)
        noise = rng.draw_noise(requests, key, draw, dtype=dtype, device=device)
        engine.loop_gradients(problem, est, names, noise)
    _sync(device)
    wall, cpu = _since(t0)
    return n / wall, n / cpu


def gemm_rate(device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
              repeats: int = 3) -> tuple[float, int]:
    """FLOP/s of the best of ``repeats`` square ``size``^3 matrix products (2 size^3 FLOPs each)."""
    wall, _, size = gemm_rates(device, dtype, size, repeats)
    return wall, size


def gemm_rates(device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
               repeats: int = 3) -> tuple[float, float, int]:
    """:func:`gemm_rate` per wall second and per CPU second of this process (best of each)."""
    size = int(size or GEMM_SIZE.get(device.type, 2048))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = _clocks()
        torch.mm(a, b)
        _sync(device)
        wall, cpu = _since(t0)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return 2.0 * size**3 / best_wall, 2.0 * size**3 / best_cpu, size


def _time_noise(problem: Problem, spec: str, *, n: int, chunk: int, device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds per draw of the engine's noise: ``rng.draw_noise`` for n draws in chunks
    of ``chunk``."""
    est = build(spec)
    requests, key = noise_requests(problem, est), rng.stream_key(0, str(parse_spec(spec)))
    dtype = next(iter(problem.params.values())).dtype
    chunk = max(1, int(chunk))
    _sync(device)
    t0 = _clocks()
    for i in range(0, n, chunk):
        draws = torch.arange(30_000_000 + i, 30_000_000 + min(n, i + chunk), device=device)
        rng.draw_noise(requests, key, draws, dtype=dtype, device=device)
    _sync(device)
    wall, cpu = _since(t0)
    return wall / n, cpu / n


def _flops_per_draw(problem: Problem, spec: str, device: torch.device) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:  # pragma: no cover
        return None
    est = build(spec)
    dtype = next(iter(problem.params.values())).dtype
    noise = rng.draw_noise(noise_requests(problem, est), rng.stream_key(0, spec),
                           torch.tensor([0], device=device), dtype=dtype, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        engine.loop_gradients(problem, est, list(problem.params), noise)
    return float(counter.get_total_flops()) or None


def _max_diff(problem: Problem, spec: str, *, m: int, chunk: int | None, method: str) -> tuple[float, float]:
    est = build(spec)
    names = list(problem.params)
    dtype = next(iter(problem.params.values())).dtype
    device = next(iter(problem.params.values())).device
    fast = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=m, seed=0, chunk=chunk,
                                                               method=method)])
    noise = rng.draw_noise(noise_requests(problem, est), rng.stream_key(0, str(parse_spec(spec))),
                           torch.arange(m, device=device), dtype=dtype, device=device)
    slow = engine.loop_gradients(problem, est, names, noise)
    return float((fast - slow).abs().max()), float(slow.abs().max())


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def bench(
    problem: Problem,
    specs: Sequence[str] = DEFAULT_ESTIMATORS,
    *,
    name: str = "problem",
    n: int = 64,
    n_loop: int = 16,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    chunk: int | None = None,
    max_memory: int | str | None = None,
    method: str = "auto",
    repeats: int = 3,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Bench the engine against the per-draw loop for each estimator in ``specs``.

    Args:
        problem: the problem (moved to ``device``/``dtype``; the caller's object is not modified).
        n, n_loop: draws timed per round for the engine and for the loop.
        repeats: interleaved rounds; the best draws/s of each path is reported.
        chunk, max_memory, method: passed to the engine.
        progress: called with a short message before each measurement.
    """
    dev = engine.resolve_device(device)
    precision = matmul_precision(dtype, dev)
    load_start = _load()
    prob = engine.prepare(problem, device=dev, dtype=engine.resolve_dtype(dtype))
    mem = engine.parse_memory(max_memory)
    say = progress or (lambda msg: None)
    work_dtype = next(iter(prob.params.values())).dtype
    say("GEMM roofline")
    gemm, gemm_cpu, gemm_size = gemm_rates(dev, work_dtype)
    gemms, gemms_cpu = [gemm], [gemm_cpu]
    rows = []
    canon = [str(parse_spec(raw)) for raw in specs]
    for spec in canon:
        say(f"{spec}: warm-up")
        _time_engine(prob, spec, n=min(n, 4), device=dev, chunk=chunk, max_memory=mem, method=method)
        _time_loop(prob, spec, n=1, device=dev)
    best = {spec: {"engine": 0.0, "loop": 0.0, "chunk": 0, "peak": 0, "noise": float("inf"), "engine_cpu": 0.0,
                   "loop_cpu": 0.0, "noise_cpu": float("inf")} for spec in canon}
    for r in range(repeats):  # rounds outside, estimators inside: a busy spell hits every estimator alike
        for spec in canon:
            b = best[spec]
            say(f"{spec}: round {r + 1}/{repeats}")
            rate, rate_cpu, used, top = _time_engine(prob, spec, n=n, device=dev, chunk=chunk, max_memory=mem,
                                                     method=method)
            b["engine"], b["chunk"], b["peak"] = max(b["engine"], rate), max(b["chunk"], used), max(b["peak"], top)
            b["engine_cpu"] = max(b["engine_cpu"], rate_cpu)
            loop, loop_cpu = _time_loop(prob, spec, n=n_loop, device=dev)
            b["loop"], b["loop_cpu"] = max(b["loop"], loop), max(b["loop_cpu"], loop_cpu)
            noise, noise_cpu = _time_noise(prob, spec, n=n, chunk=b["chunk"], device=dev)
            b["noise"], b["noise_cpu"] = min(b["noise"], noise), min(b["noise_cpu"], noise_cpu)
        wall, cpu, _ = gemm_rates(dev, work_dtype, gemm_size)  # the roofline again, after every round
        gemms.append(wall)
        gemms_cpu.append(cpu)
    for spec in canon:
        b = best[spec]
        peak = b["peak"] if dev.type == "cuda" else _peak_rss_bytes()
        say(f"{spec}: gradients of both paths")
        diff, scale = _max_diff(prob, spec, m=min(n_loop, 8), chunk=chunk, method=method)
        flops = _flops_per_draw(prob, spec, dev)
        chosen = engine.choose_method(dev, method, prob, build(spec), engine.select_params(prob, None), b["chunk"])
        rows.append(BenchRow(
            spec=spec, engine_draws_per_s=b["engine"], loop_draws_per_s=b["loop"],
            speedup=b["engine"] / b["loop"] if b["loop"] else float("nan"),
            max_abs_diff=diff, max_abs_grad=scale, peak_memory_bytes=int(peak), flops_per_draw=flops,
            engine_flops_per_s=flops * b["engine"] if flops else None, engine_chunk=b["chunk"],
            n_engine=n * repeats, n_loop=n_loop * repeats, engine_method=chosen, noise_s_per_draw=b["noise"],
            noise_share=b["noise"] * b["engine"],
            **({"engine_draws_per_cpu_s": b["engine_cpu"], "loop_draws_per_cpu_s": b["loop_cpu"],
                "noise_cpu_s_per_draw": b["noise_cpu"], "noise_share_cpu": b["noise_cpu"] * b["engine_cpu"]}
               if dev.type == "cpu" else {}),
        ))
    env = provenance.environment(dev)
    env["peak_memory_kind"] = "cuda_max_allocated" if dev.type == "cuda" else "process_peak_rss"
    env["load_average_start"], env["load_average_end"] = load_start, _load()  # other work on the machine
    env["settings"] = {"n": n, "n_loop": n_loop, "repeats": repeats, "chunk": chunk, "max_memory": mem}
    gemm, gemm_cpu = max(gemms), max(gemms_cpu)
    rows = [dataclasses.replace(  # every row against the best GEMM of the whole run
        r, gemm_fraction=r.engine_flops_per_s / gemm if r.engine_flops_per_s else None,
        gemm_fraction_cpu=(r.flops_per_draw * r.engine_draws_per_cpu_s / gemm_cpu
                           if r.flops_per_draw and r.engine_draws_per_cpu_s else None)) for r in rows]
    env["gemm_flops_per_s_measured"] = gemms  # at the start and after every round
    env["gemm_flops_per_cpu_s_measured"] = gemms_cpu
    env["compile"] = {"enabled": rng.compile_enabled(),
                      "kernels": rng.KERNELS.in_use(),  # fused kernels in use
                      "native_kernels": grmc_native.in_use()}  # GR-MC's native CPU kernel, by capability
    return BenchResult(problem=name, problem_description=prob.describe(), dim=prob.dim, device=str(dev),
                       dtype=precision or str(work_dtype).replace("torch.", ""), method=method, environment=env,
                       rows=rows,
                       command=command, gemm_flops_per_s=gemm, gemm_size=gemm_size,
                       gemm_flops_per_cpu_s=gemm_cpu if dev.type == "cpu" else None)


def default_bench_path(result: BenchResult, folder: str | Path = "results/bench") -> Path:
    """``results/bench/<problem>-<device kind>-<device name>.json``."""
    kind = result.device.split(":")[0]
    dev = re.sub(r"[^A-Za-z0-9]+", "-", str(result.environment.get("device_name", kind))).strip("-").lower()
    return Path(folder) / f"{result.problem}-{kind}-{dev}.json"


def write_bench(result: BenchResult, path: str | Path) -> Path:
    """Write the result as JSON (atomically)."""
    return write_atomic(path, json.dumps(asdict(result), indent=1) + "\n")
