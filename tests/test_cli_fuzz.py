"""Issue 26, item 5: a hypothesis fuzz of every command's options.

Every command of the app (enumerated from it, so a new command is fuzzed without a change here) gets
1-3 of its options with values drawn from a pool of bad ones (strings for numbers, negative and huge
numbers, fullwidth digits, unicode, files that are missing, empty, truncated, text or folders, specs
that do not parse), its required options and arguments included. Rejected input must exit 1 or 2 with
one ``error:`` line and nothing else, never a traceback, and leave every file that was there unchanged;
accepted input exits 0 (work that would take long is interrupted after :data:`BUDGET_S`: exit 130 with
"interrupted"). The budget is bounded (``max_examples``, derandomized for CI) to well under a minute.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from biasvar_cli.main import app
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from biasvar import engine
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import save_snapshot

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
BUDGET_S = 0.5  # an accepted command still working after this is interrupted (its outcome: accepted)
EXAMPLES = 80
REPORTS = ("data verify", "check-estimator")  # checks: a report, then exit 1 with one line when it fails

FILES = ["toy.pt", "notes.txt", "empty.pt", "half.pt", "adir.pt", "f", "missing.pt", "runs", "nowhere/deep/x.pt"]
BAD = ["", " ", "abc", "-1", "0", "1", "-999999999999", "99999999999999999999999999", "1e309", "nan", "inf", "-inf",
       "１２", "٣", "ünïcödé", "☃\u200b", "x" * 300, "-", "1.5", "0x10", "1/0", "3/2", "a=b", "k=", "=v",
       "zgr(", "gr-mc(t=-1)", "nope", "gs(t=0.5,t=1)", "st(t=1e308)", "rf(M=99999999999999)", "*", "a:b",
       "mod:func", "missing.py:make", "notes.txt:make", "exact", "rf(M=4)", "auto", "cpu", "cuda:7", "tpu", "64MB",
       "lots", "-5GB", "table", "json", "xml", "float64", "int8", *FILES]


def _commands(group, path=()):
    """Every leaf command of the app: (its words, the click command)."""
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        if getattr(cmd, "commands", None) is not None:
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _options(cmd) -> list:
    return [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The folder each example runs in (a fresh copy): a snapshot, runs of it, and bad files."""
    d = tmp_path_factory.mktemp("fuzz")
    snap = save_snapshot(d / "toy.pt", ToyCat(vars=2, categories=3))
    for spec in ("zgr", "st"):
        engine.sample_run(snap, spec, n=60, seed=0, runs_dir=d / "runs", block_size=20)
    (d / "notes.txt").write_text("just some notes\n")
    (d / "f").write_text("")
    (d / "empty.pt").write_bytes(b"")
    (d / "half.pt").write_bytes((d / "toy.pt").read_bytes()[:300])
    (d / "adir.pt").mkdir()
    # what accepted commands load lazily, imported now: an interruption never lands in an import
    import biasvar.plots  # noqa: F401
    import biasvar.studies.bench  # noqa: F401
    import biasvar.studies.demo  # noqa: F401
    import biasvar.studies.reproduce  # noqa: F401
    import biasvar.train  # noqa: F401
    return d


class OutOfBudget(KeyboardInterrupt):
    """An accepted command that works longer than the fuzz allows (the CLI says "interrupted")."""


@st.composite
def command_lines(draw):
    words = draw(st.sampled_from(sorted(COMMANDS)))
    cmd = COMMANDS[words]
    options = _options(cmd)
    chosen = [p for p in options if p.required]
    rest = [p for p in options if not p.required]
    if rest:
        chosen += draw(st.lists(st.sampled_from(rest), unique_by=lambda p: p.name, min_size=1, max_size=3))
    args = list(words)
    for p in cmd.params:
        if p.param_type_name == "argument" and (p.required or draw(st.booleans())):
            args.append(draw(st.sampled_from(BAD + ["fig1", "pareto", "quant-unit", "zgr", "mnist-b"])))
    for p in chosen:
        args.append(draw(st.sampled_from(p.opts)))
        if not p.is_flag:
            args.append(draw(st.sampled_from(BAD)))
    return args


def _invoke(folder: Path, args: list[str]):
    def out_of_budget(signum, frame):  # noqa: ARG001
        raise OutOfBudget()

    previous = signal.signal(signal.SIGALRM, out_of_budget)
    cwd = os.getcwd()
    os.chdir(folder)
    signal.setitimer(signal.ITIMER_REAL, BUDGET_S, 0.1)  # again every 0.1 s: one may land where it is ignored
    try:
        r = runner.invoke(app, args, terminal_width=100)
    except OutOfBudget:  # landed outside the command (the runner's own code): accepted, out of budget
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    e = r.exception
    while e is not None:  # the alarm landed inside an import (e.g. a class's __set_name__ wraps it): out of budget
        if isinstance(e, OutOfBudget):
            return None
        e = e.__cause__ or e.__context__
    return r


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(args=command_lines())
@example(args=["reproduce", "--runs-dir", ""])  # found by the fuzz: its header came before the error line
@example(args=["demo", "--n", "-999999999999"])  # found by the fuzz: the same
@example(args=["data", "verify", "--data-dir", ""])  # a check: its report, then one verdict line
@example(args=["leaderboard", "board", "--device", "gs(t=0.5,t=1)"])  # found by the fuzz: an internal error
def test_every_commands_options_fuzzed_one_line_no_traceback_no_damage(template, tmp_path_factory, monkeypatch, args):
    monkeypatch.setenv("BIASVAR_OFFLINE", "1")
    folder = tmp_path_factory.mktemp("x")
    shutil.rmtree(folder)
    shutil.copytree(template, folder)
    before = digests(folder)
    try:
        r = _invoke(folder, args)
    finally:
        after = digests(folder)
        shutil.rmtree(folder, ignore_errors=True)
    if r is None:
        return
    lines = [line for line in r.output.splitlines() if line.strip()]
    name = next(" ".join(w) for w in COMMANDS if tuple(args[:len(w)]) == w)
    if name in REPORTS and r.exit_code == 1:
        lines = lines[-1:]  # a check's report, then its one verdict line
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, repr(r.exception), r.output)
    assert "Traceback" not in r.output, (args, r.output)
    assert r.exit_code in (0, 1, 2, 130), (args, r.exit_code, r.output)
    if r.exit_code in (1, 2):  # rejected: one line, nothing changed
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, r.output)
        assert "internal error" not in lines[0], (args, lines[0])
        changed = [p for p, h in before.items() if after.get(p) != h]
        assert not changed, (args, changed, r.output)


def test_the_fuzz_covers_every_command():
    assert {" ".join(w) for w in COMMANDS} >= {"sample", "sweep", "ls", "report", "plot", "train", "snapshot", "gram",
                                              "compact", "merge", "bench", "demo", "reproduce", "data verify"}
    assert all(_options(cmd) or not cmd.params for cmd in COMMANDS.values())


def test_a_bad_option_in_a_fresh_process_is_one_line(tmp_path):
    """The same contract through the installed entry point (one subprocess: the rest run in-process)."""
    r = subprocess.run([sys.executable, "-m", "biasvar_cli.main", "sample", "-e", "zgr", "--n", "１２", "--runs-dir",
                        str(tmp_path / "runs")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode in (1, 2) and len(lines) == 1 and lines[0].startswith("error:"), r.stdout + r.stderr
    assert not (tmp_path / "runs").exists()
