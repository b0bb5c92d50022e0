"""Issue 12 through the CLI: one-line errors, truthful listings, tables that fit, a property test over
argument lists, and a start without the heavy libraries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from biasvar_cli.main import app
from conftest import heavy_imports, stop_after
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from biasvar import engine, store
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import save_snapshot

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args, width: int = 80):
    return runner.invoke(app, [str(a) for a in args], terminal_width=width)


def one_error_line(r) -> str:
    lines = [line for line in r.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and len(errors) == 1, r.output
    return errors[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A snapshot, a runs folder with one complete run, and the usual wrong files."""
    d = tmp_path_factory.mktemp("world")
    snap = save_snapshot(d / "toy.pt", ToyCat(vars=2, categories=3))
    engine.sample_run(snap, "zgr", n=200, seed=0, runs_dir=d / "runs", block_size=20)
    (d / "notes.txt").write_text("just some notes\n")
    (d / "empty.pt").write_bytes(b"")
    (d / "half.pt").write_bytes((d / "toy.pt").read_bytes()[:500])
    (d / "f").write_text("")
    (d / "adir.pt").mkdir()
    return d, snap


def digests(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_issue_cases_are_one_line_errors(world, tmp_path):
    d, snap = world
    before = digests(d)
    assert "cannot read snapshot" in one_error_line(invoke("sample", "--snapshot", d / "notes.txt", "-e", "zgr"))
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--seed", "-1", "--runs-dir", tmp_path / "r")
    assert r.exit_code == 1 and "seed must be between 0 and" in one_error_line(r)
    assert not (tmp_path / "r").exists()  # nothing written for a run that never drew
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--runs-dir", d / "f")
    assert r.exit_code == 1 and "a file is in the way" in one_error_line(r)
    r = invoke("ls", "--runs-dir", d / "f")
    assert r.exit_code == 1 and "is a file, not a folder" in one_error_line(r)
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "200", "--max-memory", "lots",
               "--runs-dir", d / "runs")  # found by the fault injection: a complete run skipped the check
    assert r.exit_code == 1 and "cannot read memory size 'lots'" in one_error_line(r)
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--nope")
    assert r.exit_code == 2 and "No such option: --nope" in one_error_line(r)
    assert digests(d) == before


def test_ls_lists_damaged_and_misplaced_files_with_the_reason_and_the_rest(world, tmp_path):
    d, snap = world
    src = store.run_path(d / "runs", snap.id, "zgr", 0)
    runs = tmp_path / "runs"
    (runs / snap.id).mkdir(parents=True)
    (runs / snap.id / "zgr-s0.h5").write_bytes(src.read_bytes())
    (runs / snap.id / "st-s0.h5").write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    (runs / "0123456789ab").mkdir()
    (runs / "0123456789ab" / "zgr-s0.h5").write_bytes(src.read_bytes())
    r = invoke("ls", "--runs-dir", runs, width=80)
    assert r.exit_code == 0, r.output
    flat = "".join(r.output.split())  # long paths wrap anywhere
    assert "zgr" in flat and "200/200" in flat and "complete" in flat
    assert f"damaged{runs / snap.id / 'st-s0.h5'}:truncated:" in flat
    assert f"misplaced{runs / '0123456789ab' / 'zgr-s0.h5'}:madefromsnapshot{snap.id}" in flat
    assert "…" not in r.output


