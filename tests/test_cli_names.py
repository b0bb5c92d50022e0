"""Issue 20, item 4: the CLI on public APIs. One light names module for the library and the CLI; one
meaning per option name; every help screen fits 80 columns; renamed options refuse their old meaning."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from biasvar_cli.main import app
from conftest import heavy_imports
from typer.testing import CliRunner

from biasvar import names

runner = CliRunner()


def help_paths(a: typer.Typer, path: tuple[str, ...] = ()):
    """Every command line that has a help screen: the app, each command, each sub-app and its commands
    (from the typer app itself, so a new command is checked without editing this test)."""
    yield path
    for info in a.registered_commands:
        yield (*path, info.name)
    for group in a.registered_groups:
        yield from help_paths(group.typer_instance, (*path, group.name))


HELP_PATHS = list(help_paths(app))


def invoke(*args, width: int = 80):
    return runner.invoke(app, [str(a) for a in args], terminal_width=width, env={"COLUMNS": str(width)})


def flat_help(*command: str) -> str:
    """The help of ``command`` without spaces, line breaks and the panels' borders."""
    r = invoke(*command, "--help")
    assert r.exit_code == 0, r.output
    return re.sub(r"[\s│]", "", r.output)


def one_line_usage_error(r) -> str:
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (r.exit_code, r.output)
    return lines[0]


def test_help_paths_cover_every_command():
    assert len(HELP_PATHS) >= 16
    assert {p[-1] for p in HELP_PATHS if p} >= {"sample", "sweep", "ls", "bench", "report", "plot", "train",
                                                 "snapshot", "merge", "compact", "reproduce", "demo",
                                                 "estimators", "data", "verify"}


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "biasvar")
def test_every_help_screen_fits_80_columns_uncut(path):
    """COLUMNS=80: no line wider than 80, nothing cut (…), no ``<bool>`` type on a flag."""
    r = invoke(*path, "--help")
    assert r.exit_code == 0, r.output
    assert max(len(line.rstrip()) for line in r.output.splitlines()) <= 80, r.output
    assert "…" not in r.output, r.output
    assert "<bool>" not in r.output, r.output


def test_sweep_executor_help_shows_the_ray_extra():
    flat = flat_help("sweep")
    assert 'pipinstall"biasvar[ray]"' in flat


def test_choice_options_list_their_choices():
    flat = {c: flat_help(c) for c in ("sample", "sweep", "report", "train", "bench")}
    assert "float32|float64" in flat["sample"] and "auto|cpu|cuda|cuda:N" in flat["sample"]
    assert "local|ray" in flat["sweep"] and "fig4-extended" in flat["sweep"]
    assert "table|md|json|csv" in flat["report"] and "jackknife-t" in flat["report"]
    assert "oneof:toy-cat,vae,hvae,quant-unit,qnet" in flat["train"]
    assert "vae-fig1|hvae|toy-cat" in flat["bench"]


@pytest.mark.parametrize("args, where", [
    (["bench", "--problem", "vae-fig1"], "--problem"),  # now --bench NAME
    (["train", "--model", "mymodule:make"], "--model"),  # --model: built-in only; a factory is --problem
    (["train", "--model", "vae", "--problem", "m:f"], "not both"),
    (["plot", "fig1", "--seed", "3"], "--bootstrap-seed"),  # --seed is the noise seed; fig1 has none
    (["plot", "quant-unit", "--n", "100"], "--n"),  # now --quant-n, as in reproduce
    (["plot", "quant-unit", "--points", "5"], "--points"),  # --points thins grids in reproduce
    (["report", "--seed", "2"], "--seed"),  # the bootstrap seed is --bootstrap-seed
    (["report", "--snapshot", "abc"], "--snapshot"),  # a snapshot id is --snapshot-id
    (["sample", "-e", "zgr", "--dtype", "int8"], "int8"),
    (["sweep", "--executor", "slurm"], "slurm"),
])
def test_renamed_options_refuse_their_old_meaning_with_one_line(args, where):
    assert where in one_line_usage_error(invoke(*args))


def test_names_module_is_light():
    assert heavy_imports("import biasvar.names, biasvar.selection, biasvar.report_file") == "[]"


def test_the_library_defines_the_names_the_cli_shows():
    """The library's tables have exactly the names the CLI shows (their keys, in order); the modules
    that hold only a name list import it from biasvar.names."""
    from biasvar import device, store
    from biasvar.problems import registry
    from biasvar.stats import intervals
    from biasvar.studies import bench

    assert tuple(intervals.METHODS) == names.METHODS and names.DEFAULT_METHOD in intervals.METHODS
    assert tuple(registry.PROBLEMS) == names.MODELS and set(names.DEFAULT_DATA) == set(names.MODELS)
    assert tuple(bench.PROBLEMS) == names.BENCH_PROBLEMS
    assert set(names.DTYPES) <= set(device._DTYPES)
    # biasvar/store keeps its own copies until its rewrite imports them from biasvar.names
    assert tuple(store.FILTERS) == names.FILTER_NAMES
    assert (store.COMPRESSION, store.COMPRESSION_ENV) == (names.DEFAULT_FILTER, names.FILTER_ENV)


