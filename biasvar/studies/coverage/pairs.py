"""Runs in memory for the coverage study: engine draws cut into blocks as a run file would hold them,
and synthetic Gaussian pairs with a known truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class MemoryRun:
    """The block statistics of one run, as a run file would hold them (one parameter group)."""

    spec: str
    seed: int
    group_sizes: np.ndarray
    block_count: np.ndarray
    block_sum: np.ndarray
    block_m2: np.ndarray
    groups: tuple[str, ...] = ("all",)
    path: str = ""
    attrs: dict = field(default_factory=dict)
    exact: Any = None

    @property
    def n(self) -> int:
        return int(self.block_count.sum())


def draw_runs(problem: Any, spec: str, seed: int, n: int, blocks: Sequence[int],
              params: str | None = None) -> dict[int, MemoryRun]:
    """One run of ``n`` engine draws (noise keyed by ``(seed, spec)``), blocked at every block count."""
    from biasvar.engine import BlockBuilder, sample_gradients

    x = torch.cat([c.grads for c in sample_gradients(problem, spec, n=n, seed=seed, params=params, device="cpu")])
    dim = x.shape[1]
    out = {}
    for nb in sorted(set(blocks)):
        bs = n // nb
        stats = []
        for b in range(nb):
            bb = BlockBuilder([(0, dim)], np.zeros(0, dtype=np.int64), x.device)
            bb.add(x[b * bs:(b + 1) * bs])
            stats.append(bb.stats(dim))
        out[nb] = MemoryRun(spec, seed, np.array([dim]), np.array([s.count for s in stats]),
                            np.stack([s.sum for s in stats]), np.stack([s.m2 for s in stats]))
    return out


def memory_run(x: np.ndarray, nb: int, groups: Sequence[int] | None = None) -> MemoryRun:
    """The block statistics of draws ``x`` [n, d] in ``nb`` equal blocks (``groups``: parameter group
    sizes, default one group), for simulations with a known truth."""
    n, d = x.shape
    bs = n // nb
    xb = x[: nb * bs].reshape(nb, bs, d)
    dev2 = (xb - xb.mean(1, keepdims=True)) ** 2
    sizes = np.array(groups if groups else (d,))
    cuts = np.cumsum(sizes)[:-1]
    m2 = np.stack([part.sum((1, 2)) for part in np.split(dev2, cuts, axis=2)], axis=1)
    return MemoryRun("sim", 0, sizes, np.full(nb, bs), xb.sum(1), m2)


def gaussian_problem(rng: np.random.Generator, d: int, decay: float, ratio: float, n: int, align: str = "top",
                     with_ref: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """A synthetic pair with known truth: per-draw noise with eigenvalues ``j^-decay`` (random
    eigenvectors) and a bias of ``b2 = ratio * V/n`` (``V/n`` the noise floor of Eq. 16: both runs'
    with a reference run) along the strongest noise direction (``top``), the weakest (``low``) or a
    random one (``rand``). Returns ``(mu, a, b2)``: draws are ``mu + z @ a.T``."""
    lam = np.arange(1, d + 1, dtype=float) ** -decay
    u = np.linalg.qr(rng.standard_normal((d, d)))[0]
    direction = {"top": u[:, 0], "low": u[:, -1]}.get(align)
    if direction is None:
        direction = rng.standard_normal(d)
    direction = direction / np.linalg.norm(direction)
    mu = direction * np.sqrt(ratio * lam.sum() * (2 if with_ref else 1) / n)
    return mu, u * np.sqrt(lam), float(mu @ mu / d)

