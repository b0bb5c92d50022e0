"""Candidate intervals for paired contrasts ``b2_A - b2_B`` built on ``gauss-eb``'s Gaussian model of the
error (candidates only: :mod:`biasvar.stats.contrast` keeps jackknife-t; evaluated by
``scripts/contrast_candidates.py``, ``results/coverage/contrast4/``).

With every mean centred at R's (or at the exact gradient), the offsets are ``y_A = m_A + e_A``,
``y_B = m_B + e_B`` with ``e_A = a - r``, ``e_B = b - r`` (``a, b, r`` the independent mean errors of the
three runs, covariances ``C_A, C_B, C_R``). Up to the (small) error of its V terms the contrast's error is

    ``d (est - theta) = 2 m_A.e_A - 2 m_B.e_B + (||a||^2 - tr C_A) - (||b||^2 - tr C_B) - 2 r.(a - b)``

(``||r||^2`` cancels, and no ``a.b`` term appears). Its variance therefore needs no A-B cross Gram matrix:

    ``4 [m_A'(C_A + C_R) m_A + m_B'(C_B + C_R) m_B - 2 m_A'C_R m_B] + 2 tr C_A^2 + 2 tr C_B^2
    + 4 tr C_R C_A + 4 tr C_R C_B``,

every term from the two pairs' Gram matrices: ``m_X'(C_X + C_R) m_X`` from the projections of the offset
on the pair's block deviations, ``y_A'C_R y_B`` from those on R's (shared) blocks, ``tr C_R C_X`` from the
R-X deviation Gram, ``tr C_X^2`` Wishart-unbiased (:func:`~biasvar.stats.intervals.gauss_eb._unbiased_tr2`).
(``tr C_A C_B`` would enter only the covariance of ``||e_A||^2`` with ``||e_B||^2`` through ``a.b``: absent.)

**contrast-eb** (:func:`contrast_eb`). As in gauss-eb, the test of ``theta`` does not plug in the observed
offsets (a draw that cancels part of a bias on the noise's strong directions gives a low estimate *and* a low
plug-in variance): each true offset is drawn around the observed one,
``m_X = rho_X y_X + sqrt(rho_X) P_X^(1/2) xi_X`` with ``rho_X^2 ||y_X||^2 + rho_X tr(C_X + C_R) = beta_X d``
and ``P_X`` the pair's noise eigenvalues to the power
:data:`~biasvar.stats.intervals.gauss_eb.GAUSS_PRIOR_POWER` scaled to its trace (gauss-eb's prior, no new
constant; the two unseen parts independent). Then ``E m_X'C m_X = rho_X^2 y_X'C y_X + rho_X tr(P_X C)`` and
``E m_A'C_R m_B = rho_A rho_B y_A'C_R y_B``. *The nuisance*: ``theta`` fixes only ``beta_A - beta_B``; the
split is the constrained least-squares one (the point of the line ``beta_A - beta_B = theta`` closest to the
two estimates in the metric of their model covariance at the estimates):
``beta = b2_hat + Sigma c (theta - est) / c'Sigma c``, ``c = (1, -1)``, each clipped at 0 (where B's error
dominates, B's b2 moves; a shared reference's noise, ``Sigma_AB``, is accounted for). The interval holds every
``theta`` with ``|est - theta| <= z sqrt(t^2 V_lin(theta) + V_quad)`` (``t = t_over_z`` with
Welch-Satterthwaite degrees of freedom from the three runs' plug-in linear parts, as gauss-eb widens its
linear term), each end the first crossing outward from the estimate. Closed form: one eigen-decomposition
per pair, no draws (about a millisecond per contrast).

**contrast-bt** (:func:`contrast_bt_levels`): a bootstrap-t in the same model world (simulated errors on the
block deviations, offsets as above), studentized by the plug-in standard error the world's own offsets give:
the correlation of a low estimate with a low standard error is simulated instead of modelled through ``rho``.

**contrast-cv** (:func:`contrast_cv`): the plug-in linear variance corrected, under each ``theta``, by its
linear regression on the error ``est - theta`` (closed form, a quadratic in ``theta``). Its plug-in slope
carries the noise's own terms and is far too steep where noise dominates (coverage 0.56-0.76 at n = 128):
kept only as the measured negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.stats

from biasvar.stats.gram import PairGram, eq16
from biasvar.stats.intervals import Estimate
from biasvar.stats.intervals.gauss_eb import (
    GAUSS_PRIOR_POWER,
    _unbiased_tr2,
    kept_eigh,
    prior_shape,
    scaled_grams,
    shrink,
)
from biasvar.stats.intervals.resample import pivot_parts
from biasvar.stats.intervals.welch import welch_t

#: bisection steps of each interval end
STEPS = 60


@dataclass(frozen=True)
class PairMoments:
    """One pair's (R, X) moments for the contrast model, all parameters (covariances of the *means*).

    ``yy = ||y||^2``; ``q = y'(C_X + C_R) y``; ``tr = tr(C_X + C_R)``; ``prior_c = tr(P C)`` for the prior's
    shape ``P``; ``tr2_x`` the unbiased ``tr C_X^2``; ``tr_rx = tr C_R C_X``; ``yr`` the offset's
    projections on R's scaled block deviations [nbR] (``y'C_R y' = yr . yr'``); ``lin_x``, ``lin_r``
    the plug-in linear variances ``y'C_X y``, ``y'C_R y``; ``b2`` the estimate; ``nb`` X's block count."""

    yy: float
    q: float
    tr: float
    prior_c: float
    tr2_x: float
    tr_rx: float
    yr: np.ndarray
    lin_x: float
    b2: float
    nb: int
    vec_t: np.ndarray  # U_X' u_j [nbX, r], u_j the pair's unit noise eigen-directions (C_X + C_R = U U')
    vec_r: np.ndarray  # -U_R' u_j [nbR, r]
    lam: np.ndarray  # the pair's noise eigenvalues [r]
    yt: np.ndarray  # the offset's projections on X's scaled block deviations [nbX]
    c_tt: np.ndarray  # X's scaled deviation Gram [nbX, nbX] (C_X = U U', c_tt = U'U)
    c_rt: np.ndarray  # R-X scaled deviation Gram [nbR, nbX]


