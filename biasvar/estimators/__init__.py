"""Gradient estimators for discrete variables, built from specs.

=================  ==================  ======================  ==================  ===================
spec               hyper-parameters    paper                   noise per variable  cost
=================  ==================  ======================  ==================  ===================
``st``             t > 0 (default 1)   Eq. 4; ST(t) Sec. 4.2   G [K]               1
``darn``           --                  Eq. 5 (phi_bar = p)     G [K]               1
``zgr``            --                  Eq. 12-14               G [K]               1
``st-zgr``         alpha in [0,1], t   Eq. 17                  G [K]               1
``st-zgr-author``  alpha in [0,1], t   Eq. 17 at t' (below)    G [K]               1
``gs``             t > 0               Eq. 7 (relaxed value)   G [K]               1
``gs-st``          t > 0               Eq. 8                   G [K]               1
``gr-mc``          t > 0, M >= 1       Eq. 9                   G [K], E [M, K]     1
``rf``             M >= 2 (default 4)  Kool et al. 2019 Eq. 8  G [M, K]            M
``reinmax``        t > 0 (default 1)   Liu et al. 2023 Alg. 2  G [K]               1
``arsm``           --                  Yin et al. 2019         G [K]               1 + K(K-1)/2 a node
``indecater``      --                  De Smet et al. 2023     G [K]               1 + V(K-1) a node
``disarm``         -- (K = 2 only)     Dong et al. 2020        G [K]               1 + 1 a node
=================  ==================  ======================  ==================  ===================

**Two ST-ZGR variants at t != 1.** ``st-zgr(alpha,t)`` is the paper's Eq. 17,
``(1 - alpha) ST(t) + alpha ZGR`` (ZGR always at temperature 1). The author's public training code
(repository ``shekhovt/TNet``, file ``methods.py``, class ``MethodZGR``) does something else for
t != 1: ``forward_Categorical`` uses one temperature ``t' = (1 - alpha) t + alpha`` for the whole
estimator, ``(1 - alpha/2) phi(p') + (alpha/2) (y - sg(phi(p'))) log p'(x)`` with
``p' = softmax(logits / t')``; ``forward_Quant`` (the stochastic quantizer) anneals faster, with
``beta = alpha ** 0.2`` in place of alpha in ``t'`` (and the temperature scaling the injected
noise's scale, not the logits). ``st-zgr-author(alpha,t)`` is that categorical variant; the two
agree at t = 1 and at alpha in {0, 1} and differ in between (at alpha = 0.5, t = 2 ``t'`` is 1.5,
not a mix of ST(2) and ZGR(1)). The quantizer's ``beta = alpha ** 0.2`` variant is not offered:
here a quantizer estimator is the categorical one on the level log-probabilities.

Cost is forward passes of the model per gradient sample. A *plug-in* estimator is a callable
``(logits, noise) -> y`` (:class:`PlugIn`); ``rf(M)`` is a *score-function* estimator
(:class:`ScoreFunction`) that builds a surrogate loss from M draws' losses and log-probabilities;
``arsm``, ``indecater`` and ``disarm`` are *multi-pass* estimators (:class:`MultiPass`, in
:mod:`biasvar.estimators.newer`) whose passes per draw depend on the problem's nodes (V variables
of K categories per data point). The user's own estimators (a spec that is an import path or a
registered name, :mod:`biasvar.plugins`) are :class:`UserPlugIn`, built by their factories
(:mod:`biasvar.estimators.plugin`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType

from torch import Tensor

from biasvar.estimators.base import Noise, NoiseRequest, PlugIn, ScoreFunction
from biasvar.estimators.categorical import (
    darn_y,
    gr_mc,
    gr_mc_counter,
    gr_mc_uniform,
    gs,
    gs_st,
    rf_surrogate,
    sample_onehot,
    st_y,
    st_zgr_author_y,
    st_zgr_y,
    zgr_y,
)
from biasvar.estimators.newer import MultiPass, reinmax_y
from biasvar.estimators.plugin import UserPlugIn, build_plugin, register_estimator
from biasvar.spec import FAMILIES, EstimatorSpec, parse_spec

Estimator = PlugIn | ScoreFunction | MultiPass


def _from_y(y_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Noise], Tensor]:
    def fn(logits: Tensor, noise: Noise) -> Tensor:
        return y_fn(logits, sample_onehot(logits, noise["G"]))

    return fn


def _st(spec: EstimatorSpec) -> PlugIn:
    y_fn = partial(st_y, t=float(spec["t"]))
    return PlugIn(spec, _from_y(y_fn), y_fn)


def _darn(spec: EstimatorSpec) -> PlugIn:
    return PlugIn(spec, _from_y(darn_y), darn_y)


def _zgr(spec: EstimatorSpec) -> PlugIn:
    return PlugIn(spec, _from_y(zgr_y), zgr_y)


def _st_zgr(spec: EstimatorSpec) -> PlugIn:
    y_fn = partial(st_zgr_y, alpha=float(spec["alpha"]), t=float(spec["t"]))
    return PlugIn(spec, _from_y(y_fn), y_fn)


def _st_zgr_author(spec: EstimatorSpec) -> PlugIn:
    y_fn = partial(st_zgr_author_y, alpha=float(spec["alpha"]), t=float(spec["t"]))
    return PlugIn(spec, _from_y(y_fn), y_fn)


def _gs(spec: EstimatorSpec) -> PlugIn:
    t = float(spec["t"])
    return PlugIn(spec, lambda logits, noise: gs(logits, noise["G"], t), relaxed=True)


def _gs_st(spec: EstimatorSpec) -> PlugIn:
    t = float(spec["t"])
    return PlugIn(spec, lambda logits, noise: gs_st(logits, noise["G"], t))


def _gr_mc(spec: EstimatorSpec) -> PlugIn:
    t, M = float(spec["t"]), int(spec["M"])
    # noise "E" is the address of the Exp(1) numbers' uniforms (E = -log U), generated in GR-MC's
    # kernel; a caller that drew the uniforms itself (biasvar.rng.MATERIALIZE) may pass them instead

    def fn(logits: Tensor, noise: Noise) -> Tensor:
        E = noise["E"]
        if E.is_floating_point():
            return gr_mc_uniform(logits, noise["G"], E, t)
        return gr_mc_counter(logits, noise["G"], E, t, M)

    return PlugIn(spec, fn, mc=M)


def _rf(spec: EstimatorSpec) -> ScoreFunction:
    return ScoreFunction(spec, int(spec["M"]))


def _reinmax(spec: EstimatorSpec) -> PlugIn:
    y_fn = partial(reinmax_y, t=float(spec["t"]))
    return PlugIn(spec, _from_y(y_fn), y_fn)


def _multipass(spec: EstimatorSpec) -> MultiPass:
    return MultiPass(spec, spec.name)


FACTORIES: Mapping[str, Callable[[EstimatorSpec], Estimator]] = MappingProxyType(
    {
        "st": _st,
        "darn": _darn,
        "zgr": _zgr,
        "st-zgr": _st_zgr,
        "st-zgr-author": _st_zgr_author,
        "gs": _gs,
        "gs-st": _gs_st,
        "gr-mc": _gr_mc,
        "rf": _rf,
        "reinmax": _reinmax,
        "arsm": _multipass,
        "indecater": _multipass,
        "disarm": _multipass,
    }
)
assert set(FACTORIES) == set(FAMILIES)


def build(spec: str | EstimatorSpec) -> Estimator:
    """The estimator a spec names: ``build("gr-mc(t=0.1,M=10)")``."""
    spec = parse_spec(spec)
    if spec.plugin:
        return build_plugin(spec)
    return FACTORIES[spec.name](spec)


__all__ = [
    "Estimator",
    "MultiPass",
    "NoiseRequest",
    "PlugIn",
    "ScoreFunction",
    "UserPlugIn",
    "build",
    "register_estimator",
    "sample_onehot",
    "st_y",
    "darn_y",
    "zgr_y",
    "st_zgr_y",
    "st_zgr_author_y",
    "gs",
    "gs_st",
    "gr_mc",
    "rf_surrogate",
    "reinmax_y",
]
