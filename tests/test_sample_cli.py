"""``biasvar sample``, ``sweep``, ``ls``, ``bench`` through the CLI (in-process, CliRunner)."""

from __future__ import annotations

import json
import re

import pytest
from biasvar_cli.main import app
from conftest import stop_after
from typer.testing import CliRunner

from biasvar import engine, presets, store
from biasvar.errors import SpecError
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import save_snapshot

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def snap(tmp_path):
    return save_snapshot(tmp_path / "toy.pt", ToyCat(vars=3, categories=4))


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def test_sample_flag_form_and_spec_form_name_the_same_run(tmp_path, snap):
    runs = tmp_path / "runs"
    r = invoke("sample", "--snapshot", snap.path, "--estimator", "gr-mc", "--t", "0.5", "--M", "10",
               "--n", "300",
               "--runs-dir", runs)
    assert r.exit_code == 0, r.output
    assert "complete: 300 draws" in r.output and "draws/s" in r.output
    path = store.run_path(runs, snap.id, "gr-mc(M=10,t=0.5)", 0)
    assert path.is_file()
    r = invoke("sample", "--snapshot", snap.path, "-e", "gr-mc(0.5, 10)", "--n", "400", "--runs-dir", runs)
    assert r.exit_code == 0, r.output
    assert store.read_run(path).n == 400  # the same file, extended
    r = invoke("sample", "--snapshot", snap.path, "-e", "gr-mc(t=0.5)", "--t", "0.7", "--runs-dir", runs)
    assert r.exit_code == 1 and "given twice" in r.output


def test_ls_on_a_partial_run(tmp_path, snap):
    runs = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        engine.sample_run(snap, "zgr", n=1000, seed=2, runs_dir=runs, block_size=50, chunk=50,
                          progress=stop_after(100))
    engine.sample_run(snap, "st", n=120, seed=0, runs_dir=runs)
    r = invoke("ls", "--runs-dir", runs)
    assert r.exit_code == 0, r.output
    assert snap.id in r.output
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if line.count("│") > 3}
    assert "interrupted" in lines["zgr"] and "100/1000" in lines["zgr"]
    assert "complete" in lines["st"] and "120/120" in lines["st"]
    r = invoke("ls", "--runs-dir", tmp_path / "empty")
    assert r.exit_code == 0 and "no run files" in r.output


def test_mismatched_run_is_one_line_error(tmp_path, snap):
    runs = tmp_path / "runs"
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "50", "--runs-dir", runs)
    assert r.exit_code == 0
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "50", "--params", "logits",
               "--runs-dir", runs)
    assert r.exit_code == 1
    assert "will not be appended" in r.output and "--restart" in r.output and "Traceback" not in r.output
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "50", "--params", "logits",
               "--runs-dir", runs, "--restart")
    assert r.exit_code == 0, r.output


def test_sweep_with_estimators_list(tmp_path, snap):
    runs = tmp_path / "runs"
    r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr,rf(M=4),gs-st(t=0.5)", "--n", "200",
               "--reference-n", "300", "--runs-dir", runs)
    assert r.exit_code == 0, r.output
    folder = runs / snap.id
    names = sorted(p.name for p in folder.glob("*.h5"))
    assert names == ["gs-st(t=0.5)-s0.h5", "rf(M=4)-s0.h5", "rf(M=4)-s1.h5", "zgr-s0.h5"]
    manifest = json.loads((folder / "sweep-custom.json").read_text())
    assert manifest["reference"] == {"spec": "rf(M=4)", "seed": 0, "n": 300, "file": "rf(M=4)-s0.h5"}
    assert [t["file"] for t in manifest["tested"]] == ["zgr-s0.h5", "rf(M=4)-s1.h5", "gs-st(t=0.5)-s0.h5"]
    assert store.read_run(folder / "rf(M=4)-s0.h5").n == 300
    assert "reference" in r.output and "tested" in r.output
    # a second sweep skips the complete runs
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.h5")}
    r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--n", "200", "--reference-n", "300",
               "--runs-dir", runs)
    assert r.exit_code == 0
    assert store.read_run(folder / "zgr-s0.h5").n == 200
    assert (folder / "zgr-s0.h5").stat().st_mtime_ns == before["zgr-s0.h5"]  # complete: not even reopened
    r = invoke("sweep", "--snapshot", snap.path, "--preset", "nope", "--runs-dir", runs)
    assert r.exit_code == 2 and "fig1" in r.output  # a usage error: the choices are listed
    r = invoke("sweep", "--snapshot", snap.path, "--runs-dir", runs)
    assert r.exit_code == 1 and "exactly one of --preset" in r.output


