"""scripts/coverage_floor_plugin.py: tests calibrated under the truth with the directions from the blocks.

With very many degrees of freedom the blocks give the covariance itself, so the plug-in Neyman-Pearson test
must come back to the floor and ``||y||^2``'s test to the threshold floor; with few, reading the estimated
directions must cost width."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import script_module

from biasvar.studies.coverage.floor import coverage_floor, family, threshold_floor


@pytest.fixture(scope="module")
def plugin():
    return script_module("coverage_floor_plugin")


@pytest.fixture(scope="module")
def setting():
    s = np.array([1.0, 0.6] + [0.2] * 6 + [0.02] * 4)
    fl = coverage_floor(s, np.zeros(len(s)), 1.0, family(s), samples=4000, ratio=1.0, refine=0, mixtures=True,
                        fit=1000)
    thr, _ = threshold_floor(s, np.zeros(len(s)), 1.0, family(s), fl.grid, samples=20000)
    row = {"model": "toy", "reference": "exact", "n": 1, "grid": fl.grid.tolist(), "beta": fl.beta.tolist(),
           "floor": fl.floor, "threshold_floor": thr, "narrowest_covering": fl.floor}
    return s, row


def test_with_the_covariance_known_the_plug_in_tests_are_the_floors(plugin, setting):
    s, row = setting
    out = plugin.one(s, 1.0, row, df=20000, draws=2000, gammas=(1.0,), seed=0)["over_floor"]
    assert abs(out["NP^"] - 1.0) < 0.06, out
    assert abs(out["T"] - row["threshold_floor"] / row["floor"]) < 0.06, out


def test_estimated_directions_cost_width(plugin, setting):
    s, row = setting
    many = plugin.one(s, 1.0, row, df=20000, draws=1500, gammas=(1.0,), seed=1)["over_floor"]
    few = plugin.one(s, 1.0, row, df=8, draws=1500, gammas=(1.0,), seed=1)["over_floor"]
    assert few["NP^"] > many["NP^"] + 0.1, (few, many)
    assert abs(few["T"] - many["T"]) < 0.06  # ||y||^2 does not read the directions
