"""The estimator kinds the engine knows: :class:`PlugIn` ``(logits, noise) -> y`` and the
score-function :class:`ScoreFunction` (``rf``), with the :class:`NoiseRequest` each makes per node
(the multi-pass kind is :class:`biasvar.estimators.newer.MultiPass`). Re-exported by
:mod:`biasvar.estimators`, which builds them from specs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor

from biasvar.estimators.categorical import rf_surrogate, sample_onehot
from biasvar.spec import EstimatorSpec

Noise = Mapping[str, Tensor]


@dataclass(frozen=True)
class NoiseRequest:
    """Noise one estimator needs for one stochastic node: a shape and a kind."""

    shape: tuple[int, ...]
    kind: str  # "gumbel" | "exponential" | "uniform" | "counter" (the uniforms' address: biasvar.rng.COUNTER)


@dataclass(frozen=True)
class PlugIn:
    """A plug-in estimator ``(logits, noise) -> y``; value = forward sample, gradient = estimator.

    ``y_fn`` is the same estimator as a function of the one-hot sample (for estimators whose
    gradient depends on x alone), which lets tests enumerate every x.
    """

    spec: EstimatorSpec
    fn: Callable[[Tensor, Noise], Tensor]
    y_fn: Callable[[Tensor, Tensor], Tensor] | None = None
    mc: int = 0  # M of gr-mc: extra Exp(1) noise [..., M, K]
    relaxed: bool = False  # gs: the value itself is relaxed
    cost: int = 1

    def __call__(self, logits: Tensor, noise: Noise) -> Tensor:
        return self.fn(logits, noise)

    def noise(self, logits_shape: tuple[int, ...]) -> dict[str, NoiseRequest]:
        shape = tuple(logits_shape)
        req = {"G": NoiseRequest(shape, "gumbel")}
        if self.mc:
            # the uniforms of E = -log U, handed over as their address: GR-MC's kernel generates them
            req["E"] = NoiseRequest((*shape[:-1], self.mc, shape[-1]), "counter")
        return req


@dataclass(frozen=True)
class ScoreFunction:
    """rf(M): M independent forward passes per gradient sample, surrogate of Kool et al. (2019)."""

    spec: EstimatorSpec
    M: int
    cost: int = field(default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost", self.M)

    def noise(self, logits_shape: tuple[int, ...]) -> dict[str, NoiseRequest]:
        return {"G": NoiseRequest((self.M, *logits_shape), "gumbel")}

    def surrogate(self, f: Tensor, logq: Tensor) -> Tensor:
        return rf_surrogate(f, logq)

    @staticmethod
    def sample(logits: Tensor, noise: Noise) -> Tensor:
        return sample_onehot(logits, noise["G"])
