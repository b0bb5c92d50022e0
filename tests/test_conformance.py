"""Issue 25, item 2: ``biasvar check-estimator`` passes every built-in estimator and fails deliberately
broken plug-ins on the check each one breaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from biasvar_cli.main import app
from typer.testing import CliRunner

from biasvar.conformance import FAIL, NA, PASS, Settings, check_estimator, passed, table
from biasvar.spec import FAMILIES, example

pytestmark = pytest.mark.usefixtures("one_thread")
BROKEN = str(Path(__file__).with_name("broken_estimators.py"))
FAST = Settings(outcome_draws=2000, unbiased_draws=3000, bias_draws=400, chunk_draws=8)
runner = CliRunner()


def rows_of(spec: str) -> dict[str, object]:
    return {r.name: r for r in check_estimator(spec, FAST)}


@pytest.mark.parametrize("spec", [example(name) for name in FAMILIES])
def test_every_builtin_passes(spec):
    rows = check_estimator(spec, FAST)
    assert passed(rows), table(spec, rows)
    by = {r.name: r for r in rows}
    assert by["chunking"].status == PASS and by["vmap = loop"].status == PASS
    if FAMILIES[spec.split("(")[0]].unbiased:
        assert by["unbiased"].status == PASS


@pytest.mark.parametrize("factory, broken", [
    ("biased", "unbiased"),
    ("wrong_noise", "outcomes"),
    ("not_reproducible", "chunking"),
    ("naive_softmax(t=0.5)", "finite logits"),
    ("naive_softmax", "finite t"),  # t a keyword of the factory: checked at its extremes, unnamed
])
def test_a_broken_plugin_fails_the_check_it_breaks(factory, broken):
    rows = check_estimator(f"{BROKEN}:{factory}", FAST)
    by = {r.name: r for r in rows}
    assert by[broken].status == FAIL, table(factory, rows)
    assert not passed(rows)


def test_honest_plugins_pass_and_a_loop_only_one_says_why():
    assert passed(check_estimator(f"{BROKEN}:zgr_copy", FAST))
    rows = rows_of(f"{BROKEN}:one_hot_st")
    assert rows["vmap = loop"].status == NA and "not vmap-safe" in rows["vmap = loop"].detail
    assert rows["chunking"].status == PASS and "(loop)" in rows["chunking"].detail
    assert all(r.status != FAIL for r in rows.values())


def test_the_bias_rows_match_the_theory():
    """ZGR is unbiased where the loss is quadratic (Thm. 2) and biased where it is quartic; ST is biased."""
    zgr, st = rows_of("zgr"), rows_of("st")
    assert float(zgr["bias quadratic"].value) < 1e-12
    assert float(zgr["bias quartic"].value) > 1e-2 and float(st["bias quadratic"].value) > 1e-2


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=80, env={"COLUMNS": "80"})


def test_cli_table_fits_80_columns_and_exit_codes():
    ok = invoke("check-estimator", "zgr", "--n", "1000")
    assert ok.exit_code == 0, ok.output
    assert "outcomes" in ok.output and "pass: every check" in ok.output
    assert max(len(line) for line in ok.output.splitlines()) <= 80
    bad = invoke("check-estimator", f"{BROKEN}:biased", "--n", "2000")
    assert bad.exit_code == 1 and "FAIL" in bad.output, bad.output
    missing = invoke("check-estimator", "no_such_module_q:make")
    lines = [x for x in missing.output.splitlines() if x.strip()]
    assert missing.exit_code == 1 and len(lines) == 1 and "no_such_module_q" in lines[0], missing.output


def test_cli_in_a_subprocess(tmp_path):
    cli = [sys.executable, "-m", "biasvar_cli.main", "check-estimator"]
    out = subprocess.run([*cli, f"{BROKEN}:wrong_noise", "--n", "1000"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    line = [x for x in out.stdout.splitlines() if x.startswith("outcomes")][0]
    assert "FAIL" in line and "z " in line
