"""Pratt's floor: the narrowest mean width any b2 interval can have that covers every bias of a family.

Issue 24 asks for intervals "the right width, not only safe", judged against the narrowest method that
covers at each setting. That method may be narrow only because it fails elsewhere (the pivot is narrowest
where the bias is off the noise's strong directions and covers 0.83 where it is on them). This module asks
what *any* interval can do: one that covers ``b2`` with chance at least ``level`` for every bias of a
family (sizes from 0 up, leans from off the strong directions to onto them, every sign pattern) on the
setting's noise.

**Pratt (1961).** For an interval ``I`` and the distribution ``P`` of the data at a setting,
``E_P |I ∩ [0, ∞)| = ∫_0^∞ P(c ∈ I) dc``. If ``I`` covers ``c`` with chance ``>= level`` under a
distribution ``Q_c`` of the family whose true value is ``c``, then ``P(c ∈ I)`` is at least the smallest
``P(A)`` over the events ``A`` with ``Q_c(A) >= level``: by Neyman-Pearson the event
``{dQ_c/dP >= k}``, with ``Q_c``'s chance of it ``level``. Call that ``beta(c)``; the largest over the
family's members at ``c`` is still a bound. Then every valid interval has
``E_P |I ∩ [0, ∞)| >= ∫_0^∞ beta(c) dc``: the **floor**. It counts only the part of the interval at or
above 0 (``b2 >= 0``), so it is compared with each method's width clipped at 0.

**The model.** Eq. 16 is ``(||y||^2 - tr C) / d`` with the pair's mean offset ``y ~ N(m, C)``. On the
eigenvectors of ``C`` (variances ``s_j``) a bias of size ``c = ||m||^2`` has the squared profile ``c w``
(``w`` sums to 1), ``w ∝ s^q`` with ``q`` set by its **alignment** ``(m'Cm / ||m||^2) / (tr C^2 / tr C)``
(:func:`~biasvar.studies.coverage.gauss_kind.aligned_weights`, the measure the studies report).
Intervals built from Gram matrices (every method of the project) do not change when ``y`` is turned by an
orthogonal map that keeps ``C``, so they cover alike every bias that such a map carries into another. The
floor therefore takes ``P`` and ``Q_c`` turned at random within **groups** of eigenvectors: coordinates
with variances within :data:`GROUP_RATIO` of each other share the group's mean variance (the floor is that
of this slightly smoothed spectrum; the top eigenvectors stay groups of one, where the turn is a sign flip),
and a member of the family fixes only the share of ``c`` in each group. Then the data enter through
``R_g = ||y_g||^2 / s_g`` alone, noncentral chi-square with ``k_g`` degrees of freedom and noncentrality
``c W_g / s_g``, independent across groups, and ``dQ/dP`` is a product of Bessel-function ratios
(:func:`log_ncx2_ratio`). Members: each profile ``∝ s^q`` of :data:`ALIGNMENTS` at size ``c``, the truth's
own profile, and the even mixture of the profiles (it hides the split across groups). ``beta(c)`` is found by
Monte Carlo over a grid of ``c``. The block deviations (and so ``C^``) have the same law under every
member, so they add nothing. The floor holds for a Gaussian mean offset with ``C`` known to the method;
not knowing ``C`` can only make a valid interval wider. It is a lower bound, not the width of a method
one can build: a method that reaches it would have to know the truth's distribution ``P``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biasvar.stats.intervals.lean import ALIGNMENTS, reachable_profiles
from biasvar.studies.coverage.gauss_kind import GaussTables

#: the coverage every member must get (the lower edge of issue 24's band)
LEVEL = 0.93
#: eigenvectors whose variances are within this ratio share a group (module docstring)
GROUP_RATIO = 1.2
#: above this Bessel order the uniform (Debye) expansion replaces scipy's ``ive`` (two terms; its log off by < 1e-5)
DEBYE_ORDER = 30.0


@dataclass(frozen=True)
class Floor:
    """The floor of one setting, in Eq. 16's units (``b2 = ||m||^2 / d``).

    Attributes:
        floor: ``∫_0^∞ beta(c) dc``: no interval that covers every member with chance ``>= level`` has a
            smaller mean width at or above 0.
        grid, beta: the ``c`` grid (b2 units) and ``beta`` on it; ``beta`` is near 0 at the grid's top.
        sd: the standard deviation of Eq. 16 at the setting (b2 units).
        worst: per grid point, which member set ``beta`` (an index into the profiles, ``len`` of them for
            the truth's own, one more for the mixture; -1 where ``beta`` is 0).
        groups: the number of groups of the smoothed spectrum.
        se: the floor's Monte Carlo standard error (:func:`coverage_floor` with ``mixtures``; else 0, not
            estimated).
    """

    floor: float
    grid: np.ndarray
    beta: np.ndarray
    sd: float
    worst: np.ndarray
    groups: int
    se: float = 0.0


def family(s: np.ndarray, alignments: Sequence[float] = ALIGNMENTS) -> list[np.ndarray]:
    """Squared bias profiles (sum 1) ``∝ s^q`` at each reachable alignment on the variances ``s``."""
    return reachable_profiles(s, alignments)


def groups_of(s: np.ndarray, ratio: float = GROUP_RATIO) -> list[np.ndarray]:
    """Indices of ``s`` in groups of consecutive (sorted) variances within ``ratio`` of the group's largest."""
    order = np.argsort(-s, kind="stable")
    out, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or s[order[start]] > ratio * s[order[i]]:
            out.append(order[start:i])
            start = i
    return out


