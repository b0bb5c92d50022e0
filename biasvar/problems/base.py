"""What a problem is: a model at fixed parameters plus a fixed evaluation batch.

A problem exposes its parameters (ordered names and shapes, a flat layout), its stochastic
nodes (name -> logits shape for a data batch of B points) and one function,
``forward(params, x, sample) -> per-data-point losses [B]``. ``forward`` asks ``sample(node,
logits)`` for each stochastic node in order; what ``sample`` returns (a one-hot sample whose
gradient is an estimator's, or a relaxed sample) is what the model uses. The embedding of a
sample is a fixed linear map of ``y`` (``y @ codes``).

:func:`draw_loss` turns (problem, estimator, noise of one draw) into the scalar whose gradient
in the parameters is one gradient sample of that estimator: the mean over the batch for a
plug-in estimator, the leave-one-out surrogate of M forward passes for ``rf(M)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from biasvar.errors import ShapeError
from biasvar.estimators import Estimator, MultiPass, PlugIn, ScoreFunction, sample_onehot

SampleFn = Callable[[str, Tensor], Tensor]
Params = Mapping[str, Tensor]


class Problem:
    """Base class. Subclasses set ``kind``, ``config``, ``params``, ``batch`` and implement
    ``node_shapes`` and ``forward``; enumerable problems also implement ``exact_gradient``."""

    kind: str = "problem"
    #: True where the data points of one forward pass are coupled (a node shared by the batch, such as
    #: qnet's weights with logits [1, ...], or batch-norm statistics): rf(M) then applies its
    #: leave-one-out baseline to whole passes (mean loss, summed log-probability), which stays unbiased.
    coupled: bool = False
    config: dict[str, Any]
    params: dict[str, Tensor]  # ordered: the flat layout follows this order
    batch: Tensor  # the fixed evaluation batch [B, ...] (toy problems: [1, 0])

    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """Stochastic nodes: name -> logits shape [batch_size, ..., K]."""
        raise NotImplementedError

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        """Per-data-point losses [B] for data ``x`` [B, ...], sampling each node through ``sample``."""
        raise NotImplementedError

    def make_batch(self, data: Any, indices: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The model input ``x`` for data points ``indices`` of ``data`` (a ``biasvar.data`` dataset
        with ``images`` [N, 784] in [0, 1] and ``dynamic``: Bernoulli-sample at every use)."""
        x = data.images[indices]
        if getattr(data, "dynamic", False):
            x = torch.bernoulli(x, generator=generator)
        return x.to(self.batch.dtype)

    def exact_gradient(self) -> dict[str, Tensor] | None:
        """Gradient of the expected loss (by enumeration) where the problem is small enough."""
        return None

    # -- layout -------------------------------------------------------------------------------
    def param_names(self) -> list[str]:
        return list(self.params)

    def layout(self) -> list[tuple[str, tuple[int, ...], int]]:
        """``(name, shape, offset)`` of each parameter in the flat gradient vector."""
        out, offset = [], 0
        for name, p in self.params.items():
            out.append((name, tuple(p.shape), offset))
            offset += p.numel()
        return out

    @property
    def dim(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def describe(self) -> dict[str, Any]:
        """JSON-able description (kind, config, evaluation batch) for run-file attributes."""
        return {"kind": self.kind, "config": dict(self.config), "batch_shape": list(self.batch.shape)}

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Problem:
        """Move parameters and batch (floating tensors get ``dtype`` if given); returns self."""

        def mv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if (dtype and t.is_floating_point()) else t.dtype)

        self.params = {k: mv(v) for k, v in self.params.items()}
        self.batch = mv(self.batch)
        self._moved(mv)
        return self

    def _moved(self, mv: Callable[[Tensor], Tensor]) -> None:
        """Hook for subclasses holding other tensors (loss coefficients, ...)."""


def noise_requests(problem: Problem, est: Estimator, batch_size: int | None = None) -> dict:
    """node -> noise name -> (shape, kind) for one draw of ``est`` on ``problem``."""
    B = problem.batch.shape[0] if batch_size is None else batch_size
    return {
        node: {k: (r.shape, r.kind) for k, r in est.noise(shape).items()}
        for node, shape in problem.node_shapes(B).items()
    }


def draw_loss(problem: Problem, est: Estimator, params: Params, noise: Mapping[str, Mapping[str, Tensor]],
              x: Tensor | None = None) -> Tensor:
    """Scalar whose gradient in ``params`` is one gradient sample of ``est`` (noise of one draw)."""
    x = problem.batch if x is None else x
    if isinstance(est, PlugIn):
        return problem.forward(params, x, lambda node, logits: est(logits, noise[node])).mean()
    if isinstance(est, ScoreFunction):
        return _rf_loss(problem, est, params, noise, x)
    if isinstance(est, MultiPass):
        return _multipass_loss(problem, est, params, noise, x)
    raise TypeError(f"not an estimator: {est!r}")


