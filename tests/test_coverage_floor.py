"""Pratt's floor (biasvar/studies/coverage/floor.py): its parts against closed forms, and the bound against a
method known to be valid for the family."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, special, stats

from biasvar.studies.coverage.floor import (
    coverage_floor,
    family,
    gauss_setting,
    groups_of,
    log_iv,
    log_ncx2_ratio,
    mixture_bound,
    threshold_floor,
)


@pytest.mark.parametrize("k", [1, 2, 7, 64, 400])
@pytest.mark.parametrize("nc", [0.05, 3.0, 80.0])
def test_density_ratio_is_the_noncentral_chi_square_over_the_central(k, nc):
    x = np.array([0.02, 0.7, 3.0, 12.0, 90.0, 700.0])
    want = stats.ncx2.logpdf(x, k, nc) - stats.chi2.logpdf(x, k)
    ok = np.isfinite(want)
    np.testing.assert_allclose(log_ncx2_ratio(x, k, nc)[ok], want[ok], rtol=1e-6, atol=1e-6)
    assert np.all(log_ncx2_ratio(x, k, 0.0) == 0.0)


def test_bessel_log_at_large_order_matches_scipy():
    t = np.array([0.5, 5.0, 50.0, 500.0])
    for nu in (30.0, 80.0, 300.0):
        with np.errstate(divide="ignore"):
            want = np.log(special.ive(nu, t)) + t
        ok = np.isfinite(want)
        np.testing.assert_allclose(log_iv(nu, t)[ok], want[ok], rtol=1e-5, atol=1e-5)


def test_bessel_log_where_scaled_bessel_underflows():
    t = np.array([1e-20, 1e-9])
    out = log_iv(20.0, t)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, 20.0 * np.log(t / 2.0) - special.gammaln(21.0), rtol=1e-12)


def test_groups_cover_every_coordinate_once_within_the_ratio():
    s = np.random.default_rng(0).uniform(0.01, 1.0, 300)
    groups = groups_of(s, 1.2)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(300))
    for g in groups:
        assert s[g].max() <= 1.2 * s[g].min() + 1e-15


def _one_coordinate_floor(grid):
    """y ~ N(m, 1), c = m^2, the sign unknown: the Neyman-Pearson event at b2 = 0 is {|y| >= k}."""
    def beta(c):
        if c == 0:
            return 1.0
        r = np.sqrt(c)
        k = optimize.brentq(lambda k: stats.norm.sf(k - r) + stats.norm.cdf(-k - r) - 0.93, 0.0, 50.0)
        return 2.0 * stats.norm.sf(k)
    return np.trapezoid([beta(c) for c in grid], grid)


def test_one_coordinate_floor_is_the_closed_form():
    f = coverage_floor(np.array([1.0]), np.array([0.0]), 1.0, [np.array([1.0])], samples=20000, refine=0)
    want = _one_coordinate_floor(f.grid)
    assert abs(f.floor - want) < 0.03 * want
    assert 4.5 < want < 5.5  # about 5 noise variances: the bound is not trivial


def test_one_coordinate_floor_of_mixtures_is_the_closed_form_with_its_error():
    """One member: the mixture search has nothing to mix, and its bound (fresh draws) is the closed form."""
    f = coverage_floor(np.array([1.0]), np.array([0.0]), 1.0, [np.array([1.0])], samples=20000, refine=0,
                       mixtures=True, fit=2000)
    want = _one_coordinate_floor(f.grid)
    assert 0 < f.se < 0.01 * want
    assert abs(f.floor - want) < max(4 * f.se, 0.01 * want)


def test_the_floor_is_reached_by_the_neyman_pearson_set_of_one_profile():
    """With one bias profile (signs unknown) the set {c : log dQ_c/dP_0 (y) >= k_c} covers every Q_c with chance
    0.93 and its mean length at b2 = 0 is the floor: rebuilt here with other code and other draws."""
    s = np.array([1.0, 0.6, 0.35, 0.2, 0.1, 0.05])
    w = family(s, (1.2,))[0]
    f = coverage_floor(s, np.zeros(6), 1.0, [w], samples=6000, ratio=1.0, refine=0)
    rng = np.random.default_rng(11)

    def log_lr(z, mu):  # z [N, r] in noise units
        a = np.abs(z * mu)
        return np.sum(a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0), axis=1) - 0.5 * float(mu @ mu)

    z0 = rng.standard_normal((6000, 6))
    inside, cover = [], []
    for c in f.grid:
        mu = np.sqrt(c * w / s)
        zq = mu * rng.choice([-1.0, 1.0], (6000, 6)) + rng.standard_normal((6000, 6))
        k = np.quantile(log_lr(zq, mu), 0.07)
        inside.append(np.mean(log_lr(z0, mu) >= k))
        zq2 = mu * rng.choice([-1.0, 1.0], (6000, 6)) + rng.standard_normal((6000, 6))
        cover.append(np.mean(log_lr(zq2, mu) >= k))
    length = np.trapezoid(inside, f.grid)
    assert abs(length - f.floor) < 0.04 * f.floor
    assert 0.915 < min(cover[1:]) and max(cover[1:]) < 0.945


def _union_interval(t_obs, s, shapes, thetas, rng, draws=3000):
    """An interval valid for every profile of ``shapes`` (known noise ``s``): every theta whose central 95%
    of T = ||y||^2 - sum s, under some profile at that size, holds the observed T (Berger-Boos union)."""
    keep = np.zeros((len(t_obs), len(thetas)), dtype=bool)
    z = rng.standard_normal((draws, len(s)))
    for j, th in enumerate(thetas):
        for w in shapes:
            t = np.sum((np.sqrt(th * w) + np.sqrt(s) * z) ** 2, axis=1) - s.sum()
            lo, hi = np.quantile(t, [0.025, 0.975])
            keep[:, j] |= (lo <= t_obs) & (t_obs <= hi)
    step = thetas[1] - thetas[0]
    return keep.sum(1) * step  # its length at or above 0 (thetas from 0)


def test_a_method_valid_for_the_family_is_not_narrower_than_the_floor():
    s = np.array([1.0, 0.5, 0.3, 0.2, 0.1, 0.05])
    shapes = family(s, (0.5, 1.0, 2.0))
    f = coverage_floor(s, np.zeros(6), 1.0, shapes, samples=4000)
    rng = np.random.default_rng(3)
    y = np.sqrt(s) * rng.standard_normal((1500, 6))
    t_obs = np.sum(y * y, axis=1) - s.sum()
    width = float(np.mean(_union_interval(t_obs, s, shapes, np.linspace(0.0, 12.0, 241), rng)))
    assert f.floor <= width
    # an interval that is too narrow for the family falls below it: T +- 1 sd, clipped at 0
    sd = np.sqrt(2.0 * np.sum(s * s))
    narrow = np.mean(np.maximum(t_obs + sd, 0.0) - np.maximum(t_obs - sd, 0.0))
    assert narrow < f.floor


def test_gauss_setting_uses_the_pair_s_noise_and_the_model_s_bias():
    from biasvar.studies.coverage.gauss_kind import gauss_tables

    t = gauss_tables(rank=50, decay=1.0, align=1.0, seed=1)
    s, truth = gauss_setting(t, "zgr", "rf(M=4)", 100)
    np.testing.assert_allclose(s, (t.lam + t.lam_ref) / 100)
    np.testing.assert_allclose(truth.sum() / t.dim, t.truth["zgr"])
    s0, truth0 = gauss_setting(t, "rf(M=4)", "exact", 100)
    np.testing.assert_allclose(s0, t.lam_ref / 100)
    assert truth0.sum() == 0


def _two_coordinates(c: float):
    """``P``: two independent chi-square(1) draws; member ``i``: coordinate ``i`` noncentral with ``c``."""
    def log_ratios(x):
        return np.stack([log_ncx2_ratio(x[:, 0], 1, c), log_ncx2_ratio(x[:, 1], 1, c)])

    def draw_q(i, r, n):
        x = r.chisquare(1, (n, 2))
        x[:, i] = r.noncentral_chisquare(1, c, n)
        return x

    return log_ratios, lambda r, n: r.chisquare(1, (n, 2)), draw_q


def test_mixture_bound_finds_the_least_favourable_mixture_of_a_symmetric_pair():
    """Two members, a bias of size c on one coordinate or the other: by symmetry the least-favourable mixture
    is the even one. Its Neyman-Pearson chance under P, computed here with scipy's densities and other draws,
    is what the bound must find; a single member's bound is far below it, and a test valid for both members
    (the sum of the two coordinates) is not narrower than it."""
    c, level = 6.0, 0.93
    log_ratios, draw_p, draw_q = _two_coordinates(c)
    value, se, w = mixture_bound(log_ratios, draw_p, draw_q, 2, level=level, fit=2000, check=40000,
                                 rng=np.random.default_rng(1))
    np.testing.assert_allclose(w, [0.5, 0.5], atol=0.05)
    rng = np.random.default_rng(2)
    n = 200_000

    def ratio(x, g):
        return stats.ncx2.pdf(x[:, g], 1, c) / stats.chi2.pdf(x[:, g], 1)

    xq = np.vstack([draw_q(0, rng, n // 2), draw_q(1, rng, n // 2)])
    xp = draw_p(rng, n)
    mixed = np.mean(0.5 * (ratio(xp, 0) + ratio(xp, 1)) >= np.quantile(0.5 * (ratio(xq, 0) + ratio(xq, 1)), 1 - level))
    assert abs(value - mixed) < 4 * se + 0.003, (value, se, mixed)
    single = np.mean(ratio(xp, 0) >= np.quantile(ratio(xq[: n // 2], 0), 1 - level))
    assert single < value - 0.08
    valid = np.mean(xp.sum(axis=1) >= np.quantile(xq.sum(axis=1), 1 - level))  # covers each member with 0.93
    assert valid >= value - 3 * se


def test_threshold_floor_with_one_coordinate_is_the_closed_form():
    """One coordinate: T's threshold test is the Neyman-Pearson test, so the two floors are the closed form."""
    grid = np.linspace(0.0, 14.0, 57)
    floor, held = threshold_floor(np.array([1.0]), np.array([0.0]), 1.0, [np.array([1.0])], grid, samples=40000)
    want = _one_coordinate_floor(grid)
    assert abs(floor - want) < 0.02 * want
    want_held = stats.chi2.sf(stats.ncx2.ppf(0.07, 1, grid[1:]), 1)
    np.testing.assert_allclose(held[1:], want_held, atol=0.025)  # the quantile's own error


def test_threshold_floor_is_above_the_neyman_pearson_floor_where_the_profiles_differ():
    """Two profiles, one leaning onto the strongest coordinates, one spread over the many weak ones: a test
    that sees only ||y||^2 must cover both and is set by the leaning one (T's spread is widest there); the
    Neyman-Pearson floor sees the coordinates and is lower; the spread profile alone asks much less."""
    s = np.array([1.0, 0.6] + [0.2] * 20 + [0.02] * 5)
    shapes = family(s, (0.25, 2.5))
    assert len(shapes) == 2
    f = coverage_floor(s, np.zeros(len(s)), 1.0, shapes, samples=6000, ratio=1.0, refine=0)
    both, _ = threshold_floor(s, np.zeros(len(s)), 1.0, shapes, f.grid, samples=20000)
    spread, _ = threshold_floor(s, np.zeros(len(s)), 1.0, shapes[:1], f.grid, samples=20000)
    leaning, _ = threshold_floor(s, np.zeros(len(s)), 1.0, shapes[1:], f.grid, samples=20000)
    assert both > 1.08 * f.floor
    assert spread < 0.6 * both
    assert abs(leaning - both) < 0.02 * both