def log_iv(nu: float, t: np.ndarray) -> np.ndarray:
    """``log I_nu(t)`` for ``t > 0``: scipy's scaled Bessel function, or its uniform expansion at large order."""
    from scipy.special import ive

    if nu < DEBYE_ORDER:
        with np.errstate(divide="ignore"):
            out = np.log(ive(nu, t)) + t
        low = ~np.isfinite(out)  # ive underflows where t is tiny: the series' first two terms
        if np.any(low):
            tl = t[low]
            out[low] = nu * np.log(0.5 * tl) - math.lgamma(nu + 1.0) + np.log1p(tl * tl / (4.0 * (nu + 1.0)))
        return out
    z = t / nu
    root = np.sqrt(1.0 + z * z)
    p = 1.0 / root
    p2 = p * p
    u1 = p * (3.0 - 5.0 * p2) / 24.0
    u2 = p2 * (81.0 - 462.0 * p2 + 385.0 * p2 * p2) / 1152.0
    return (-0.5 * np.log(2.0 * math.pi * nu) + nu * (root + np.log(z / (1.0 + root))) - 0.25 * np.log1p(z * z)
            + np.log1p(u1 / nu + u2 / (nu * nu)))


def log_ncx2_ratio(x: np.ndarray, k: int, nc: float) -> np.ndarray:
    """``log`` of the noncentral chi-square density (``k`` degrees of freedom, noncentrality ``nc``) over the
    central one at ``x``: ``-nc/2 + log Gamma(k/2) + (1 - k/2) log(t/2) + log I_(k/2-1)(t)``, ``t = sqrt(nc x)``."""
    if nc <= 0:
        return np.zeros_like(x)
    t = np.sqrt(nc * np.maximum(x, 1e-300))
    if k == 1:  # I_(-1/2)(t) = sqrt(2 / (pi t)) cosh t: the ratio is exp(-nc/2) cosh t
        return -0.5 * nc + t + np.log1p(np.exp(-2.0 * t)) - math.log(2.0)
    return -0.5 * nc + math.lgamma(0.5 * k) + (1.0 - 0.5 * k) * np.log(0.5 * t) + log_iv(0.5 * k - 1.0, t)


def _mixture_test(w: np.ndarray, lr_q: np.ndarray, level: float) -> tuple[float, np.ndarray]:
    """The Neyman-Pearson test of the mixture ``sum_i w_i Q_i`` against ``P`` at ``level``, from draws of each
    member (``lr_q[i, j]``: ``log dQ_j/dP`` at ``Q_i``'s draws): its threshold on ``log sum w_j dQ_j/dP`` and
    each member's chance of passing it."""
    with np.errstate(divide="ignore"):
        lw = np.log(w)
    mix = np.logaddexp.reduce(lw[None, :, None] + lr_q, axis=1)  # [member drawn, N]
    vals = mix.ravel()
    order = np.argsort(-vals)
    weight = np.repeat(w / lr_q.shape[2], lr_q.shape[2])[order]
    t = float(vals[order][min(int(np.searchsorted(np.cumsum(weight), level)), len(vals) - 1)])
    return t, (mix >= t).mean(axis=1)


