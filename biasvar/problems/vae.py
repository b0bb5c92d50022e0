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
and :func:`enumerate_gradient` (the exact gradient of the expected loss by enumerating every joint
latent configuration, for tiny models).
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
from biasvar.exact import Expectation
from biasvar.problems.base import Params, Problem, SampleFn, log2_int

PIXELS = 784
SLOPE = 0.2  # LReLU leak (App. B.3)
EVAL_BATCH = 200  # size of the placeholder evaluation batch (the protocol's 200 images)
ENUM_LIMIT = 1 << 16  # joint latent configurations x data points that enumerate_gradient accepts


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


class VAE(Problem):
    """Categorical VAE of App. B.3 (uniform prior, analytic KL)."""

    kind = "vae"

    def __init__(self, *, categories: int = 16, vars: int = 16, hidden: Sequence[int] = (512, 256),
                 seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        C, V, b = _check_sizes(categories, vars)
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1:
            raise ShapeError(f"hidden sizes must be positive integers, got {hidden}")
        self.C, self.V, self.bits = C, V, V * b
        self.hidden = hidden
        self.config: dict[str, Any] = {"categories": C, "vars": V, "hidden": list(hidden), "seed": int(seed)}
        self.codes = bit_codes(C, dtype=dtype)  # [C, b]
        g = torch.Generator().manual_seed(int(seed))
        enc = [PIXELS, *hidden, V * C]
        dec = [self.bits, *reversed(hidden), PIXELS]
        self.params = {}
        for part, sizes in (("encoder", enc), ("decoder", dec)):
            for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
                w, bias = linear_init(fan_in, fan_out, g, dtype)
                self.params[f"{part}.{2 * i}.weight"] = w
                self.params[f"{part}.{2 * i}.bias"] = bias
        self.batch = torch.zeros(EVAL_BATCH, PIXELS, dtype=dtype)

    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {"z": (batch_size, self.V, self.C)}

    def _mlp(self, params: Params, part: str, h: Tensor) -> Tensor:
        n = len(self.hidden) + 1
        for i in range(n):
            h = F.linear(h, params[f"{part}.{2 * i}.weight"], params[f"{part}.{2 * i}.bias"])
            if i < n - 1:
                h = F.leaky_relu(h, SLOPE)
        return h

    def encode(self, params: Params, x: Tensor) -> Tensor:
        """Logits of q(z | x): [B, 784] -> [B, V, C]."""
        return self._mlp(params, "encoder", x).reshape(x.shape[0], self.V, self.C)

    def decode(self, params: Params, y: Tensor) -> Tensor:
        """Bernoulli logits of p(x | z) for samples y [B, V, C] (one-hot or relaxed): [B, 784]."""
        z = (y @ self.codes.to(dtype=y.dtype, device=y.device)).reshape(y.shape[0], self.bits)  # [B, V*b]
        return self._mlp(params, "decoder", z)

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        """Negative ELBO per data point [B]: ``-log p(x|z) + KL(q(z|x) || uniform)`` with z sampled."""
        logits = self.encode(params, x)  # [B, V, C]
        y = sample("z", logits)  # [B, V, C]
        return bernoulli_nll(self.decode(params, y), x) + kl_uniform(logits)

    def exact_gradient(self) -> dict[str, Tensor] | None:
        """Exact gradient of the mean negative ELBO on ``batch`` by enumeration (tiny models only)."""
        return enumerate_gradient(self)

    def exact_expectation(self, spec: Any, **kw: Any) -> Expectation | None:
        """``E[J]`` of an estimator on ``batch`` by enumeration, exact for x-only estimators (tiny models
        only; :func:`~biasvar.problems.vae.enumerate_expectation`)."""
        return enumerate_expectation(self, spec, **kw)

    def _moved(self, mv: Callable[[Tensor], Tensor]) -> None:
        self.codes = mv(self.codes)


def _joint_configs(problem: Problem, B: int, device: torch.device, dtype: torch.dtype,
                   limit: int) -> tuple[int, dict[str, Tensor]] | None:
    """Every joint configuration of the problem's nodes for each of B data points.

    Returns ``(N, configs)`` with ``configs[node]`` one-hot [N*B, *vars, C] (row ``j*B + b``: the
    j-th joint configuration for data point b), or None when ``N * B`` exceeds ``limit``.
    """
    shapes = problem.node_shapes(1)
    sizes = [(node, s[1:-1], s[-1]) for node, s in shapes.items()]  # node, (V,), C
    n_vars = [math.prod(v) for _, v, _ in sizes]
    N = math.prod(C**n for (_, _, C), n in zip(sizes, n_vars, strict=True))
    if N * B > limit:
        return None
    # every joint configuration: one index per variable of every node, [N, total variables]
    idx = torch.tensor(list(itertools.product(*[range(C) for (_, _, C), n in zip(sizes, n_vars, strict=True)
                                                 for _ in range(n)])), device=device)
    configs, col = {}, 0
    for (node, vshape, C), n in zip(sizes, n_vars, strict=True):
        onehot = (torch.arange(C, device=device) == idx[:, col:col + n, None]).to(dtype)  # [N, n, C]
        configs[node] = onehot.reshape(N, 1, *vshape, C).expand(N, B, *vshape, C).reshape(N * B, *vshape, C)
        col += n
    return N, configs


#: ``surrogate(node, logits, y)`` -> what the model uses for the one-hot outcome ``y`` of a node
Surrogate = Callable[[str, Tensor, Tensor], Tensor]


def _enumerated_mean(problem: Problem, params: Params, x: Tensor, limit: int,
                     surrogate: Surrogate | None) -> dict[str, Tensor] | None:
    """``d/dparams`` of ``mean_b sum_configs w(config) L_b``, the model fed ``surrogate`` of each outcome.

    With ``surrogate`` None the weights are the probabilities themselves, ``w = q(config)``, and the
    result is the gradient of the expected loss; otherwise ``w = sg(q(config))`` and the result is the
    expectation over outcomes of the gradient the surrogate gives at each outcome.
    """
    B = x.shape[0]
    found = _joint_configs(problem, B, x.device, x.dtype, limit)
    if found is None:
        return None
    N, configs = found
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    logq: list[Tensor] = []

    def sample(node: str, logits: Tensor) -> Tensor:
        y = configs[node]
        logq.append((y * logits.log_softmax(-1)).reshape(N * B, -1).sum(1))
        return y if surrogate is None else surrogate(node, logits, y)

    xr = x.unsqueeze(0).expand(N, *x.shape).reshape(N * B, *x.shape[1:])
    f = problem.forward(leaves, xr, sample)  # [N*B]
    w = torch.stack(logq).sum(0).exp()
    if surrogate is not None:
        w = w.detach()
    grads = torch.autograd.grad((w * f).sum() / B, list(leaves.values()), allow_unused=True)
    pairs = zip(leaves.items(), grads, strict=True)
    return {k: (torch.zeros_like(v) if g is None else g) for (k, v), g in pairs}


def enumerate_gradient(problem: Problem, params: Params | None = None, x: Tensor | None = None, *,
                       limit: int = ENUM_LIMIT) -> dict[str, Tensor] | None:
    """Gradient of ``mean_b E_q[L_b]`` by summing over every joint latent configuration.

    Works for any problem whose nodes are categorical and sampled in a fixed order (``vae``,
    ``hvae``, ``toy-cat``): each node is fed a fixed one-hot configuration, its log-probability under
    the logits the model computes at that point is accumulated, and
    ``sum_configs exp(sum_nodes logq) * L`` is differentiated. The latents of different data points
    are independent, so the sum is per data point: ``configurations x batch size`` terms. Returns
    None when that exceeds ``limit``.
    """
    params = problem.params if params is None else params
    x = problem.batch if x is None else x
    return _enumerated_mean(problem, params, x, limit, None)


MC_ELEMENTS = 1 << 22  # conditional-noise entries per replicate of enumerate_expectation (memory bound)


def enumerate_expectation(problem: Problem, spec: str | Any, params: Params | None = None, x: Tensor | None = None,
                          *, limit: int = ENUM_LIMIT, mc: int = 10_000, seed: int = 0,
                          dtype: torch.dtype | None = torch.float64) -> Expectation | None:
    """``E[J]`` of the estimator ``spec`` on the problem's batch: exact where the estimator allows it.

    The draw of a plug-in estimator is ``J = d/dparams mean_b L_b`` with every node fed the
    estimator's output; the outcomes of different data points are independent, so
    ``E[J] = mean_b sum_x q_b(x) E[J_b | x]`` with x the joint outcome of data point b's nodes
    (ancestral: for ``hvae`` ``q(x1, x2) = q(x1 | data) q(x2 | x1)``, the second layer's logits
    computed from the first layer's outcome, as the engine does). Hence:

    * ``st``, ``st(t)``, ``darn``, ``zgr``, ``st-zgr``: the draw is a function of the outcome alone
      (``y_fn``), so the sum is **exact** (up to float64 rounding), for ``vae`` and ``hvae`` alike;
    * ``rf(M)``: unbiased, ``E[J]`` is the gradient of the expected loss (:func:`enumerate_gradient`);
    * ``gs-st(t)`` and ``gr-mc(t, M)`` (one common expectation, Eq. 9): ``E[J | x]`` is the gradient
      with the surrogate ``d`` replaced by ``E[softmax((logp + G)/t) | x]`` (the draw is linear in
      the Jacobian of ``d``; in ``hvae`` the two layers' conditional noises are independent given the
      outcome, so a product of their Jacobians averages to the product of averages). It is
      estimated by Monte Carlo over ``G | x``, ``mc`` conditional samples per outcome and node,
      split into independent replicates whose spread gives the standard error ``se``;
    * ``gs(t)`` (relaxed value): by stratified Monte Carlo, one ``G | x`` per outcome per replicate,
      ``mc`` replicates.

    Args:
        problem: an enumerable problem (``vae``, ``hvae``, ``toy-cat``); its nodes categorical.
        spec: the estimator.
        params, x: default the problem's parameters and evaluation batch.
        limit: the largest ``configurations x batch size``; None is returned above it.
        mc: conditional samples per outcome (Monte Carlo families only).
        seed: of the Monte Carlo noise.
        dtype: computing precision (default float64; None keeps the problem's).

    Returns:
        :class:`biasvar.exact.Expectation`, or None where the problem is too large to enumerate.
    """
    from biasvar.errors import UnsupportedError
    from biasvar.estimators import PlugIn, ScoreFunction, build, gs
    from biasvar.estimators.categorical import conditional_gumbel
    from biasvar.spec import parse_spec

    spec = parse_spec(spec)
    est = build(spec)
    params = problem.params if params is None else params
    x = problem.batch if x is None else x
    if dtype is not None:
        params = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in params.items()}
        x = x.to(dtype)
    name = str(spec)
    if isinstance(est, ScoreFunction):
        g = _enumerated_mean(problem, params, x, limit, None)
        return None if g is None else Expectation(name, g, None, "exact: rf(M) is unbiased, E[J] is the gradient")
    if not isinstance(est, PlugIn) or (est.y_fn is None and spec.name not in ("gs", "gs-st", "gr-mc")):
        raise UnsupportedError(f"no exact expectation for {name}: enumeration covers x-only plug-in estimators, "
                               f"rf(M), and gs / gs-st / gr-mc by conditional Monte Carlo")
    if est.y_fn is not None:
        y_fn = est.y_fn
        m = _enumerated_mean(problem, params, x, limit, lambda node, logits, y: y_fn(logits, y))
        return None if m is None else Expectation(name, m, None, "exact: sum over every outcome")
    if _joint_configs(problem, x.shape[0], x.device, x.dtype, limit) is None:
        return None
    t = float(spec["t"])
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    if spec.name == "gs":
        per, reps = 1, int(mc)
        how = f"stratified Monte Carlo: one G|x per outcome per replicate, {reps} replicates"

        def surrogate(node: str, logits: Tensor, y: Tensor) -> Tensor:
            E = torch.empty((*logits.shape[:-1], 1, logits.shape[-1]), dtype=logits.dtype,
                            device=logits.device).exponential_(generator=gen)
            return gs(logits, conditional_gumbel(logits, y, E)[..., 0, :], t)
    else:
        n_entries = sum(math.prod(s[:-1]) * s[-1] for s in problem.node_shapes(1).values())
        N = _joint_configs(problem, 1, x.device, x.dtype, limit)[0]
        cap = max(1, MC_ELEMENTS // max(1, N * x.shape[0] * n_entries))
        per = max(1, min(cap, math.ceil(int(mc) / 20)))
        reps = max(2, math.ceil(int(mc) / per))
        how = f"conditional Monte Carlo over G|x: {per * reps} samples per outcome in {reps} replicates"

        def surrogate(node: str, logits: Tensor, y: Tensor) -> Tensor:
            E = torch.empty((*logits.shape[:-1], per, logits.shape[-1]), dtype=logits.dtype,
                            device=logits.device).exponential_(generator=gen)
            Gm = conditional_gumbel(logits, y, E)  # [..., per, K]
            d = ((logits.log_softmax(-1).unsqueeze(-2) + Gm) / t).softmax(-1).mean(-2)
            return y + (d - d.detach())

    draws = [_enumerated_mean(problem, params, x, limit, surrogate) for _ in range(reps)]
    mean = {k: torch.stack([d[k] for d in draws]).mean(0) for k in draws[0]}
    se = {k: torch.stack([d[k] for d in draws]).std(0) / math.sqrt(reps) for k in draws[0]}
    return Expectation(name, mean, se, how)
