"""Newer estimators beside ZGR: ReinMax (plug-in) and ARSM, IndeCateR, DisARM (multi-pass).

Notation as in :mod:`biasvar.estimators.categorical`: logits ``eta`` [..., K], ``p = softmax(eta)``,
``y`` one-hot, ``sg`` = ``.detach()``, ``G`` Gumbel(0, 1) noise [..., K].

**ReinMax** (Liu et al., NeurIPS 2023, Algorithm 2) is a plug-in estimator of cost 1: with
``pi0 = p``, ``pi1 = (y + softmax(eta / t)) / 2`` and ``J(pi) = diag(pi) - pi pi^T``, its gradient in
the logits is ``(2 J(pi1) - J(pi0) / 2) dL/dy``. At ``t = 1`` it equals ZGR outcome by outcome
(the closed form in :func:`reinmax_y`'s docstring).

The other three are *multi-pass* score-function estimators (:class:`MultiPass`): one draw
evaluates the model on ``R`` passes, pass 0 being the plain sample ``x = argmax(logp + G)``, the
others changing one stochastic node at a time while every other node keeps its noise (a node
downstream of the changed one is re-sampled with its own ``G`` given the new upstream values, so
each pass's loss is an unbiased estimate of the conditional expectation the estimator needs).
The surrogate is ``f_0 + sum_nodes sum sg(g_hat) * (logits of pass 0)``; ``f_0`` keeps its own
gradient (the parameters the loss uses directly), ``g_hat`` is the estimator's gradient in the
node's logits.

* **ARSM** (Yin, Yue and Zhou, ICML 2019), for every node: ``pi = softmax(-G) ~ Dirichlet(1_K)``
  per variable; the pseudo action ``x^{c<->j} = argmin_i(log pi^{c<->j}_i - eta_i)`` swaps entries
  c and j of ``pi`` of *every* variable of the node at once (the paper's multivariate form, and its
  authors' code), giving ``F[c, j] = f(x^{c<->j})`` (``F[c, c] = f_0``, symmetric), and
  ``g_hat_c = sum_j (F[c, j] - mean_m F[m, j]) (1/K - pi_j)``. Passes: ``1 + sum_nodes K(K-1)/2``.
* **IndeCateR** (De Smet, Sansone and Zuidberg Dos Martires, NeurIPS 2023): for every variable v
  of every node and every category k, ``f_{v,k}`` = the loss with ``x_v`` set to k (``f_{v,x_v} =
  f_0``); ``g_hat = sum_k f_{v,k} dp_v(k)/d eta_v``. Passes: ``1 + sum_nodes V (K - 1)`` with V the
  variables of one data point (all data points change their variable v in the same pass, which is
  sound because a data point's loss depends on its own variables only: not for coupled problems).
* **DisARM** (Dong, Mnih and Tucker, NeurIPS 2020) is for binary variables; a K = 2 categorical
  variable is one: ``b = [x = 1]``, logit ``alpha = eta_1 - eta_0``, ``u = sigmoid(G_1 - G_0)``
  uniform, and swapping ``G_0, G_1`` is the antithetic ``1 - u``. With ``b~`` from the swapped
  noise (all variables of the node at once), ``g_alpha = (f(b) - f(b~)) / 2 * (-1)^{b~} *
  [b != b~] * sigmoid(|alpha|)``, and ``g_hat = (-g_alpha, g_alpha)``. Passes: ``1 + nodes``.

Everything is shape-static (index tensors built from the node shapes), so a draw runs under
``torch.func.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from biasvar.errors import SpecError
from biasvar.estimators.categorical import _swap, sample_onehot


def reinmax_y(logits: Tensor, y: Tensor, t: float = 1.0) -> Tensor:
    """ReinMax (Liu et al. 2023, Alg. 2): ``pi2 = 2 pi1 - pi0 / 2`` with the Jacobians of softmax.

    ``pi0 = softmax(eta)``; ``pi1 = (y + sg(softmax(eta / t))) / 2`` enters through
    ``softmax(sg(log pi1 - eta) + eta)``, whose Jacobian in eta is ``diag(pi1) - pi1 pi1^T``; here it is
    the linear surrogate ``pi1 * (eta - <pi1, eta>)``, which has that Jacobian and no logarithm. With
    ``g = dL/dy``: i != x: ``J_i = 2 pi1_i (g_i - <pi1, g>) - p_i (g_i - <p, g>) / 2``. At t = 1 this is
    ZGR (Eq. 12): ``J_i = p_i (g_i - g_x) / 2`` for i != x.
    """
    logp = logits.log_softmax(-1)
    p = logp.exp()
    pt = (logp / t).softmax(-1).detach() if t != 1.0 else p.detach()
    pi1 = (y + pt) / 2
    d1 = pi1 * (logp - (pi1 * logp).sum(-1, keepdim=True))  # Jacobian diag(pi1) - pi1 pi1^T
    d = 2 * d1 - p / 2
    return _swap(y, d)


# ---------------------------------------------------------------------------------------------
# multi-pass score-function estimators


@dataclass(frozen=True)
class Node:
    """One stochastic node of a problem as a multi-pass estimator sees it."""

    name: str
    shape: tuple[int, ...]  # logits shape [n, ..., K] for one draw; n = batch size or 1 (shared)
    first: int  # index of the node's first own pass
    count: int  # number of own passes

    @property
    def K(self) -> int:
        return self.shape[-1]

    @property
    def V(self) -> int:
        """Variables per data point (or in the shared node)."""
        return math.prod(self.shape[1:-1])


@dataclass(frozen=True)
class Plan:
    """The passes of one draw: pass 0 is the plain sample, then each node's own passes in order."""

    nodes: dict[str, Node]
    passes: int


