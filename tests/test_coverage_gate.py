"""CI gate on the width as well as the coverage of the default b2 interval, near the noise floor, on a
model the interval was not tuned on (``vae-cat-s7`` of the multi-model study, a holdout model: a
categorical VAE of 3 variables x 4 categories, all parameters; ZGR against the exact gradient, n = 1024
in 32 blocks, b2 about 2.3 V/n), with exact truth (``biasvar/studies/coverage/tables.py``).

The gate (:func:`biasvar.studies.coverage.multi.gate_failures`): the Wilson 95% interval of the coverage
over 250 pairs must meet [0.93, 0.97], and the mean width must be at most 1.15 x that of the narrowest
method covering >= 0.93 here (the default, pivot, jackknife-t). The default's own intervals made 1.5x wider
about the estimate, or shrunk about it until it covers 85%, must fail it. gauss-eb, the default, fails it
by its width (1.27x the narrowest covering width in the committed study, coverage 1.000): the test that
the default passes is an expected failure (strict) until a default passes both this gate and the
real-VAE one (tests/test_coverage_real.py), which gauss-fit, passing this one, does not (0.87 there); nor
do the candidates of issue 24 (biasvar/stats/intervals/candidates.py, results/coverage/candidates-real.md).
Seeds from 2,000,000: no pair of the study. (~25 s of one CPU.)
"""

from __future__ import annotations

import numpy as np
import pytest

from biasvar.stats.intervals import DEFAULT_METHOD
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.tables import outcome_tables

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = 250
MODEL = next(m for m in multi.MODELS if m.name == "vae-cat-s7")
SETTING = multi.MSetting("zgr", "exact", 1024, 32)
WIDE = 1.5
REFERENCES = ("pivot", "jackknife-t")


@pytest.fixture(scope="module")
def gate():
    tab = outcome_tables(MODEL.problem(), ["zgr"])
    truth = tab.truth["zgr"]
    raw: dict[str, np.ndarray] = {}
    est, var = [], []
    methods = dict.fromkeys((DEFAULT_METHOD, "gauss-eb", "gauss-fit", *REFERENCES))
    for i in range(PAIRS):
        rng = np.random.default_rng((MODEL.seed, 2_000_000 + i))
        pg = tab.pair(tab.run(SETTING.spec, SETTING.n, SETTING.blocks, rng), None)
        b2, v, _ = (a[-1] for a in multi.eq16_of(pg))
        est.append(b2)
        var.append(v / SETTING.n)
        for m in methods:
            raw.setdefault(m, []).append(multi._interval(pg, m, np.random.default_rng((i, 1)), 1000))
    ends = {m: np.array(v) for m, v in raw.items()}
    return {"truth": truth, "est": np.array(est), "v_n": float(np.mean(var)), "ends": ends}


def _rows(g: dict, method: str, ends: np.ndarray) -> list[dict]:
    raw = {f"{method}:low": ends[:, 0], f"{method}:high": ends[:, 1]}
    for m in REFERENCES:
        raw[f"{m}:low"], raw[f"{m}:high"] = g["ends"][m][:, 0], g["ends"][m][:, 1]
    return multi.summarize_setting(raw, g["truth"], (method, *REFERENCES), SETTING.n)


def _scaled(g: dict, s: float) -> np.ndarray:
    lo, hi = g["ends"][DEFAULT_METHOD][:, 0], g["ends"][DEFAULT_METHOD][:, 1]
    return np.c_[g["est"] - s * (g["est"] - lo), g["est"] + s * (hi - g["est"])]


@pytest.mark.slow
def test_the_setting_is_near_the_noise_floor_on_a_holdout_model(gate):
    assert MODEL.role == "holdout"
    assert 1.0 < gate["truth"] / gate["v_n"] < 4.0  # b2 a few V/n
    # Eq. 16 is unbiased: its mean over the pairs is the true b2
    assert abs(gate["est"].mean() - gate["truth"]) < 4 * gate["est"].std(ddof=1) / np.sqrt(PAIRS)


@pytest.mark.slow
@pytest.mark.xfail(DEFAULT_METHOD == "gauss-eb", strict=True,
                   reason="issue 24: gauss-eb is ~1.2x the narrowest covering width here (coverage ~1.0); "
                          "gauss-fit passes this gate but covers 0.87 on the real VAE (tests/test_coverage_real.py)")
def test_the_default_interval_passes_the_gate(gate):
    assert multi.gate_failures(_rows(gate, DEFAULT_METHOD, gate["ends"][DEFAULT_METHOD]), DEFAULT_METHOD) == []


@pytest.mark.slow
def test_a_default_made_1_5x_wider_fails_the_gate(gate):
    fails = multi.gate_failures(_rows(gate, "wide", _scaled(gate, WIDE)), "wide")
    assert any("width" in f for f in fails), fails


@pytest.mark.slow
@pytest.mark.parametrize("method", [DEFAULT_METHOD, *REFERENCES])
def test_an_interval_shrunk_to_85_percent_coverage_fails_the_gate(gate, method):
    lo, hi = gate["ends"][method][:, 0], gate["ends"][method][:, 1]
    for s in np.arange(1.0, 0.2, -0.01):  # shrunk about the estimate until it covers 85% or less
        ends = np.c_[gate["est"] - s * (gate["est"] - lo), gate["est"] + s * (hi - gate["est"])]
        if np.mean((ends[:, 0] <= gate["truth"]) & (gate["truth"] <= ends[:, 1])) <= 0.85:
            break
    fails = multi.gate_failures(_rows(gate, "shrunk", ends), "shrunk")
    assert any("coverage" in f for f in fails), fails


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gauss-eb", "gauss-fit", *REFERENCES])
def test_the_gate_fails_each_method_made_1_5x_wider(gate, method):
    lo, hi = gate["ends"][method][:, 0], gate["ends"][method][:, 1]
    ends = np.c_[gate["est"] - WIDE * (gate["est"] - lo), gate["est"] + WIDE * (hi - gate["est"])]
    assert multi.gate_failures(_rows(gate, "wide", ends), "wide") != []


@pytest.mark.slow
def test_gauss_eb_fails_the_gate_by_its_width(gate):
    fails = multi.gate_failures(_rows(gate, "gauss-eb", gate["ends"]["gauss-eb"]), "gauss-eb")
    assert any("width" in f for f in fails), fails
