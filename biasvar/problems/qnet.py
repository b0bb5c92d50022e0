"""``qnet``: a stochastic quantized CNN (the paper's Sec. 4.3, App. B.5, B.6; Louizos et al. 2019).

The network is given by an architecture string of ``-``-separated tokens:

* ``NcK`` / ``NCK``: convolution with N output channels and a K x K kernel (no padding, stride 1);
* ``MP2``: 2 x 2 max-pooling (``MPk``: k x k);
* ``NFC``: fully connected with N outputs. The last token is the class layer (``10FC``).

e.g. ``8C5-MP2-16C5-MP2-128FC-10FC`` (the small net of App. B.6) or
``32C5-MP2-64C5-MP2-512FC-10FC`` (the main net of Sec. 4.3).

Every weight and every hidden activation is a stochastic quantizer
(:mod:`biasvar.estimators.quantizer`) with K levels: ternary ``"T"`` = 3 levels, ``b`` bits = 2^b
levels. The first and last weight layers use ``first_last_bits`` (4, as in Sec. 4.3). Inputs are not
quantized. Per weight layer l (0-based over conv / FC layers only, pooling has no parameters):

* ``layers.l.weight``: the real-valued latent weights. A weight's quantizer input is
  ``eta = weight / alpha_l + (K-1)/2`` and its value ``alpha_l (x - (K-1)/2)``: the levels sit on a
  symmetric grid of step ``alpha_l`` (ternary ``alpha {-1, 0, 1}``, binary ``alpha {-1/2, 1/2}``,
  2 bits ``alpha {-3/2, -1/2, 1/2, 3/2}``). ``alpha_l = 2 r_l / (K-1)`` is fixed, with
  ``r_l = sqrt(3 / fan_in)``, so the grid spans ``[-r_l, r_l]``; latent weights start uniform on it.
* hidden layers: ``layers.l.gain`` and ``layers.l.bias`` [channels], the batch-norm scale and shift:
  the activation quantizer's input is ``eta = gain * (h - mean) / sqrt(var + eps) + bias + (K-1)/2``
  with the mean and variance of the current batch (per channel, functional: ``forward`` is a pure
  function of params and x), and the activation's value is ``x - (K-1)/2`` (unit step, symmetric).
  Order: conv/FC -> batch norm -> activation quantizer -> max-pool.
* the class layer: ``layers.L.bias`` [classes] (not quantized); its output are the class logits,
  and the per-data-point loss is the cross-entropy.

Stochastic nodes, in forward order: ``w0, a0, w1, a1, ..., wL``. Activation nodes have logits
``[B, C, (H, W,) K]``. **Weight nodes are shared by the batch** (one weight sample per forward pass):
their logits are ``[1, *weight.shape, K]``; ``draw_loss`` for ``rf(M)`` expands them to M passes,
and because batch norm and shared weights couple the data points of a pass, ``coupled = True``
tells it to apply the leave-one-out baseline to whole passes (unbiased).

Data: ``make_batch`` packs the label into the input, ``x = cat([label, pixels])`` [B, 1 + C*H*W].
Deterministic mode (``evaluate``; App. B.5: noise off) rounds every quantizer input to the nearest
level. Not implemented: a learnable noise scale (App. B.5 learns the logistic sigma).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from biasvar.errors import DataError, ShapeError, SpecError
from biasvar.estimators.quantizer import QuantNoise, level_logprobs, levels, round_level
from biasvar.problems.base import Params, Problem, SampleFn

BN_EPS = 1e-5
_TOKEN = re.compile(r"^(?:(?P<conv_n>\d+)C(?P<conv_k>\d+)|MP(?P<pool>\d+)|(?P<fc>\d+)FC)$", re.IGNORECASE)

#: quantize(node, eta, K) -> level values x (float, same shape as eta, gradient = the estimator's)
Quantize = Callable[[str, Tensor, int], Tensor]


@dataclass(frozen=True)
class LayerSpec:
    """One token of an architecture string."""

    kind: str  # "conv" | "pool" | "fc"
    size: int  # output channels / pool size / output units
    kernel: int = 0  # conv kernel size

    def __str__(self) -> str:
        names = {"conv": f"{self.size}C{self.kernel}", "pool": f"MP{self.size}", "fc": f"{self.size}FC"}
        return names[self.kind]


def parse_arch(arch: str) -> tuple[LayerSpec, ...]:
    """Parse ``"8C5-MP2-16C5-MP2-128FC-10FC"`` into layer specs.

    Raises:
        SpecError: an unknown token, a zero size, pooling that does not follow a convolution, a
            convolution after a fully connected layer, or a string that does not end in ``NFC``.
    """
    example = "e.g. 8C5-MP2-16C5-MP2-128FC-10FC (NcK: conv N channels KxK, MPk: max-pool, NFC: dense)"
    if not isinstance(arch, str) or not arch.strip():
        raise SpecError(f"empty architecture string; expected tokens joined by '-', {example}")
    out: list[LayerSpec] = []
    for tok in arch.strip().split("-"):
        m = _TOKEN.match(tok.strip())
        if m is None:
            raise SpecError(f"architecture {arch!r}: cannot read token {tok!r}; {example}")
        if m["conv_n"]:
            spec = LayerSpec("conv", int(m["conv_n"]), int(m["conv_k"]))
        elif m["pool"]:
            spec = LayerSpec("pool", int(m["pool"]))
        else:
            spec = LayerSpec("fc", int(m["fc"]))
        if spec.size < 1 or (spec.kind == "conv" and spec.kernel < 1):
            raise SpecError(f"architecture {arch!r}: token {tok!r} has a zero size; {example}")
        if spec.kind == "pool" and (not out or out[-1].kind != "conv"):
            raise SpecError(f"architecture {arch!r}: {tok!r} must follow a convolution; {example}")
        if spec.kind == "conv" and out and out[-1].kind == "fc":
            raise SpecError(f"architecture {arch!r}: {tok!r} after a fully connected layer; convolutions "
                            f"and pooling come first, {example}")
        out.append(spec)
    if out[-1].kind != "fc":
        raise SpecError(f"architecture {arch!r} must end with the class layer NFC (e.g. 10FC); {example}")
    return tuple(out)


def levels_of_bits(bits: int | str) -> int:
    """Number of quantizer levels: ``"T"`` (ternary) -> 3, b bits -> 2^b (b in 1..8)."""
    s = str(bits).strip().lower()
    if s in ("t", "ternary", "3l"):
        return 3
    try:
        b = int(s)
    except ValueError:
        b = -1
    if not 1 <= b <= 8:
        raise SpecError(f"bits must be T (ternary, 3 levels) or an integer 1..8 (2^b levels), got {bits!r}")
    return 2**b


def _norm_bits(bits: int | str | None) -> int | str | None:
    if bits is None:
        return None
    levels_of_bits(bits)
    return "T" if str(bits).strip().lower() in ("t", "ternary", "3l") else int(bits)


@dataclass(frozen=True)
class WeightLayer:
    """A conv or FC layer of the built network, with its quantizers."""

    index: int
    kind: str  # "conv" | "fc"
    shape: tuple[int, ...]  # weight shape [out, in, k, k] or [out, in]
    K_w: int  # weight levels
    alpha: float  # weight level step
    K_a: int  # activation levels (0 for the class layer)
    pool: int  # max-pool after the activation (0: none)
    act_shape: tuple[int, ...]  # activation shape per data point, before pooling
    out_shape: tuple[int, ...]  # ... and after pooling

    @property
    def hidden(self) -> bool:
        return self.K_a > 0


def build_layers(arch: tuple[LayerSpec, ...], *, in_channels: int, image_size: int, K_w: int, K_a: int,
                 K_first_last: int | None) -> tuple[WeightLayer, ...]:
    """Shapes, level counts and grid steps of every weight layer."""
    n_weight = sum(s.kind != "pool" for s in arch)
    C, H = in_channels, image_size
    flat: int | None = None
    layers: list[WeightLayer] = []
    i = 0
    for j, s in enumerate(arch):
        if s.kind == "pool":
            continue
        pool = arch[j + 1].size if j + 1 < len(arch) and arch[j + 1].kind == "pool" else 0
        last = i == n_weight - 1
        Kw = K_first_last if (K_first_last is not None and (i == 0 or last)) else K_w
        if s.kind == "conv":
            H = H - s.kernel + 1
            if H < 1:
                raise SpecError(f"layer {i} ({s}): kernel {s.kernel} is larger than its "
                                f"{H + s.kernel - 1}px input")
            shape: tuple[int, ...] = (s.size, C, s.kernel, s.kernel)
            C = s.size
            act_shape: tuple[int, ...] = (C, H, H)
            if pool:
                if H // pool < 1:
                    raise SpecError(f"layer {i} ({s}): MP{pool} on a {H}px feature map")
                H = H // pool
            out_shape: tuple[int, ...] = (C, H, H)
        else:
            fan = flat if flat is not None else C * H * H
            shape = (s.size, fan)
            flat = s.size
            act_shape = out_shape = (s.size,)
        fan_in = math.prod(shape[1:])
        r = math.sqrt(3.0 / fan_in)
        layers.append(WeightLayer(i, s.kind, shape, Kw, 2 * r / (Kw - 1), 0 if last else K_a, pool,
                                  act_shape, out_shape))
        i += 1
    return tuple(layers)


def _conv(h: Tensor, w: Tensor) -> Tensor:
    """Convolution of R replicas of a batch with R weight samples: h [R*B, C, H, W], w [R, O, C, k, k]."""
    R = w.shape[0]
    if R == 1:
        return F.conv2d(h, w[0])
    N, C, H, W = h.shape
    B = N // R
    hg = h.reshape(R, B, C, H, W).transpose(0, 1).reshape(B, R * C, H, W)
    out = F.conv2d(hg, w.reshape(R * w.shape[1], *w.shape[2:]), groups=R)  # [B, R*O, H', W']
    Co, Ho, Wo = out.shape[1] // R, *out.shape[-2:]
    return out.reshape(B, R, Co, Ho, Wo).transpose(0, 1).reshape(N, Co, Ho, Wo)


def _dense(h: Tensor, w: Tensor) -> Tensor:
    """h [R*B, I] times R weight samples w [R, O, I] -> [R*B, O]."""
    R = w.shape[0]
    if R == 1:
        return h @ w[0].transpose(0, 1)
    return torch.einsum("rbi,roi->rbo", h.reshape(R, -1, h.shape[-1]), w).reshape(h.shape[0], w.shape[1])


def _batch_norm(h: Tensor, R: int) -> Tensor:
    """Normalize per channel with the statistics of each replica's batch: h [R*B, C, ...]."""
    N, C = h.shape[:2]
    hr = h.reshape(R, N // R, C, -1)  # [R, B, C, S]
    mean = hr.mean(dim=(1, 3), keepdim=True)
    var = hr.var(dim=(1, 3), keepdim=True, unbiased=False)
    return ((hr - mean) / torch.sqrt(var + BN_EPS)).reshape(h.shape)


def _channel(v: Tensor, h: Tensor) -> Tensor:
    """Per-channel vector [C] broadcast against h [N, C, ...]."""
    return v.reshape(1, -1, *([1] * (h.dim() - 2)))


class QNet(Problem):
    """Stochastic quantized CNN classifier (see the module docstring).

    Args:
        arch: architecture string (default the small net of App. B.6).
        weights_bits: ``"T"`` or bits (1..8) of the inner weight layers.
        acts_bits: ``"T"`` or bits of the hidden activations.
        first_last_bits: bits of the first and last weight layers (Sec. 4.3: 4); None: ``weights_bits``.
        noise: ``"triangular"`` (Sec. 4.3) or ``"logistic"``.
        sigma: noise standard deviation in level units; None: the kind's default (see QuantNoise).
        seed: seeds the initial latent weights and the placeholder batch.
        in_channels, image_size: input images [in_channels, image_size, image_size].
        placeholder_rows: rows of the placeholder evaluation batch (seeded random images and labels),
            used until a dataset batch replaces it (``train`` and snapshots set the real one).
        dtype: parameter dtype.
    """

    kind = "qnet"
    coupled = True  # batch norm and shared weight samples couple the data points of a pass
    #: the parameters the B.6 study measures by default (layer 0: weight, gain, bias; 216 in the small net)
    measure_params = "layers.0.*"

    def __init__(self, *, arch: str = "8C5-MP2-16C5-MP2-128FC-10FC", weights_bits: int | str = "T",
                 acts_bits: int | str = "T", first_last_bits: int | str | None = 4,
                 noise: str = "triangular", sigma: float | None = None, seed: int = 0, in_channels: int = 1,
                 image_size: int = 28, placeholder_rows: int = 8, dtype: torch.dtype = torch.float32) -> None:
        self.arch = parse_arch(arch)
        self.noise = QuantNoise(noise, sigma)
        wb, ab, fb = _norm_bits(weights_bits), _norm_bits(acts_bits), _norm_bits(first_last_bits)
        if int(in_channels) < 1 or int(image_size) < 1 or int(placeholder_rows) < 1:
            raise ShapeError(f"in_channels, image_size and placeholder_rows must be >= 1, got {in_channels}, "
                             f"{image_size}, {placeholder_rows}")
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.layers = build_layers(self.arch, in_channels=self.in_channels, image_size=self.image_size,
                                   K_w=levels_of_bits(wb), K_a=levels_of_bits(ab),
                                   K_first_last=None if fb is None else levels_of_bits(fb))
        self.classes = self.layers[-1].shape[0]
        self.config: dict[str, Any] = {
            "arch": "-".join(map(str, self.arch)), "weights_bits": wb, "acts_bits": ab, "first_last_bits": fb,
            "noise": noise, "sigma": sigma, "seed": int(seed), "in_channels": self.in_channels,
            "image_size": self.image_size, "placeholder_rows": int(placeholder_rows),
        }
        g = torch.Generator().manual_seed(int(seed))
        params: dict[str, Tensor] = {}
        for L in self.layers:
            r = L.alpha * (L.K_w - 1) / 2
            u = torch.rand(L.shape, generator=g, dtype=torch.float64)
            params[f"layers.{L.index}.weight"] = ((2 * u - 1) * r).to(dtype)  # uniform on the grid's range
            if L.hidden:
                params[f"layers.{L.index}.gain"] = torch.ones(L.shape[0], dtype=dtype)
            params[f"layers.{L.index}.bias"] = torch.zeros(L.shape[0], dtype=dtype)
        self.params = params
        rows, width = int(placeholder_rows), self.in_channels * self.image_size**2
        pixels = torch.rand(rows, width, generator=g, dtype=dtype)
        labels = torch.randint(self.classes, (rows, 1), generator=g).to(dtype)
        self.batch = torch.cat([labels, pixels], dim=1)

    # -- the Problem contract --------------------------------------------------------------------
    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for L in self.layers:
            out[f"w{L.index}"] = (1, *L.shape, L.K_w)  # shared by the batch: one sample per pass
            if L.hidden:
                out[f"a{L.index}"] = (batch_size, *L.act_shape, L.K_a)
        return out

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        """Per-data-point cross-entropy [B] of the stochastic network; ``sample`` draws every quantizer."""

        def quantize(node: str, eta: Tensor, K: int) -> Tensor:
            lv = levels(K, dtype=eta.dtype, device=eta.device)
            return sample(node, level_logprobs(eta, K, self.noise)) @ lv

        return self._loss(self.logits(params, x, quantize), x)

    def logits(self, params: Params, x: Tensor, quantize: Quantize) -> Tensor:
        """Class logits [N, classes] of inputs x [N, 1 + C*H*W], each quantizer drawn by ``quantize``.

        Weight nodes receive eta [1, *shape]; ``quantize`` may return R >= 1 samples [R, *shape]
        (``rf(M)``: R = M), in which case x holds R replicas of the batch, one per weight sample.
        """
        h = x[:, 1:].reshape(x.shape[0], self.in_channels, self.image_size, self.image_size)
        flat = False
        for L in self.layers:
            c_w = (L.K_w - 1) / 2
            latent = params[f"layers.{L.index}.weight"]
            w = L.alpha * (quantize(f"w{L.index}", (latent / L.alpha + c_w).unsqueeze(0), L.K_w) - c_w)
            R = w.shape[0]  # [R, *shape]
            if L.kind == "conv":
                h = _conv(h, w)
            else:
                if not flat:
                    h, flat = h.reshape(h.shape[0], -1), True
                h = _dense(h, w)
            if not L.hidden:
                return h + params[f"layers.{L.index}.bias"]
            c_a = (L.K_a - 1) / 2
            eta = (_channel(params[f"layers.{L.index}.gain"], h) * _batch_norm(h, R)
                   + _channel(params[f"layers.{L.index}.bias"], h) + c_a)
            h = quantize(f"a{L.index}", eta, L.K_a) - c_a
            if L.pool:
                h = F.max_pool2d(h, L.pool)
        raise AssertionError("unreachable: the last layer is the class layer")  # pragma: no cover

    def _loss(self, logits: Tensor, x: Tensor) -> Tensor:
        """Cross-entropy per data point [N] (labels in x[:, 0]; vmap-safe, no gather)."""
        onehot = (torch.arange(self.classes, device=x.device) == x[:, :1].round()).to(logits.dtype)
        return -(onehot * logits.log_softmax(-1)).sum(-1)

    # -- data and evaluation ---------------------------------------------------------------------
    def make_batch(self, data: Any, indices: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x = cat([label, pixels])`` [len(indices), 1 + C*H*W] (the pixels are not quantized)."""
        del generator
        labels = getattr(data, "labels", None)
        if labels is None:
            raise DataError(f"qnet needs a labelled dataset (mnist, fmnist); "
                            f"{getattr(data, 'name', 'this dataset')} has no labels")
        images = data.images[indices]
        want = self.in_channels * self.image_size**2
        if images.shape[-1] != want:
            raise DataError(f"qnet expects images of {want} values ({self.in_channels}x{self.image_size}x"
                            f"{self.image_size}), the dataset has {images.shape[-1]}")
        lab = labels[indices].to(self.batch.dtype).reshape(-1, 1)
        return torch.cat([lab, images.to(self.batch.dtype)], dim=1)

    def deterministic_logits(self, params: Params, x: Tensor) -> Tensor:
        """Class logits with every injected noise off: each quantizer takes its nearest level."""
        return self.logits(params, x, lambda node, eta, K: round_level(eta, K))

    def evaluate(self, params: Params | None = None, x: Tensor | None = None, *, deterministic: bool = True,
                 generator: torch.Generator | None = None) -> dict[str, float]:
        """Accuracy and mean cross-entropy on x (default the evaluation batch).

        ``deterministic=True`` (App. B.5 test mode) rounds every quantizer; otherwise one stochastic
        sample of the network (Gumbel-max with ``generator``). Batch norm uses the statistics of x.
        """
        params = self.params if params is None else params
        x = self.batch if x is None else x
        with torch.no_grad():
            if deterministic:
                lg = self.deterministic_logits(params, x)
            else:
                def quantize(node: str, eta: Tensor, K: int) -> Tensor:
                    logp = level_logprobs(eta, K, self.noise)
                    u = torch.rand(logp.shape, generator=generator, device=logp.device, dtype=logp.dtype)
                    g = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
                    return (logp + g).argmax(-1).to(eta.dtype)

                lg = self.logits(params, x, quantize)
            loss = self._loss(lg, x)
            acc = (lg.argmax(-1) == x[:, 0].round().long()).to(torch.float64).mean()
        return {"accuracy": float(acc), "loss": float(loss.mean())}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["layers"] = [{"index": L.index, "kind": L.kind, "weight_shape": list(L.shape),
                        "weight_levels": L.K_w, "act_levels": L.K_a, "pool": L.pool} for L in self.layers]
        return d
