"""``vae``: the categorical VAE of the paper's App. B.3 (MNIST-B, Omniglot-28-D).

Encoder ``Linear(784,512)-LReLU(0.2)-Linear(512,256)-LReLU(0.2)-Linear(256, V*C)`` gives the logits
of V categorical variables with C = 2^b categories each; a sample ``y`` [B, V, C] is embedded as
the b bits of its category in {-1,+1} (``y @ codes``, codes [C, b]); the decoder mirrors the encoder,
``Linear(V*b,256)-LReLU-Linear(256,512)-LReLU-Linear(512,784)``, and outputs Bernoulli logits. The
prior p(z) is uniform, so the per-data-point loss is the negative ELBO

    L(x) = -log p(x | z) + KL(q(z|x) || uniform),  KL = sum_v [sum_k q_vk log q_vk + log C],

with the KL in closed form and its exact gradient (App. B.3); the estimator enters only through
``sample("z", logits)``. Fig. 1 uses 16 variables of 16 categories (64 bits, 1,149,456 parameters);
Tables 1-2 keep 192 bits.

Parameters are named as the ``state_dict`` of ``nn.Sequential`` encoder/decoder would be
(``encoder.0.weight``, ``encoder.2.bias``, ``decoder.4.weight``, ...), initialised as torch's
default ``nn.Linear`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases) from a generator
seeded by ``seed``. ``forward`` is a pure function of the params dict, so
``vmap(grad(draw_loss))`` works.

This module also holds what the ``hvae`` problem shares: :func:`bit_codes`, :func:`linear_init`
and :class:`CodedVAE` (the bit embedding of the latents, the placeholder evaluation batch, and the
exact references by enumeration of :mod:`biasvar.problems.enumeration`, for tiny models).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from biasvar.errors import ShapeError
from biasvar.problems.base import Params, SampleFn, log2_int
from biasvar.problems.enumeration import (  # noqa: F401 - re-exported: callers import them from here
    ENUM_LIMIT,
    MC_ELEMENTS,
    Enumerable,
    enumerate_expectation,
    enumerate_gradient,
)

PIXELS = 784
SLOPE = 0.2  # LReLU leak (App. B.3)
EVAL_BATCH = 200  # size of the placeholder evaluation batch (the protocol's 200 images)


def bit_codes(categories: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Embedding of each category as its b = log2(C) bits in {-1,+1}, most significant bit first.

    >>> bit_codes(4).tolist()
    [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]

    Returns:
        codes [C, b]; a sample y [..., C] embeds as ``y @ codes`` [..., b].
    """
    b = log2_int(categories)
    k = torch.arange(categories).unsqueeze(1)  # [C, 1]
    shifts = torch.arange(b - 1, -1, -1)  # [b], MSB first
    return (((k >> shifts) & 1) * 2 - 1).to(dtype)