def _passes(w: np.ndarray, t: float, lr: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.logaddexp.reduce(np.log(w)[:, None] + lr, axis=0) >= t


def mixture_bound(log_ratios, draw_p, draw_q, members: int, *, level: float = LEVEL, fit: int = 2000,
                  check: int = 6000, rng: np.random.Generator, steps: int = 60, rate: float = 20.0
                  ) -> tuple[float, float, np.ndarray]:
    """The least chance under ``P`` that a test accepts when it must accept under each of ``members``
    distributions ``Q_i`` with chance ``>= level``, bounded from below by a least-favourable mixture.

    For any weights ``w``, a test that accepts under every ``Q_i`` with chance ``>= level`` accepts under the
    mixture ``sum w_i Q_i`` so too, and so (Neyman-Pearson) has ``P``-chance at least that of the mixture's
    test; the composite problem's answer is the largest of these over ``w`` (by duality). ``log_ratios(x)``
    gives ``log dQ_i/dP`` at draws ``x`` [members, N]; ``draw_p(rng, N)`` and ``draw_q(i, rng, N)`` draw from
    ``P`` and ``Q_i``. The weights are chosen on ``fit`` draws of each distribution among each single member
    and the mixtures that multiplicative weights meet (moving weight toward the members the current test
    covers least); the chosen mixture's threshold and ``P``-chance are then estimated on ``check`` fresh
    draws, so the bound does not inherit the choice's fit to its draws (taking the largest of several
    estimates would). Returns the bound, its standard error (binomial over ``P``'s draws, plus the threshold's
    error by the delta method: at the threshold ``dP/dQ_w = exp(-t)``), and the weights."""
    def ratios_of(n: int) -> tuple[np.ndarray, np.ndarray]:
        return log_ratios(draw_p(rng, n)), np.stack([log_ratios(draw_q(i, rng, n)) for i in range(members)])

    lr_p, lr_q = ratios_of(fit)
    best, best_w = -1.0, None
    cands = [np.eye(members)[j] for j in range(members)]
    w = np.full(members, 1.0 / members)
    for step in range(len(cands) + steps):
        cand = cands[step] if step < len(cands) else w
        t, cov = _mixture_test(cand, lr_q, level)
        value = float(_passes(cand, t, lr_p).mean())
        if value > best:
            best, best_w = value, cand.copy()
        if step >= len(cands):
            w = np.maximum(w * np.exp(rate * (level - cov)), 1e-12)
            w /= w.sum()
    lr_p, lr_q = ratios_of(check)
    t, _ = _mixture_test(best_w, lr_q, level)
    value = float(_passes(best_w, t, lr_p).mean())
    var_t = math.exp(-2.0 * t) * level * (1.0 - level) * float(np.sum(best_w ** 2)) / check
    return value, math.sqrt(value * (1.0 - value) / check + var_t), best_w


def _draw(rng: np.random.Generator, k: np.ndarray, nc: np.ndarray, samples: int) -> np.ndarray:
    out = np.empty((samples, len(k)))
    for g in range(len(k)):
        out[:, g] = (rng.noncentral_chisquare(k[g], nc[g], samples) if nc[g] > 0
                     else rng.chisquare(k[g], samples))
    return out


def _log_density(x: np.ndarray, k: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """``sum_g`` of the log ratio of each group's density to the central one [samples]."""
    return sum(log_ncx2_ratio(x[:, g], int(k[g]), float(nc[g])) for g in range(len(k)))


def coverage_floor(s: np.ndarray, truth: np.ndarray, dim: float, shapes: Sequence[np.ndarray], *,
                   level: float = LEVEL, samples: int = 4000, points: int = 40, span: float = 9.0,
                   ratio: float = GROUP_RATIO, refine: int = 5, jump: float = 0.08, seed: int = 0,
                   mixtures: bool = False, fit: int = 2000) -> Floor:
    """Pratt's floor (module docstring) of the setting whose mean offset has variances ``s`` [r] on the
    eigenvectors of its covariance and squared true offset ``truth`` [r] on them (zeros: b2 = 0), Eq. 16
    dividing by ``dim``; the family is ``shapes`` (squared profiles, sum 1) at every size, the truth's own
    profile, and the even mixture of ``shapes``. The grid runs from 0 to ``span`` standard deviations of
    Eq. 16 above the truth (and holds the truth), is extended while ``beta`` at its top is above 0.002, and
    is halved up to ``refine`` times where ``beta`` changes by more than ``jump`` between neighbours.

    With ``mixtures``, ``beta`` is instead :func:`mixture_bound` over the single profiles (the best mixture of
    them found on ``fit`` draws each, its bound estimated on ``samples`` fresh ones: no largest of several
    estimates); ``worst`` is then the member of largest weight, and ``se`` the floor's Monte Carlo standard
    error."""
    s = np.asarray(s, dtype=float)
    truth = np.asarray(truth, dtype=float)
    rng = np.random.default_rng(seed)
    idx = groups_of(s, ratio)
    k = np.array([len(i) for i in idx])
    sg = np.array([float(s[i].mean()) for i in idx])
    share = lambda v: np.array([float(v[i].sum()) for i in idx]) / sg  # noqa: E731 - per-group noncentrality
    nc_p = share(truth)
    c0 = float(truth.sum())
    profiles = [share(w) for w in shapes] + ([share(truth / c0)] if c0 > 0 else [])
    n_single = len(profiles)
    sd = math.sqrt(2.0 * float(np.sum(k * sg * sg)) + 4.0 * float(np.sum(nc_p * sg * sg)))
    if not mixtures:  # the single members' bounds share P's draws (the mixtures draw their own, fresh per c)
        x_p = _draw(rng, k, nc_p, samples)
        lp_p = _log_density(x_p, k, nc_p)
        mix_pick = rng.integers(0, len(shapes), samples) if shapes else None
        q_seed = int(rng.integers(0, 2**62))

    calls = [0]
    ses: dict[float, float] = {}

    def mixture_at(c: float) -> tuple[float, int]:
        calls[0] += 1
        ncs = [c * prof for prof in profiles]
        log_ratios = lambda x: np.stack([_log_density(x, k, nc) - _log_density(x, k, nc_p)  # noqa: E731
                                         for nc in ncs])
        b, se, w = mixture_bound(log_ratios, lambda r, n: _draw(r, k, nc_p, n),
                                 lambda i, r, n: _draw(r, k, ncs[i], n), len(ncs), level=level, fit=fit,
                                 check=samples, rng=np.random.default_rng([seed, 7, calls[0]]))
        ses[c] = se
        return b, int(np.argmax(w))

    def beta_at(c: float) -> tuple[float, int]:
        if mixtures:
            return mixture_at(c)
        best, arg = 0.0, -1
        logs_p, logs_q = [], []
        for i, prof in enumerate(profiles):
            nc_q = c * prof
            x_q = _draw(np.random.default_rng(q_seed + i), k, nc_q, samples)  # the same numbers at every c
            lq_p = _log_density(x_p, k, nc_q) - lp_p  # log dQ/dP at P's draws
            lq_q = _log_density(x_q, k, nc_q) - _log_density(x_q, k, nc_p)
            logs_p.append(lq_p)
            logs_q.append((x_q, lq_q))
            b = float(np.mean(lq_p >= np.quantile(lq_q, 1.0 - level)))
            if b > best:
                best, arg = b, i
        if shapes and c > 0:  # the even mixture of the profiles (not the truth's own)
            m = len(shapes)
            mix_p = np.logaddexp.reduce(np.array(logs_p[:m]), axis=0) - math.log(m)
            x_mix = np.stack([logs_q[j][0] for j in range(m)])[mix_pick, np.arange(samples)]
            lq_mix = np.logaddexp.reduce(np.array([_log_density(x_mix, k, c * profiles[j]) for j in range(m)]),
                                         axis=0) - math.log(m) - _log_density(x_mix, k, nc_p)
            b = float(np.mean(mix_p >= np.quantile(lq_mix, 1.0 - level)))
            if b > best:
                best, arg = b, n_single
        return best, arg

    top = c0 + span * sd
    grid = sorted(set(np.linspace(0.0, top, points).tolist()) | {c0})  # the truth itself: beta(c0) >= level
    vals = [beta_at(c) for c in grid]
    step = top / (points - 1)
    while vals[-1][0] > 0.002 and len(grid) < 4 * points:
        grid.append(grid[-1] + step)
        vals.append(beta_at(grid[-1]))
    for _ in range(refine):  # halve the steps where beta jumps (the peak at the truth is narrow)
        jumps = [i for i in range(len(grid) - 1) if abs(vals[i + 1][0] - vals[i][0]) > jump]
        if not jumps:
            break
        for i in reversed(jumps):
            mid = 0.5 * (grid[i] + grid[i + 1])
            grid.insert(i + 1, mid)
            vals.insert(i + 1, beta_at(mid))
    g = np.array(grid)
    beta = np.array([v[0] for v in vals])
    # trapezoid weights: the Monte Carlo errors of the grid's values are independent (fresh draws at each)
    wts = np.zeros(len(g))
    wts[:-1] += 0.5 * np.diff(g)
    wts[1:] += 0.5 * np.diff(g)
    se = math.sqrt(float(np.sum((wts * np.array([ses.get(c, 0.0) for c in grid])) ** 2))) / dim
    return Floor(float(np.trapezoid(beta, g)) / dim, g / dim, beta, sd / dim, np.array([v[1] for v in vals]),
                 len(idx), se)


def threshold_floor(s: np.ndarray, truth: np.ndarray, dim: float, shapes: Sequence[np.ndarray], grid: np.ndarray, *,
                    level: float = LEVEL, samples: int = 20000, seed: int = 0) -> tuple[float, np.ndarray]:
    """The floor among intervals that see the data only through ``T = ||y||^2`` (Eq. 16's statistic, the
    covariance known) and hold ``c`` where ``T`` is at least a threshold: to cover every member of size ``c``
    (profiles ``shapes`` and the truth's own) with chance ``level``, the threshold can be no higher than the
    least of the members' ``1 - level`` quantiles of ``T``, and the interval's chance of holding ``c`` under
    the truth is then ``P(T >= that)``. ``grid``: the values of ``c`` (b2 units, as :class:`Floor` keeps
    them); ``T`` depends on the offset only through its squared profile, so no turn is drawn. Returns the
    floor (b2 units) and the chance at each ``c``."""
    s = np.asarray(s, dtype=float)
    truth = np.asarray(truth, dtype=float)
    rng = np.random.default_rng(seed)
    root = np.sqrt(s)

    def stat(offset2: np.ndarray) -> np.ndarray:
        z = rng.standard_normal((samples, len(s)))
        return ((z * root + np.sqrt(offset2)) ** 2).sum(axis=1)

    t_p = stat(truth)
    c0 = float(truth.sum())
    profiles = list(shapes) + ([truth / c0] if c0 > 0 else [])
    held = []
    for c in np.asarray(grid, dtype=float) * dim:
        t = min(float(np.quantile(stat(c * w), 1.0 - level)) for w in profiles)
        held.append(float(np.mean(t_p >= t)))
    held_a = np.array(held)
    return float(np.trapezoid(held_a, np.asarray(grid, dtype=float))), held_a


def clipped_width(low: np.ndarray, high: np.ndarray) -> float:
    """Mean width of intervals clipped at 0 (the part the floor bounds)."""
    return float(np.nanmean(np.maximum(high, 0.0) - np.maximum(low, 0.0)))


def gauss_setting(tables: GaussTables, spec: str, reference: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(s, truth)`` of a setting of the synthetic kind (:mod:`~biasvar.studies.coverage.gauss_kind`): the
    variances of the mean offset of ``n`` draws (tested, plus the reference's unless it is ``exact``) and the
    squared true offset, on the coordinates (the noise is diagonal there)."""
    from biasvar.studies.coverage.gauss_kind import UNBIASED

    lam = tables.lam_ref if spec == UNBIASED else tables.lam
    s = lam / n + (0.0 if reference == "exact" else tables.lam_ref / n)
    truth = np.zeros(len(lam)) if spec == UNBIASED else tables.bias[spec] ** 2
    return s, truth


def reference_spectrum(model, tables, draws: int = 200_000) -> np.ndarray:
    """The per-draw eigenvalues (above ``1e-12`` of the largest) of rf(M=4)'s covariance on an enumerable
    model of the multi-model study, from ``draws`` draws seeded ``(model seed, 4242)``: the noise of the
    spectrum settings (:func:`setting_variances`)."""
    from biasvar.studies.coverage.multi import REFERENCE

    x = tables.draws(REFERENCE, draws, np.random.default_rng((model.seed, 4242)))
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0.0, None)
    return lam[lam > lam.max() * 1e-12]


def model_spectrum(lam: np.ndarray) -> np.ndarray:
    """The per-draw spectrum the spectrum settings' Gaussian models draw with: the reference spectrum ``lam``
    taken to the first setting's variances and back (``lam / n * n``, as the committed pairs were drawn, so
    that they are drawn again bit for bit)."""
    from biasvar.studies.coverage.multi import SETTINGS

    return setting_variances(lam, SETTINGS[0].n, SETTINGS[0].reference) * SETTINGS[0].n


def setting_variances(lam: np.ndarray, n: int, reference: str) -> np.ndarray:
    """The variances of the mean offset of ``n`` draws with per-draw spectrum ``lam``, against the exact
    gradient or against a reference run of the same spectrum (twice the variance)."""
    return lam / n * (1.0 if reference == "exact" else 2.0)


__all__ = ["ALIGNMENTS", "GROUP_RATIO", "LEVEL", "Floor", "mixture_bound", "clipped_width", "coverage_floor",
           "family", "gauss_setting", "groups_of", "log_iv", "log_ncx2_ratio",
           "model_spectrum", "reference_spectrum", "setting_variances", "threshold_floor"]
