"""Your own model as a problem: stochastic sites, :class:`UserProblem` and :func:`problem_from_module`.

A problem is what the engine measures (see :class:`biasvar.problems.base.Problem`):

* ``params`` — the parameters, an ordered ``{name: Tensor}`` (the gradient's layout);
* ``batch`` — a fixed evaluation batch ``x`` [B, ...];
* its stochastic *sites* — ``{name: logits shape of one data point}``;
* ``forward(params, x, sample) -> losses [B]`` — per-data-point losses, where the model draws every
  discrete value with ``y = sample(name, logits)`` and nothing else.

``sample`` returns a tensor whose *value* is the draw (one-hot, or the relaxed sample for ``gs``)
and whose *gradient* is the estimator's; the model uses ``y`` as it would a sample.

Sites are categorical (logits ``[..., K]``, K >= 2, ``y`` one-hot ``[..., K]``) or **binary**
(Bernoulli): logits ``[..., 1]``, or any shape with ``Site(shape, binary=True)``; ``y`` then has the
logits' shape and values in {0, 1}, ``P(y = 1) = sigmoid(logit)``. A binary site is measured as the
2-category variable with logits ``[0, l]`` whose sample embeds as its second coordinate: this is
exactly the Bernoulli variable, and every categorical estimator becomes its Bernoulli form (ST:
``d = sigmoid(l)``; DARN: ``J = L'(b) (b - sigmoid(l))^2``; ZGR = DARN(1/2):
``J = L'(b) (b - 1/2) (b - sigmoid(l))``; GS: the binary Concrete ``sigmoid((l + logistic) / t)``;
RF: ``log p(b)``), checked against enumeration in the tests. The multi-pass estimators apply too
(ARSM, IndeCateR, and DisARM, which refuses categorical sites of K > 2 with a one-line error).

Two ways to write one:

* :class:`UserProblem` ``(params, batch, forward, sites=None)`` for a pure function of a params dict;
* :func:`problem_from_module` ``(module, batch, sites=None)`` for an ``nn.Module`` whose
  ``forward(x, sample)`` returns the per-data-point losses; parameters are taken with
  ``torch.func.functional_call``, buffers (and frozen parameters) are kept fixed, the module runs in
  eval mode.

``sites=None`` discovers the sites by one forward pass on two data points (a last logits dimension
of 1 is binary). Construction checks the model once: every declared site drawn exactly once through
``sample``, logits of the declared shape, losses of shape [B]; each failure is one
:class:`~biasvar.errors.ShapeError` line. Expose the problem through a *factory* (a function
``make(**options) -> Problem`` importable as ``module:make``) so snapshots can rebuild it:
``biasvar train --problem mypkg.models:make -o hidden=64``.

Where every site is small enough, ``exact_gradient`` enumerates every joint configuration
(:func:`biasvar.problems.enumeration.enumerate_gradient`), so ``--reference exact`` works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from biasvar.errors import ShapeError
from biasvar.problems.base import Params, Problem, SampleFn

UserForward = Callable[[Params, Tensor, SampleFn], Tensor]


@dataclass(frozen=True)
class Site:
    """A stochastic site: the logits shape of **one** data point, and whether it is binary.

    ``Site((8, 16))``: 8 categorical variables of 16 categories; ``Site((8, 1))`` or
    ``Site((8,), binary=True)``: 8 Bernoulli variables.
    """

    shape: tuple[int, ...]
    binary: bool = False

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        if any(s < 1 for s in shape) or (not self.binary and not shape):
            raise ShapeError(f"site shape {list(shape)}: expected positive sizes, the last one the categories")

    @property
    def is_binary(self) -> bool:
        return self.binary or self.shape[-1] == 1

    @property
    def categorical_shape(self) -> tuple[int, ...]:
        """Logits shape of one data point as the engine sees it: binary sites have 2 categories."""
        if not self.is_binary:
            return self.shape
        return (*(self.shape if self.binary else self.shape[:-1]), 2)

    def to_categorical(self, logits: Tensor) -> Tensor:
        """Binary logits l -> 2-category logits [0, l] (categorical sites unchanged)."""
        if not self.is_binary:
            return logits
        lx = logits if self.binary else logits.squeeze(-1)
        return torch.stack([torch.zeros_like(lx), lx], -1)

    def from_categorical(self, y: Tensor) -> Tensor:
        """A 2-category sample -> its Bernoulli value b = y[..., 1] in the logits' shape."""
        if not self.is_binary:
            return y
        return y[..., 1] if self.binary else y[..., 1:]

    def describe(self) -> str:
        kind = "binary" if self.is_binary else f"categorical({self.shape[-1]})"
        return f"{kind} {list(self.shape)}"


