"""Interval methods studied as candidates for the default b2 interval and **not adopted** (issue 24):
``gauss-fit-s``, ``gauss-theta``, the two of :mod:`~biasvar.stats.intervals.adapt` (``gauss-adapt``,
``gauss-adapt-eb``: the bias's lean read from the pair's ``y'C^y`` at every theta) and the three of
:mod:`~biasvar.stats.intervals.lean_robust` (``gauss-lr``, ``gauss-eb-s``, ``gauss-eb-mm``: calibrated for the
least favourable lean, and the miss chance split toward the upper end) (:data:`CANDIDATES`). They are not in
:data:`~biasvar.stats.intervals.METHODS` (reports and the CLI do not offer them); the multi-model coverage
study evaluates them by name (``scripts/coverage_multi.py --methods``), results in ``results/coverage/multi/``.

**gauss-fit-s.** gauss-fit (:mod:`~biasvar.stats.intervals.gauss_fit`) weighs its prior powers by the
likelihood of the observed offset ``y`` with the noise's variance along each sample eigenvector taken to be
its sample eigenvalue. In high dimension (rank of the noise far above the ``nb - 1`` deviations) the weakest
sample eigenvalues are far below the noise's real variance along their eigenvectors (on the real-gradient VAE
of ``tests/test_coverage_real.py``: 3e-6 against a mean of 4e-3), so any offset looks like a bias on the weak
directions and the low powers win: this is why gauss-fit covers 0.86 there. gauss-fit-s takes the noise
variances from the eigenvalues gauss-eb's quadratic term uses (:func:`~.gauss_eb.quad_eigenvalues`: drawn
toward their mean until ``sum lam^2`` is the unbiased ``tr C^2``); nothing else changes.

**gauss-theta.** gauss-fit-s's likelihood with the prior's scale fixed by the ``theta`` under test
(``c = theta d / tr C``) instead of maximised: the powers are weighed again at every ``theta``, so that at a
``theta`` well above the estimate, where a bias on the strong directions cancelled by the draw is what would
explain a low estimate, the powers that put it there are weighed by how well they explain ``y`` under that
``theta``. At ``theta = 0`` the weights are :data:`~.gauss_fit.POWER_PRIOR`.

Why neither is the default (``results/coverage/multi/multi-all.md``, ``results/coverage/candidates.md``):
gauss-fit-s is within 1.15x of the narrowest covering width at most settings but covers 0.91 on the real VAE
against the exact gradient (b2 ~ 2.65 V/n), where ZGR's bias lies on the strong noise directions; gauss-theta
covers there (0.94) but keeps most of gauss-eb's excess width at b2 ~ 0. Where the observed offset shows no
bias, an upper end that covers a cancelled bias on the strong directions is the width the narrow methods save;
the noise spectra of the two kinds of model look alike (effective rank ~6-10, top eigenvalue 0.2-0.35 of the
trace), so the pair's own data do not tell the two apart. The adapt candidates read the lean from the pair at
each theta (``results/coverage/adapt/``, 100 pairs per setting): ``gauss-adapt`` (fixed bias shapes) covers
0.62-1.00 and is up to 2.8x wide; ``gauss-adapt-eb`` (gauss-eb with that power) narrows where the bias lies off
the strong directions (synthetic ``gauss-off`` 1.2-1.3x the narrowest against gauss-eb's 1.4-1.5x; enumerable
models at b2 = 0 1.11-1.31x against 1.24-1.51x) but widens where it lies on them, covers 0.89-0.90 on
``toy-sigmoid`` and is in band and within 1.15x at 7 + 10 of 48 enumerable settings (gauss-eb 6 + 7). At b2 = 0
gauss-eb's excess over the pivot is all in the upper half (1.3-1.6x the pivot's; the lower halves agree): the
half that cannot miss when b2 = 0, and the one that covers a cancelled bias on the strong directions.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from biasvar.stats.gram import PairGram
from biasvar.stats.intervals.adapt import gauss_adapt_eb_intervals, gauss_adapt_intervals
from biasvar.stats.intervals.base import Bootstrap, IntervalMethod, PairIntervals
from biasvar.stats.intervals.gauss_eb import (
    GaussModel,
    gauss_eb_inversion,
    model_intervals,
    prior_shape,
    quad_eigenvalues,
    simulate,
)
from biasvar.stats.intervals.gauss_fit import POWER_PRIOR, POWERS, fit_interval
from biasvar.stats.intervals.lean_robust import eb_split_interval, lean_interval, minimax_interval


def fit_s_interval(m: GaussModel, est: float, alpha: float, t_fac: float, rng: np.random.Generator,
                   draws: int) -> tuple[float, float]:
    """The ``gauss-fit-s`` interval of one layer (module docstring)."""
    return fit_interval(m, est, alpha, t_fac, rng, draws, noise=quad_eigenvalues(m) if len(m.lam) else None)


def theta_weights(m: GaussModel, noise: np.ndarray, theta: float) -> np.ndarray:
    """The weights of :data:`~.gauss_fit.POWERS` at ``theta``: the prior weights times each power's likelihood
    of ``y`` under ``y_i ~ N(0, noise_i + c P_i)`` with ``c = max(theta, 0) d / tr C``."""
    tr = float(m.lam.sum()) + m.iso * m.n_iso
    c = max(theta, 0.0) * m.dim / tr if tr > 0 else 0.0
    ll = []
    for p in POWERS:
        var = noise + c * prior_shape(m.lam, float(p))
        ll.append(float(-0.5 * np.sum(np.log(var) + m.y * m.y / var)))
    lls = np.array(ll)
    w = POWER_PRIOR * np.exp(lls - lls.max())
    return w / w.sum()


def theta_interval(m: GaussModel, est: float, alpha: float, t_fac: float, rng: np.random.Generator,
                   draws: int) -> tuple[float, float]:
    """The ``gauss-theta`` interval of one layer (module docstring): each draw takes the power its uniform
    number falls on in the weights at the ``theta`` under test."""
    lam = m.lam
    if not len(lam) or not np.isfinite(est):
        return est, est
    noise = quad_eigenvalues(m)
    z, xi, z0, quad, a1 = simulate(m, rng, draws)
    u = rng.random(draws)
    a2_of_power = np.stack([(xi * z) @ np.sqrt(prior_shape(lam, float(p)) * lam) for p in POWERS])  # [P, draws]
    cols = np.arange(draws)

    def a2(theta: float) -> np.ndarray:
        which = np.searchsorted(np.cumsum(theta_weights(m, noise, theta))[:-1], u, side="right")
        return a2_of_power[which, cols]

    return gauss_eb_inversion(m, est, alpha, t_fac, quad, a1, a2, z0)


def _method(interval):
    def method(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
               *, with_b2: bool = True, share: bool = True) -> PairIntervals:
        return model_intervals(pg, b2, v_t, boot, rng, interval, with_b2=with_b2, share=share)
    return method


#: name -> method of the candidates (the signature of :class:`~biasvar.stats.intervals.base.IntervalMethod`)
CANDIDATES: MappingProxyType[str, IntervalMethod] = MappingProxyType({
    "gauss-fit-s": _method(fit_s_interval),
    "gauss-theta": _method(theta_interval),
    "gauss-adapt": gauss_adapt_intervals,
    "gauss-adapt-eb": gauss_adapt_eb_intervals,
    "gauss-lr": _method(lean_interval),
    "gauss-eb-s": _method(eb_split_interval),
    "gauss-eb-mm": _method(minimax_interval),
})

__all__ = ["CANDIDATES", "fit_s_interval", "theta_interval", "theta_weights"]
