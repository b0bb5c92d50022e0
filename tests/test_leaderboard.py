"""``biasvar leaderboard``: the suite made bit for bit, the board, a new row (built-in or plug-in) with
its contrasts against ZGR and RF(4) equal to ``report --contrast`` on the same runs, one-line errors,
and the committed ``results/leaderboard.{json,md}`` (the Markdown is the rendering of the JSON)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from biasvar_cli.main import app
from conftest import one_line_error
from typer.testing import CliRunner

from biasvar import leaderboard as lb
from biasvar.leaderboard import render
from biasvar.report import analyze_runs
from biasvar.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = f"{ROOT / 'examples' / 'noisy_st.py'}:make(t=0.5)"
runner = CliRunner()

TINY = {
    "schema": 1, "name": "tiny", "seed": 0, "n": 64, "slow_n": 32, "max_cost": 50, "n_resamples": 200,
    "estimators": ["st(t=0.5)", "zgr", "rf(M=4)", "disarm"],
    "snapshots": [
        {"name": "toy", "title": "toy-cat", "model": "toy-cat", "options": {}, "reference": "exact", "params": None,
         "sizes": {"cpu": {"train": {"data": None, "estimator": "zgr", "epochs": 1, "steps_per_epoch": 3,
                                     "batch_size": 4, "lr": 0.01, "eval_batch_size": 4, "seed": 0}, "hash": None,
                           "measure": {"n": 48}}}},
        {"name": "vae", "title": "tiny vae", "model": "vae", "options": {"categories": 4, "vars": 2, "hidden": [8]},
         "reference": "rf(M=4)", "params": None,
         "sizes": {"cpu": {"train": {"data": "mnist-b", "estimator": "rf(M=4)", "epochs": 1, "steps_per_epoch": 2,
                                     "batch_size": 10, "lr": 0.001, "eval_batch_size": 20, "seed": 0},
                           "hash": None}}}],
}


def _width(out: str, *paths: Path) -> int:
    """The widest line of the output but those naming a file (paths are as long as the folders)."""
    return max(len(line) for line in out.splitlines() if not any(str(p) in line for p in paths))


def _ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    """A tiny suite: its snapshots made (hashes recorded), its board measured through the CLI."""
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    d = tmp_path_factory.mktemp("lb")
    suite = d / "suite.json"
    suite.write_text(json.dumps(TINY))
    _ok(runner.invoke(app, ["leaderboard", "snapshots", "--suite", str(suite), "--out", str(d / "snaps"),
                            "--data-dir", str(SHARED_DATA), "--record"]))
    out = _ok(runner.invoke(app, ["leaderboard", "board", "--suite", str(suite), "--snapshots", str(d / "snaps"),
                                  "--runs-dir", str(d / "runs"), "--out", str(d / "res" / "leaderboard.json")]))
    return d, suite, out


def test_snapshots_are_reproduced_bit_for_bit(tiny, tmp_path):
    from conftest import SHARED_DATA

    d, suite, _ = tiny
    recorded = {s["name"]: s["sizes"]["cpu"]["hash"] for s in json.loads(suite.read_text())["snapshots"]}
    assert all(len(h or "") == 64 for h in recorded.values()), recorded
    out = _ok(runner.invoke(app, ["leaderboard", "snapshots", "--suite", str(suite), "--out", str(tmp_path),
                                  "--data-dir", str(SHARED_DATA)]))  # made again: checked against the hashes
    assert "made" in out
    for name, h in recorded.items():
        assert (tmp_path / f"{name}-cpu.pt").read_bytes() != b""
        assert lb.suite.load_entry(lb.load_suite(suite).entry(name), lb.load_suite(suite), tmp_path).hash == h


def test_a_snapshot_of_another_hash_is_one_line(tiny, tmp_path):
    d, suite, _ = tiny
    raw = json.loads(suite.read_text())
    raw["snapshots"][0]["sizes"]["cpu"]["hash"] = "0" * 64
    bad = tmp_path / "suite.json"
    bad.write_text(json.dumps(raw))
    r = runner.invoke(app, ["leaderboard", "board", "--suite", str(bad), "--snapshots", str(d / "snaps"),
                            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "b.json"), "--only", "toy"])
    assert "the suite records 000000000000 for toy" in one_line_error(r)


def test_board_has_every_estimator_and_fits_80_columns(tiny):
    d, _, out = tiny
    board = lb.load_board(d / "res" / "leaderboard.json")
    assert _width(out, d) <= 80 and render.text_table(board) in out
    for s in board["snapshots"]:
        specs = {r["spec"] for r in s["rows"]}
        assert specs | set(s["skipped"]) == {"st(t=0.5)", "zgr", "rf(M=4)", "disarm"}, s["name"]
        assert "K = 2" in s["skipped"]["disarm"]  # K = 4 here
        st = next(r for r in s["rows"] if r["spec"] == "st(t=0.5)")
        assert set(st["vs"]) == {"zgr", "rf(M=4)"} and st["b2"][1] <= st["b2"][0] <= st["b2"][2]
        assert st["V_x_cost"] == [x * st["cost"] for x in st["V"]]
        assert {r["n"] for r in s["rows"]} == ({48} if s["name"] == "toy" else {64}) == {s["n"]}
    assert (d / "res" / "leaderboard.md").read_text() == render.markdown(board)


def _user_row(tiny, spec: str, runs: Path, *extra: str) -> tuple[str, dict]:
    d, suite, _ = tiny
    out = _ok(runner.invoke(app, ["leaderboard", "run", spec, "--suite", str(suite), "--board",
                                  str(d / "res" / "leaderboard.json"), "--snapshots", str(d / "snaps"),
                                  "--runs-dir", str(runs), *extra]))
    return out, lb.load_board(d / "res" / "leaderboard.json")


def test_a_plugin_row_with_contrasts_equal_to_report(tiny, tmp_path):
    """The new row's contrasts against ZGR and RF(4), from the committed stores plus the new run, equal
    ``report --contrast`` on the run files of all the runs (the board's and the new one) together."""
    d, _, _ = tiny
    out, board = _user_row(tiny, PLUGIN, tmp_path / "runs")
    assert _width(out, tmp_path, ROOT) <= 80
    canon = str(parse_spec(PLUGIN))
    assert out.count("> ") >= 2 and "- ZGR: b2" in out and "- RF(4): b2" in out
    for s in board["snapshots"]:
        sid = s["snapshot_id"]
        store = tmp_path / "runs" / sid / "gram-store.hdf5"
        assert str(store) in out
        # all the run files in one folder: the board's and the new one
        both = tmp_path / "all"
        shutil.copytree(d / "runs" / sid, both / sid)
        new = [f for f in (tmp_path / "runs" / sid).glob("*.h5") if not (both / sid / f.name).exists()]
        assert len(new) == 1, new  # the plug-in's run (the reference's file is the board's name)
        shutil.copy(new[0], both / sid / new[0].name)
        (both / sid / "gram-store.hdf5").unlink()
        rep = analyze_runs(both, snapshot=sid, reference=s["reference"], n_resamples=200, seed=0,
                           contrasts=[(canon, "zgr"), (canon, "rf(M=4)")])
        mine = analyze_runs(tmp_path / "runs", snapshot=sid, reference=s["reference"], n_resamples=200, seed=0,
                            contrasts=[(canon, "zgr"), (canon, "rf(M=4)")], store=store)
        for a, b in zip(rep.contrasts, mine.contrasts, strict=True):
            assert (a.a, a.b, a.b_seed) == (b.a, b.b, b.b_seed)
            for x, y in ((a.b2, b.b2), (a.variance, b.variance)):
                for u, v in ((x.value, y.value), (x.low, y.low), (x.high, y.high)):
                    assert v == pytest.approx(u, rel=1e-8, abs=1e-15)
        # `biasvar report --store <the copy> --contrast A,zgr`: the same numbers
        r = runner.invoke(app, ["report", "--store", str(store), "--runs-dir", str(tmp_path / "runs"),
                                "--reference", s["reference"], "--n-resamples", "200", "--contrast", f"{canon},zgr",
                                "--format", "json"])
        cli = json.loads(_ok(r))["contrasts"][0]
        assert cli["b2"]["value"] == pytest.approx(rep.contrasts[0].b2.value, rel=1e-8, abs=1e-15)
        assert cli["variance"]["high"] == pytest.approx(rep.contrasts[0].variance.high, rel=1e-8, abs=1e-15)
        # and the printed verdicts are those contrasts'
        zgr = next(c for c in rep.contrasts if c.b == "zgr")
        line = f"ZGR: b2 {render.est([zgr.b2.value, zgr.b2.low, zgr.b2.high])}"
        assert line in out, (line, out)
        shutil.rmtree(both)


def test_a_builtin_row_and_a_committed_one(tiny, tmp_path):
    out, _ = _user_row(tiny, "st(t=2)", tmp_path / "runs", "--only", "vae")
    assert "> st(t=2)" in out and "toy ·" not in out
    d, suite, _ = tiny
    r = runner.invoke(app, ["leaderboard", "run", "zgr", "--suite", str(suite), "--board",
                            str(d / "res" / "leaderboard.json"), "--snapshots", str(d / "snaps"),
                            "--runs-dir", str(tmp_path / "r2"), "--only", "toy"])
    assert "committed row of the board already" in one_line_error(r)


def test_the_reference_made_again_must_be_the_boards(tiny, tmp_path):
    """A reference run that differs from the board's (here: more draws than the board's) is refused."""
    d, suite, _ = tiny
    board = json.loads((d / "res" / "leaderboard.json").read_text())
    vae = next(s for s in board["snapshots"] if s["name"] == "vae")
    next(r for r in vae["rows"] if r["role"] == "reference")["n"] = 96
    board["snapshots"] = [vae]
    bad = tmp_path / "leaderboard.json"
    bad.write_text(json.dumps(board))
    shutil.copytree(d / "res" / "leaderboard", tmp_path / "leaderboard")
    args = ["leaderboard", "run", "st(t=2)", "--suite", str(suite), "--board", str(bad), "--snapshots",
            str(d / "snaps"), "--runs-dir", str(tmp_path / "runs")]
    assert "differs from the board's" in one_line_error(runner.invoke(app, args))
    # --rerun-baselines: ZGR and RF(4) sampled here; the row's contrasts are those of report on these runs
    out = _ok(runner.invoke(app, [*args, "--rerun-baselines"]))
    assert "> st(t=2)" in out and "sampled here, not the rows above" in out
    rep = analyze_runs(tmp_path / "runs", snapshot=vae["snapshot_id"], n_resamples=200, seed=0,
                       contrasts=[("st(t=2)", "zgr")])
    assert {(r.spec, r.seed, r.n) for r in rep.rows} == {("rf(M=4)", 0, 96), ("st(t=2)", 0, 64), ("zgr", 0, 64),
                                                          ("rf(M=4)", 1, 64)}
    c = rep.contrasts[0]
    assert f"ZGR: b2 {render.est([c.b2.value, c.b2.low, c.b2.high])}" in out


def test_a_board_without_its_stores(tiny, tmp_path):
    """The stores are not committed: without them a row is refused in one line, or (--rerun-baselines)
    contrasted against ZGR and RF(4) sampled here."""
    d, suite, _ = tiny
    board = json.loads((d / "res" / "leaderboard.json").read_text())
    board["snapshots"] = [s for s in board["snapshots"] if s["name"] == "toy"]
    bare = tmp_path / "leaderboard.json"
    bare.write_text(json.dumps(board))  # no stores beside it
    args = ["leaderboard", "run", "st(t=2)", "--suite", str(suite), "--board", str(bare), "--snapshots",
            str(d / "snaps"), "--runs-dir", str(tmp_path / "runs")]
    assert "is not here" in one_line_error(runner.invoke(app, args))
    out = _ok(runner.invoke(app, [*args, "--rerun-baselines"]))
    assert "> st(t=2)" in out and "sampled here" in out


@pytest.mark.parametrize(("spec", "says"), [("zgr(", "cannot parse"), ("no_such_family", "no_such_family"),
                                           ("no_such_file_xyz.py:make(t=1)", "no_such_file_xyz.py")])
def test_a_bad_spec_is_one_line(tiny, spec, says, tmp_path):
    d, suite, _ = tiny
    r = runner.invoke(app, ["leaderboard", "run", spec, "--suite", str(suite), "--board",
                            str(d / "res" / "leaderboard.json"), "--snapshots", str(d / "snaps"),
                            "--runs-dir", str(tmp_path)])
    assert says in one_line_error(r)
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_the_command_in_a_subprocess(tiny, tmp_path):
    d, suite, _ = tiny
    cli = [sys.executable, "-m", "biasvar_cli.main", "leaderboard", "run"]
    bad = subprocess.run([*cli, "zgr(", "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    err = [x for x in bad.stderr.splitlines() if x.strip()]
    assert bad.returncode == 1 and len(err) == 1 and err[0].startswith("error:"), bad.stderr
    ok = subprocess.run([*cli, "darn", "--suite", str(suite), "--board", str(d / "res" / "leaderboard.json"),
                         "--snapshots", str(d / "snaps"), "--runs-dir", str(tmp_path / "runs"), "--only", "toy",
                         "--n", "32"], capture_output=True, text=True, timeout=300,
                        env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert ok.returncode == 0, ok.stderr
    assert "> darn" in ok.stdout and _width(ok.stdout, tmp_path) <= 80


# --- the committed suite and board --------------------------------------------------------------

BOARD = ROOT / "results" / "leaderboard.json"


def test_the_committed_suite_reads():
    suite = lb.load_suite()
    assert [e.name for e in suite.entries] == ["fig1-vae", "hvae", "binary-vae", "qnet-l0"]
    full = lb.load_suite(size="full")
    assert full.entry("fig1-vae").train["epochs"] == 10
    for e in suite.entries:
        if e.file:  # a committed snapshot has its recorded hash
            assert lb.suite.load_entry(e, suite, None).hash == e.hash


@pytest.mark.skipif(not BOARD.is_file(), reason="results/leaderboard.json not measured yet")
def test_the_committed_board():
    board = lb.load_board(BOARD)
    assert (ROOT / "results" / "leaderboard.md").read_text() == render.markdown(board)
    suite = lb.load_suite(size=board["size"])
    for s in board["snapshots"]:
        e = suite.entry(s["name"])
        assert s["snapshot_hash"] == e.hash, s["name"]
        specs = {r["spec"] for r in s["rows"]} | set(s["skipped"])
        assert {str(parse_spec(x)) for x in suite.estimators} <= specs, s["name"]
        assert s["store"].endswith(".gram-store.hdf5")  # made by `leaderboard board`; not committed (26 MB)
