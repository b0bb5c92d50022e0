"""The multi-model coverage study's machinery (biasvar/studies/coverage/multi.py): the per-setting summary,
the CI gate's criteria, resuming from the per-pair files, and a whole (tiny) run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biasvar.studies.coverage import multi
from biasvar.studies.coverage.tables import outcome_tables

TOY = next(m for m in multi.MODELS if m.name == "toy-quartic")


def _raw(ends: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for m, (lo, hi) in ends.items():
        out[f"{m}:low"], out[f"{m}:high"] = np.asarray(lo, float), np.asarray(hi, float)
    return out


def test_summary_counts_misses_and_compares_with_the_narrowest_covering_method():
    truth = 1.0
    lo = np.r_[np.zeros(95), np.full(3, 1.5), np.zeros(2)]  # 3 misses above the truth's side: truth below low
    hi = np.r_[np.full(95, 2.0), np.full(3, 2.0), np.full(2, 0.5)]  # 2 misses: truth above high
    narrow = (np.full(100, 0.9), np.full(100, 1.05))  # covers all, width 0.15
    short = (np.full(100, 1.01), np.full(100, 1.02))  # covers none, the narrowest of all
    rows = multi.summarize_setting(_raw({"a": (lo, hi), "b": narrow, "c": short}), truth, ("a", "b", "c"), 10)
    a, b, c = rows
    assert (a["covered"], a["miss_below"], a["miss_above"]) == (95, 3, 2)
    assert b["coverage"] == 1.0 and c["coverage"] == 0.0
    assert b["width_vs_narrowest"] == pytest.approx(1.0)  # c does not cover: not the yardstick
    assert a["width_vs_narrowest"] == pytest.approx(np.mean(hi - lo) / 0.15)


@pytest.mark.parametrize(("covered", "width", "fails"), [
    (95, 1.10, []), (95, 1.20, ["width"]), (85, 1.0, ["coverage"]),
    (100, 1.6, ["width"]),  # 100 of 100: its Wilson interval reaches down to 0.963, so only the width tells
    (92, 1.0, []),  # 0.92 of 100: its Wilson interval reaches 0.93
])
def test_the_gate_checks_coverage_and_width(covered, width, fails):
    truth, n = 1.0, 100
    hit = np.arange(n) < covered
    base = 0.2  # the reference method's width; it covers all
    lo = np.where(hit, 1.0 - width * base / 2, 1.0 + 0.01)
    hi = lo + width * base
    rows = multi.summarize_setting(_raw({"m": (lo, hi), "ref": (np.full(n, 0.9), np.full(n, 1.1))}), truth,
                                   ("m", "ref"), 10)
    got = multi.gate_failures(rows, "m")
    assert [f.split()[0] for f in got] == fails, got


@pytest.fixture(scope="module")
def toy_tables():
    return outcome_tables(TOY.problem(), list(multi.SPECS))


def test_a_setting_resumes_from_its_file_and_extends_to_more_pairs(tmp_path, toy_tables, monkeypatch):
    st, path = multi.MSetting("zgr", "exact", 64, 8), tmp_path / "s.npz"
    first = multi.run_setting(path, toy_tables, TOY, 0, st, ["jackknife-t"], 4, 50)
    assert len(first["jackknife-t:low"]) == 4 and path.exists()
    seen = []
    real = multi._interval

    def spy(pg, method, rng, n_resamples):
        seen.append(method)
        return real(pg, method, rng, n_resamples)

    monkeypatch.setattr(multi, "_interval", spy)
    more = multi.run_setting(path, toy_tables, TOY, 0, st, ["jackknife-t", "pivot"], 6, 50)
    assert seen.count("pivot") == 6 and seen.count("jackknife-t") == 2  # only what was missing
    np.testing.assert_array_equal(more["jackknife-t:low"][:4], first["jackknife-t:low"])
    np.testing.assert_array_equal(more["b2"][:4], first["b2"])
    fresh = multi.run_setting(tmp_path / "f.npz", toy_tables, TOY, 0, st, ["jackknife-t"], 6, 50)
    np.testing.assert_array_equal(fresh["b2"], more["b2"])  # the same draws however they were reached
    np.testing.assert_array_equal(fresh["jackknife-t:high"], more["jackknife-t:high"])  # analytic: no rng


def test_a_tiny_study_runs_and_writes_its_json_and_page(tmp_path):
    settings = (multi.MSetting("rf(M=4)", "exact", 32, 4), multi.MSetting("zgr", "rf(M=4)", 32, 4))
    doc = multi.run_study(tmp_path, ["jackknife-t", "pivot"], pairs=5, contrast_pairs=5, n_resamples=50,
                          models=[TOY], settings=settings)
    assert len(doc["rows"]) == 4 and {r["true_b2"] for r in doc["rows"]} == {0.0, doc["models"][0]["true_b2"]["zgr"]}
    assert set(doc["verdict"]) == {"tune"} and doc["verdict"]["tune"]["pivot"]["settings"] == 2
    assert len(doc["contrasts"]) == len(multi.CONTRASTS)
    multi.write_json(doc, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text())["pairs"] == 5
    page = multi.to_markdown(doc)
    assert "| toy-quartic | `zgr` | rf(M=4) | 32 | 4 |" in page
