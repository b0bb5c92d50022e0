"""Exact draws of tiny enumerable models by table look-up: the multi-model coverage study's sampler.

For a problem whose latents can be enumerated per data point (``vae``, ``hvae``, ``toy-cat``), a draw of an
x-only estimator (``st``, ``st(t)``, ``zgr``, ...) is a function of the sampled outcomes alone, and one of
``rf(M)`` is a linear combination of per-outcome vectors (the loss's own gradient ``D``, the score ``S``)
with coefficients set by the per-outcome losses ``f``. :func:`outcome_tables` computes those vectors once
per (data point, outcome) by autograd, on the same forward pass :mod:`biasvar.problems.enumeration` sums
(so the expectations agree with :func:`~biasvar.problems.enumeration.enumerate_expectation`, a test checks
it), and :meth:`OutcomeTables.draws` samples outcomes and adds up table rows.

All vectors are kept in an orthonormal basis of their span (an SVD; at most a few hundred coordinates):
inner products, hence every Gram matrix, Eq. 16 and every interval, are those of the full parameter
vector, whose real size ``dim`` is kept for Eq. 16's ``/ d``. The true ``b2`` of each estimator is
``||E[J] - g*||^2 / dim`` from the same tables, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biasvar.studies.coverage.pairs import MemoryRun, memory_run

#: draws formed at once (memory: chunk x M x batch x coordinates)
CHUNK = 1024


@dataclass(frozen=True)
class OutcomeTables:
    """Per-outcome vectors of one problem, in reduced coordinates [..., r].

    Attributes:
        dim: the real number of parameters (Eq. 16's d).
        cdf: [B, N] cumulative outcome probabilities per data point.
        g_exact: [r] the exact gradient.
        x_only: spec -> [B, N, r] each data point's share of a draw, per outcome (already / B).
        rf_d, rf_s: [B, N, r] the loss's gradient and the score per outcome (already / B); rf_f [B, N] losses.
        truth: spec -> the true b2 (``rf(M=...)``: 0).
    """

    dim: int
    cdf: np.ndarray
    g_exact: np.ndarray
    x_only: dict[str, np.ndarray]
    rf_d: np.ndarray
    rf_s: np.ndarray
    rf_f: np.ndarray
    truth: dict[str, float]

    @property
    def rank(self) -> int:
        return int(self.g_exact.shape[0])

    def _outcomes(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Outcome indices [*shape, B], drawn independently per data point."""
        u = rng.random((*shape, self.cdf.shape[0]))
        idx = np.stack([np.searchsorted(self.cdf[b], u[..., b], side="right") for b in range(self.cdf.shape[0])],
                       axis=-1)
        return np.minimum(idx, self.cdf.shape[1] - 1)

    def draws(self, spec: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws [n, r] of ``spec`` (an x-only spec of the tables, or ``rf(M=k)``)."""
        from biasvar.spec import parse_spec

        sp = parse_spec(spec)
        out = np.empty((n, self.rank))
        B = self.cdf.shape[0]
        rows = np.arange(B)
        for lo in range(0, n, CHUNK):
            m = min(CHUNK, n - lo)
            if sp.name == "rf":
                M = int(sp["M"])
                idx = self._outcomes(rng, (m, M))  # [m, M, B]
                f = self.rf_f[rows, idx]  # [m, M, B]
                a = (f - f.mean(1, keepdims=True)) * (M / (M - 1))
                x = (self.rf_d[rows, idx] + a[..., None] * self.rf_s[rows, idx]).sum(2).mean(1)
            else:
                x = self.x_only[str(sp)][rows, self._outcomes(rng, (m,))].sum(1)
            out[lo:lo + m] = x
        return out

    def run(self, spec: str, n: int, blocks: int, rng: np.random.Generator) -> MemoryRun:
        """A run of ``n`` draws in ``blocks`` equal blocks, as the engine would store it."""
        return memory_run(self.draws(spec, n, rng), blocks)

    def pair(self, test: MemoryRun, ref: MemoryRun | None) -> Any:
        """The (reference or exact, test) pair's Gram matrices, all parameters, with the real ``dim``."""
        from dataclasses import replace

        from biasvar.studies.coverage.grams import gram_of

        pg = gram_of(ref, test, self.g_exact if ref is None else None)
        return replace(pg, dims=np.array([self.dim], dtype=np.int64))


def _rows_grad(f: torch.Tensor, leaves: dict[str, torch.Tensor], scale: float) -> np.ndarray:
    """``d f[i] / d params`` flattened, one row per entry of f: [len(f), dim] float64."""
    if not f.requires_grad:  # the loss does not reach the parameters (a toy's loss of a fixed outcome)
        return np.zeros((f.shape[0], sum(v.numel() for v in leaves.values())))
    out = []
    for i in range(f.shape[0]):
        g = torch.autograd.grad(f[i], list(leaves.values()), retain_graph=True, allow_unused=True)
        out.append(torch.cat([(torch.zeros_like(v) if gi is None else gi).reshape(-1)
                              for v, gi in zip(leaves.values(), g, strict=True)]))
    return (torch.stack(out) * scale).numpy()


def outcome_tables(problem: Any, specs: list[str], *, limit: int = 1 << 12) -> OutcomeTables:
    """The tables of ``problem`` (float64, its ``batch``) for the x-only ``specs`` and rf.

    Raises ValueError where the outcomes of a data point times the batch exceed ``limit``.
    """
    from biasvar.estimators import PlugIn, build
    from biasvar.problems.enumeration import _joint_configs
    from biasvar.spec import parse_spec

    params = {k: v.double() for k, v in problem.params.items()}
    x = problem.batch.double()
    B = x.shape[0]
    found = _joint_configs(problem, B, x.device, x.dtype, limit)
    if found is None:
        raise ValueError(f"{problem.kind}: too many outcomes to tabulate")
    N, configs = found
    xr = x.unsqueeze(0).expand(N, *x.shape).reshape(N * B, *x.shape[1:])

    def forward(y_fn: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        logq: list[torch.Tensor] = []

        def sample(node: str, logits: torch.Tensor) -> torch.Tensor:
            y = configs[node]
            logq.append((y * logits.log_softmax(-1)).reshape(N * B, -1).sum(1))
            return y if y_fn is None else y_fn(logits, y)

        f = problem.forward(leaves, xr, sample)
        return f, torch.stack(logq).sum(0), leaves

    def per_point(rows: np.ndarray) -> np.ndarray:  # rows j*B + b -> [B, N, dim]
        return rows.reshape(N, B, -1).transpose(1, 0, 2)

    f, logq, leaves = forward(None)
    d_rows = per_point(_rows_grad(f, leaves, 1.0 / B))
    s_rows = per_point(_rows_grad(logq, leaves, 1.0 / B))
    q = logq.detach().exp().numpy().reshape(N, B).T  # [B, N]
    f_val = f.detach().numpy().reshape(N, B).T
    g = np.einsum("bn,bnd->d", q, d_rows + f_val[..., None] * s_rows)  # the score-function identity
    full: dict[str, np.ndarray] = {}
    for s in specs:
        est = build(parse_spec(s))
        if not isinstance(est, PlugIn) or est.y_fn is None:
            raise ValueError(f"{s}: not an x-only estimator")
        fs, _, lv = forward(est.y_fn)
        full[str(parse_spec(s))] = per_point(_rows_grad(fs, lv, 1.0 / B))
    dim = d_rows.shape[-1]
    truth = {k: float(np.sum((np.einsum("bn,bnd->d", q, v) - g) ** 2) / dim) for k, v in full.items()}
    # an orthonormal basis of every vector's span
    stack = np.concatenate([g[None], d_rows.reshape(-1, dim), s_rows.reshape(-1, dim),
                            *(v.reshape(-1, dim) for v in full.values())])
    u, sv, vt = np.linalg.svd(stack, full_matrices=False)
    keep = sv > sv.max() * 1e-12
    basis = vt[keep].T  # [dim, r]

    def red(a: np.ndarray) -> np.ndarray:
        return a @ basis

    cdf = np.cumsum(q, axis=1)
    cdf /= cdf[:, -1:]
    return OutcomeTables(int(dim), cdf, red(g), {k: red(v) for k, v in full.items()}, red(d_rows), red(s_rows),
                         f_val, truth)


__all__ = ["OutcomeTables", "outcome_tables"]
