"""``hvae``: the two-layer linear hierarchical categorical VAE of the paper's App. B.3.1.

Following Grathwohl et al. (2018), extended to categorical variables (Sec. 4.1.3): every map is
one linear layer,

    q(z1 | x)  = Cat(Linear(784, V*C))       p(x | z1)  = Bernoulli(Linear(bits, 784))
    q(z2 | z1) = Cat(Linear(bits, V*C))      p(z1 | z2) = Cat(Linear(bits, V*C))
    p(z2) uniform,

where each layer holds V categorical variables of C = 2^b categories embedded as their b bits
in {-1,+1} (``bits = V*b``; the paper keeps 192 bits per layer). The per-data-point loss is the
negative ELBO of Eq. 87 with the expectations of ``log q`` in closed form (the entropies):

    L = -log p(x|z1) - log p(z1|z2) + V log C - H(q(z1|x)) - H(q(z2|z1)),

whose expectation over z1 ~ q(z1|x), z2 ~ q(z2|z1) is exactly the negative ELBO. The nodes are
sampled in order, ``"z1"`` then ``"z2"``, through ``sample``; ``log p(z1|z2) = sum(y1 * logp)``
is linear in the sample ``y1``, as the embedding is.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from biasvar.problems.base import Params, SampleFn
from biasvar.problems.vae import PIXELS, CodedVAE, bernoulli_nll


def entropy(logits: Tensor) -> Tensor:
    """Entropy of independent categoricals summed over variables: [B, V, C] -> [B]."""
    logq = logits.log_softmax(-1)
    return -(logq.exp() * logq).sum((-1, -2))


class HVAE(CodedVAE):
    """Two stochastic layers, linear maps (App. B.3.1). Parameters: ``q_z1``, ``q_z2``, ``p_z1``, ``p_x``."""

    kind = "hvae"

    def __init__(self, *, categories: int = 16, vars: int = 48, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> None:
        g = self._init_latents(categories, vars, seed, dtype)
        C, V = self.C, self.V
        self.config: dict[str, Any] = {"categories": C, "vars": V, "seed": int(seed)}
        self.params = {}
        for name, fan_in, fan_out in (("q_z1", PIXELS, V * C), ("q_z2", self.bits, V * C),
                                      ("p_z1", self.bits, V * C), ("p_x", self.bits, PIXELS)):
            self._add_linear(name, fan_in, fan_out, g, dtype)

    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {"z1": (batch_size, self.V, self.C), "z2": (batch_size, self.V, self.C)}

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        """Negative ELBO per data point [B] (Eq. 87, entropies in closed form)."""
        B, V, C = x.shape[0], self.V, self.C
        l1 = self._linear(params, "q_z1", x).reshape(B, V, C)  # q(z1 | x)
        y1 = sample("z1", l1)
        e1 = self.embed(y1)
        l2 = self._linear(params, "q_z2", e1).reshape(B, V, C)  # q(z2 | z1)
        y2 = sample("z2", l2)
        e2 = self.embed(y2)
        logp_z1 = self._linear(params, "p_z1", e2).reshape(B, V, C).log_softmax(-1)  # p(z1 | z2)
        nll_x = bernoulli_nll(self._linear(params, "p_x", e1), x)  # -log p(x | z1)
        return nll_x - (y1 * logp_z1).sum((-1, -2)) + V * math.log(C) - entropy(l1) - entropy(l2)