def test_sample_interrupted_says_what_it_kept(world, tmp_path, monkeypatch):
    d, snap = world
    real = engine.sample_run

    def interrupted(*args, progress=None, **kw):
        return real(*args, progress=stop_after(300), **kw)

    monkeypatch.setattr(engine, "sample_run", interrupted)
    monkeypatch.setattr(engine.blocks, "STEP_MAX", 50)
    r = invoke("sample", "--snapshot", snap.path, "-e", "st", "--n", "5000", "--block-size", "1000", "--chunk", "100",
               "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 130, r.output
    assert "interrupted: 300 of 5000 draws saved (300 in the block in progress)" in " ".join(r.output.split())
    assert store.read_run(store.run_path(tmp_path / "runs", snap.id, "st", 0)).status == "interrupted"


def test_estimators_table_fits_80_columns_uncut():
    r = invoke("estimators", width=80)
    assert r.exit_code == 0 and "…" not in r.output, r.output
    assert max(len(line.rstrip()) for line in r.output.splitlines()) <= 80


def test_the_cli_starts_without_the_heavy_libraries():
    """Issue 12, case 5: torch and matplotlib were imported for --version (timed in benchmarks/startup.py)."""
    assert heavy_imports("import biasvar_cli.main", ("torch", "matplotlib", "scipy", "h5py")) == "[]"


FILES = ["toy.pt", "notes.txt", "empty.pt", "half.pt", "adir.pt", "f", "missing.pt", "runs"]
VALUES = {
    "--snapshot": FILES, "--runs-dir": ["runs", "f", "adir.pt", "nowhere", "notes.txt"],
    "-e": ["zgr", "st(t=2)", "rf(M=3)", "nope", "gr-mc(t=-1)", "", "zgr(", "gs(t=0.5,t=1)"],
    "--n": ["1", "30", "0", "-4", "abc", "1e3"], "--seed": ["0", "3", "-1", "99999999999999999999", "x"],
    "--keep": ["0", "2", "-1"], "--block-size": ["5", "0", "-2"], "--chunk": ["7", "0"],
    "--params": ["*", "logits", "nothing"], "--dtype": ["float64", "int8"], "--device": ["cpu", "tpu"],
    "--max-memory": ["64MB", "lots"], "--snapshot-id": ["", "abc", "zzzz"], "--reference": ["exact", "rf(M=4)", "x"],
    "--n-resamples": ["0", "20", "-3"], "--format": ["table", "md", "json", "csv", "xml"],
    "--out": ["out.md", "f/x.md", "adir.pt"], "--data-dir": ["adir.pt", "f", "nowhere"],
}
COMMANDS = {
    "sample": ["--snapshot", "-e", "--n", "--seed", "--keep", "--block-size", "--chunk", "--params", "--dtype",
               "--device", "--max-memory", "--runs-dir"],
    "ls": ["--runs-dir", "--snapshot-id"],
    "report": ["--runs-dir", "--snapshot-id", "--reference", "--n-resamples", "--format", "--out"],
    "estimators": [],
    "data verify": ["--data-dir"],
}


@st.composite
def command_lines(draw):
    name = draw(st.sampled_from(sorted(COMMANDS)))
    opts = draw(st.lists(st.sampled_from(COMMANDS[name]), unique=True, max_size=6)) if COMMANDS[name] else []
    args = name.split()
    for opt in opts:
        args += [opt, draw(st.sampled_from(VALUES[opt]))]
    if name == "sample" and "--n" not in opts:
        args += ["--n", "20"]  # keep valid runs short
    if draw(st.booleans()) and name != "estimators":
        args.append(draw(st.sampled_from(["--bogus", "extra-arg"])))
    return args


@given(args=command_lines())
def test_property_any_argument_list_exits_0_1_or_2_without_traceback_or_damage(world, args):
    """Issue 12, case 4: every command, valid and invalid values, files that are empty, text, truncated
    or folders: exit code 0, 1 or 2, no traceback, and no pre-existing file changed."""
    d, snap = world
    import os

    before = digests(d)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        r = runner.invoke(app, args, terminal_width=80)
    finally:
        os.chdir(cwd)
    assert r.exit_code in (0, 1, 2), (args, r.exit_code, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, repr(r.exception))
    assert "Traceback" not in r.output, (args, r.output)
    if r.exit_code == 1:
        assert sum(line.startswith("error:") for line in r.output.splitlines()) == 1, (args, r.output)
    after = digests(d)
    assert all(after.get(p) == h for p, h in before.items()), (args, [p for p, h in before.items()
                                                                      if after.get(p) != h])