def test_sweep_progress_reaches_the_total(tmp_path, snap):
    seen = []
    plan = engine.plan_sweep(snap, ["zgr", "st"], n=60, reference_n=80, runs_dir=tmp_path, name="t")
    engine.run_sweep(plan, progress=engine.overall_progress(plan, lambda done, total, bad, rate, label:
                                                            seen.append((done, total))))
    assert [r.role for r in plan] == ["reference", "tested", "tested"]
    assert seen[-1] == (200, 200) and all(d <= t for d, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_missing_snapshot_is_one_line_error(tmp_path):
    r = invoke("sample", "--snapshot", tmp_path / "nope.pt", "-e", "zgr")
    assert r.exit_code == 1 and "snapshot not found" in r.output


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = invoke("bench", "--bench", "toy-cat", "--estimators", "zgr,rf(M=2)", "--device", "cpu", "--n", "16",
               "--n-loop", "4", "--repeats", "1", "--out", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["problem"] == "toy-cat" and data["device"] == "cpu" and data["dim"] == 12
    for key in ("torch_version", "git_commit", "device_name"):
        assert key in data["environment"]
    assert data["command"].startswith("biasvar")
    rows = {row["spec"]: row for row in data["rows"]}
    assert set(rows) == {"zgr", "rf(M=2)"}
    for row in rows.values():
        assert row["engine_draws_per_s"] > 0 and row["loop_draws_per_s"] > 0
        assert row["max_abs_diff"] <= 1e-9 * max(1.0, row["max_abs_grad"])
        assert row["engine_method"] in ("vmap", "loop") and row["noise_share"] > 0 and row["gemm_fraction"] > 0
    assert data["gemm_flops_per_s"] > 0 and data["gemm_size"] > 0
    assert "zgr" in r.output and "rf(M=2)" in r.output and "wrote" in r.output and "GEMM" in r.output


def test_presets_hold_the_paper_grids():
    ref, fig1 = presets.preset_specs("fig1")
    assert ref == "rf(M=4)" and "zgr" in fig1 and "st" in fig1
    for family in ("gs", "gs-st"):
        ts = sorted(float(s.split("t=")[1].rstrip(")")) for s in fig1 if s.startswith(family + "("))
        assert ts[0] == 0.01 and ts[-1] == 2 and 1.1 in ts and len(ts) >= 9
    assert "gr-mc(M=10,t=0.01)" in fig1 and "gr-mc(M=100,t=2)" in fig1
    _, fig4 = presets.preset_specs("fig4")
    assert set(fig1) <= set(fig4)
    want = {"st(t=8)", "st(t=1.1)", "st(t=2)", "rf(M=2)", "rf(M=4)", "st-zgr(alpha=0.6,t=2)",
            "st-zgr(alpha=0)"}
    assert want <= set(fig4)
    quant = presets.get_preset("fig4-quant")
    assert quant.reference_n == 10 * quant.n and "st(t=0.5)" in quant.specs and "gs(t=0.1)" in quant.specs
    assert "gs(t=0.01)" not in quant.specs
    assert presets.split_specs("zgr, gr-mc(t=0.1,M=100) ,rf(M=4)") == ["zgr", "gr-mc(M=100,t=0.1)", "rf(M=4)"]
    with pytest.raises(SpecError):
        presets.split_specs("gr-mc(t=0.1,M=100")
    with pytest.raises(SpecError, match="unknown preset"):
        presets.get_preset("fig9")


def test_sweep_takes_block_size_chunk_and_restart(tmp_path, snap):
    runs = tmp_path / "runs"
    args = ["sweep", "--snapshot", snap.path, "--estimators", "zgr", "--n", "60", "--runs-dir", runs,
            "--block-size", "20", "--chunk", "7"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    zgr = store.read_run(runs / snap.id / "zgr-s0.h5")
    assert zgr.n == 60 and len(zgr.block_count) == 3 and zgr.attrs["block_size"] == 20
    before = (runs / snap.id / "zgr-s0.h5").stat().st_mtime_ns
    r = invoke(*args[:-4], "--block-size", "30", "--restart")  # a different block size needs --restart
    assert r.exit_code == 0, r.output
    zgr = store.read_run(runs / snap.id / "zgr-s0.h5")
    assert zgr.attrs["block_size"] == 30 and len(zgr.block_count) == 2
    assert (runs / snap.id / "zgr-s0.h5").stat().st_mtime_ns != before


def _options(command: str) -> dict[str, object]:
    from typer.main import get_command

    cmd = get_command(app).commands[command]
    return {name: p for p in cmd.params for name in p.opts}


SAMPLING = ("--n", "--seed", "--params", "--keep", "--device", "--dtype", "--runs-dir", "--restart",
            "--block-size", "--max-memory", "--chunk", "--snapshot")


def test_one_option_one_meaning_across_commands():
    """sweep takes every sampling option of sample; a shared option has one help text wherever it
    appears; a snapshot file (--snapshot FILE) and a snapshot id (--snapshot-id) are different options."""
    sample, sweep = _options("sample"), _options("sweep")
    assert set(SAMPLING) <= set(sample) and set(SAMPLING) <= set(sweep)
    shared = ("--runs-dir", "--device", "--dtype", "--params", "--keep", "--max-memory", "--chunk", "--block-size",
              "--restart", "--snapshot-id", "--n-resamples", "--bootstrap-seed", "--data-dir", "--threads", "--t",
              "--M", "--alpha")
    commands = ("sample", "sweep", "ls", "merge", "bench", "report", "plot", "train", "reproduce", "demo")
    for name in shared:  # the same text, up to a command's own default
        helps = {c: re.sub(r" \(default[^)]*\)", "", _options(c)[name].help) for c in commands
                 if name in _options(c) and not _options(c)[name].hidden}
        assert len(set(helps.values())) <= 1, (name, helps)
    for c in ("sample", "sweep"):
        assert _options(c)["--snapshot"].metavar == "FILE" and not _options(c)["--snapshot"].hidden
    for c in ("report", "plot", "ls"):
        assert "--snapshot-id" in _options(c)
        assert "--snapshot" not in _options(c) or _options(c)["--snapshot"].hidden
    for c in ("sample", "sweep", "train", "reproduce", "demo"):
        assert "noise" in _options(c)["--seed"].help.lower()
    for c in ("report", "plot"):
        assert _options(c)["--bootstrap-seed"].help == "Seed of the bootstrap resampling."
        assert _options(c)["--n-resamples"].default == 1000
