"""The sampling engine: many independent gradient samples of one estimator at one snapshot.

A *draw* is one gradient sample: the gradient in the selected parameters of
``draw_loss(problem, estimator, params, noise_i)`` (a batch-mean loss for a plug-in estimator,
the leave-one-out surrogate of M forward passes for ``rf(M)``). The engine computes a chunk of
draws at once,

    ``torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(selected_params, noise)``,

so a chunk of m draws is one batched forward and one batched backward: the parameters are
shared (``in_dims=None``), the noise is batched, and the per-draw weight gradients come out as
batched products, with no Python-level backward per draw (:func:`vmap_gradients`).
:func:`loop_gradients` is the slow, obviously correct twin (one ``torch.autograd.grad`` per draw
on the same noise) used by the tests and ``biasvar bench``.

Reproducibility. Draw ``i`` of a run uses the noise ``rng.draw_noise(requests, key, [i])`` with
``key = rng.stream_key(seed, canonical_spec)``. That noise is a counter-based hash of
``(key, i, element)`` (see :mod:`biasvar.rng`): there is no generator state, so draw i gets the
same numbers whichever chunk computes it, whether the run was interrupted and resumed, and on
whatever device. The chunk size therefore only caps memory and never changes the numbers
(beyond float summation order). The stream key includes the canonical spec, so two estimators
run with the same seed get independent noise, as Eq. 16 assumes for the reference's and the
tested estimator's draws.

Chunk size. On CUDA it follows a memory budget (``max_memory``, default 70 % of the free
memory plus what is already allocated): the first chunk is one draw, whose peak memory is
measured; later chunks are sized to the budget from the measured peak per draw; an
out-of-memory error halves the chunk and retries the same draws (and the chunk never grows
past the size that failed). A problem that fits one draw never dies of OOM. On the CPU the
chunk is sized from an estimate of the bytes per draw against ``max_memory`` (default 512 MiB),
capped at :data:`CPU_MAX_CHUNK`.

CPU method. Measured on this 2-core CPU with ``biasvar bench`` (results/bench/README.md): on the
toy problems vmap is 20-580x faster than the loop (the loop is all Python and kernel-launch
overhead); on the Fig. 1 VAE with two threads it is 1.0-6x faster (the loop's many small kernels
suffer most from a busy machine), and with one thread the two are within 10 % (0.90-1.00x; the
VAE's ``binary_cross_entropy_with_logits`` has no fused vmap rule, and with ``softplus(l) - x l``
instead vmap is 1.2x faster). So ``method="auto"`` is vmap on every device; smaller chunks are
slightly faster on the CPU, hence its 512 MiB default budget.

Block statistics (what a run file stores) are computed here in float64 on the device:
per block the sum of the finite draws and, per parameter group, the sum of squares and the
sum of squared deviations from the block mean, merged chunk by chunk with the parallel
(Chan et al.) formula, so they do not depend on the chunk size either.
"""

from __future__ import annotations

import copy
import datetime as _dt
import fnmatch
import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import biasvar
from biasvar import rng, store
from biasvar.errors import SpecError, UnsupportedError
from biasvar.estimators import Estimator, build
from biasvar.problems.base import Problem, draw_loss, noise_requests
from biasvar.spec import EstimatorSpec, parse_spec

CPU_MAX_CHUNK = 4096  # draws per chunk on the CPU; the memory estimate limits big problems
CUDA_MAX_CHUNK = 8192
CPU_DEFAULT_MEMORY = 512 << 20  # bytes: ~10 draws of the Fig. 1 VAE per chunk (see the module doc)
CUDA_FREE_FRACTION = 0.7
KEEP_SEED = 0x6B656570  # the kept coordinates depend on (dim, K) only: the same across runs

# Block-size rule (see choose_block_size).
SUM_BUDGET_BYTES = 150 << 20  # the float32 block sums of one run
MIN_BLOCKS, MAX_BLOCKS = 32, 100

STATS_ELEMENTS = 1 << 24  # entries of one parameter group per step of the block statistics (128 MB)

