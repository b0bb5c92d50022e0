"""Intervals of Eq. 16 (b2), the variance V and MSE = b2 + V, over blocks of draws.

Blocks are the resampling unit; the blocks of the reference R and of the tested run T are
resampled independently (``scipy.stats.bootstrap``, two samples of block indices, vectorized),
or deleted one at a time (the jackknife), each replicate evaluated through the Gram matrices of
:mod:`biasvar.stats.gram`.

**Why not the textbook bootstrap.** Three facts make the plain bootstrap intervals of Eq. 16
dishonest here (``tests/test_analysis.py::test_plain_percentile_interval_is_dishonest_in_high_dimension``;
on real gradients ``results/coverage/README.md``):

1. The bootstrap distribution of Eq. 16 is shifted from ``b2`` by a fraction ~``1/nb`` of
   ``V_R/n_R + V_T/n_T`` (a block bootstrap's variance of a mean is ``(nb - 1)/nb`` of the real
   one). In high dimension the interval is far narrower than that shift.
2. Its spread is dominated, in high dimension, by the products of a resampled block with itself
   (``w_b^2 ||dev_b||^2``), whose fluctuation is of relative order ``nb^-1/2``; the real
   estimate's fluctuation is of order ``dim^-1/2``. Intervals come out far too wide.
3. The cross term ``2 (mu_T - mu_R) . e`` is spread around the *observed* difference, whose
   squared norm exceeds the true one by ``~ dim (V_R/n_R + V_T/n_T)``: near ``b2 = 0``
   intervals are too wide again.

**The methods.**

* ``pivot`` (:func:`pivot_intervals`) is this package's own construction, not a published
  interval: an *inverted bootstrap test with a plug-in nuisance direction*. Since Eq. 16 (and V,
  MSE) are exactly unbiased, the bootstrap is used only for the *shape* of the estimate's error:
  replicates ``||lam m + a_T e_T - a_R e_R||^2 / dim`` without same-block products (``e`` the
  resampled means' errors from block deviations, ``m = mu_T - mu_R`` the observed direction,
  ``a = sqrt(nb / (nb - 1))`` an ad-hoc inflation), centred on their own mean (basic-bootstrap
  quantiles). The interval is the set of ``theta`` for which ``b2 - theta`` lies within the
  central 95% of those errors when the bootstrap world's squared bias is ``theta``
  (``lam^2 ||m||^2 / dim = theta``), found by inverting over ``theta`` (:func:`invert`); the linear
  term is widened by ``t_nu / z`` with Welch-Satterthwaite degrees of freedom (:func:`t_factor`).
  Each step is a heuristic; its coverage rests on the studies alone.
* ``gauss-eb`` (:func:`gauss_eb_intervals`): a Gaussian model of the error, inverted over b2,
  with the bias direction averaged by empirical Bayes. Eq. 16 is ``(||m + e||^2 - tr C) / d``
  up to its V terms, with ``m`` the true offset (``||m||^2 = b2 d``) and ``e`` the mean's error,
  modelled as Gaussian with covariance ``C`` estimated from the block deviations of both runs
  (rank ``nb - 1`` each). Sample eigenvalues are too spread, so for the quadratic term they are
  drawn toward their mean (same trace) until ``sum lam^2`` is the Wishart-unbiased ``tr C^2``
  (:func:`quad_eigenvalues`); the linear term keeps them (``C`` is unbiased) plus, in the
  directions outside their span, isotropic noise carrying the share ``1 - s`` of the trace by
  which a plain scaling to ``tr C^2`` would shrink them (:class:`GaussModel`). Its error
  ``2 m.e + ||e||^2 - tr C`` is skewed and its spread grows with ``b2``
  *along the directions of* ``m``: a draw that cancels part of a bias lying on a strong noise
  direction gives a low estimate and a low plug-in standard error together, which is where
  symmetric intervals (and the pivot, which takes the observed direction) miss. The test of
  ``b2 = theta`` therefore draws ``m`` around the observed offset ``y``:
  ``m = rho y + sqrt(rho) P^(1/2) xi`` with ``rho^2 ||y||^2 + rho tr C = theta d`` and ``P`` the
  prior's shape, ``C^p`` scaled to the trace of ``C`` (``p`` = :data:`GAUSS_PRIOR_POWER` = 1.5).
  With ``p = 1`` this is the posterior of a prior shaped like the noise, ``m ~ N(0, c C)``
  (``rho = c / (1 + c)``; larger ``theta`` extend the same form); ``p = 1.5`` leans the unseen part
  of the bias toward the noise's strong directions, where a cancelled bias hides. ``p`` is a
  choice made on the coverage study (``p = 1`` covered 0.915-0.951, short of 0.93 where ZGR's
  bias meets its strong noise directions; 1.5 covers 0.940-0.961). The interval
  holds every ``theta`` for which ``b2 - theta`` lies within the central ``1 - 2 alpha`` of the
  simulated errors (at least :data:`GAUSS_DRAWS` draws), the linear term widened by Student's t
  with Welch-Satterthwaite degrees of freedom as in the pivot. From the Gram matrices alone (an
  eigen-decomposition of ``nb_T + nb_R`` numbers square per layer); V and MSE intervals are the
  pivot's. Where the bias lies off the noise's strong directions it is conservative
  (``results/coverage/synthetic.md``).
* ``jackknife-t`` (:func:`jackknife_intervals`): the textbook two-sample delete-one-block
  jackknife of Eq. 16 with Student-t quantiles (Welch-Satterthwaite degrees of freedom):
  analytic from the same Gram matrices, no resampling, symmetric.
* scipy's raw ``percentile``, ``basic`` and ``bca`` intervals of the plain Eq. 16 statistic, for
  comparison only (:func:`scipy_intervals`); BCa is often undefined (NaN ends, reported as None)
  because ``b2`` lies outside its own bootstrap distribution.

**The default** (:data:`DEFAULT_METHOD`) is chosen by the real-gradient coverage study
(``scripts/coverage_study.py``, ``results/coverage/``: a VAE small enough that the true b2 is
known by enumeration, 2000 independent pairs per setting): the rule is the method whose coverage
stays in [0.93, 0.97] at every setting with the narrowest intervals. ``gauss-eb`` is the only one
that does: 0.940-0.961 over all 13 settings (b2 from 0 to 2350 V/n, references exact and rf(M=4),
32 and 96 blocks), at 8% more width than the pivot (geometric mean over settings). ``pivot``
falls to 0.882 against the exact gradient at b2 ~ 2.7 V/n (0.859 at 96 blocks) and
``jackknife-t`` to 0.880 (0.875), while both over-cover at b2 = 0 (0.966, 0.975); they remain
available (``--method``). On fresh draws that had no part in choosing :data:`GAUSS_PRIOR_POWER`
(``results/coverage/holdout/``, 1000 pairs per setting) gauss-eb covers 0.934-0.964, again in the
band; on synthetic draws where the bias lies off the noise's strong
directions every method here over-covers (``results/coverage/synthetic.md``).

The reference's own contribution to the interval (:func:`reference_share`) is the share of the
bootstrap (for ``jackknife-t``: jackknife) variance of ``b2`` that comes from R alone (T's blocks
held fixed) and the width of the interval R alone would give.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from biasvar.errors import AnalysisError
from biasvar.stats.gram import PairGram, bilinear, eq16, weights

METHODS: tuple[str, ...] = ("gauss-eb", "pivot", "jackknife-t", "percentile", "basic", "bca")
#: the interval a report uses unless told otherwise (why: the module docstring)
DEFAULT_METHOD = "gauss-eb"
#: the least number of simulated draws of the gauss-eb model (its 2.5% quantiles need a few thousand)
GAUSS_DRAWS = 4000
#: gauss-eb's prior on the bias direction is N(0, c C^p) (normalised to the trace of C): p > 1 puts
#: more of a bias on the noise's strong directions than the noise itself does (module docstring)
GAUSS_PRIOR_POWER = 1.5


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are formed; validated once, where it is made.

    Attributes:
        n_resamples: bootstrap resamples of the blocks (0: point estimates only).
        method: ``gauss-eb``, ``pivot`` or ``jackknife-t`` (:data:`DEFAULT_METHOD` is the default; see
            the module docstring), or scipy's ``percentile``, ``basic``, ``bca`` on the plain Eq. 16 statistic.
        confidence_level: e.g. 0.95.
    """

    n_resamples: int = 1000
    method: str = DEFAULT_METHOD
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AnalysisError(f"unknown bootstrap method {self.method!r}; expected one of: {', '.join(METHODS)}")
        n = self.n_resamples
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise AnalysisError(f"n_resamples must be a non-negative integer, got {n!r}")
        if not 0.0 < self.confidence_level < 1.0:
            raise AnalysisError(f"confidence_level must lie in (0, 1), got {self.confidence_level!r}")

    @property
    def alpha(self) -> float:
        """The probability outside each end of the interval."""
        return (1.0 - self.confidence_level) / 2


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval (None where it cannot be formed)."""

    value: float
    low: float | None = None
    high: float | None = None
    se: float | None = None  # bootstrap standard error


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None when x is None, NaN or infinite (an interval end that cannot be formed)."""
    return float(x) if x is not None and np.isfinite(x) else None


