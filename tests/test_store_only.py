"""``sweep --store-only``: a sweep that keeps its block sums in memory and writes only the statistics
store. Its store equals the store built from the run files of the same sweep (same draws: counter
noise), every report from it equals the run files' report, no run file is written, an interrupted
sweep resumes per completed run (the reference drawn again so every new run pairs with it), and
what cannot be done is one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biasvar import gramstore as gs
from biasvar import store
from biasvar.engine import RunOptions, plan_sweep
from biasvar.engine.executors import Local, run_sweep
from biasvar.engine.storeonly import check_memory
from biasvar.errors import BiasvarError, SpecError
from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import VAE
from biasvar.report import analyze_runs
from biasvar.snapshot import snapshot_of
from biasvar.spec import parse_spec

SPECS = ("zgr", "st", "gs-st(t=0.5)", "gr-mc(t=0.5,M=4)")
# one draw path for both sweeps: "auto" times vmap against the loop per sweep, and the two paths round float32
# sums differently (with two threads: 5e-7 relative in m2), which is not what these tests compare
OPTS = RunOptions(device="cpu", keep=0, method="vmap")


def _sweep(snap, rd: Path, *, store_only: bool, specs=SPECS, n: int = 240, **kw):
    plan = plan_sweep(snap, list(specs), reference="rf(M=4)", n=n, seed=3, runs_dir=rd)
    return run_sweep(plan, OPTS, store_only=store_only, **kw)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~np.isnan(b)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    scale = float(np.max(np.abs(b[ok])))
    return float(np.max(np.abs(a[ok] - b[ok]))) / scale


SKIP = {"draws_per_s", "path", "versions", "snapshot_hash"}  # provenance, not numbers of the analysis


def _report_rows(rd: Path, snap, **kw) -> list[dict]:
    import dataclasses

    rep = analyze_runs(rd, snapshot=snap.id, reference="rf(M=4)", n_resamples=50, seed=0, **kw)
    return [{k: v for k, v in dataclasses.asdict(r).items() if k not in SKIP}
            for r in sorted(rep.rows, key=lambda r: (r.spec, r.seed))]


def _numbers(rows) -> list[float]:
    out: list[float] = []

    def walk(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return
        if isinstance(v, (int, float)):
            out.append(float(v))
        elif isinstance(v, dict):
            for k in sorted(v):
                walk(v[k])
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(rows)
    return out


@pytest.fixture(scope="module", params=["toy", "vae"])
def pair(request, tmp_path_factory):
    """The same sweep twice: with run files (then its store), and store-only."""
    problem = ToyCat() if request.param == "toy" else VAE(categories=4, vars=2, hidden=(8,))
    snap = snapshot_of(problem, provenance={"test": f"store-only-{request.param}"})
    tmp = tmp_path_factory.mktemp("so")
    files = _sweep(snap, tmp / "files", store_only=False)
    only = _sweep(snap, tmp / "only", store_only=True)
    return snap, tmp / "files", tmp / "only", files, only


def test_no_run_file_is_written(pair):
    snap, _, only_dir, _, only = pair
    assert not list((only_dir / snap.id).glob("*.h5")), "store-only wrote a run file"
    assert only.store is not None and only.store.path.is_file()
    assert only.store.runs == len(SPECS) + 1
    assert [p for p, _, _ in only.computed] and all(not p.exists() for p, _, _ in only.computed)


def test_store_equals_the_store_of_the_run_files(pair):
    snap, files_dir, only_dir, files, only = pair
    a = gs.read_store(files.store.path)
    b = gs.read_store(only.store.path)
    keys_a = [r.key for r in a.gram.runs]
    assert sorted(keys_a) == sorted(r.key for r in b.gram.runs)
    np.testing.assert_array_equal(a.anchor, b.anchor)
    # row order may differ (the file store anchors on the unbiased run first): compare per pair of runs
    for ra in a.gram.runs:
        rb = b.gram.run(*ra.key)
        for f in ("count", "nonfinite", "m2", "sumsq"):
            np.testing.assert_array_equal(getattr(ra, f), getattr(rb, f), err_msg=f)
        assert ra.attrs["spec"] == rb.attrs["spec"] and ra.attrs["n_done"] == rb.attrs["n_done"]
        assert rb.attrs["status"] == "complete"
        for sa in a.gram.runs:
            sb = b.gram.run(*sa.key)
            qa = a.gram.q[:, ra.rows][:, :, sa.rows]
            qb = b.gram.q[:, rb.rows][:, :, sb.rows]
            assert _rel(qb, qa) < 1e-12, (ra.key, sa.key)


def test_reports_equal_the_run_files(pair):
    snap, files_dir, only_dir, _, _ = pair
    ra = _numbers(_report_rows(files_dir, snap))
    rb = _numbers(_report_rows(only_dir, snap))
    assert len(ra) == len(rb) and len(ra) > 10
    np.testing.assert_allclose(rb, ra, rtol=1e-9, atol=1e-300)


def test_resume_keeps_complete_runs_and_pairs_new_runs_with_the_reference(tmp_path):
    snap = snapshot_of(ToyCat(), provenance={"test": "store-only-resume"})
    whole = _sweep(snap, tmp_path / "whole", store_only=True)
    first = _sweep(snap, tmp_path / "part", store_only=True, specs=SPECS[:2])
    assert first.store.runs == 3
    second = _sweep(snap, tmp_path / "part", store_only=True)
    drawn = {Path(p).name for p, _, _ in second.computed}
    assert drawn == {store.run_path(tmp_path, snap.id, str(parse_spec(s)), 3).name for s in SPECS[2:]} | {
        store.run_path(tmp_path, snap.id, "rf(M=4)", 3).name}, "completed runs were drawn again (or the "\
        "reference was not)"
    assert second.store.runs == len(SPECS) + 1
    assert any("pair(s)" in n for n in second.store.notes)
    # every run pairs with the reference: the report's rows equal those of the uninterrupted sweep
    np.testing.assert_allclose(_numbers(_report_rows(tmp_path / "part", snap)),
                               _numbers(_report_rows(tmp_path / "whole", snap)), rtol=1e-9, atol=1e-300)
    assert whole.store.notes == ()
    # a paired contrast needs each run's products with the reference only: across the two calls it works
    pair = [(str(parse_spec(SPECS[0])), str(parse_spec(SPECS[2])))]
    a, b = (analyze_runs(tmp_path / d, snapshot=snap.id, reference="rf(M=4)", n_resamples=20, contrasts=pair)
            for d in ("part", "whole"))
    np.testing.assert_allclose(_numbers([dataclasses.asdict(a.contrasts[0])]),
                               _numbers([dataclasses.asdict(b.contrasts[0])]), rtol=1e-9)
    # a reference drawn by the other call has no products with the new runs: refused in one line
    from biasvar.errors import AnalysisError

    with pytest.raises(AnalysisError) as err:
        analyze_runs(tmp_path / "part", snapshot=snap.id, reference=str(parse_spec(SPECS[0])), n_resamples=20)
    assert "\n" not in str(err.value) and "lacks products" in str(err.value)
    # a third call has nothing to do
    third = _sweep(snap, tmp_path / "part", store_only=True)
    assert third.computed == [] and third.store.added == ()


def test_a_reference_that_does_not_redraw_the_same_is_refused(tmp_path, monkeypatch):
    snap = snapshot_of(ToyCat(), provenance={"test": "store-only-redraw"})
    _sweep(snap, tmp_path, store_only=True, specs=SPECS[:1])
    import biasvar.engine.storeonly as so

    real = so._self_products
    monkeypatch.setattr(so, "_self_products", lambda state, key: real(state, key) * (1 + 1e-6))
    with pytest.raises(BiasvarError, match="drawn again differs"):
        _sweep(snap, tmp_path, store_only=True, specs=SPECS[:2])


def test_refusals_are_one_line(tmp_path):
    snap = snapshot_of(ToyCat(), provenance={"test": "store-only-refuse"})
    plan = plan_sweep(snap, ["zgr"], n=50, runs_dir=tmp_path)
    with pytest.raises(SpecError, match="local executor"):
        run_sweep(plan, OPTS, executor=Local(2), store_only=True)
    with pytest.raises(SpecError, match="no-gram"):
        run_sweep(plan, OPTS, store_only=True, gram=False)
    from biasvar.engine import plan_run

    rplan = plan_run(snap, "zgr", n=10_000, seed=0, runs_dir=tmp_path, options=OPTS)
    with pytest.raises(BiasvarError, match=r"runs need .* free \(\d+ runs fit\)"):
        big = plan_sweep(snap, ["zgr"], n=10_000, runs_dir=tmp_path)
        check_memory(rplan, list(big) * 50, free=4 * rplan.selection.dim * -(-10_000 // rplan.block_size) * 20)
    check_memory(rplan, list(big) * 50, free=None)  # unknown free memory: not refused
    check_memory(rplan, list(big), free=4 * rplan.selection.dim * -(-10_000 // rplan.block_size) * 20)  # fits


def test_cli_store_only_then_report_from_the_store(tmp_path):
    from biasvar_cli.main import app

    runner = CliRunner()
    rd = tmp_path / "runs"
    res = runner.invoke(app, ["sweep", "--problem", "toy-cat", "--estimators", "zgr,st", "--n", "100",
                              "--runs-dir", str(rd), "--store-only", "--device", "cpu", "--keep", "0"])
    assert res.exit_code == 0, res.output
    assert "statistics store" in res.output and "no run files" in res.output
    assert not list(rd.rglob("*.h5"))
    res = runner.invoke(app, ["ls", "--runs-dir", str(rd)])
    assert res.exit_code == 0 and "3 runs, 3 without a run file" in " ".join(res.output.split()), res.output
    res = runner.invoke(app, ["report", "--runs-dir", str(rd), "--n-resamples", "20"])
    assert res.exit_code == 0, res.output
    assert "from the store" in res.output and "zgr" in res.output
    res = runner.invoke(app, ["claims", "--runs-dir", str(rd), "--format", "md", "--n-resamples", "20"])
    assert res.exit_code == 0, res.output
    assert "numbers: the statistics store `" in res.output and "gram-store.hdf5" in res.output
    res = runner.invoke(app, ["sweep", "--problem", "toy-cat", "--estimators", "zgr", "--n", "100",
                              "--runs-dir", str(rd), "--store-only", "--no-gram"])
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1, res.output


def test_products_on_a_torch_device_equal_numpy(pair):
    """The device path (block sums held as torch tensors: a GPU in a store-only sweep) computes the
    same store as numpy: checked here with CPU tensors."""
    import dataclasses

    import torch

    from biasvar.gramstore.build import compute

    snap, files_dir, _, _, _ = pair
    runs = [store.read_run(r.path) for r in store.list_runs(files_dir)]
    runs.sort(key=lambda r: (r.spec != "rf(M=4)", r.spec))
    as_np = compute([(r, Path(r.path).name, "") for r in runs], load=lambda r: r)
    held = [dataclasses.replace(r, block_sum=torch.as_tensor(r.block_sum)) for r in runs]
    as_t = compute([(r, Path(r.path).name, "") for r in held], load=lambda r: r)
    np.testing.assert_array_equal(as_np.anchor, as_t.anchor)
    assert _rel(as_t.gram.q, as_np.gram.q) < 1e-13
    # one run at a time into a growing store, as the sweep does, gives the same again
    state = None
    for r in held:
        state = compute([(r, Path(r.path).name, "")], load=lambda r: r, old=state,
                        old_present=lambda s: next(h for h in held if (str(parse_spec(h.spec)), h.seed) == s.key))
    assert _rel(state.gram.q, as_np.gram.q) < 1e-13


def test_store_written_at_most_once_a_while_and_when_stopped(tmp_path, monkeypatch):
    """The store is rewritten at most every ``save_every_s`` and at the end; a sweep stopped
    (Ctrl-C) mid-run still saves every run completed before it, and the same command resumes."""
    import biasvar.gramstore.file as gf
    from biasvar.engine.storeonly import run_store_only

    real, calls = gf.write_store, []
    monkeypatch.setattr(gf, "write_store", lambda path, state: calls.append(len(state.gram.runs)) or real(path, state))
    snap = snapshot_of(ToyCat(), provenance={"test": "store-only-throttle"})
    plan = plan_sweep(snap, list(SPECS), reference="rf(M=4)", n=120, seed=0, runs_dir=tmp_path / "a")
    run_store_only(plan, OPTS, save_every_s=1e9)
    assert calls == [len(SPECS) + 1], "the store was written more than once"
    calls.clear()
    run_store_only(plan_sweep(snap, list(SPECS), reference="rf(M=4)", n=120, seed=0, runs_dir=tmp_path / "b"),
                   OPTS, save_every_s=0.0)
    assert calls == list(range(1, len(SPECS) + 2)), "save_every_s=0 writes after every run"

    calls.clear()
    plan = plan_sweep(snap, list(SPECS), reference="rf(M=4)", n=120, seed=0, runs_dir=tmp_path / "c")

    def stop(p):
        if p.run == plan[3]:  # its first progress call comes from drawing it: stopped mid-run
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_store_only(plan, OPTS, save_every_s=1e9, progress=stop)
    assert calls == [3], "the runs completed before the stop were not saved"
    again = run_store_only(plan, OPTS)
    assert again.store.runs == len(SPECS) + 1 and {Path(p).name for p, _, _ in again.computed} >= {
        plan[3].path.name, plan[4].path.name}


def test_the_commit_is_read_once_per_process(monkeypatch):
    """A long sweep records the commit of the code it loaded in every run file, not the tree's HEAD
    at each file's creation (the CPU claims run recorded four commits for one process before)."""
    import subprocess

    from biasvar import provenance

    provenance.git_commit.cache_clear()
    first = provenance.git_commit()
    calls = []
    real = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert provenance.git_commit() == first and calls == []
