"""Chunk sizing: how many draws one vectorized call computes.

On CUDA the size follows a memory budget (``max_memory``, default 70 % of the free memory plus
what is already allocated): the first chunk is one draw, whose peak memory is measured; later
chunks are sized to the budget from the measured peak per draw; an out-of-memory error halves the
chunk and retries the same draws (and the chunk never grows past the size that failed). A problem
that fits one draw never dies of OOM. On the CPU the chunk is sized from an estimate of the bytes
per draw (:func:`estimate_bytes_per_draw`) against ``max_memory`` (default 512 MiB), capped at
:data:`CPU_MAX_CHUNK`. The chunk size only caps memory: it never changes the numbers (the noise is
counter-based, see :mod:`biasvar.rng`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from biasvar.errors import UnsupportedError
from biasvar.estimators import Estimator
from biasvar.problems.base import Problem, noise_requests, passes

CPU_MAX_CHUNK = 4096  # draws per chunk on the CPU; the memory estimate limits big problems
CUDA_MAX_CHUNK = 8192
CPU_DEFAULT_MEMORY = 512 << 20  # bytes: ~10 draws of the Fig. 1 VAE per chunk (see the engine's doc)
CUDA_FREE_FRACTION = 0.7


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
    acts = problem.batch.numel() * item * 16 * passes(problem, est)
    return int(noise * (4 * 8 + 6 * item) + dim * (4 * item + 16) + acts + (1 << 16))


@dataclass(frozen=True)
class CudaMemory:
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
class ChunkSizer:
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


def make_sizer(device: torch.device, problem: Problem, est: Estimator, names: Sequence[str],
           chunk: int | None, max_memory: int | None) -> ChunkSizer:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = max_memory or int(torch.cuda.memory_allocated(device) + CUDA_FREE_FRACTION * free)
        ceiling = chunk or CUDA_MAX_CHUNK
        return ChunkSizer(chunk or 1, budget, chunk is not None, ceiling, CudaMemory(device), str(device))
    budget = max_memory or CPU_DEFAULT_MEMORY
    guess = max(1, budget // estimate_bytes_per_draw(problem, est, names))
    size = chunk or int(min(CPU_MAX_CHUNK, guess))
    return ChunkSizer(size, budget, True, size, None, str(device))


def is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


__all__ = ["CPU_DEFAULT_MEMORY", "CPU_MAX_CHUNK", "CUDA_FREE_FRACTION", "CUDA_MAX_CHUNK", "ChunkSizer", "CudaMemory",
           "estimate_bytes_per_draw", "is_oom", "make_sizer"]