def linear_init(fan_in: int, fan_out: int, generator: torch.Generator,
                dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Weight [fan_out, fan_in] and bias [fan_out] as torch's default ``nn.Linear`` init.

    Drawn in float32 from ``generator`` then cast, so a float64 model is the float32 one upcast.
    """
    bound = 1.0 / math.sqrt(fan_in)
    w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator)
    b = torch.empty(fan_out).uniform_(-bound, bound, generator=generator)
    return w.to(dtype), b.to(dtype)


def _check_sizes(categories: int, vars: int) -> tuple[int, int, int]:
    C, V = int(categories), int(vars)
    if V < 1 or C < 2:
        raise ShapeError(f"need vars >= 1 and categories >= 2 (a power of 2), got vars={V}, categories={C}")
    return C, V, log2_int(C)


def kl_uniform(logits: Tensor) -> Tensor:
    """KL(q || uniform) of independent categoricals, summed over variables: [B, V, C] -> [B].

    ``sum_v sum_k q_vk log q_vk + V log C`` (closed form; App. B.3).
    """
    logq = logits.log_softmax(-1)
    C = logits.shape[-1]
    return (logq.exp() * logq).sum((-1, -2)) + logits.shape[-2] * math.log(C)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x | logits) of independent Bernoulli pixels: [B, 784] -> [B].

    Written as ``softplus(l) - x l`` (the same value as ``binary_cross_entropy_with_logits``)
    because that op has no fused vmap rule and cost ~30% of the engine's time on the VAE.
    """
    return (F.softplus(logits) - x * logits).sum(-1)


class CodedVAE(Enumerable):
    """What ``vae`` and ``hvae`` share: layers of V categorical variables of C = 2^b categories, a
    sample embedded as the bits of its categories (``codes``), a placeholder evaluation batch of
    ``EVAL_BATCH`` blank images, and exact references by enumeration (tiny models only)."""

    C: int
    V: int
    bits: int  # V * b: the width of one layer's embedding
    codes: Tensor  # [C, b]

    def _init_latents(self, categories: int, vars: int, seed: int, dtype: torch.dtype) -> torch.Generator:
        """Check and set the sizes, ``codes`` and the evaluation batch; the generator of the parameters."""
        C, V, b = _check_sizes(categories, vars)
        self.C, self.V, self.bits = C, V, V * b
        self.codes = bit_codes(C, dtype=dtype)  # [C, b]
        self.batch = torch.zeros(EVAL_BATCH, PIXELS, dtype=dtype)
        return torch.Generator().manual_seed(int(seed))

    def _add_linear(self, name: str, fan_in: int, fan_out: int, generator: torch.Generator,
                    dtype: torch.dtype) -> None:
        """Parameters ``{name}.weight`` and ``{name}.bias`` of a fresh ``Linear(fan_in, fan_out)``."""
        self.params[f"{name}.weight"], self.params[f"{name}.bias"] = linear_init(fan_in, fan_out, generator, dtype)

    @staticmethod
    def _linear(params: Params, name: str, h: Tensor) -> Tensor:
        return F.linear(h, params[f"{name}.weight"], params[f"{name}.bias"])

    def embed(self, y: Tensor) -> Tensor:
        """One layer's samples y [B, V, C] (one-hot or relaxed) as their bits: [B, V*b]."""
        return (y @ self.codes.to(dtype=y.dtype, device=y.device)).reshape(y.shape[0], self.bits)

    def _moved(self, mv: Callable[[Tensor], Tensor]) -> None:
        self.codes = mv(self.codes)


class VAE(CodedVAE):
    """Categorical VAE of App. B.3 (uniform prior, analytic KL)."""

    kind = "vae"

    def __init__(self, *, categories: int = 16, vars: int = 16, hidden: Sequence[int] = (512, 256),
                 seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        g = self._init_latents(categories, vars, seed, dtype)
        C, V = self.C, self.V
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ShapeError(f"hidden sizes must be positive integers, got {hidden}")
        self.hidden = hidden
        self.config: dict[str, Any] = {"categories": C, "vars": V, "hidden": list(hidden), "seed": int(seed)}
        enc = [PIXELS, *hidden, V * C]
        dec = [self.bits, *reversed(hidden), PIXELS]
        self.params = {}
        for part, sizes in (("encoder", enc), ("decoder", dec)):
            for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
                self._add_linear(f"{part}.{2 * i}", fan_in, fan_out, g, dtype)

    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {"z": (batch_size, self.V, self.C)}

    def _mlp(self, params: Params, part: str, h: Tensor) -> Tensor:
        n = len(self.hidden) + 1
        for i in range(n):
            h = self._linear(params, f"{part}.{2 * i}", h)
            if i < n - 1:
                h = F.leaky_relu(h, SLOPE)
        return h

    def encode(self, params: Params, x: Tensor) -> Tensor:
        """Logits of q(z | x): [B, 784] -> [B, V, C]."""
        return self._mlp(params, "encoder", x).reshape(x.shape[0], self.V, self.C)

    def decode(self, params: Params, y: Tensor) -> Tensor:
        """Bernoulli logits of p(x | z) for samples y [B, V, C] (one-hot or relaxed): [B, 784]."""
        return self._mlp(params, "decoder", self.embed(y))

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        """Negative ELBO per data point [B]: ``-log p(x|z) + KL(q(z|x) || uniform)`` with z sampled."""
        logits = self.encode(params, x)  # [B, V, C]
        y = sample("z", logits)  # [B, V, C]
        return bernoulli_nll(self.decode(params, y), x) + kl_uniform(logits)