def test_train_errors_name_library_arguments_and_the_cli_names_its_flags(tmp_path):
    """biasvar.train speaks of its arguments; the CLI turns the argument into its option."""
    from biasvar import train
    from biasvar.train import TrainError, check_settings

    with pytest.raises(TrainError) as e:
        check_settings(2, 50, 1e-4, 200, [5], tmp_path / "x.pt", None)
    assert e.value.argument == "save_at" and "--" not in str(e.value)
    with pytest.raises(TrainError) as e:
        check_settings(2, 50, 1e-4, 200, [1], None, None)
    assert e.value.argument == "out" and "--" not in str(e.value)
    assert not hasattr(train, "parse_int_list") and not hasattr(train, "parse_option_pairs")  # CLI text: cli/
    r = invoke("train", "--model", "toy-cat", "--epochs", "2", "--save-at", "5")
    assert r.exit_code == 1 and r.output.startswith("error: --save-at: save-at epochs [5] are outside"), r.output
    r = invoke("train", "--model", "toy-cat", "--save-at", "x")
    assert r.exit_code == 1 and r.output.startswith("error: --save-at 'x': expected comma-separated"), r.output
    r = invoke("train", "--model", "toy-cat", "--lr", "-1")
    assert r.exit_code == 1 and r.output.startswith("error: --lr: learning rate must be"), r.output


def test_selection_snapshot_prefix_and_shard_range():
    from biasvar.errors import SpecError
    from biasvar.selection import of_snapshot, select_snapshot, shard_range, snapshot_prefix

    assert snapshot_prefix(" ABCDEF0123456789 ") == "abcdef012345" and snapshot_prefix(None) == ""
    paths = ["runs/abcdef012345/zgr-s0.h5", "runs/0123456789ab/st-s0.h5"]
    assert select_snapshot(paths, "ABC") == paths[:1] and select_snapshot(paths, None) == paths
    assert of_snapshot(paths[1], "0123") and not of_snapshot(paths[1], "abc")
    assert shard_range("1/2", 100, 10) == (1, 2, 50, 100)
    with pytest.raises(SpecError, match="at most 2 shards"):
        shard_range("0/3", 20, 10)


CLI_SOURCES = sorted((Path(__file__).resolve().parents[1] / "cli").glob("*.py"))


def test_the_cli_imports_no_private_module():
    """typer._click (and any other ``_private`` module) is not the CLI's to import."""
    def modules(tree):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield node.module

    found = {p.name: [m for m in modules(ast.parse(p.read_text())) if m != "__future__"
                      and any(part.startswith("_") for part in m.split("."))] for p in CLI_SOURCES}
    assert CLI_SOURCES and not any(found.values()), found


def test_the_cli_copies_no_name_list_of_the_library():
    """The names the library defines are imported from biasvar.names, not written again in cli/."""
    lists = [v for v in vars(names).values() if isinstance(v, tuple) and len(v) >= 2]
    assert lists
    for path in CLI_SOURCES:
        text = path.read_text()
        for values in lists:
            for quote in ('"', "'"):
                assert ", ".join(f"{quote}{v}{quote}" for v in values) not in text, (path.name, values)


def test_an_unexpected_error_is_one_line_unless_biasvar_debug(monkeypatch):
    """Exit 1 with one line (no traceback); BIASVAR_DEBUG=1 lets the exception through."""
    from biasvar_cli import estimators_cmd

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(estimators_cmd.console, "print", broken)
    monkeypatch.delenv("BIASVAR_DEBUG", raising=False)
    r = invoke("estimators")
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and "internal error (RuntimeError: boom)" in lines[0], r.output
    monkeypatch.setenv("BIASVAR_DEBUG", "1")
    r = invoke("estimators")
    assert isinstance(r.exception, RuntimeError) and str(r.exception) == "boom"


def test_sigterm_exits_143_and_a_parse_error_exits_2(tmp_path):
    import signal
    import time

    from biasvar.problems.toy import ToyCat
    from biasvar.snapshot import save_snapshot

    snap = save_snapshot(tmp_path / "toy.pt", ToyCat(vars=2, categories=3))
    cli = [sys.executable, "-m", "biasvar_cli.main"]
    bad = subprocess.run([*cli, "sample", "--bogus"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--bogus" in bad.stderr, bad.stderr
    proc = subprocess.Popen([*cli, "sample", "--snapshot", str(snap.path), "-e", "st", "--n", "100000000",
                             "--block-size", "1000", "--chunk", "100", "--runs-dir", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"})
    run_dir = tmp_path / "runs" / snap.id
    deadline = time.monotonic() + 120
    while not any(run_dir.glob("*.h5")) and time.monotonic() < deadline:  # drawing has begun
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "interrupted" in err and "Traceback" not in err, err
