"""scripts/coverage_lean_check.py: bad input gets one line and exit 2; a small run writes its page, and the
coverage it reports is that of the ends it kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import script_module, script_refused


@pytest.fixture(scope="module")
def script():
    return script_module("coverage_lean_check")


@pytest.mark.parametrize("argv, says", [
    (["--model", "nope"], "unknown model"),
    (["--model", "toy-quartic", "--setting", "0"], "unbiased"),
    (["--model", "toy-quartic", "--lean", "50"], "out of reach"),
])
def test_bad_input_is_one_line(script, tmp_path, capsys, argv, says):
    assert says in script_refused(script, [*argv, "--out", str(tmp_path)], capsys)


def test_a_small_run_reports_the_coverage_of_its_ends(script, tmp_path):
    out = tmp_path / "lean"
    assert script.main(["--model", "toy-quartic", "--lean", "1.0", "--sizes", "2", "--pairs", "40",
                        "--methods", "pivot", "--out", str(out)]) == 0
    doc = json.loads((out / "lean-toy-quartic-1.json").read_text())
    raw = np.load(out / "raw" / "toy-quartic-lean1-x2.npz")
    lo, hi = raw["pivot:low"], raw["pivot:high"]
    assert len(lo) == 40
    truth = doc["rows"][0]["b2"]
    row = doc["rows"][0]["methods"]["pivot"]
    assert row["coverage"] == np.mean((lo <= truth) & (truth <= hi))
    assert (row["below"], row["above"]) == (int(np.sum(truth < lo)), int(np.sum(truth > hi)))
    assert 0.6 <= row["coverage"] <= 1.0  # a 95% interval, 40 pairs
    assert "| 2 |" in (out / "lean-toy-quartic-1.md").read_text()