def passes(problem: Problem, est: Estimator, batch_size: int | None = None) -> int:
    """Forward passes of the model per gradient sample of ``est`` on ``problem`` (its cost)."""
    if isinstance(est, MultiPass):
        B = problem.batch.shape[0] if batch_size is None else batch_size
        return est.passes(problem.node_shapes(B), coupled=problem.coupled)
    return int(est.cost)


def _multipass_loss(problem: Problem, est: MultiPass, params: Params, noise: Mapping, x: Tensor) -> Tensor:
    """ARSM / IndeCateR / DisARM: R passes of the batch in one forward call ([R*B, ...]), then the
    surrogate ``mean f_0 + sum_nodes sum sg(g_hat) * logits_0`` (see ``biasvar.estimators.newer``)."""
    B = x.shape[0]
    plan = est.plan(problem.node_shapes(B), coupled=problem.coupled)
    R = plan.passes
    xr = x.unsqueeze(0).expand(R, *x.shape).reshape(R * B, *x.shape[1:])
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def sample(node: str, logits: Tensor) -> Tensor:
        G = noise[node]["G"]  # [n, ..., K]: n = B, or 1 for a node shared by the batch
        if logits.shape[0] == 1 and G.shape[0] == 1:  # shared node: the same logits in every pass
            lg = logits.unsqueeze(0).expand(R, *logits.shape)
        else:
            lg = logits.reshape(R, *G.shape) if logits.numel() == R * G.numel() else logits
        if lg.shape[1:] != G.shape or lg.shape[0] != R:
            raise ShapeError(f"node {node}: noise {list(G.shape)} vs logits {list(logits.shape)}")
        y = est.sample(plan, node, lg, G)  # [R, n, ..., K], no gradient
        seen[node] = (lg[0], y)
        return y.reshape(R * G.shape[0], *G.shape[1:])  # a shared node: one sample per pass [R, ...]

    f = problem.forward(params, xr, sample).reshape(R, B)
    if problem.coupled:
        f = f.mean(1, keepdim=True)  # one unit per pass
    total = f[0].mean()
    for node, (lg0, y) in seen.items():
        total = total + est.node_surrogate(plan, node, f, lg0, noise[node]["G"], y)
    return total


def _rf_loss(problem: Problem, est: ScoreFunction, params: Params, noise: Mapping, x: Tensor) -> Tensor:
    M, B = est.M, x.shape[0]
    xr = x.unsqueeze(0).expand(M, *x.shape).reshape(M * B, *x.shape[1:])  # [M*B, ...]
    logq: list[Tensor] = []

    def sample(node: str, logits: Tensor) -> Tensor:
        G = noise[node]["G"]  # [M, B, ...], or [M, 1, ...] for a node shared by the batch
        G = G.reshape(M * G.shape[1], *G.shape[2:])
        if logits.shape[0] == 1 and G.shape[0] == M:  # shared node: one sample per pass
            logits = logits.expand(M, *logits.shape[1:])
        if G.shape != logits.shape:
            raise ShapeError(f"node {node}: noise {list(G.shape)} vs logits {list(logits.shape)}")
        y = est.sample(logits, {"G": G})
        lq = (y * logits.log_softmax(-1)).reshape(M, y.shape[0] // M, -1).sum(-1)  # [M, B] or [M, 1]
        logq.append(lq.sum(1, keepdim=True) if problem.coupled else lq.expand(M, B))
        return y

    f = problem.forward(params, xr, sample).reshape(M, B)
    total = torch.stack(logq).sum(0)  # [M, B], or [M, 1] for a coupled problem
    if problem.coupled:
        f = f.mean(1, keepdim=True)  # one unit per pass
    return est.surrogate(f, total)


def plain_loss(problem: Problem, params: Params, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Per-data-point losses with plain discrete samples (no estimator): the honest objective."""

    def sample(node: str, logits: Tensor) -> Tensor:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        u = u.clamp_min(torch.finfo(u.dtype).tiny)
        return sample_onehot(logits, -torch.log(-torch.log(u)))

    return problem.forward(params, x, sample)


def log2_int(K: int) -> int:
    b = int(round(math.log2(K)))
    if 2**b != K:
        raise ShapeError(f"categories must be a power of 2 (bit embedding), got {K}")
    return b