@dataclass(frozen=True)
class LayerEstimates:
    """One quantity for every layer (parameter groups, then all parameters): arrays [K]."""

    value: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    se: np.ndarray | None = None

    def at(self, k: int) -> Estimate:
        """Layer k as an :class:`Estimate` (non-finite ends become None)."""
        ci = self.low is not None and self.high is not None
        return Estimate(float(self.value[k]), finite_or_none(self.low[k]) if ci else None,
                        finite_or_none(self.high[k]) if ci else None,
                        finite_or_none(self.se[k]) if self.se is not None else None)


@dataclass(frozen=True)
class PairIntervals:
    """b2, V_T and MSE of a pair with intervals, per layer; the reference's share (all parameters)."""

    b2: LayerEstimates
    variance: LayerEstimates
    mse: LayerEstimates
    ref_share: float | None = None
    ref_only_width: float | None = None


# ---------------------------------------------------------------------------------------------
# the pivot method's pieces


@dataclass(frozen=True)
class PivotParts:
    """Block deviations of the pair, for the pivot bootstrap (layers k, as in :class:`PairGram`).

    ``dev_b = C_b - n_b m`` are each run's block sums about its own mean; ``m = mu_T - c`` is T's
    offset from the centre (R's mean or the exact gradient), i.e. ``-(mu_R - mu_T)``.
    """

    d_rr: np.ndarray  # [K, nbR, nbR]  dev_R . dev_R
    d_rt: np.ndarray  # [K, nbR, nbT]  dev_R . dev_T
    d_tt: np.ndarray  # [K, nbT, nbT]  dev_T . dev_T
    p_r: np.ndarray  # [K, nbR]        dev_R . m
    p_t: np.ndarray  # [K, nbT]        dev_T . m
    mm: np.ndarray  # [K]              ||m||^2