def _pairs(K: int) -> list[tuple[int, int]]:
    return [(c, j) for c in range(K) for j in range(c + 1, K)]


def _own(kind: str, shape: tuple[int, ...]) -> int:
    K = shape[-1]
    if kind == "arsm":
        return K * (K - 1) // 2
    if kind == "disarm":
        return 1
    return math.prod(shape[1:-1]) * (K - 1)  # indecater


@dataclass(frozen=True)
class MultiPass:
    """ARSM, IndeCateR or DisARM: R passes of the model per draw, a surrogate of their losses.

    The protocol (used by :func:`biasvar.problems.base.draw_loss`): :meth:`plan` from the node
    shapes, :meth:`sample` for every node on the R passes, :meth:`node_surrogate` for every node from
    the passes' losses ``f`` [R, units].
    """

    spec: object  # EstimatorSpec
    kind: str  # "arsm" | "indecater" | "disarm"

    def noise(self, logits_shape: tuple[int, ...]) -> dict:
        from biasvar.estimators import NoiseRequest

        shape = tuple(logits_shape)
        if self.kind == "disarm" and shape[-1] != 2:
            raise SpecError(f"disarm is for binary variables (K = 2); this problem has a node with K = {shape[-1]}")
        return {"G": NoiseRequest(shape, "gumbel")}

    def plan(self, node_shapes: Mapping[str, tuple[int, ...]], *, coupled: bool = False) -> Plan:
        if self.kind == "indecater" and coupled:
            raise SpecError("indecater needs data points whose losses depend on their own variables only; "
                            "this problem couples the data points of a pass (use arsm or rf)")
        nodes, first = {}, 1
        for name, shape in node_shapes.items():
            shape = tuple(int(s) for s in shape)
            if self.kind == "disarm" and shape[-1] != 2:
                raise SpecError(f"disarm is for binary variables (K = 2); node {name} has K = {shape[-1]}")
            count = _own(self.kind, shape)
            nodes[name] = Node(name, shape, first, count)
            first += count
        return Plan(nodes, first)

    def passes(self, node_shapes: Mapping[str, tuple[int, ...]], *, coupled: bool = False) -> int:
        """Forward passes per draw on a problem with these nodes."""
        return self.plan(node_shapes, coupled=coupled).passes

    # -- sampling ---------------------------------------------------------------------------------
    def sample(self, plan: Plan, node: str, logits: Tensor, G: Tensor) -> Tensor:
        """One-hot samples of every pass [R, n, ..., K] from the passes' logits [R, n, ..., K] and G [n, ..., K]."""
        nd = plan.nodes[node]
        R, K = plan.passes, nd.K
        if self.kind in ("arsm", "disarm"):
            perm = torch.arange(K, device=G.device).repeat(R, 1)  # [R, K]
            pairs = _pairs(K) if self.kind == "arsm" else [(0, 1)]
            for i, (c, j) in enumerate(pairs):
                perm[nd.first + i, c], perm[nd.first + i, j] = j, c
            idx = perm.view(R, *([1] * (G.dim() - 1)), K).expand(R, *G.shape)
            Gr = G.unsqueeze(0).expand(R, *G.shape).gather(-1, idx)
            return sample_onehot(logits, Gr)
        # indecater: pass (v, m) sets variable v to (x_v + m) mod K
        x = sample_onehot(logits, G.unsqueeze(0)).argmax(-1)  # [R, n, ...]
        n, V = nd.shape[0], nd.V
        shift = torch.zeros(R, V, dtype=torch.int64, device=G.device)
        own = torch.arange(nd.count, device=G.device)
        shift[nd.first + own, own // (K - 1)] = own % (K - 1) + 1
        xs = (x.reshape(R, n, V) + shift.unsqueeze(1)) % K
        y = (torch.arange(K, device=G.device) == xs.unsqueeze(-1)).to(logits.dtype)
        return y.reshape(logits.shape)

    # -- surrogate --------------------------------------------------------------------------------
    def node_surrogate(self, plan: Plan, node: str, f: Tensor, logits0: Tensor, G: Tensor, y: Tensor) -> Tensor:
        """``sum sg(g_hat) * logits0`` over the node, per unit of ``f`` averaged.

        Args:
            f: losses of the passes [R, u]: u = B per-data-point losses, or u = 1 (one per pass).
            logits0: the node's logits in pass 0 [n, ..., K] (with gradient).
            G: the node's noise [n, ..., K]; y: the node's samples in every pass [R, n, ..., K].
        """
        nd = plan.nodes[node]
        K, n, V = nd.K, nd.shape[0], nd.V
        f = f.detach()
        u = f.shape[1]
        if n == 1 and u > 1:  # a node shared by the batch: its unit is the mean loss of the pass
            f, u = f.mean(1, keepdim=True), 1
        scale = 1.0 / u if u == n else 1.0  # the objective is the mean over the units
        fb = f.unsqueeze(-1)  # [R, u, 1], broadcast over the node's variables
        lg = logits0.reshape(n, V, K)
        if self.kind == "arsm":
            idx = torch.zeros(K, K, dtype=torch.int64, device=f.device)
            for i, (c, j) in enumerate(_pairs(K)):
                idx[c, j] = idx[j, c] = nd.first + i
            F = f[idx]  # [K, K, u]: F[c, j] = f(x^{c<->j})
            Fc = F - F.mean(0, keepdim=True)  # F[c, j] - mean_m F[m, j]
            pi = (-G.detach()).reshape(n, V, K).softmax(-1)  # Dirichlet(1) of each variable
            if u == n:
                g = torch.einsum("cjn,nvj->nvc", Fc, 1.0 / K - pi)
            else:  # one loss per pass for the whole node (coupled data points)
                g = torch.einsum("cj,nvj->nvc", Fc[..., 0], 1.0 / K - pi)
            return (g * lg).sum() * scale
        if self.kind == "disarm":
            b = y[0].reshape(n, V, K)[..., 1]
            bt = y[nd.first].reshape(n, V, K)[..., 1]
            alpha = lg[..., 1] - lg[..., 0]
            df = (fb[0] - fb[nd.first]) if u == n else (f[0] - f[nd.first])  # [u, 1] or [1]
            w = (b != bt).to(f.dtype) * (1 - 2 * bt) * torch.sigmoid(alpha.detach().abs())
            return (0.5 * df * w * alpha).sum() * scale
        # indecater
        x = y[0].reshape(n, V, K).argmax(-1)  # [n, V]
        m = torch.arange(1, K, device=f.device)
        cats = (x.unsqueeze(-1) + m) % K  # [n, V, K-1]: the category of pass (v, m)
        q = ((torch.arange(K, device=f.device) == cats.unsqueeze(-1)).to(lg.dtype)
             * lg.softmax(-1).unsqueeze(-2)).sum(-1)  # p_v(x_v + m) [n, V, K-1], with gradient
        fv = f[nd.first:nd.first + nd.count].reshape(V, K - 1, u).permute(2, 0, 1)  # [u, V, K-1]
        df = fv - f[0].view(u, 1, 1)
        return (df * q).sum() * scale
