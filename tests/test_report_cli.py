"""``biasvar report`` and ``biasvar plot`` through CliRunner on run files written with the store API."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from biasvar_cli.main import app
from conftest import SNAP, fig_runs, write_run
from typer.testing import CliRunner

from biasvar import formats as F
from biasvar import report as R
from biasvar import store
from biasvar.stats.intervals import DEFAULT_METHOD

runner = CliRunner()
SPECS = ["rf(M=4)", "rf(M=4)", "zgr", "st", "gs(t=0.5)", "gs(t=2)", "gs-st(t=0.5)", "gr-mc(t=0.5,M=10)"]


def invoke(*args, width: int = 200):
    return runner.invoke(app, [str(a) for a in args], terminal_width=width)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runs")
    for r in fig_runs(SPECS, nb=6, bs=50):
        write_run(d, r)
    return d


def test_report_table_lists_every_run(runs_dir):
    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "100")
    assert r.exit_code == 0, r.output
    for spec in ("zgr", "st", "gs(t=0.5)", "gs(t=2)", "gs-st(t=0.5)", "gr-mc(M=10,t=0.5)", "rf(M=4) (ref)"):
        assert spec in r.output
    assert f"snapshot {SNAP[:12]}" in r.output and "Pareto" in r.output
    narrow = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "0", width=80)
    assert narrow.exit_code == 0 and "hidden at this width" in " ".join(narrow.output.split())


@pytest.mark.parametrize("width", [80, 100, 120, 60, 40])
def test_report_table_never_cuts_a_number_and_explains_only_shown_columns(runs_dir, width):
    """Issue 12, case 6: at 80 columns and in a pipe numbers were cut ("100…") and the Pareto column
    dropped while the caption still explained it."""
    from biasvar_cli.report_cmd import report_table
    from rich.console import Console

    rep = R.analyze_runs(runs_dir, n_resamples=100)
    out = Console(width=width, file=io.StringIO(), color_system=None)
    with out.capture() as cap:
        out.print(report_table(rep, width=width))
    text = cap.get()
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= width
    if width == 80:  # the CLI in a pipe: rich's default width
        r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "100")
        assert r.exit_code == 0 and "…" not in r.output, r.output
    flat = " ".join(text.split())
    for cells in F.table_rows(rep):
        for col in ("spec", "n", "b2 [95% CI]", "V [95% CI]", "MSE"):
            assert cells[col].split(" [")[0] in flat, (col, cells[col])
    if "Pareto: not dominated" in flat:
        assert any(line.rstrip().endswith("*") or line.rstrip().endswith("* Pareto") for line in text.splitlines())


def test_json_read_back_equals_the_table(runs_dir, tmp_path):
    out = tmp_path / "rep.json"
    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "100", "--bootstrap-seed", "3", "--format",
               "json", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output
    rep = F.report_from_json(out.read_text())
    assert rep == R.analyze_runs(runs_dir, n_resamples=100, seed=3)
    table = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "100", "--bootstrap-seed", "3")
    for cells in F.table_rows(rep):  # every value of the table is the JSON's, formatted
        for col in ("n", "MSE", "non-finite"):
            assert cells[col] in table.output
        for col in ("b2 [95% CI]", "V [95% CI]"):
            value, _, interval = cells[col].partition(" [")
            assert value in table.output and (not interval or "[" + interval in table.output)
    assert [p.name for p in tmp_path.iterdir()] == ["rep.json"]  # atomic write: no temporary left


def test_csv_and_markdown(runs_dir, tmp_path):
    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "50", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == len(SPECS) and {row["snapshot_hash"] for row in rows} == {SNAP}
    assert all(row["method"] == DEFAULT_METHOD and row["n_resamples"] == "50" for row in rows)
    md = tmp_path / "r.md"
    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "50", "--out", md)
    assert r.exit_code == 0 and md.read_text().count("\n| ") == len(SPECS) + 1


@pytest.mark.parametrize("method", ["jackknife-t", "gauss-eb", "gauss-fit"])
def test_other_methods(runs_dir, method):
    r = invoke("report", "--runs-dir", runs_dir, "--method", method, "--n-resamples", "50", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == len(SPECS) and all(row["method"] == method for row in rows)
    assert method in invoke("report", "--help").output


def test_exact_reference_and_groups(tmp_path):
    for run in fig_runs(["zgr", "st"], exact=True, nb=4, bs=20):
        write_run(tmp_path, run)
    r = invoke("report", "--runs-dir", tmp_path, "--reference", "exact", "--n-resamples", "50", "--groups")
    assert r.exit_code == 0, r.output
    assert "reference exact" in r.output and "per parameter group" in r.output and "p1" in r.output


def test_user_errors_are_one_line(runs_dir, tmp_path):
    r = invoke("report", "--runs-dir", tmp_path / "nope")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = invoke("report", "--runs-dir", runs_dir, "--reference", "exact")
    assert r.exit_code == 1 and "exact gradient" in r.output and "Traceback" not in r.output
    r = invoke("report", "--runs-dir", runs_dir, "--reference", "rf(M=2)")
    assert r.exit_code == 1 and "no run of the reference rf(M=2)" in r.output
    r = invoke("report", "--runs-dir", runs_dir, "--method", "nope")
    assert r.exit_code == 2
    # a run of another parameter set in the same snapshot folder
    mixed = tmp_path / "mixed"
    for run in fig_runs(["rf(M=4)", "zgr"], nb=3, bs=5):
        write_run(mixed, run)
    odd = fig_runs(["st"], nb=3, bs=5)[0]
    write_run(mixed, store.RunData(**{**odd.__dict__, "attrs": {**odd.attrs, "params_glob": "enc.*"}}))
    r = invoke("report", "--runs-dir", mixed)
    assert r.exit_code == 1 and "different parameter sets" in r.output


def test_plot_commands(runs_dir, tmp_path):
    out = tmp_path / "figs" / "f1.png"
    r = invoke("plot", "fig1", "--runs-dir", runs_dir, "--out", out, "--n-resamples", "50")
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 10_000 and out.with_suffix(".pdf").exists()
    assert "missing:" in r.output and "GR-MC(t, M=100)" in r.output
    rep_json = tmp_path / "rep.json"
    assert invoke("report", "--runs-dir", runs_dir, "--n-resamples", "50", "--format", "json",
                  "--out", rep_json).exit_code == 0
    r = invoke("plot", "pareto", "--report", rep_json, "--out", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    r = invoke("plot", "quant-unit", "--quant-n", "50", "--etas", "5", "--out", tmp_path / "b5.png")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b5.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "b5.pdf").exists()
    r = invoke("plot", "quant-unit", "--quant-n", "1")
    assert r.exit_code == 1 and "--quant-n >= 2" in r.output
    r = invoke("plot", "pareto", "--report", tmp_path / "none.json")
    assert r.exit_code == 1 and "cannot read report" in r.output


def test_a_100_block_run(tmp_path):
    """100 blocks (the engine's count for small problems): resampling weights and Gram forms scale, and
    the CLI's numbers are the library's."""
    for run in fig_runs(["rf(M=4)", "zgr"], nb=100, bs=5):
        write_run(tmp_path, run)
    r = invoke("report", "--runs-dir", tmp_path, "--n-resamples", "200", "--bootstrap-seed", "7",
               "--format", "json")
    assert r.exit_code == 0, r.output
    rep = F.report_from_json(r.output)
    assert rep == R.analyze_runs(tmp_path, n_resamples=200, seed=7)
    assert [(row.spec, row.role, row.n, row.n_blocks) for row in rep.rows] == [
        ("zgr", "test", 500, 100), ("rf(M=4)", "reference", 500, 100)]
    zgr = rep.row("zgr")
    assert zgr.b2.low < zgr.b2.value < zgr.b2.high and zgr.variance.low < zgr.variance.value < zgr.variance.high
    assert rep.n_resamples == 200 and rep.seed == 7 and rep.method == DEFAULT_METHOD
    table = invoke("report", "--runs-dir", tmp_path, "--n-resamples", "200", "--bootstrap-seed", "7")
    assert table.exit_code == 0 and F.fmt_estimate(zgr.b2).split(" [")[0] in table.output


def test_option_names_and_their_old_spellings(runs_dir, tmp_path):
    """--snapshot-id / --n-resamples / --bootstrap-seed, and the hidden old name --bootstrap give the same
    report; both spellings at once is a one-line error. The old --snapshot ID and --seed (bootstrap) are
    refused: --snapshot is a snapshot file and --seed the noise seed elsewhere."""
    new = invoke("report", "--runs-dir", runs_dir, "--snapshot-id", SNAP[:6], "--n-resamples", "40",
                 "--bootstrap-seed", "2", "--format", "json")
    old = invoke("report", "--runs-dir", runs_dir, "--snapshot-id", SNAP[:6], "--bootstrap", "40",
                 "--bootstrap-seed", "2", "--format", "json")
    assert new.exit_code == 0 and old.exit_code == 0, new.output + old.output
    rep = F.report_from_json(new.output)
    assert rep == F.report_from_json(old.output) and rep.n_resamples == 40 and rep.seed == 2
    other = F.report_from_json(invoke("report", "--runs-dir", runs_dir, "--n-resamples", "40", "--format",
                                      "json").output)
    assert other.seed == 0 and other.rows != rep.rows  # the bootstrap seed changes the intervals
    for gone in (["--snapshot", SNAP[:6]], ["--seed", "2"]):
        r = invoke("report", "--runs-dir", runs_dir, *gone)
        assert r.exit_code == 2 and f"No such option: {gone[0]}" in r.output, r.output
    both = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "40", "--bootstrap", "50")
    assert both.exit_code == 1 and "old name of --n-resamples" in both.output
    r = invoke("report", "--runs-dir", runs_dir, "--snapshot-id", "ffff")
    assert r.exit_code == 1 and "no runs of snapshot 'ffff'" in r.output
    help_text = invoke("report", "--help").output
    assert "--n-resamples" in help_text and "--bootstrap-seed" in help_text and "--snapshot-id" in help_text
    assert "--bootstrap " not in help_text and "--seed" not in help_text  # hidden aliases


def test_ls_takes_a_snapshot_id_prefix(runs_dir):
    r = invoke("ls", "--runs-dir", runs_dir, "--snapshot-id", SNAP[:5])
    assert r.exit_code == 0 and f"snapshot {SNAP[:12]}" in r.output and "gs-st(t=0.5)" in r.output
    r = invoke("ls", "--runs-dir", runs_dir, "--snapshot-id", "0000")
    assert r.exit_code == 0 and "no run files" in r.output


def test_report_contrast(runs_dir, tmp_path):
    """--contrast A,B (repeatable): a table after the report, in Markdown and JSON too; bad pairs: one line."""
    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "50", "--contrast", "gr-mc(M=10,t=0.5),zgr",
               "--contrast", "st,gs(t=2)")
    assert r.exit_code == 0, r.output
    assert "Paired contrasts" in r.output and "gr-mc(M=10,t=0.5)" in r.output and "- gs(t=2)" in r.output
    out = tmp_path / "c.json"
    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "0", "--contrast", "zgr,st", "--format", "json",
               "--out", out)
    assert r.exit_code == 0, r.output
    rep = F.report_from_json(out.read_text())
    (c,) = rep.contrasts
    assert (c.a, c.b) == ("zgr", "st") and c.b2.low is not None and c.b2.low < c.b2.value < c.b2.high
    assert c.b2.value == pytest.approx(rep.row("zgr").b2.value - rep.row("st").b2.value, rel=1e-9)
    for bad, msg in (("zgr", "two estimator specs"), ("zgr,darn", "no tested row"), ("zgr,nope", "unknown")):
        r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "0", "--contrast", bad)
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output


def test_report_says_how_many_draws_would_resolve_a_b2_near_zero(runs_dir, tmp_path):
    """One "b2 near 0" line for each tested row whose b2 interval holds 0 (the tested rf(M=4) at least)."""
    from biasvar.report.resolve import unresolved

    r = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "100", width=300)
    assert r.exit_code == 0, r.output
    out = invoke("report", "--runs-dir", runs_dir, "--n-resamples", "100", "--format", "json",
                 "--out", tmp_path / "r.json")
    assert out.exit_code == 0, out.output
    rep = F.report_from_json((tmp_path / "r.json").read_text())
    expected = unresolved(rep.rows)
    assert any(e.spec == "rf(M=4)" for e in expected)
    text = " ".join(r.output.split())  # the console wraps long lines
    assert text.count("b2 near 0:") == len(expected)
    for e in expected:
        assert f"b2 near 0: {e.line()}" in text, (e.line(), text[-600:])