def pivot_parts(pg: PairGram) -> PivotParts:
    """Deviation Gram matrices from the centred ones: ``dev = (I - n 1' / N) C``."""
    def proj(count: np.ndarray) -> np.ndarray:
        nb = len(count)
        return np.eye(nb) - np.outer(count, np.ones(nb)) / count.sum() if nb else np.zeros((0, 0))

    p_r, p_t = proj(pg.ref_count), proj(pg.test_count)
    ones_t = np.ones(len(pg.test_count)) / pg.test_count.sum()
    d_tt = p_t @ pg.tt @ p_t.T
    d_rt = p_r @ pg.rt @ p_t.T
    d_rr = p_r @ pg.rr @ p_r.T
    return PivotParts(d_rr, d_rt, d_tt, (p_r @ pg.rt) @ ones_t, (p_t @ pg.tt) @ ones_t,
                      np.einsum("i,kij,j->k", ones_t, pg.tt, ones_t))


def _offdiag(w: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """``w' (G - diag G) w`` per layer: [..., nb], [K, nb, nb] -> [..., K]."""
    return bilinear(w, gram, w) - (w * w) @ np.einsum("kii->ki", gram).T


def pivot_terms(pg: PairGram, parts: PivotParts, w_ref: np.ndarray | None,
                w_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pivot method's bootstrap replicate of ``b2``, ``lam^2 ||m||^2/d + lam lin + quad``.

    The replicate is ``||lam m + a_T e_T - a_R e_R||^2 / d`` without the products of a block with
    itself, where ``e = sum_b w_b dev_b / N*`` are the resampled means' errors and ``lam`` scales
    T's offset so that the bootstrap world's squared bias is the one under test. Dropping the
    same-block products plays the part of Eq. 16's ``- V/n`` terms but removes the
    ``w_b^2 ||dev_b||^2`` terms exactly: their fluctuation (the block bootstrap's artefact, of
    relative order ``nb^-1/2`` instead of ``dim^-1/2``) would otherwise swamp the interval when
    ``dim`` is large. ``a = sqrt(nb/(nb-1))`` restores the variance the block bootstrap loses.

    Returns:
        ``(lin_t, lin_r, quad)``, each [..., K], with ``lin = lin_t - lin_r`` (T's and R's parts);
        the constant ``lam^2 ||m||^2 / d`` is left out.
    """
    dims = pg.dims.astype(np.float64)
    nbt = len(pg.test_count)
    a_t = math.sqrt(nbt / (nbt - 1))
    n_t = (w_test @ pg.test_count)[..., None]  # [..., 1]
    lin_t = 2 * a_t * (w_test @ parts.p_t.T) / n_t
    lin_r = np.zeros_like(lin_t)
    quad = a_t**2 * _offdiag(w_test, parts.d_tt) / n_t**2
    if not pg.exact:
        nbr = len(pg.ref_count)
        a_r = math.sqrt(nbr / (nbr - 1))
        n_r = (w_ref @ pg.ref_count)[..., None]
        lin_r = 2 * a_r * (w_ref @ parts.p_r.T) / n_r
        e_r_t = bilinear(w_ref, parts.d_rt, w_test) / (n_r * n_t)
        quad = quad + a_r**2 * _offdiag(w_ref, parts.d_rr) / n_r**2 - 2 * a_r * a_t * e_r_t
    return lin_t / dims, lin_r / dims, quad / dims


def t_factor(var_t: np.ndarray, var_r: np.ndarray, nbt: int, nbr: int, alpha: float) -> np.ndarray:
    """``t_{1-alpha}(nu) / z_{1-alpha}``: widens the linear (cross) term for the few blocks it rests on.

    The bootstrap spread of ``2 m . e`` is a variance estimated from ``nb - 1`` block deviations
    per run; as with a mean from few clusters, quantiles of Student's t with the Welch-Satterthwaite
    degrees of freedom ``nu`` replace the normal ones (without it coverage falls to ~0.93 at
    nb = 20 when this term dominates).
    """
    num = (var_t + var_r) ** 2
    den = var_t**2 / max(nbt - 1, 1) + (var_r**2 / (nbr - 1) if nbr > 1 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(den > 0, num / den, np.inf)
    z = scipy.stats.norm.ppf(1 - alpha)
    return np.where(np.isfinite(nu), scipy.stats.t.ppf(1 - alpha, np.maximum(nu, 1.0)) / z, 1.0)


def _crossing(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, grid: int,
              rounds: int) -> np.ndarray:
    """Where f goes from <= 0 (at lo) to > 0 (at hi), per layer; the bracket widens as needed."""
    step = np.maximum(hi - lo, 1e-300)
    for _ in range(60):
        ends = f(np.stack([lo, hi], axis=1))
        bad_lo, bad_hi = ends[:, 0] > 0, ends[:, 1] <= 0
        if not (bad_lo.any() or bad_hi.any()):
            break
        lo, hi, step = np.where(bad_lo, lo - step, lo), np.where(bad_hi, hi + step, hi), 2 * step
    t = np.linspace(0.0, 1.0, grid + 1)
    for _ in range(rounds):
        thetas = lo[:, None] + (hi - lo)[:, None] * t  # [K, grid + 1]
        pos = f(thetas) > 0
        pos[:, -1] = True
        j = np.maximum(pos.argmax(axis=1), 1)  # first grid point above zero
        rows = np.arange(len(lo))
        lo, hi = thetas[rows, j - 1], thetas[rows, j]
    return (lo + hi) / 2


def invert(est: np.ndarray, lin: np.ndarray, quad: np.ndarray, scale: np.ndarray, shift: np.ndarray,
           alpha: float, grid: int = 32, rounds: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Interval ends by inverting the pivot over the squared bias of the bootstrap world.

    The interval holds every ``theta`` for which ``est - theta`` lies within the central
    ``1 - 2 alpha`` of the bootstrap deviations ``lam(theta) lin + quad`` (centred), where
    ``lam(theta) = sqrt(max(theta - shift, 0) / scale)``. Each end is the crossing of a monotone
    function, found on successively finer grids (``grid ** rounds`` resolution).

    Args:
        est: [K] the estimates; lin, quad: [K, B] bootstrap terms (quad may include V's deviations).
        scale: [K] ``||m||^2 / d``; shift: [K] the part of ``theta`` that is not squared bias (V for MSE).
    """
    lin = lin - lin.mean(-1, keepdims=True)
    quad = quad - quad.mean(-1, keepdims=True)

    def q(theta: np.ndarray, level: float) -> np.ndarray:  # theta [K, J] -> [K, J]
        with np.errstate(over="ignore"):
            lam = np.minimum(np.sqrt(np.maximum(theta - shift[:, None], 0.0) / scale[:, None]), 1e150)
        return np.quantile(lam[..., None] * lin[:, None] + quad[:, None], level, axis=-1)

    est2 = est[:, None]
    q_lo, q_hi = q(est2, alpha)[:, 0], q(est2, 1 - alpha)[:, 0]
    # Upper end: the largest theta with theta + q_lo(theta) <= est.
    upper = _crossing(lambda th: th + q(th, alpha) - est2, est.copy(), est - q_lo, grid, rounds)
    # Lower end: the smallest theta with theta + q_hi(theta) >= est.
    lower = _crossing(lambda th: th + q(th, 1 - alpha) - est2, est - q_hi, est.copy(), grid, rounds)
    return lower, upper


# ---------------------------------------------------------------------------------------------
# resampling statistics (vectorized over resamples; scipy passes block-index arrays)


@dataclass(frozen=True)
class _Resample:
    """The bootstrap statistic of a pair for resampled block indices ``(idx_R, idx_T)`` or ``(idx_T,)``.

    ``pivot``: rows ``[lin_t, lin_r, quad, V]`` (4K); otherwise ``[b2, V]`` (2K), or ``b2 + V`` (K)
    with ``mse``.
    """

    pg: PairGram
    parts: PivotParts | None
    mse: bool = False

    def __call__(self, *idx: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis  # always the last axis
        pg = self.pg
        w_r = weights(idx[0], len(pg.ref_count)) if not pg.exact else None
        w_t = weights(idx[-1], len(pg.test_count))
        b, v, _ = eq16(pg, w_r, w_t)
        if self.parts is not None:
            return np.moveaxis(np.concatenate([*pivot_terms(pg, self.parts, w_r, w_t), v], axis=-1), -1, 0)
        if self.mse:
            return np.moveaxis(b + v, -1, 0)
        return np.moveaxis(np.concatenate([b, v], axis=-1), -1, 0)


@dataclass(frozen=True)
class _ResampleRef:
    """b2 (all parameters) when only the reference's blocks are resampled (T's held fixed)."""

    pg: PairGram
    parts: PivotParts | None
    lam: np.ndarray | None

    def __call__(self, idx_r: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis
        pg = self.pg
        w_r = weights(idx_r, len(pg.ref_count))
        w_t = np.broadcast_to(np.ones(len(pg.test_count)), w_r.shape[:-1] + (len(pg.test_count),))
        if self.parts is not None:
            lt, lr, qd = pivot_terms(pg, self.parts, w_r, w_t)
            return (self.lam * (lt - lr) + qd)[..., -1]
        return eq16(pg, w_r, w_t)[0][..., -1]


def _block_data(pg: PairGram) -> tuple[np.ndarray, ...]:
    nbt = np.arange(len(pg.test_count))
    return (nbt,) if pg.exact else (np.arange(len(pg.ref_count)), nbt)


def _scipy_bootstrap(data: tuple, stat: Callable, boot: Bootstrap, method: str,
                     rng: np.random.Generator) -> Any:
    with warnings.catch_warnings():  # BCa: NaN ends (reported as None) when z0 is infinite
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        return scipy.stats.bootstrap(data, stat, n_resamples=int(boot.n_resamples), vectorized=True,
                                     method=method, confidence_level=boot.confidence_level, rng=rng)


# ---------------------------------------------------------------------------------------------
# the interval methods


def pivot_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                    *, with_b2: bool = True) -> tuple[PairIntervals, np.ndarray, PivotParts, np.ndarray]:
    """The default ``pivot`` intervals (module docstring).

    Returns:
        ``(intervals, dev_b, parts, lam)``: ``dev_b`` [K, B] are b2's bootstrap deviations (for
        :func:`reference_share`), ``lam`` [K] the scale of T's offset in the bootstrap world.
    """
    K, alpha = len(pg.dims), boot.alpha
    nbt, nbr = len(pg.test_count), len(pg.ref_count)
    parts = pivot_parts(pg)
    scale = np.where(parts.mm > 0, parts.mm / pg.dims, 1.0)  # ||mu_R - mu_T||^2 / d per layer
    lam = np.sqrt(np.maximum(b2, 0.0) / scale)
    dist = _scipy_bootstrap(_block_data(pg), _Resample(pg, parts), boot, "percentile",
                            rng).bootstrap_distribution  # [4K, B]
    # Eq. 16, V and MSE are unbiased: the bootstrap gives the shape of their errors (centred),
    # and the b2 / MSE intervals invert it over the squared bias of the bootstrap world.
    a_t = math.sqrt(nbt / (nbt - 1))
    lin_t, lin_r, quad = dist[:K], dist[K:2 * K], dist[2 * K:3 * K]
    lin = t_factor(lin_t.var(-1), lin_r.var(-1), nbt, nbr, alpha)[:, None] * (lin_t - lin_r)
    dev_v = a_t * (dist[3 * K:] - dist[3 * K:].mean(-1, keepdims=True))
    dev_b = lam[:, None] * lin + quad
    b2_lo = b2_hi = mse_lo = mse_hi = None
    if with_b2:
        b2_lo, b2_hi = invert(b2, lin, quad, scale, np.zeros(K), alpha)
        mse_lo, mse_hi = invert(b2 + v_t, lin, quad + dev_v, scale, v_t, alpha)
    q_lo, q_hi = np.quantile(dev_v, [alpha, 1.0 - alpha], axis=-1)
    out = PairIntervals(
        b2=LayerEstimates(b2, b2_lo, b2_hi, dev_b.std(-1, ddof=1)),
        variance=LayerEstimates(v_t, v_t - q_hi, v_t - q_lo, dev_v.std(-1, ddof=1)),
        mse=LayerEstimates(b2 + v_t, mse_lo, mse_hi, (dev_b + dev_v).std(-1, ddof=1)),
    )
    return out, dev_b, parts, lam


# ---------------------------------------------------------------------------------------------
# the gauss-eb method


def _unbiased_tr2(cov: np.ndarray, nb: int) -> float:
    """An unbiased estimate of ``tr(Sigma^2)`` from ``cov``, the Gram form of the estimated
    covariance of a run's mean (``S / nb``, ``S`` the sample covariance of its ``nb`` block means):
    ``tr(S^2)`` overstates ``tr(Sigma_B^2)`` by about ``tr(Sigma_B)^2 / (nb - 1)``; the Wishart
    correction ``N^2 / ((N - 1)(N + 2)) (tr S^2 - tr(S)^2 / N)``, ``N = nb - 1``, removes it."""
    n = nb - 1
    if n < 2:
        return float(np.sum(cov * cov))
    sc = cov * nb
    tr_s = float(np.trace(sc))
    return n * n / ((n - 1) * (n + 2)) * (float(np.sum(sc * sc)) - tr_s * tr_s / n) / nb**2


@dataclass(frozen=True)
class GaussModel:
    """The Gaussian model of a pair's mean errors for one layer (see :func:`gauss_eb_intervals`).

    ``lam`` are the nonzero eigenvalues of the estimated covariance of ``e = e_T - e_R`` (the
    sample covariance of the block means over ``nb``, both runs), ``y`` the observed offset's
    coordinates on their eigenvectors (in units of ``sqrt(lam)``), ``r2`` the squared norm of the
    offset outside their span; ``s`` scales the eigenvalues so that ``sum (s lam)^2`` equals the
    unbiased ``tr(Sigma^2)``, the rest of the trace ``(1 - s) sum lam`` is spread evenly over the
    ``n_iso`` other directions (``iso`` each).
    """

    lam: np.ndarray
    y: np.ndarray
    r2: float
    s: float
    iso: float
    n_iso: float
    dim: float


def gauss_model(pg: PairGram, parts: PivotParts, k: int) -> GaussModel:
    """The :class:`GaussModel` of layer ``k`` from the deviation Gram matrices."""
    nbt = len(pg.test_count)
    a_t = math.sqrt(nbt / (nbt - 1)) / pg.test_count.sum()
    c_tt = a_t * a_t * parts.d_tt[k]
    if pg.exact:
        gram, b, tr2 = c_tt, a_t * parts.p_t[k], _unbiased_tr2(c_tt, nbt)
    else:
        nbr = len(pg.ref_count)
        a_r = math.sqrt(nbr / (nbr - 1)) / pg.ref_count.sum()
        c_rr, c_rt = a_r * a_r * parts.d_rr[k], a_r * a_t * parts.d_rt[k]  # [nbR, nbR], [nbR, nbT]
        gram = np.block([[c_tt, -c_rt.T], [-c_rt, c_rr]])
        b = np.concatenate([a_t * parts.p_t[k], -a_r * parts.p_r[k]])
        tr2 = _unbiased_tr2(c_tt, nbt) + _unbiased_tr2(c_rr, nbr) + 2.0 * float(np.sum(c_rt * c_rt))
    lam, vec = np.linalg.eigh(gram)
    keep = lam > max(float(lam.max(initial=0.0)), 0.0) * 1e-10
    lam, vec = lam[keep], vec[:, keep]
    dim = float(pg.dims[k])
    sq = float(np.sum(lam * lam))
    s = min(1.0, math.sqrt(max(tr2, 0.0) / sq)) if sq > 0 else 1.0
    y = (vec.T @ b) / np.sqrt(lam) if len(lam) else np.zeros(0)
    n_iso = max(dim - len(lam), 1.0)
    return GaussModel(lam, y, max(float(parts.mm[k]) - float(y @ y), 0.0), s,
                      (1.0 - s) * float(lam.sum()) / n_iso, n_iso, dim)


def _bisect(g: Callable[[float], bool], lo: float, hi: float, steps: int = 48) -> float:
    """The point where ``g`` turns True, bracketed by ``lo`` (False) and ``hi`` (True); widens as needed."""
    for _ in range(80):
        if not g(lo):
            break
        lo -= 2 * (hi - lo)
    for _ in range(80):
        if g(hi):
            break
        hi += 2 * (hi - lo)
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if g(mid) else (mid, hi)
    return (lo + hi) / 2


def quad_eigenvalues(m: GaussModel) -> np.ndarray:
    """The eigenvalues the quadratic term is simulated with: the estimated ones drawn toward their
    mean (same trace) until ``sum lam^2`` is the unbiased ``tr C^2``. Sample eigenvalues from
    ``nb - 1`` deviations are too spread (the largest too large, the smallest too small); scaling
    them all down would keep that excess spread, hence too much skew and a too-light lower tail."""
    lam = m.lam
    target = m.s**2 * float(np.sum(lam * lam))
    mean = float(lam.mean())
    spread, floor = float(np.sum((lam - mean) ** 2)), len(lam) * mean * mean
    if spread <= 0 or floor <= 0:
        return lam
    if target <= floor:  # not reachable at this rank: equal eigenvalues, scaled
        return np.full_like(lam, mean) * math.sqrt(max(target, 0.0) / floor)
    return mean + (lam - mean) * math.sqrt((target - floor) / spread)


def gauss_eb_interval(m: GaussModel, est: float, alpha: float, t_fac: float, rng: np.random.Generator,
                      draws: int) -> tuple[float, float]:
    """The ``gauss-eb`` interval of one layer's squared bias (:func:`gauss_eb_intervals`)."""
    lam, y = m.lam, m.y
    if not len(lam) or not np.isfinite(est):
        return est, est
    z = rng.standard_normal((draws, len(lam)))
    xi = rng.standard_normal((draws, len(lam)))
    z0 = rng.standard_normal(draws)
    quad = ((z * z - 1.0) @ quad_eigenvalues(m)) / m.dim
    a1 = z @ (y * np.sqrt(lam))  # the observed direction's part of mu . e
    prior = lam**GAUSS_PRIOR_POWER
    prior = prior * (float(lam.sum()) / float(prior.sum()))  # the prior's shape, with the trace of C
    a2 = (xi * z) @ np.sqrt(prior * lam)  # the random direction's part
    yy, tr = float(y @ y) + m.r2, float(lam.sum()) + m.iso * m.n_iso
    scale = 2.0 * t_fac / m.dim

    def dev_quantile(theta: float, level: float) -> float:
        t = max(theta, 0.0) * m.dim
        rho = (-tr + math.sqrt(tr * tr + 4.0 * yy * t)) / (2.0 * yy) if yy > 0 else (t / tr if tr > 0 else 0.0)
        iso = math.sqrt(max(m.iso * (rho * rho * m.r2 + rho * m.iso * m.n_iso), 0.0))
        dev = quad + scale * (rho * a1 + math.sqrt(rho) * a2 + iso * z0)
        return float(np.quantile(dev, level))

    span = 10.0 * float(np.std(quad)) + abs(est) + 1e-300
    upper = _bisect(lambda th: th + dev_quantile(th, alpha) > est, est, est + span)
    lower = _bisect(lambda th: th + dev_quantile(th, 1.0 - alpha) >= est, est - span, est)
    return lower, upper


def lin_t_factor(pg: PairGram, parts: PivotParts, alpha: float) -> np.ndarray:
    """``t_{1-alpha}(nu) / z_{1-alpha}`` for the linear term ``2 mu . e`` of each layer: its variance
    rests on ``nb - 1`` block deviations per run (Welch-Satterthwaite degrees of freedom)."""
    nbt, nbr = len(pg.test_count), len(pg.ref_count)
    var_t = np.sum(parts.p_t**2, axis=1) / pg.test_count.sum() ** 2
    var_r = np.sum(parts.p_r**2, axis=1) / pg.ref_count.sum() ** 2 if nbr else np.zeros_like(var_t)
    return welch_t(var_t, var_r, nbt, nbr, alpha) / scipy.stats.norm.ppf(1 - alpha)


def gauss_eb_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                       *, with_b2: bool = True) -> tuple[PairIntervals, np.ndarray, PivotParts, np.ndarray]:
    """The ``gauss-eb`` intervals of b2 (module docstring); V and MSE as the pivot gives them.

    Returns:
        as :func:`pivot_intervals` (its bootstrap deviations serve :func:`reference_share`).
    """
    out, dev_b, parts, lam = pivot_intervals(pg, b2, v_t, boot, rng, with_b2=with_b2)
    if not with_b2:
        return out, dev_b, parts, lam
    t_fac = lin_t_factor(pg, parts, boot.alpha)
    draws = max(int(boot.n_resamples), GAUSS_DRAWS)
    ends = [gauss_eb_interval(gauss_model(pg, parts, k), float(b2[k]), boot.alpha, float(t_fac[k]), rng, draws)
            for k in range(len(pg.dims))]
    lo, hi = np.array([e[0] for e in ends]), np.array([e[1] for e in ends])
    return PairIntervals(LayerEstimates(b2, lo, hi, out.b2.se), out.variance, out.mse), dev_b, parts, lam


def _loo(nb: int) -> np.ndarray:
    """Block weights [nb, nb] deleting one block at a time."""
    return np.ones((nb, nb)) - np.eye(nb)


def _jack_var(reps: np.ndarray) -> np.ndarray:
    """Jackknife variance ``(nb - 1)/nb sum_j (theta_(-j) - mean)^2`` of replicates [nb, K] -> [K]."""
    nb = reps.shape[0]
    return (nb - 1) / nb * np.square(reps - reps.mean(0)).sum(0)


def welch_t(var_t: np.ndarray, var_r: np.ndarray, nbt: int, nbr: int, alpha: float) -> np.ndarray:
    """``t_{1-alpha}(nu)`` with the Welch-Satterthwaite degrees of freedom of ``var_t + var_r``
    (``var_t`` estimated from ``nbt`` blocks, ``var_r`` from ``nbr``; ``nu = nbt - 1`` without R)."""
    den = var_t**2 / max(nbt - 1, 1) + (var_r**2 / (nbr - 1) if nbr > 1 else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(den > 0, (var_t + var_r) ** 2 / den, np.inf)
    return scipy.stats.t.ppf(1 - alpha, np.maximum(nu, 1.0))


def jackknife_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap,
                        *, with_b2: bool = True) -> tuple[PairIntervals, np.ndarray, np.ndarray]:
    """The ``jackknife-t`` intervals: delete one block of each run, Student-t quantiles.

    Eq. 16 is recomputed with each block of T deleted (R whole) and with each block of R deleted
    (T whole), from the same Gram matrices (weights 1, and 0 for the deleted block): ``nb_T + nb_R``
    quadratic forms, no resampling. The two-sample jackknife variance of the estimate is
    ``s2 = s2_T + s2_R`` with ``s2_X = (nb_X - 1)/nb_X sum_j (theta_(-j) - mean_j)^2``; the interval is
    ``b2 +- t_{1-alpha}(nu) s`` with the Welch-Satterthwaite degrees of freedom
    ``nu = s2^2 / (s2_T^2/(nb_T - 1) + s2_R^2/(nb_R - 1))`` (``nb_T - 1`` against an exact gradient).
    Eq. 16 is exactly unbiased, so the interval is centred on it (no jackknife bias correction).
    ``V_T`` uses T's deletions alone; ``MSE = b2 + V_T`` both. Symmetric by construction.

    Returns:
        ``(intervals, s2_T, s2_R)``, the last two [K] (b2's jackknife variance from each run).
    """
    nbr, nbt, alpha = len(pg.ref_count), len(pg.test_count), boot.alpha
    ones_r, ones_t = np.ones(nbr), np.ones(nbt)
    w_r = None if pg.exact else np.broadcast_to(ones_r, (nbt, nbr))
    bt, vt, _ = eq16(pg, w_r, _loo(nbt))  # [nbT, K] each
    s2_t, sv_t, sm_t = _jack_var(bt), _jack_var(vt), _jack_var(bt + vt)
    s2_r = sm_r = np.zeros_like(s2_t)
    if not pg.exact:
        br = eq16(pg, _loo(nbr), np.broadcast_to(ones_t, (nbr, nbt)))[0]
        s2_r = sm_r = _jack_var(br)
    q_b = welch_t(s2_t, s2_r, nbt, nbr, alpha)
    q_v = scipy.stats.t.ppf(1 - alpha, max(nbt - 1, 1))
    q_m = welch_t(sm_t, sm_r, nbt, nbr, alpha)
    se_b, se_v, se_m = np.sqrt(s2_t + s2_r), np.sqrt(sv_t), np.sqrt(sm_t + sm_r)
    mse = b2 + v_t
    out = PairIntervals(
        b2=LayerEstimates(b2, b2 - q_b * se_b if with_b2 else None, b2 + q_b * se_b if with_b2 else None, se_b),
        variance=LayerEstimates(v_t, v_t - q_v * se_v, v_t + q_v * se_v, se_v),
        mse=LayerEstimates(mse, mse - q_m * se_m if with_b2 else None, mse + q_m * se_m if with_b2 else None, se_m),
    )
    return out, s2_t, s2_r


def scipy_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap,
                    rng: np.random.Generator) -> tuple[PairIntervals, np.ndarray]:
    """scipy's ``percentile``, ``basic`` or ``bca`` intervals of the plain Eq. 16 statistic (and of
    MSE = b2 + V as a statistic of its own).

    Returns:
        ``(intervals, dist_b2)``: b2's bootstrap replicates [K, B] (for :func:`reference_share`).
    """
    K, data = len(pg.dims), _block_data(pg)
    res = _scipy_bootstrap(data, _Resample(pg, None), boot, boot.method, rng)
    res_m = _scipy_bootstrap(data, _Resample(pg, None, mse=True), boot, boot.method, rng)
    lo, hi = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
    se = np.asarray(res.standard_error)
    ci_m = res_m.confidence_interval
    out = PairIntervals(
        b2=LayerEstimates(b2, lo[:K], hi[:K], se[:K]),
        variance=LayerEstimates(v_t, lo[K:], hi[K:], se[K:]),
        mse=LayerEstimates(b2 + v_t, np.asarray(ci_m.low), np.asarray(ci_m.high), np.asarray(res_m.standard_error)),
    )
    return out, res.bootstrap_distribution[:K]


def reference_share(pg: PairGram, dev_b: np.ndarray, boot: Bootstrap, rng: np.random.Generator,
                    parts: PivotParts | None = None, lam: np.ndarray | None = None) -> tuple[float | None, float]:
    """The reference's own contribution to b2's interval (all parameters).

    Args:
        dev_b: [K, B] b2's bootstrap replicates (or deviations) when both runs are resampled.
        parts, lam: the pivot method's pieces (None: the plain Eq. 16 statistic).

    Returns:
        ``(share, width)``: the share of b2's bootstrap variance when only R's blocks are resampled,
        and the width of that interval.
    """
    res_r = _scipy_bootstrap((np.arange(len(pg.ref_count)),), _ResampleRef(pg, parts, lam), boot, "percentile",
                             rng)
    d_r = res_r.bootstrap_distribution
    var_all = float(np.var(dev_b[-1]))
    share = finite_or_none(float(np.var(d_r)) / var_all) if var_all > 0 else None
    lo_r, hi_r = np.quantile(d_r, [boot.alpha, 1 - boot.alpha])
    return share, float(hi_r - lo_r)


def bootstrap_pair(pg: PairGram, boot: Bootstrap, *, rng: np.random.Generator,
                   with_b2: bool = True, share: bool = True) -> PairIntervals:
    """Point estimates and bootstrap intervals of b2, V_T and MSE for every layer of ``pg``.

    Args:
        pg: the pair's Gram matrices (:func:`biasvar.stats.gram.pair_gram`).
        boot: resamples, method and confidence level.
        rng: the randomness of the resampling.
        with_b2: False for a run alone (variance only).
        share: False to leave out the reference's share (:func:`reference_share`).
    """
    nbr, nbt = len(pg.ref_count), len(pg.test_count)
    b2, v_t, _ = eq16(pg, np.ones(nbr), np.ones(nbt))
    if boot.n_resamples == 0 or nbt < 2 or (not pg.exact and nbr < 2):
        return PairIntervals(LayerEstimates(b2), LayerEstimates(v_t), LayerEstimates(b2 + v_t))
    parts = lam = None
    if boot.method == "jackknife-t":
        out, s2_t, s2_r = jackknife_intervals(pg, b2, v_t, boot, with_b2=with_b2)
        if pg.exact or not with_b2 or not share:
            return out
        # the reference's own share: its part of the jackknife variance, and the interval it alone gives
        tot = float(s2_t[-1] + s2_r[-1])
        share = finite_or_none(float(s2_r[-1]) / tot) if tot > 0 else None
        width = 2 * float(scipy.stats.t.ppf(1 - boot.alpha, max(nbr - 1, 1))) * math.sqrt(float(s2_r[-1]))
        return PairIntervals(out.b2, out.variance, out.mse, share, width)
    if boot.method == "pivot":
        out, dev_b, parts, lam = pivot_intervals(pg, b2, v_t, boot, rng, with_b2=with_b2)
    elif boot.method == "gauss-eb":
        out, dev_b, parts, lam = gauss_eb_intervals(pg, b2, v_t, boot, rng, with_b2=with_b2)
    else:
        out, dev_b = scipy_intervals(pg, b2, v_t, boot, rng)
    if pg.exact or not with_b2 or not share:
        return out
    share, width = reference_share(pg, dev_b, boot, rng, parts, lam)
    return PairIntervals(out.b2, out.variance, out.mse, share, width)


__all__ = ["DEFAULT_METHOD", "GAUSS_DRAWS", "METHODS", "Bootstrap", "Estimate", "GaussModel", "LayerEstimates",
           "PairIntervals", "bootstrap_pair", "gauss_eb_intervals", "gauss_model", "invert", "jackknife_intervals",
           "pivot_intervals", "pivot_terms", "reference_share", "scipy_intervals", "t_factor", "welch_t"]
