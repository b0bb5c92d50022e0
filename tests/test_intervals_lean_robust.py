"""The lean-robust candidates (biasvar/stats/intervals/lean_robust.py): the split and the minimax over prior
powers move the ends the way their docstring says, and with the central split and gauss-eb's power alone the
interval is gauss-eb's; scripts/coverage_floor_methods.py reports the ends it kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import script_module, script_refused

from biasvar.stats.intervals.gauss_eb import GAUSS_PRIOR_POWER, GaussModel, gauss_eb_interval
from biasvar.stats.intervals.lean import alignment_of
from biasvar.stats.intervals.lean_robust import (
    LEAN_ALIGNMENTS,
    MINIMAX_POWERS,
    eb_split_interval,
    extreme_quantile,
    lean_interval,
    lean_profiles,
    minimax_interval,
)

DRAWS = 4000


def model(seed: int, bias: float) -> tuple[GaussModel, float]:
    """A GaussModel of a pair with a decaying spectrum of rank 30 and an offset ``bias`` times the noise."""
    rng = np.random.default_rng(seed)
    lam = np.sort(rng.gamma(1.0, 1.0, 30) * np.arange(1, 31) ** -1.2)[::-1]
    y = rng.standard_normal(30) + bias * np.sqrt(lam.max() / lam) * (np.arange(30) < 2)
    dim = 200.0
    est = (float(y @ (lam * y)) - float(lam.sum())) / dim
    return GaussModel(lam, y, 0.3, 0.9, 0.01, dim - 30, dim), est


@pytest.mark.parametrize("seed, bias", [(0, 0.0), (1, 0.0), (2, 2.0), (3, 5.0)])
def test_central_split_with_gauss_ebs_power_is_gauss_eb(seed, bias):
    m, est = model(seed, bias)
    want = gauss_eb_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS)
    got = eb_split_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS, (GAUSS_PRIOR_POWER,), 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed, bias", [(0, 0.0), (2, 2.0), (3, 5.0)])
def test_the_split_moves_both_ends_down(seed, bias):
    m, est = model(seed, bias)
    central = eb_split_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS, split=0.5)
    split = eb_split_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS, split=0.8)
    assert split[1] < central[1] and split[0] < central[0]


@pytest.mark.parametrize("seed, bias", [(0, 0.0), (1, 0.0), (2, 2.0), (3, 5.0)])
def test_minimax_holds_each_powers_interval(seed, bias):
    m, est = model(seed, bias)
    mm = minimax_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS)
    widths = []
    for p in MINIMAX_POWERS:
        lo, hi = eb_split_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS, (p,))
        tol = 1e-6 * (hi - lo)
        assert mm[0] <= lo + tol and hi <= mm[1] + tol
        widths.append(hi - lo)
    assert mm[1] - mm[0] < sum(widths)  # not a union of disjoint pieces: the extreme quantile, per end


def test_extreme_quantile_takes_the_extreme_member_per_end():
    dev = np.stack([np.linspace(-1, 1, 1001), 2 * np.linspace(-1, 1, 1001)], axis=1)
    assert extreme_quantile(dev, 0.025, 0.025, 0.8) == pytest.approx(2 * np.quantile(dev[:, 0], 0.04))
    assert extreme_quantile(dev, 0.975, 0.025, 0.8) == pytest.approx(2 * np.quantile(dev[:, 0], 0.99))


def test_lean_profiles_reach_the_family_or_fall_back():
    lam = np.arange(1, 41, dtype=float) ** -1.0
    profiles = lean_profiles(lam)
    reach = [a for a in LEAN_ALIGNMENTS if alignment_of(np.eye(40)[39], lam) < a < alignment_of(np.eye(40)[0], lam)]
    assert len(profiles) == len(reach) > 3
    for a, w in zip(reach, profiles, strict=True):
        assert alignment_of(w, lam) == pytest.approx(a, rel=1e-6) and w.sum() == pytest.approx(1.0)
    flat = lean_profiles(np.full(5, 2.0))
    assert len(flat) == 1 and np.allclose(flat[0], 0.2)


def test_lean_interval_covers_more_leans_than_gauss_eb_near_zero():
    """gauss-lr takes the most aligned profile at the upper end: near b2 = 0 its upper end is above gauss-eb's
    with the same split (a check that the worst case over the leans is taken, not the first profile)."""
    m, est = model(0, 0.0)
    lr = lean_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS)
    one = eb_split_interval(m, est, 0.025, 1.05, np.random.default_rng(7), DRAWS, (1.0,))
    assert lr[1] > one[1]


@pytest.fixture(scope="module")
def script():
    return script_module("coverage_floor_methods")


@pytest.mark.parametrize("argv, says", [
    (["--methods", "nope"], "unknown method"),
    (["--methods", "gauss-eb-s", "--models", "nope"], "unknown method or model 'nope'"),
    (["--methods", "gauss-eb-s", "--pairs", "401"], "hold 400 pairs"),
])
def test_floor_methods_bad_input_is_one_line(script, tmp_path, capsys, argv, says):
    assert says in script_refused(script, [*argv, "--out", str(tmp_path)], capsys)


def test_floor_methods_reports_the_ends_it_kept(script, tmp_path):
    out = tmp_path / "fm"
    assert script.main(["--models", "toy-quartic", "--methods", "gauss-eb-s", "--pairs", "6", "--out", str(out)]) == 0
    doc = json.loads((out / "floor-methods.json").read_text())
    for row in doc["rows"]:
        raw = np.load(out / "raw" / f"toy-quartic-{row['setting']}.npz")
        lo, hi = raw["gauss-eb-s:low"], raw["gauss-eb-s:high"]
        assert len(lo) == 6
        cell = row["methods"]["gauss-eb-s"]
        assert cell["coverage"] == pytest.approx(np.mean((lo <= 0) & (0 <= hi)))
        clipped = np.mean(np.maximum(hi, 0) - np.maximum(lo, 0))
        assert cell["over_floor"] == pytest.approx(clipped / row["floor"])
        stored = raw["gauss-eb:high"]  # the stored method's ends are those of the committed study's first pairs
        assert np.array_equal(stored, np.load(script.RESULTS / "floor-spectrum" / "raw" /
                                              f"toy-quartic-{row['setting']}.npz")["gauss-eb:high"][:6])
    assert "gauss-eb-s" in (out / "floor-methods.md").read_text()
