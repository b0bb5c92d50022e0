"""The user's own estimators as engine estimators: :class:`UserPlugIn` and :func:`register_estimator`.

A plug-in spec (:mod:`biasvar.spec`: an import path or a registered name) is built by calling its
factory (:func:`biasvar.plugins.make`) and wrapping the :class:`~biasvar.plugins.UserEstimator` it
returns as a :class:`UserPlugIn`: a :class:`~biasvar.estimators.PlugIn` (so the engine, the
problems and the exact enumeration treat it like ``st`` or ``gs``) that asks for the noise the
user declared. :func:`vmap_refusal` tries the user's function once under ``torch.func.vmap`` on a
tiny batch, so a run can fall back to the loop with one line saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from biasvar import plugins
from biasvar.errors import UnsupportedError
from biasvar.estimators.base import NoiseRequest, PlugIn
from biasvar.plugins import UserEstimator
from biasvar.spec import FAMILIES, EstimatorSpec


@dataclass(frozen=True)
class UserPlugIn(PlugIn):
    """A plug-in estimator from the user's factory; ``user`` is what the factory returned."""

    user: UserEstimator | None = field(default=None, kw_only=True)

    @property
    def unbiased(self) -> bool:
        return bool(self.user and self.user.unbiased)

    def noise(self, logits_shape: tuple[int, ...]) -> dict[str, NoiseRequest]:
        assert self.user is not None
        return {k: NoiseRequest(shape, kind) for k, (shape, kind) in self.user.requests(logits_shape).items()}

    def source(self) -> dict[str, str]:
        """The import path, file and SHA-256 of the code (what a run file records)."""
        return plugins.source_record(self.spec.name)


def build_plugin(spec: EstimatorSpec) -> UserPlugIn:
    """The estimator of a plug-in spec (its factory called with the spec's parameters)."""
    user = plugins.make(spec.name, spec.as_dict(), str(spec))
    return UserPlugIn(spec, user.fn, user.y_fn, relaxed=bool(user.relaxed), cost=int(user.cost), user=user)


def register_estimator(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
    """Name a plug-in factory in this process: ``register_estimator("annealed-st", make)``, then
    ``"annealed-st(t=0.5)"`` is a spec. A run file records the factory's ``module:function``; a later
    process must register it again (or name it by that import path)."""
    if name.lower() in FAMILIES:
        raise UnsupportedError(f"estimator name {name!r} is built in; choose another name")
    plugins.register(name, factory, replace=replace)


def vmap_refusal(est: PlugIn, dtype: torch.dtype = torch.float64) -> str | None:
    """None when ``est`` runs under ``vmap(grad(...))`` on a small batch, else one line naming what
    failed (the estimator and the error), for a fallback to the per-draw loop."""
    error = vmap_error(est, dtype)
    return None if error is None else f"estimator {est.spec} is not vmap-safe ({error}); using the loop"


def vmap_error(est: PlugIn, dtype: torch.dtype = torch.float64) -> str | None:
    """The error (``Type: first line``) of ``est`` under ``vmap(grad(...))`` on a small batch, or None."""
    shape = (2, 3)
    reqs = est.noise(shape)
    gen = torch.Generator().manual_seed(0)
    noise = {k: _noise(r, gen, dtype) for k, r in reqs.items()}
    logits = torch.randn(shape, generator=gen, dtype=dtype)

    def loss(lg: torch.Tensor, nz: dict) -> torch.Tensor:
        return (est(lg, nz) * torch.arange(1.0, 4.0, dtype=dtype)).sum()

    batched = {k: torch.stack([v, v]) for k, v in noise.items()}
    try:
        torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(logits, batched)
    except Exception as e:  # noqa: BLE001 - the user's function: whatever vmap refused
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first[:160]}"
    return None


def _noise(req: NoiseRequest, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    u = torch.rand(req.shape, generator=gen, dtype=dtype).clamp(1e-6, 1 - 1e-6)
    if req.kind == "gumbel":
        return -torch.log(-torch.log(u))
    if req.kind == "exponential":
        return -torch.log(u)
    return u