def as_site(value: Site | Sequence[int] | int) -> Site:
    if isinstance(value, Site):
        return value
    if isinstance(value, int):
        return Site((value,))
    return Site(tuple(value))


class UserProblem(Problem):
    """A problem from a pure function ``forward(params, x, sample) -> losses [B]``.

    Args:
        params: ordered ``{name: Tensor}``, the measured parameters (copied).
        batch: the fixed evaluation batch [B, ...]; ``batch.shape[0]`` data points.
        forward: per-data-point losses; draws every discrete value with ``sample(name, logits)``.
        sites: ``{name: Site or logits shape of one data point}``; None discovers them.
        config: JSON-able options that rebuild the problem (set by the factory machinery).
    """

    kind = "user"

    def __init__(self, params: Mapping[str, Tensor], batch: Tensor, forward: UserForward,
                 sites: Mapping[str, Site | Sequence[int]] | None = None, *,
                 config: Mapping[str, Any] | None = None) -> None:
        if not isinstance(batch, Tensor) or batch.dim() < 1 or batch.shape[0] < 1:
            raise ShapeError("batch must be a tensor [B, ...] with B >= 1 data points")
        bad = [k for k, v in params.items() if not (isinstance(v, Tensor) and v.is_floating_point())]
        if bad or not params:
            raise ShapeError(f"params must be a non-empty {{name: floating tensor}}; bad: {', '.join(bad) or 'none'}")
        self.params = {str(k): v.detach().clone() for k, v in params.items()}
        self.batch = batch.detach().clone()
        self.config = dict(config or {})
        self._forward = forward
        self.sites = None if sites is None else {str(k): as_site(v) for k, v in sites.items()}
        self.sites = self._check(self.sites)

    # -- the Problem interface ----------------------------------------------------------------
    def node_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {name: (batch_size, *s.categorical_shape) for name, s in self.sites.items()}

    def forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        return self._call(params, x, self._site_sampler(sample, x.shape[0]))

    def exact_gradient(self) -> dict[str, Tensor] | None:
        from biasvar.problems.enumeration import enumerate_gradient

        return enumerate_gradient(self)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["sites"] = {k: s.describe() for k, s in self.sites.items()}
        return out

    # -- internals ------------------------------------------------------------------------------
    def _call(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        return self._forward(params, x, sample)

    def _site_sampler(self, sample: SampleFn, batch_size: int) -> SampleFn:
        """``sample`` for the user's model: checks each site, maps binary sites to 2 categories."""
        sites, drawn = self.sites, set()

        def user_sample(name: str, logits: Tensor) -> Tensor:
            site = sites.get(name)
            if site is None:
                raise ShapeError(f"sample({name!r}, ...) names no declared site; the sites are: "
                                 f"{', '.join(sites) or 'none'}")
            if name in drawn:
                raise ShapeError(f"site {name!r} drawn twice in one forward pass; give each draw its own name")
            drawn.add(name)
            if tuple(logits.shape) != (batch_size, *site.shape):
                raise ShapeError(f"site {name!r}: logits {list(logits.shape)} for {batch_size} data points, "
                                 f"declared {[batch_size, *site.shape]} ({site.describe()})")
            return site.from_categorical(sample(name, site.to_categorical(logits)))

        return user_sample

    def _check(self, sites: dict[str, Site] | None) -> dict[str, Site]:
        """One forward pass on <= 2 data points with plain draws: discover or verify the sites."""
        from biasvar.estimators import sample_onehot

        x = self.batch[:2]
        seen: dict[str, tuple[int, ...]] = {}
        g = torch.Generator().manual_seed(0)

        def probe(name: str, logits: Tensor) -> Tensor:
            if not isinstance(logits, Tensor):
                raise ShapeError(f"sample({name!r}, logits): logits must be a tensor, got {type(logits).__name__}")
            if name in seen:
                raise ShapeError(f"site {name!r} drawn twice in one forward pass; give each draw its own name")
            if logits.dim() < 2 or logits.shape[0] != x.shape[0]:
                raise ShapeError(f"site {name!r}: logits {list(logits.shape)} must be [B, ...] for B = {x.shape[0]} "
                                 f"data points (one row per data point)")
            seen[name] = tuple(logits.shape[1:])
            site = Site(seen[name]) if sites is None else sites.get(name, Site(seen[name]))
            lc = site.to_categorical(logits)
            u = torch.rand(lc.shape, generator=g, dtype=lc.dtype).clamp_min(1e-30).to(lc.device)
            return site.from_categorical(sample_onehot(lc, -torch.log(-torch.log(u))))

        with torch.no_grad():
            out = self._call(self.params, x, probe)
        if not isinstance(out, Tensor) or tuple(out.shape) != (x.shape[0],):
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(f"forward must return per-data-point losses of shape [{x.shape[0]}] for "
                             f"{x.shape[0]} data points, got {got}")
        if not seen:
            raise ShapeError("forward drew no discrete value through sample(name, logits): draw every "
                             "stochastic site with the sample function it is given")
        if sites is None:
            sites = {k: Site(s) for k, s in seen.items()}
        missing = [k for k in sites if k not in seen]
        if missing:
            raise ShapeError(f"site(s) {', '.join(missing)} declared but never drawn through sample(name, logits)")
        extra = [k for k in seen if k not in sites]
        if extra:
            raise ShapeError(f"sample({extra[0]!r}, ...) names no declared site; the sites are: {', '.join(sites)}")
        for k, s in sites.items():
            if seen[k] != s.shape:
                raise ShapeError(f"site {k!r}: logits of one data point are {list(seen[k])}, declared {list(s.shape)}")
            if not s.is_binary and s.shape[-1] < 2:
                raise ShapeError(f"site {k!r}: a categorical site needs >= 2 categories")
        return sites

    @property
    def enumerable_configurations(self) -> int:
        """Joint configurations of all sites for one data point (what exact enumeration sums over)."""
        return math.prod(s.categorical_shape[-1] ** math.prod(s.categorical_shape[:-1]) for s in self.sites.values())


class ModuleProblem(UserProblem):
    """A problem from an ``nn.Module`` whose ``forward(x, sample)`` returns per-data-point losses.

    ``params`` are the module's trainable parameters (``named_parameters`` order); ``buffers`` (its
    buffers and frozen parameters) stay fixed and travel with snapshots.
    """

    def __init__(self, module: nn.Module, batch: Tensor, sites: Mapping[str, Site | Sequence[int]] | None = None,
                 *, config: Mapping[str, Any] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise ShapeError(f"problem_from_module needs a torch.nn.Module, got {type(module).__name__}")
        self.module = module.eval()
        params = {k: p for k, p in module.named_parameters() if p.requires_grad}
        self.buffers = {k: p.detach().clone() for k, p in module.named_parameters() if not p.requires_grad}
        self.buffers.update({k: b.detach().clone() for k, b in module.named_buffers()})
        super().__init__(params, batch, self._module_forward, sites, config=config)

    def _module_forward(self, params: Params, x: Tensor, sample: SampleFn) -> Tensor:
        return torch.func.functional_call(self.module, {**self.buffers, **params}, (x, sample))

    def _moved(self, mv: Callable[[Tensor], Tensor]) -> None:
        self.buffers = {k: mv(v) for k, v in self.buffers.items()}


def problem_from_module(module: nn.Module, batch: Tensor,
                        sites: Mapping[str, Site | Sequence[int]] | None = None) -> ModuleProblem:
    """Wrap an ``nn.Module`` with ``forward(x, sample) -> losses [B]`` as a problem.

    >>> class Bits(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.enc = nn.Linear(4, 3)
    ...     def forward(self, x, sample):
    ...         b = sample("b", self.enc(x).unsqueeze(-1))  # 3 Bernoulli variables: [B, 3, 1]
    ...         return ((b.squeeze(-1) - x[:, :3]) ** 2).sum(-1)
    >>> p = problem_from_module(Bits(), torch.rand(5, 4))
    >>> p.node_shapes(5), p.dim
    ({'b': (5, 3, 2)}, 15)
    """
    return ModuleProblem(module, batch, sites)


def load_state(problem: Problem, state: Mapping[str, Tensor], *, source: str = "weights", cast: bool = True) -> None:
    """Set ``problem``'s parameters (and a module problem's buffers) from a state dict, strictly.

    Every parameter must be present with its shape; keys that are neither parameters nor buffers are
    refused. Errors are one :class:`ShapeError` line naming what is missing or different. ``cast``
    converts to the problem's dtypes (as ``load_state_dict``); without it the tensors are kept as given.
    """
    buffers = getattr(problem, "buffers", None) or {}
    targets = {**buffers, **problem.params}
    missing = [k for k in problem.params if k not in state]
    unknown = [k for k in state if k not in targets]
    shapes = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in targets.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unknown:
        problems.append(f"not in the model {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''}")
    if shapes:
        problems.append(f"shape ({source} vs model) {'; '.join(shapes[:4])}")
    if problems:
        raise ShapeError(f"{source} do not match the problem's parameters: {'; '.join(problems)}")
    def conv(t: Tensor, like: Tensor) -> Tensor:
        return t.detach().to(like.dtype).clone() if cast else t

    problem.params = {k: conv(state[k], v) for k, v in problem.params.items()}
    if buffers:
        problem.buffers = {k: (conv(state[k], v) if k in state else v) for k, v in buffers.items()}


__all__ = ["ModuleProblem", "Site", "UserProblem", "load_state", "problem_from_module"]