ProgressFn = Callable[[int, int, int, float], None]


# ---------------------------------------------------------------------------------------------
# settings


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; refuses CUDA where there is none."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UnsupportedError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError(f"device {device!r} requested but CUDA is not available here; "
                               "use --device cpu")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
           "float64": torch.float64, "fp64": torch.float64, "double": torch.float64}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None (keep the snapshot's dtype), a torch dtype, or "float32"/"float64"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise SpecError(f"unknown dtype {dtype!r}; expected float32 or float64") from None


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def parse_memory(text: str | int | None) -> int | None:
    """``"4GB"``, ``"512MiB"``, ``"1.5g"`` or a number of bytes -> bytes (binary units)."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise SpecError(f"cannot read memory size {text!r}; expected e.g. 4GB, 512MB or a number of bytes")
    return int(float(m.group(1)) * _UNITS[unit])


def select_params(problem: Problem, pattern: str | None = None) -> list[str]:
    """Names of the parameters matching ``pattern``, in the problem's layout order.

    Args:
        pattern: a glob on parameter names (``encoder.0.*``), several separated by commas, or
            None / ``"*"`` for all parameters.
    """
    names = list(problem.params)
    if pattern is None or pattern.strip() in ("", "*"):
        return names
    globs = [g.strip() for g in pattern.split(",") if g.strip()]
    chosen = [k for k in names if any(fnmatch.fnmatchcase(k, g) for g in globs)]
    if not chosen:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise SpecError(f"no parameter matches --params {pattern!r}; the parameters are: {shown}")
    return chosen


def params_glob(pattern: str | None) -> str:
    """The canonical form of a parameter glob stored in run files ("*" for all)."""
    if pattern is None or pattern.strip() in ("", "*"):
        return "*"
    return ",".join(g.strip() for g in pattern.split(",") if g.strip())


def prepare(problem: Problem, *, device: torch.device | str | None = None,
            dtype: torch.dtype | None = None) -> Problem:
    """A shallow copy of ``problem`` on ``device``/``dtype`` with detached parameters (the
    caller's problem is left as it is)."""
    out = copy.copy(problem)
    out.params = {k: v.detach() for k, v in problem.params.items()}
    if device is None:
        device = next(iter(out.params.values())).device if out.params else "cpu"
    return out.to(device, dtype)


def selected_layout(problem: Problem, names: Sequence[str]) -> list[tuple[str, tuple[int, ...], int]]:
    """``(name, shape, offset)`` of the selected parameters in the flat gradient vector."""
    out, offset = [], 0
    for k in names:
        p = problem.params[k]
        out.append((k, tuple(p.shape), offset))
        offset += p.numel()
    return out


# ---------------------------------------------------------------------------------------------
# per-draw gradients


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


def choose_method(device: torch.device, method: str = "auto") -> str:
    """``auto`` -> ``vmap`` on every device (measured on this CPU too: see the module doc)."""
    if method == "auto":
        return "vmap"
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r}; expected auto, vmap or loop")
    return method


# ---------------------------------------------------------------------------------------------
# chunk sizing


def _noise_numel(requests: Mapping[str, Mapping[str, tuple[tuple[int, ...], str]]]) -> int:
    return sum(math.prod(shape) for node in requests.values() for shape, _ in node.values())


def estimate_bytes_per_draw(problem: Problem, est: Estimator, names: Sequence[str]) -> int:
    """A rough upper estimate of the memory one draw of a vmap chunk needs (CPU chunk sizing).

    Noise: its int64 hash intermediates and a few float copies; gradients: the per-draw
    gradient, its float64 statistics and autograd intermediates; activations: a guess of a few
    copies of the batch per forward pass.
    """
    item = next(iter(problem.params.values())).element_size()
    noise = _noise_numel(noise_requests(problem, est))
    dim = sum(problem.params[k].numel() for k in names)
    acts = problem.batch.numel() * item * 16 * int(getattr(est, "cost", 1))
    return int(noise * (4 * 8 + 6 * item) + dim * (4 * item + 16) + acts + (1 << 16))


@dataclass(frozen=True)
class _CudaMemory:
    """What the chunk sizer measures on CUDA (tests substitute a fake)."""

    device: torch.device

    def allocated(self) -> int:
        torch.cuda.synchronize(self.device)
        return torch.cuda.memory_allocated(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)


@dataclass
class _ChunkSizer:
    """Chunk size from a memory budget; halves on OOM and never again exceeds a size that failed.

    With a ``memory`` probe (CUDA) and no fixed chunk, the first chunk is ``size`` draws (1), and
    after every chunk the size becomes ``(0.8 budget - base) / (peak per draw)``, growing at most
    4x per chunk and never above ``ceiling``. Without a probe (CPU) the size stays as given.
    """

    size: int
    budget: int
    fixed: bool
    ceiling: int
    memory: Any = None
    device: str = "cpu"
    base: int = 0

    def start(self) -> None:
        if self.memory is not None:
            self.base = self.memory.allocated()
            self.memory.reset_peak()

    def observed(self, m: int) -> None:
        """After a successful chunk of m draws: resize from the measured peak."""
        if self.fixed or self.memory is None:
            return
        per_draw = max(1, (self.memory.peak() - self.base) // max(1, m))
        room = int(0.8 * self.budget) - self.base
        want = max(1, room // per_draw)
        self.size = int(max(1, min(want, 4 * max(m, 1), self.ceiling)))

    def failed(self, m: int) -> None:
        if m <= 1:
            raise UnsupportedError(
                f"one draw does not fit in memory on {self.device} (budget {self.budget / 2**30:.2f} GiB); "
                "raise --max-memory, use --dtype float32, select fewer parameters with --params, "
                "or use the CPU"
            )
        self.ceiling = max(1, m // 2)
        self.size = self.ceiling


def _sizer(device: torch.device, problem: Problem, est: Estimator, names: Sequence[str],
           chunk: int | None, max_memory: int | None) -> _ChunkSizer:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = max_memory or int(torch.cuda.memory_allocated(device) + CUDA_FREE_FRACTION * free)
        ceiling = chunk or CUDA_MAX_CHUNK
        return _ChunkSizer(chunk or 1, budget, chunk is not None, ceiling, _CudaMemory(device), str(device))
    budget = max_memory or CPU_DEFAULT_MEMORY
    guess = max(1, budget // estimate_bytes_per_draw(problem, est, names))
    size = chunk or int(min(CPU_MAX_CHUNK, guess))
    return _ChunkSizer(size, budget, True, size, None, str(device))


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


# ---------------------------------------------------------------------------------------------
# the draw iterator


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

    Yields:
        :class:`GradChunk` in draw order; the gradients of draw i do not depend on the chunking.
    """
    spec = parse_spec(spec)
    est = build(spec)
    dev = resolve_device(device) if device is not None else None
    prob = prepare(problem, device=dev, dtype=resolve_dtype(dtype))
    dev = next(iter(prob.params.values())).device
    names = select_params(prob, params)
    fn = METHODS[choose_method(dev, method)]
    key = rng.stream_key(seed, str(spec))
    requests = noise_requests(prob, est)
    noise_dtype = prob.params[names[0]].dtype
    if not noise_dtype.is_floating_point:
        raise SpecError(f"parameter {names[0]!r} is {noise_dtype}; only floating parameters have gradients")
    sizer = _sizer(dev, prob, est, names, chunk, parse_memory(max_memory))
    i, end = int(start), int(start) + int(n)
    while i < end:
        m = min(sizer.size, end - i)
        draws = torch.arange(i, i + m, dtype=torch.int64, device=dev)
        grads = None
        try:
            sizer.start()
            noise = rng.draw_noise(requests, key, draws, dtype=noise_dtype, device=dev)
            grads = fn(prob, est, names, noise)
            del noise
        except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
            if not _is_oom(e):
                raise
        if grads is None:  # out of memory: free, halve, retry the same draws
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            sizer.failed(m)
            continue
        sizer.observed(m)
        yield GradChunk(i, grads)
        i += m


# ---------------------------------------------------------------------------------------------
# block statistics


@dataclass(frozen=True)
class Moments:
    """Streaming moments of a set of draws (float64): merge with :func:`merge_moments`."""

    count: int
    sum: Tensor  # [dim]
    m2: Tensor  # [G] per group: sum_i ||x_i - mean||^2
    sumsq: Tensor  # [G] per group: sum_i ||x_i||^2


def chunk_moments(x: Tensor, bounds: Sequence[tuple[int, int]]) -> Moments:
    """Moments of the rows of ``x`` [m, dim] (all finite, m >= 1); groups are ``(offset, size)``."""
    m = x.shape[0]
    sums, m2, sq = [], [], []
    for off, size in bounds:
        xs = x[:, off:off + size].to(torch.float64)  # [m, size]
        s = xs.sum(0)
        sums.append(s)
        sq.append(xs.square().sum())
        m2.append((xs - s / m).square().sum())
    return Moments(m, torch.cat(sums), torch.stack(m2), torch.stack(sq))


def merge_moments(a: Moments, b: Moments, bounds: Sequence[tuple[int, int]]) -> Moments:
    """Parallel-variance merge (Chan, Golub & LeVeque 1979).

    ``M2 = M2a + M2b + na nb / n ||mean_b - mean_a||^2`` per group.
    """
    n = a.count + b.count
    delta = b.sum / b.count - a.sum / a.count  # [dim]
    d2 = torch.stack([delta[off:off + size].square().sum() for off, size in bounds])
    return Moments(n, a.sum + b.sum, a.m2 + b.m2 + d2 * (a.count * b.count / n), a.sumsq + b.sumsq)


class BlockBuilder:
    """Accumulates the draws of one block into :class:`biasvar.store.BlockStats`.

    Draws with any non-finite entry are counted and excluded from every statistic.
    """

    def __init__(self, bounds: Sequence[tuple[int, int]], sample_index: np.ndarray,
                 device: torch.device) -> None:
        self.bounds = list(bounds)
        self.largest = max([size for _, size in self.bounds] + [1])
        self.index = torch.as_tensor(np.asarray(sample_index, dtype=np.int64), device=device)
        self.moments: Moments | None = None
        self.nonfinite = 0
        self.samples: list[Tensor] = []

    @property
    def draws(self) -> int:
        return self.nonfinite + (self.moments.count if self.moments else 0)

    def add(self, x: Tensor) -> None:
        """Fold in draws ``x`` [m, dim], a bounded number of rows at a time: the float64 copy of one
        parameter group then takes at most STATS_ELEMENTS entries (128 MB), whatever the chunk."""
        rows = max(1, STATS_ELEMENTS // self.largest)
        for lo in range(0, x.shape[0], rows):
            self._add(x[lo:lo + rows])

    def _add(self, x: Tensor) -> None:
        finite = torch.isfinite(x).all(1)
        bad = int((~finite).sum())
        if bad:
            x = x[finite]
            self.nonfinite += bad
        if x.shape[0] == 0:
            return
        mom = chunk_moments(x, self.bounds)
        self.moments = mom if self.moments is None else merge_moments(self.moments, mom, self.bounds)
        if self.index.numel():
            self.samples.append(x[:, self.index].to(torch.float32))  # moved to the CPU once per block

    def stats(self, dim: int) -> store.BlockStats:
        K = int(self.index.numel())
        mom, G = self.moments, len(self.bounds)
        if mom is None:
            return store.BlockStats(0, self.nonfinite, np.zeros(dim, np.float32), np.zeros(G), np.zeros(G),
                                    np.zeros((0, K), np.float32))
        samples = torch.cat(self.samples).cpu().numpy() if self.samples else np.zeros((0, K), np.float32)
        return store.BlockStats(
            count=mom.count,
            nonfinite=self.nonfinite,
            sum=mom.sum.to(torch.float32).cpu().numpy(),
            m2=mom.m2.cpu().numpy(),
            sumsq=mom.sumsq.cpu().numpy(),
            samples=samples,
        )


def choose_block_size(n: int, dim: int) -> int:
    """Draws per block: the run file's size and the bootstrap's resolution.

    A block costs ``4 * dim`` bytes (its float32 sum). We take ``SUM_BUDGET_BYTES // (4 dim)``
    blocks, clamped to [MIN_BLOCKS, MAX_BLOCKS] = [32, 100], and spread the n draws over them:

    * the analysis bootstraps by resampling blocks, and 32 blocks are enough for honest
      percentile intervals (each block mean is close to Gaussian, the block means are i.i.d.);
    * a Fig. 1 run (dim = 1.15M, n = 1e4) gets 34 blocks of 295 draws: 34 x 4.6 MB = 156 MB
      of sums, plus 10 MB of kept samples (1e4 x 256 float32): under 200 MB;
    * small problems get 100 blocks (e.g. 100 draws each for n = 1e4).

    Above dim = 1.2M the 32-block floor wins over the size budget (32 x 4 dim bytes).
    """
    blocks = int(min(MAX_BLOCKS, max(MIN_BLOCKS, SUM_BUDGET_BYTES // max(1, 4 * dim))))
    return max(1, math.ceil(n / blocks))


def keep_index(dim: int, keep: int) -> np.ndarray:
    """Sorted coordinates whose raw draws are kept: a fixed function of (dim, keep), so every run
    of a snapshot keeps the same coordinates."""
    K = int(max(0, min(keep, dim)))
    if K == dim:
        return np.arange(dim, dtype=np.int64)
    gen = np.random.default_rng(KEEP_SEED)
    return np.sort(gen.choice(dim, size=K, replace=False)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# provenance


def git_commit() -> str:
    """``git rev-parse HEAD`` of the source tree (``+dirty`` if tracked files changed), or "unknown"."""
    root = Path(biasvar.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (Linux: /proc/cpuinfo)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine of this process (run-file and bench provenance)."""
    return {
        "biasvar_version": biasvar.__version__,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
        "device": str(device),
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "git_commit": git_commit(),
    }


def _exact_flat(problem: Problem, names: Sequence[str]) -> np.ndarray | None:
    exact = problem.exact_gradient()
    if exact is None:
        return None
    return torch.cat([exact[k].detach().reshape(-1).to(device="cpu", dtype=torch.float64)
                      for k in names]).numpy()


# ---------------------------------------------------------------------------------------------
# runs


def sample_run(
    snapshot: Any,
    spec: str | EstimatorSpec,
    *,
    n: int,
    seed: int = 0,
    runs_dir: str | Path = "runs",
    params: str | None = None,
    keep: int = 256,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    restart: bool = False,
    block_size: int | None = None,
    max_memory: int | str | None = None,
    chunk: int | None = None,
    method: str = "auto",
    progress: ProgressFn | None = None,
) -> Path:
    """Draw (or resume) the run ``(snapshot, spec, seed)`` up to ``n`` draws; returns its file.

    The file is ``run_path(runs_dir, snapshot.id, spec, seed)``. An existing file with the same
    identity is resumed after its last whole block (a complete one returns at once); one with a
    different identity raises :class:`~biasvar.errors.StoreError` unless ``restart``.

    Args:
        snapshot: a :class:`biasvar.snapshot.Snapshot` (``load_snapshot`` or ``snapshot_of``).
        spec: the estimator, e.g. ``"gr-mc(t=0.1,M=100)"``.
        n: draws wanted (a resumed run with a larger n is extended).
        seed: the run's seed (with the spec, it keys the noise).
        params: glob of the parameters to differentiate; None = all.
        keep: K, raw draws kept of K fixed coordinates (0 = none).
        device, dtype, max_memory, chunk, method: see :func:`sample_gradients`.
        block_size: draws per stored block; None = :func:`choose_block_size`.
        progress: called after every chunk as ``progress(done, total, nonfinite, draws_per_s)``.
    """
    if int(n) < 1:
        raise SpecError(f"n must be at least 1 draw, got {n}")
    spec = parse_spec(spec)
    canon = str(spec)
    if params is None:  # a problem may name the parameters its study measures (qnet: layer 0, App. B.6)
        params = getattr(snapshot.problem, "measure_params", None)
    dev = resolve_device(device)
    tdtype = resolve_dtype(dtype)
    problem = prepare(snapshot.problem, device=dev, dtype=tdtype)
    names = select_params(problem, params)
    layout = selected_layout(problem, names)
    dim = sum(math.prod(shape) for _, shape, _ in layout)
    bounds = [(off, math.prod(shape)) for _, shape, off in layout]
    glob = params_glob(params)
    work_dtype = problem.params[names[0]].dtype
    path = store.run_path(runs_dir, snapshot.id, canon, seed)
    header = {
        "schema_version": store.SCHEMA_VERSION,
        "spec": canon,
        "seed": int(seed),
        "block_size": int(block_size or choose_block_size(int(n), dim)),
        "keep": int(min(keep, dim)),
        "snapshot_hash": snapshot.hash,
        "snapshot_id": snapshot.id,
        "snapshot_path": str(snapshot.path) if snapshot.path else "none",
        "problem": problem.describe(),
        "dataset": snapshot.dataset or {},
        "params_glob": glob,
        "layout": [[k, list(shape), off] for k, shape, off in layout],
        "dim": int(dim),
        "cost": int(spec.cost),
        "dtype": str(work_dtype).replace("torch.", ""),
        "method": choose_method(dev, method),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_n": int(n),
        **environment(dev),
    }
    if not restart and store.is_complete(path, header, int(n)):
        return path  # nothing to do: not even opened for writing
    exact = _exact_flat(problem, names) if restart or not path.exists() else None  # only for a new file
    writer = store.RunWriter.open(path, header, n_target=int(n), group_sizes=np.array([b[1] for b in bounds]),
                                  sample_index=keep_index(dim, keep), exact=exact, restart=restart)
    with writer:
        _fill(writer, problem, spec, n=int(n), seed=int(seed), params=params, bounds=bounds, dim=dim,
              device=dev, chunk=chunk, max_memory=max_memory, method=method, progress=progress)
        writer.finish()
    return path


def _fill(writer: store.RunWriter, problem: Problem, spec: EstimatorSpec, *, n: int, seed: int,
          params: str | None, bounds: list[tuple[int, int]], dim: int, device: torch.device,
          chunk: int | None, max_memory: int | str | None, method: str, progress: ProgressFn | None) -> None:
    """Draw from ``writer.n_done`` to ``n``, committing whole blocks of ``writer.block_size``."""
    done, bs = writer.n_done, writer.block_size
    if done >= n:
        return
    t0 = t_block = time.perf_counter()
    block = BlockBuilder(bounds, writer.sample_index, device)
    block_end = min(done + bs, n)
    pos = done
    for ch in sample_gradients(problem, spec, n=n - done, seed=seed, start=done, params=params,
                               chunk=chunk, max_memory=max_memory, method=method):
        x, i = ch.grads, ch.start
        while x.shape[0]:
            take = min(x.shape[0], block_end - i)
            block.add(x[:take])
            x, i = x[take:], i + take
            if i == block_end:
                now = time.perf_counter()
                writer.append(block.stats(dim), wall_s=now - t_block)
                t_block = now
                block = BlockBuilder(bounds, writer.sample_index, device)
                block_end = min(i + bs, n)
        pos = ch.start + ch.grads.shape[0]
        del ch, x  # let the engine reuse this chunk's memory for the next one
        if progress is not None:
            elapsed = time.perf_counter() - t0
            rate = (pos - done) / elapsed if elapsed > 0 else 0.0
            progress(pos, n, writer.n_nonfinite + block.nonfinite, rate)


# ---------------------------------------------------------------------------------------------
# sweeps


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: the reference, or a tested estimator."""

    spec: str
    seed: int
    n: int
    role: str  # "reference" | "tested"
    path: Path


def plan_sweep(snapshot_id: str, specs: Sequence[str | EstimatorSpec], *, reference: str = "rf(M=4)",
               n: int = 10_000, reference_n: int | None = None, seed: int = 0,
               runs_dir: str | Path = "runs") -> list[PlannedRun]:
    """The runs of a sweep: the reference ``(reference, seed)`` first, then every tested spec
    with ``seed``, except the reference spec itself, which is tested as ``(reference, seed + 1)``:
    an independent second run, so Eq. 16 compares it with an independent reference."""
    ref = str(parse_spec(reference))
    ref_path = store.run_path(runs_dir, snapshot_id, ref, seed)
    runs = [PlannedRun(ref, seed, int(reference_n or n), "reference", ref_path)]
    seen = set()
    for s in specs:
        canon = str(parse_spec(s))
        if canon in seen:
            continue
        seen.add(canon)
        sd = seed + 1 if canon == ref else seed
        runs.append(PlannedRun(canon, sd, int(n), "tested", store.run_path(runs_dir, snapshot_id, canon, sd)))
    return runs


def _done_so_far(path: Path) -> int:
    if not path.is_file():
        return 0
    try:
        return int(store.read_run(path, load_sums=False).attrs["n_done"])
    except Exception:  # noqa: BLE001 - an unreadable file is redone or refused by sample_run
        return 0


def sweep_runs(
    snapshot: Any,
    specs: Sequence[str | EstimatorSpec],
    *,
    reference: str = "rf(M=4)",
    n: int = 10_000,
    reference_n: int | None = None,
    seed: int = 0,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    progress: Callable[[int, int, int, float, str], None] | None = None,
    **sample_kwargs: Any,
) -> list[PlannedRun]:
    """Run the reference and every tested spec (see :func:`plan_sweep`); complete runs are
    skipped, partial ones resumed.

    Writes ``<runs_dir>/<snapshot-id>/sweep-<name>.json`` (which file is the reference, which
    are tested) when ``name`` is given.

    Args:
        progress: ``progress(done, total, nonfinite, draws_per_s, current_spec)`` over all runs.
        sample_kwargs: passed to :func:`sample_run` (params, keep, device, dtype, max_memory, ...).
    """
    plan = plan_sweep(snapshot.id, specs, reference=reference, n=n, reference_n=reference_n, seed=seed,
                      runs_dir=runs_dir)
    if name:
        _write_manifest(snapshot, plan, name, runs_dir)
    total = sum(r.n for r in plan)
    current = {r.path: min(r.n, _done_so_far(r.path)) for r in plan}  # draws done per run
    nonfinite_done = [0]  # non-finite draws of the runs finished in this sweep
    for run in plan:

        def report(done: int, _total: int, nonfinite: int, rate: float, run: PlannedRun = run) -> None:
            current[run.path] = min(done, run.n)
            if progress is not None:
                progress(sum(current.values()), total, nonfinite_done[0] + nonfinite, rate,
                         f"{run.spec} s{run.seed}")

        sample_run(snapshot, run.spec, n=run.n, seed=run.seed, runs_dir=runs_dir, progress=report,
                   **sample_kwargs)
        attrs = store.read_run(run.path, load_sums=False).attrs
        current[run.path] = run.n
        nonfinite_done[0] += int(attrs["n_nonfinite"])
        if progress is not None:
            progress(sum(current.values()), total, nonfinite_done[0], float(attrs["draws_per_s"]),
                     f"{run.spec} s{run.seed}")
    return plan


def _write_manifest(snapshot: Any, plan: Sequence[PlannedRun], name: str, runs_dir: str | Path) -> Path:
    folder = Path(runs_dir) / snapshot.id
    folder.mkdir(parents=True, exist_ok=True)
    entry = lambda r: {"spec": r.spec, "seed": r.seed, "n": r.n, "file": r.path.name}  # noqa: E731
    manifest = {
        "name": name,
        "snapshot_hash": snapshot.hash,
        "snapshot_path": str(snapshot.path) if snapshot.path else None,
        "reference": entry(plan[0]),
        "tested": [entry(r) for r in plan[1:]],
    }
    path = folder / f"sweep-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return path