def _end(outside, est: float, first: float, grow: int, steps: int) -> float:
    """An interval end by test inversion: from ``est`` step by ``first`` (doubling the distance, at most
    ``grow`` times) until ``outside(theta)``, then bisect ``steps`` times between the last inside and it."""
    lo, hi = est, est + first
    for _ in range(grow):
        if outside(hi):
            break
        lo, hi = hi, hi + (hi - est)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if outside(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def pair_moments(pg: PairGram, power: float = GAUSS_PRIOR_POWER) -> PairMoments:
    """:class:`PairMoments` of the all-parameters layer of ``pg`` (as :func:`~.gauss_eb.gauss_model` scales)."""
    k = -1
    parts = pivot_parts(pg)
    nbt = len(pg.test_count)
    g = scaled_grams(pg, parts, k)
    c_tt, c_rt, yt, yr = g.c_tt, g.c_rt, g.y_t, g.y_r
    lam, vec = kept_eigh(g.joint(), k)
    vec = vec * np.sqrt(lam)  # [U_X, -U_R]' u_j = v_j sqrt(lam_j), u_j = [U_X, -U_R] v_j / sqrt(lam_j) unit
    tr = float(lam.sum())
    prior_c = float(prior_shape(lam, power) @ lam) if len(lam) else 0.0
    ones_r = None if pg.exact else np.ones(len(pg.ref_count))
    b2 = float(eq16(pg, ones_r, np.ones(nbt))[0][k])
    lin_x = float(yt @ yt)
    return PairMoments(float(parts.mm[k]), lin_x + float(yr @ yr), tr, prior_c, _unbiased_tr2(c_tt, nbt),
                       float(np.sum(c_rt * c_rt)), yr, lin_x, b2, nbt, vec[:nbt], vec[nbt:], lam, yt, c_tt, c_rt)


def _rho(m: PairMoments, beta: float, dim: float) -> float:
    return shrink(m.yy, m.tr, max(beta, 0.0) * dim)


def contrast_eb(pa: PairGram, pb: PairGram, level: float = 0.95, *, power: float = GAUSS_PRIOR_POWER,
                split: str = "gls", denoise: bool = False, prior: bool = True) -> Estimate:
    """The ``contrast-eb`` interval of ``b2_A - b2_B`` (module docstring); pairs as for
    :func:`biasvar.stats.contrast.contrast_parts` (check them there). ``split``: ``gls`` (default) or
    ``worst`` (the larger of the variances of moving A alone or B alone: a conservative variant).
    ``denoise``: the observed offsets' quadratic forms less their noise's mean ``tr((C_X + C_R)^2)`` (measured:
    no better, results/coverage/contrast4). ``prior=False`` leaves out the unseen part (``rho tr(PC)``)."""
    ma, mb = pair_moments(pa, power), pair_moments(pb, power)
    dim = float(pa.dims[-1])
    est = ma.b2 - mb.b2
    exact = pa.exact
    tr_r2 = 0.0
    if not exact:
        parts = pivot_parts(pa)
        nbr = len(pa.ref_count)
        a_r = math.sqrt(nbr / (nbr - 1)) / pa.ref_count.sum()
        tr_r2 = _unbiased_tr2(a_r * a_r * parts.d_rr[-1], nbr)
    cross_yy = float(ma.yr @ mb.yr)  # y_A' C_R y_B
    v_quad = (2.0 * ma.tr2_x + 2.0 * mb.tr2_x + 4.0 * ma.tr_rx + 4.0 * mb.tr_rx) / dim**2
    # Welch-Satterthwaite over the three runs' plug-in linear parts (gauss-eb's t widening of the linear term)
    lin_parts = [(4.0 * ma.lin_x, ma.nb), (4.0 * mb.lin_x, mb.nb)]
    if not exact:
        dr = ma.yr - mb.yr
        lin_parts.append((4.0 * float(dr @ dr), len(pa.ref_count)))
    alpha = (1.0 - level) / 2.0
    z = scipy.stats.norm.ppf(1.0 - alpha)
    t_fac = float(welch_t(lin_parts, 1.0 - alpha)[0]) / z

    # denoise: the observed offsets' quadratic forms less their noise's mean (E e'Ce = tr C^2, unbiased traces)
    qa, qb, qab = ma.q, mb.q, cross_yy
    if denoise:
        qa -= ma.tr2_x + 2.0 * ma.tr_rx + tr_r2
        qb -= mb.tr2_x + 2.0 * mb.tr_rx + tr_r2
        qab -= tr_r2

    def lin_var(beta_a: float, beta_b: float) -> float:
        ra, rb = _rho(ma, beta_a, dim), _rho(mb, beta_b, dim)
        seen = max(ra * ra * qa + rb * rb * qb - 2.0 * ra * rb * qab, 0.0)
        unseen = ra * ma.prior_c + rb * mb.prior_c if prior else 0.0
        return 4.0 * (seen + unseen) / dim**2

    # the model covariance of the two b2 estimates at the estimates (for the split)
    ra, rb = _rho(ma, ma.b2, dim), _rho(mb, mb.b2, dim)
    s_aa = 4.0 * (ra * ra * ma.q + ra * ma.prior_c) / dim**2 + (2.0 * ma.tr2_x + 4.0 * ma.tr_rx + 2.0 * tr_r2) / dim**2
    s_bb = 4.0 * (rb * rb * mb.q + rb * mb.prior_c) / dim**2 + (2.0 * mb.tr2_x + 4.0 * mb.tr_rx + 2.0 * tr_r2) / dim**2
    s_ab = (4.0 * ra * rb * cross_yy + 2.0 * tr_r2) / dim**2
    den = s_aa + s_bb - 2.0 * s_ab
    w_a, w_b = ((s_aa - s_ab) / den, (s_bb - s_ab) / den) if den > 0 else (0.5, 0.5)

    def sd(theta: float) -> float:
        delta = theta - est
        if split == "worst":
            v = max(lin_var(ma.b2 + delta, mb.b2), lin_var(ma.b2, mb.b2 - delta))
        else:
            v = lin_var(ma.b2 + w_a * delta, mb.b2 - w_b * delta)
        return math.sqrt(max(t_fac * t_fac * v + v_quad, 0.0))

    def end(sign: float) -> float:
        def outside(theta: float) -> bool:
            return abs(est - theta) > z * sd(theta)

        return _end(outside, est, sign * (z * sd(est) + 1e-300), 200, STEPS)

    low, high = end(-1.0), end(1.0)
    return Estimate(float(est), float(low), float(high), float(sd(est)))


def contrast_cv(pa: PairGram, pb: PairGram, level: float = 0.95) -> Estimate:
    """The ``contrast-cv`` interval of ``b2_A - b2_B``: the linear term's plug-in variance corrected, under
    each ``theta`` tested, for its regression on the error that ``theta`` implies (module docstring)."""
    ma, mb = pair_moments(pa), pair_moments(pb)
    dim = float(pa.dims[-1])
    est = ma.b2 - mb.b2
    alpha = (1.0 - level) / 2.0
    z = float(scipy.stats.norm.ppf(1.0 - alpha))
    dr = ma.yr - mb.yr  # (y_A - y_B) on R's deviations
    # plug-in linear variance (x d^2 / 4) and its noise's mean (unbiased traces)
    s_hat = ma.lin_x + mb.lin_x + float(dr @ dr)
    noise = ma.tr2_x + mb.tr2_x + 2.0 * ma.tr_rx + 2.0 * mb.tr_rx
    s_lin = max(s_hat - noise, 0.0)
    v_quad = 2.0 * ma.tr2_x + 2.0 * mb.tr2_x + 4.0 * ma.tr_rx + 4.0 * mb.tr_rx
    # Cov(plug-in's linear noise, the error's linear term) x d^3 / 16 (plug-in)
    k_cov = (float(ma.yt @ ma.c_tt @ ma.yt) - float(mb.yt @ mb.c_tt @ mb.yt)
             + 2.0 * float(dr @ ma.c_rt @ ma.yt) + 2.0 * float(dr @ mb.c_rt @ mb.yt))
    # Var(error) x d^2 = 4 s_lin + v_quad; E[4 s_hat/d^2 | error = x] = ... + 2 (16 k_cov / d^3) x / Var(error)
    var_err = (4.0 * s_lin + v_quad) / dim**2
    if var_err <= 0:
        return Estimate(float(est))
    slope = 2.0 * 16.0 * k_cov / dim**3 / var_err  # d(4 s_hat / d^2) / d x
    lin_parts = [(4.0 * ma.lin_x, ma.nb), (4.0 * mb.lin_x, mb.nb)]
    if not pa.exact:
        lin_parts.append((4.0 * float(dr @ dr), len(pa.ref_count)))
    t2 = (float(welch_t(lin_parts, 1.0 - alpha)[0]) / z) ** 2
    # accept theta where x^2 <= z^2 (t2 (4 s_lin / d^2 - slope x) + v_quad / d^2), x = est - theta
    c0 = z * z * (t2 * 4.0 * s_lin + v_quad) / dim**2
    b = z * z * t2 * slope
    root = math.sqrt(b * b / 4.0 + c0)
    x_hi, x_lo = -b / 2.0 + root, -b / 2.0 - root  # est - theta at the lower and the upper end
    return Estimate(float(est), float(est - x_hi), float(est - x_lo), float(math.sqrt(var_err)))


def contrast_bt(pa: PairGram, pb: PairGram, level: float = 0.95, **kw) -> Estimate:
    """:func:`contrast_bt_levels` at one level."""
    return contrast_bt_levels(pa, pb, (level,), **kw)[0]


def contrast_bt_levels(pa: PairGram, pb: PairGram, levels: tuple[float, ...] = (0.95,), *,
                       power: float = GAUSS_PRIOR_POWER, draws: int = 4000, rng: np.random.Generator | None = None,
                       prior: bool = True, t_widen: bool = True, wishart: bool = False,
                       steps: int = 32) -> list[Estimate]:
    """The ``contrast-bt`` interval: a bootstrap-t in the Gaussian model of :func:`contrast_eb`.

    Each ``theta`` is tested by simulating, in the model world of ``theta`` (offsets
    ``m_X = rho_X y_X + sqrt(rho_X) P_X^(1/2) xi_X``, split as in :func:`contrast_eb`; mean errors
    ``a = U_A z_A``, ``b = U_B z_B``, ``r = U_R z_R`` on the block deviations), both the error ``x*`` of the
    difference and the plug-in standard error ``s*`` the world's offsets ``y* = m + e*`` give; ``theta``
    is kept where ``(est - theta) / s_obs`` lies within the central ``level`` of ``x* / s*``. The
    correlation between a low estimate and a low plug-in error is thereby simulated, not assumed away.
    ``prior=False`` leaves out the unseen part of the offsets; ``t_widen`` widens the linear term by Student's t
    (Welch-Satterthwaite, as contrast-eb); ``wishart`` instead redraws, per draw, the sample covariance the
    world's studentizer uses (nb - 1 degrees of freedom in the deviations' span). Draws share one ``rng``
    (default seed 0: deterministic); both levels of one call share them.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    ma, mb = pair_moments(pa, power), pair_moments(pb, power)
    dim = float(pa.dims[-1])
    est = ma.b2 - mb.b2
    exact = pa.exact
    na, nb_ = len(ma.yt), len(mb.yt)
    nr = 0 if exact else len(pa.ref_count)
    z_a, z_b, z_r = (rng.standard_normal((draws, k)) for k in (na, nb_, nr))

    def unseen(m: PairMoments) -> tuple[np.ndarray, np.ndarray]:
        if not prior or not len(m.lam):
            return np.zeros((draws, len(m.yt))), np.zeros((draws, len(m.yr)))
        p = m.lam**power
        p *= float(m.lam.sum()) / float(p.sum())
        xi = rng.standard_normal((draws, len(m.lam))) * np.sqrt(p)
        return xi @ m.vec_t.T, -(xi @ m.vec_r.T)  # U_X'h, U_R'h per draw

    ha_t, ha_r = unseen(ma)
    hb_t, hb_r = unseen(mb)
    # the quadratic part of the error (x d): ||a||^2 - tr - (||b||^2 - tr) - 2 r.(a - b); its own-run
    # parts scaled to the Wishart-unbiased tr C^2 (sample eigenvalues are too spread)
    def own(z: np.ndarray, c: np.ndarray, tr2: float) -> np.ndarray:
        q = np.einsum("di,ij,dj->d", z, c, z) - float(np.trace(c))
        raw = float(np.sum(c * c))
        return q * math.sqrt(max(tr2, 0.0) / raw) if raw > 0 else q

    quad = own(z_a, ma.c_tt, ma.tr2_x) - own(z_b, mb.c_tt, mb.tr2_x)
    if not exact:
        quad -= 2.0 * (np.einsum("di,ij,dj->d", z_r, ma.c_rt, z_a) - np.einsum("di,ij,dj->d", z_r, mb.c_rt, z_b))
    # linear pieces: m_A.(a - r) = rho_A la1 + sqrt(rho_A) la2 (and B alike)
    la1 = z_a @ ma.yt - (z_r @ ma.yr if nr else 0.0)
    la2 = np.einsum("di,di->d", ha_t, z_a) - (np.einsum("di,di->d", ha_r, z_r) if nr else 0.0)
    lb1 = z_b @ mb.yt - (z_r @ mb.yr if nr else 0.0)
    lb2 = np.einsum("di,di->d", hb_t, z_b) - (np.einsum("di,di->d", hb_r, z_r) if nr else 0.0)
    # the world's plug-in variance (x d^2 / 4): ||U_A'y_A*||^2 + ||U_B'y_B*||^2 + ||U_R'(y_A* - y_B*)||^2
    # with U_A'y_A* = rho_A yt_A + sqrt(rho_A) ha_t + n_a, n_a = c_AA z_A - c_RA' z_R, and so on
    n_a = z_a @ ma.c_tt - (z_r @ ma.c_rt if nr else 0.0)
    n_b = z_b @ mb.c_tt - (z_r @ mb.c_rt if nr else 0.0)
    n_r = (z_a @ ma.c_rt.T - z_b @ mb.c_rt.T) if nr else np.zeros((draws, 0))

    def gram(comp: np.ndarray) -> np.ndarray:
        """Per draw, the Gram of the components [D, c, nb] in the metric of the block deviations: the
        identity (the observed C^), or with ``wishart`` a fresh sample covariance of nb - 1 degrees of
        freedom in their span (``W = Z Z' / (nb - 1)``), so that the world's studentizer carries its own
        sampling noise."""
        if not wishart or comp.shape[2] < 2:
            return np.einsum("dik,djk->dij", comp, comp)
        k = comp.shape[2]
        z = rng.standard_normal((draws, k, k - 1))
        proj = np.einsum("dik,dkj->dij", comp, z)
        return np.einsum("dij,dlj->dil", proj, proj) / (k - 1)

    def comps(*parts: np.ndarray) -> np.ndarray:
        shape = next(p.shape for p in parts if p.ndim == 2)
        return np.stack([np.broadcast_to(p, shape) for p in parts], axis=1)

    g_a, g_b = gram(comps(ma.yt, ha_t, n_a)), gram(comps(mb.yt, hb_t, n_b))
    g_r = gram(comps(ma.yr, ha_r, mb.yr, hb_r, n_r))
    # the observed studentizer: plug-in linear variance plus the quadratic term's (unbiased traces)
    v_quad = (2.0 * ma.tr2_x + 2.0 * mb.tr2_x + 4.0 * ma.tr_rx + 4.0 * mb.tr_rx) / dim**2
    dr = ma.yr - mb.yr
    s_obs = math.sqrt(4.0 * (ma.lin_x + mb.lin_x + float(dr @ dr)) / dim**2 + v_quad)
    lin_parts = [(4.0 * ma.lin_x, ma.nb), (4.0 * mb.lin_x, mb.nb)]
    if nr:
        lin_parts.append((4.0 * float(dr @ dr), nr))

    # the split of theta - est between the two b2 (as contrast_eb): model covariance at the estimates
    tr_r2 = 0.0
    if nr:
        parts = pivot_parts(pa)
        a_r = math.sqrt(nr / (nr - 1)) / pa.ref_count.sum()
        tr_r2 = _unbiased_tr2(a_r * a_r * parts.d_rr[-1], nr)
    ra0, rb0 = _rho(ma, ma.b2, dim), _rho(mb, mb.b2, dim)
    cross_yy = float(ma.yr @ mb.yr)
    s_aa = 4.0 * (ra0 * ra0 * ma.q + ra0 * ma.prior_c) + 2.0 * ma.tr2_x + 4.0 * ma.tr_rx + 2.0 * tr_r2
    s_bb = 4.0 * (rb0 * rb0 * mb.q + rb0 * mb.prior_c) + 2.0 * mb.tr2_x + 4.0 * mb.tr_rx + 2.0 * tr_r2
    s_ab = 4.0 * ra0 * rb0 * cross_yy + 2.0 * tr_r2
    den = s_aa + s_bb - 2.0 * s_ab
    w_a, w_b = ((s_aa - s_ab) / den, (s_bb - s_ab) / den) if den > 0 else (0.5, 0.5)

    def t_quantiles(theta: float, alpha: float, t_fac: float) -> tuple[float, float]:
        delta = theta - est
        ra, rb = _rho(ma, ma.b2 + w_a * delta, dim), _rho(mb, mb.b2 - w_b * delta, dim)
        sa, sb = math.sqrt(ra), math.sqrt(rb)
        x = (2.0 * t_fac * (ra * la1 + sa * la2 - rb * lb1 - sb * lb2) + quad) / dim
        ca, cb = np.array([ra, sa, 1.0]), np.array([rb, sb, 1.0])
        cr = np.array([ra, sa, -rb, -sb, 1.0])
        s_lin = g_a @ ca @ ca + g_b @ cb @ cb + (g_r @ cr @ cr if nr else 0.0)
        s = np.sqrt(np.maximum(4.0 * s_lin / dim**2 + v_quad, 1e-300))
        t = x / s
        lo, hi = np.quantile(t, [alpha, 1.0 - alpha], method="inverted_cdf")
        return float(lo), float(hi)

    def end(sign: float, alpha: float, t_fac: float) -> float:
        def outside(theta: float) -> bool:
            lo, hi = t_quantiles(theta, alpha, t_fac)
            u = (est - theta) / s_obs
            return u > hi if sign < 0 else u < lo

        return _end(outside, est, sign * 2.0 * s_obs, 60, steps)

    out = []
    for level in levels:
        alpha = (1.0 - level) / 2.0
        t_fac = 1.0
        if t_widen and not wishart:
            t_fac = float(welch_t(lin_parts, 1.0 - alpha)[0]) / float(scipy.stats.norm.ppf(1.0 - alpha))
        out.append(Estimate(float(est), float(end(-1.0, alpha, t_fac)), float(end(1.0, alpha, t_fac)), float(s_obs)))
    return out


__all__ = ["PairMoments", "contrast_bt", "contrast_bt_levels", "contrast_cv", "contrast_eb", "pair_moments"]
