"""The statistics store (``biasvar.gramstore``): every pair's Gram matrices from one anchored Gram
matrix equal those computed from the run files; adding runs computes only what is new; runs whose
files are gone keep their rows; a pair that can no longer be computed is refused in one line; the
file is versioned, checksummed and written atomically."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from biasvar import gramstore as gs
from biasvar import store
from biasvar.engine import sample_run
from biasvar.errors import AnalysisError
from biasvar.gramstore.build import compute
from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import VAE
from biasvar.snapshot import snapshot_of
from biasvar.stats import gram as sg

SPECS = ("rf(M=4)", "zgr", "st", "gs-st(t=0.5)")


def _runs(tmp: Path, problem, name: str, specs=SPECS, n: int = 240) -> tuple[Path, object]:
    snap = snapshot_of(problem, provenance={"test": name})
    rd = tmp / name
    for i, spec in enumerate(specs):
        sample_run(snap, spec, n=n, seed=i % 2, runs_dir=rd, device="cpu", keep=0)
    return rd, snap


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory) -> Path:
    return _runs(tmp_path_factory.mktemp("gs"), ToyCat(), "toy")[0]


@pytest.fixture(scope="module")
def vae_runs(tmp_path_factory) -> Path:
    return _runs(tmp_path_factory.mktemp("gs"), VAE(categories=4, vars=2, hidden=(8,)), "vae", n=200)[0]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(a - b), initial=0.0))


def _same_pair(pg1: sg.PairGram, pg0: sg.PairGram, tol: float) -> None:
    for f in ("dims", "ref_count", "test_count", "ref_m2", "test_m2"):
        np.testing.assert_array_equal(getattr(pg1, f), getattr(pg0, f), err_msg=f)
    for f in ("rr", "rt", "tt"):
        assert _rel(getattr(pg1, f), getattr(pg0, f)) < tol, f
    assert pg1.exact == pg0.exact
    for w_r, w_t in [(None, None), ("rand", "rand")]:
        rng = np.random.default_rng(1)
        wr = np.ones(len(pg0.ref_count)) if w_r is None else rng.poisson(1.0, len(pg0.ref_count)).astype(float) + 1
        wt = np.ones(len(pg0.test_count)) if w_t is None else rng.poisson(1.0, len(pg0.test_count)).astype(float) + 1
        for a, b in zip(sg.eq16(pg1, wr, wt), sg.eq16(pg0, wr, wt), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10 * float(np.max(np.abs(b), initial=0.0)))


@pytest.mark.parametrize("which", ["toy_runs", "vae_runs"])
def test_every_pair_equals_the_run_files(which, request, tmp_path):
    rd = request.getfixturevalue(which)
    res = gs.update_store(rd, path=tmp_path / "s.hdf5")
    ag = gs.read_store(res.path).gram
    assert len(ag.runs) == len(SPECS)
    full = {(r.spec, r.seed): store.read_run(r.path) for r in store.list_runs(rd)}
    ref_key = next(k for k in full if k[0] == "rf(M=4)")
    tol = 1e-12
    for key, run in full.items():
        pg0, c0 = sg.pair_gram(full[ref_key], run)
        pg1, c1 = gs.pair_gram(ag, ag.run(*ref_key), ag.run(*key))
        _same_pair(pg1, pg0, tol)
        assert abs(c1 - c0) < 1e-12
        pg0, c0 = sg.pair_gram(None, run, exact=run.exact)
        pg1, c1 = gs.pair_gram(ag, None, ag.run(*key))
        _same_pair(pg1, pg0, tol)
        assert abs(c1 - c0) < 1e-12
        _same_pair(gs.single_gram(ag, ag.run(*key)), sg.single_gram(run), tol)
    # any run can be the reference in the all-parameters layer (contrasts, Pareto marks)
    a, b = (next(k for k in full if k[0] == s) for s in ("zgr", "st"))
    pg0, _ = sg.pair_gram(full[a], full[b])
    pg1, _ = gs.pair_gram(ag, ag.run(*a), ag.run(*b), total_only=True)
    assert _rel(pg1.tt[0], pg0.tt[-1]) < 1e-12 and _rel(pg1.rt[0], pg0.rt[-1]) < 1e-12
    # per group it is kept only against unbiased runs: a refusal in one line, not a wrong number
    with pytest.raises(AnalysisError, match="lacks products") as e:
        gs.pair_gram(ag, ag.run(*a), ag.run(*b))
    assert "\n" not in str(e.value)


def test_adding_runs_equals_building_at_once(tmp_path):
    problem = ToyCat()
    rd, snap = _runs(tmp_path, problem, "inc", specs=("rf(M=4)", "zgr"))
    gs.update_store(rd)
    sample_run(snap, "st", n=240, seed=0, runs_dir=rd, device="cpu", keep=0)
    res = gs.update_store(rd)
    assert res.added == ("st seed 0",) and res.unchanged == 2
    again = gs.update_store(rd)
    assert again.added == () and again.unchanged == 3
    full = gs.update_store(rd, path=tmp_path / "full.hdf5", rebuild=True)
    inc, whole = gs.read_store(res.path).gram, gs.read_store(full.path).gram
    for a in ("rf(M=4)", "zgr", "st"):
        for b in ("rf(M=4)", "zgr", "st"):
            ka, kb = inc.run(a, 0 if a != "zgr" else 1).key, inc.run(b, 0 if b != "zgr" else 1).key
            p1, c1 = gs.pair_gram(inc, inc.run(*ka), inc.run(*kb), total_only=True)
            p0, c0 = gs.pair_gram(whole, whole.run(*ka), whole.run(*kb), total_only=True)
            assert _rel(p1.rt, p0.rt) < 1e-12 and _rel(p1.tt, p0.tt) < 1e-12 and abs(c1 - c0) < 1e-12


def test_a_gone_run_keeps_its_rows_and_missing_pairs_are_refused(tmp_path):
    rd, snap = _runs(tmp_path, ToyCat(), "gone", specs=("rf(M=4)", "st"))
    res = gs.update_store(rd)
    st_run = next(r for r in store.list_runs(rd) if r.spec == "st")
    os.remove(st_run.path)
    sample_run(snap, "zgr", n=240, seed=0, runs_dir=rd, device="cpu", keep=0)
    res = gs.update_store(rd)
    assert res.kept_without_file == ("st seed 1",) and res.added == ("zgr seed 0",)
    ag = gs.read_store(res.path).gram
    gs.pair_gram(ag, ag.run("rf(M=4)", 0), ag.run("st", 1))  # still analysable against the reference
    with pytest.raises(AnalysisError, match="lacks products"):
        gs.pair_gram(ag, ag.run("st", 1), ag.run("zgr", 0), total_only=True)


def test_a_resumed_run_is_recomputed(tmp_path):
    rd, snap = _runs(tmp_path, ToyCat(), "resume", specs=("rf(M=4)", "zgr"), n=120)
    gs.update_store(rd)
    sample_run(snap, "zgr", n=360, seed=1, runs_dir=rd, device="cpu", keep=0)
    res = gs.update_store(rd)
    assert res.recomputed == ("zgr seed 1",)
    ag = gs.read_store(res.path).gram
    run = store.read_run(next(r.path for r in store.list_runs(rd) if r.spec == "zgr"))
    assert ag.run("zgr", 1).count.sum() == run.block_count.sum() == 360
    pg0, _ = sg.pair_gram(None, run, exact=run.exact)
    pg1, _ = gs.pair_gram(ag, None, ag.run("zgr", 1))
    _same_pair(pg1, pg0, 1e-12)


def test_panels_give_the_same_numbers(toy_runs, tmp_path):
    listed = sorted(store.list_runs(toy_runs), key=lambda r: r.spec != "rf(M=4)")  # the reference first
    new = [(r, r.path, "") for r in listed]
    load = lambda r: store.read_run(r.path)  # noqa: E731
    big = compute(new, load=load).gram
    tiny = compute(new, load=load, memory_bytes=1).gram  # one run per panel
    np.testing.assert_allclose(tiny.q, big.q, rtol=1e-12, atol=0)
    star = compute(new, load=load, mode="star").gram
    a = star.runs[0].key
    for r in star.runs:
        p1, _ = gs.pair_gram(star, star.run(*a), star.run(*r.key))
        p0, _ = gs.pair_gram(big, big.run(*a), big.run(*r.key))
        assert _rel(p1.tt, p0.tt) < 1e-12 and _rel(p1.rt, p0.rt) < 1e-12


def test_file_is_checked_atomic_and_readable_by_the_group(toy_runs, tmp_path):
    rd = tmp_path / "runs"
    shutil.copytree(toy_runs, rd)
    old = os.umask(0o022)
    try:
        res = gs.update_store(rd)
    finally:
        os.umask(old)
    assert res.path.name == gs.FILE_NAME and res.path.parent.parent == rd
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o644
    assert [p.name for p in res.path.parent.iterdir() if p.name.startswith(".")] == []
    assert all(p.suffix != ".hdf5" for p in store.list_run_files(rd))  # never listed as a run file
    with h5py.File(res.path, "r") as f:
        assert f.attrs["format"] == "biasvar-gram" and int(f.attrs["format_version"]) == 1
        assert all(f[name].fletcher32 for name in f)
    # a flipped byte in the Gram data is an error naming the file, not a number
    data = bytearray(res.path.read_bytes())
    with h5py.File(res.path, "r") as f:
        offset = f["q"].id.get_chunk_info(0).byte_offset
    data[offset + 3] ^= 0xFF
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(bytes(data))
    with pytest.raises(AnalysisError, match="damaged") as e:
        gs.read_store(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "foreign.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(AnalysisError, match="damaged"):
        gs.read_store(tmp_path / "foreign.hdf5")
    with h5py.File(tmp_path / "newer.hdf5", "w") as f:
        f.attrs["format"], f.attrs["format_version"] = "biasvar-gram", 99
    with pytest.raises(AnalysisError, match="newer"):
        gs.read_store(tmp_path / "newer.hdf5")


def test_cli_builds_updates_and_drops_runs(tmp_path):
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    rd, snap = _runs(tmp_path, ToyCat(), "cli", specs=("rf(M=4)", "zgr"))
    runner = CliRunner()
    out = runner.invoke(app, ["gram", "--runs-dir", str(rd)])
    assert out.exit_code == 0, out.output
    assert "2 runs (2 added, 0 unchanged)" in " ".join(out.output.split())
    sample_run(snap, "st", n=240, seed=0, runs_dir=rd, device="cpu", keep=0)
    out = runner.invoke(app, ["gram", "--runs-dir", str(rd), "--drop-runs"])
    assert out.exit_code == 0, out.output
    assert "3 runs (1 added, 2 unchanged)" in " ".join(out.output.split())
    assert "deleted 3 run file(s)" in out.output
    assert store.list_run_files(rd) == []
    ag = gs.read_store(gs.store_path(rd, snap.id)).gram
    gs.pair_gram(ag, ag.run("zgr", 1), ag.run("st", 0), total_only=True)  # every pair is still there
    # bad input: one line, exit 1
    out = runner.invoke(app, ["gram", "--runs-dir", str(tmp_path / "nowhere")])
    assert out.exit_code == 1 and "does not exist" in out.output and "Traceback" not in out.output


def test_cli_gram_as_a_subprocess(toy_runs, tmp_path):
    import subprocess
    import sys

    rd = tmp_path / "runs"
    shutil.copytree(toy_runs, rd)
    done = subprocess.run([sys.executable, "-m", "biasvar_cli.main", "gram", "--runs-dir", str(rd)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 runs (4 added, 0 unchanged)" in " ".join(done.stdout.split())
    (rd / "junk").mkdir()
    bad = subprocess.run([sys.executable, "-m", "biasvar_cli.main", "gram", "--runs-dir", str(rd), "--store",
                          str(rd / "junk")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "is a folder" in bad.stderr


def _numbers(report) -> list[float]:
    """Every number of a report: rows (with their per-group rows) and contrasts."""
    out: list[float] = []

    def est(e) -> None:
        if e is not None:
            out.extend(x for x in (e.value, e.low, e.high, e.se) if x is not None)

    for r in report.rows:
        for e in (r.b2, r.variance, r.mse):
            est(e)
        out.extend(x for x in (r.cosine, r.ref_share, r.ref_only_width) if isinstance(x, float))
        for g in r.groups:
            for e in (g.b2, g.variance, g.mse):
                est(e)
    for c in report.contrasts:
        est(c.b2)
        est(c.variance)
    return out


@pytest.mark.parametrize("which,reference", [("toy_runs", "rf(M=4)"), ("toy_runs", "exact"),
                                             ("vae_runs", "rf(M=4)"), ("vae_runs", "exact")])
def test_reports_from_the_store_equal_reports_from_the_run_files(which, reference, request, tmp_path):
    from biasvar.report import analyze_runs
    from biasvar.stats.intervals import METHODS

    rd = tmp_path / "runs"
    shutil.copytree(request.getfixturevalue(which), rd)
    path = gs.update_store(rd).path
    contrasts = [("zgr", "st"), ("gs-st(t=0.5)", "zgr")]
    for method in METHODS:
        kw = dict(reference=reference, method=method, n_resamples=200, contrasts=contrasts)
        a = analyze_runs(rd, **kw)
        b = analyze_runs(rd, store=path, **kw)
        assert a.store is None and b.store == str(path)
        assert [(r.spec, r.seed, r.n, r.pareto_mark) for r in a.rows] == [(r.spec, r.seed, r.n, r.pareto_mark)
                                                                         for r in b.rows]
        assert any(r.groups for r in a.rows)
        x, y = np.array(_numbers(a)), np.array(_numbers(b))
        assert x.shape == y.shape and x.size > 50
        # 1e-11 of the largest number: with two threads the sums' order (hence their last bits) may differ
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-11 * np.max(np.abs(x)), err_msg=method)
    # the run files deleted: the same report from the store alone (found in the snapshot's folder)
    for p in store.list_run_files(rd):
        p.unlink()
    c = analyze_runs(rd, reference=reference, method="gauss-eb", n_resamples=200, contrasts=contrasts)
    assert c.store is not None and Path(c.store) == path
    np.testing.assert_allclose(np.array(_numbers(c)), np.array(_numbers(
        analyze_runs(rd, store=path, reference=reference, method="gauss-eb", n_resamples=200,
                     contrasts=contrasts))), rtol=0, atol=0)


def test_a_sweep_updates_the_store_at_its_end(tmp_path):
    from biasvar import engine
    from biasvar.engine import executors

    snap = snapshot_of(ToyCat(), provenance={"test": "sweep"})
    plan = engine.plan_sweep(snap, ["zgr", "st"], reference="rf(M=4)", n=120, runs_dir=tmp_path)
    result = executors.run_sweep(plan, engine.RunOptions(keep=0))
    assert result.store is not None and result.store.runs == 3 and len(result.store.added) == 3
    assert result.store.path == gs.store_path(tmp_path, snap.id)
    again = executors.run_sweep(plan, engine.RunOptions(keep=0))  # complete runs: nothing new to compute
    assert again.store.added == () and again.store.unchanged == 3
    none = executors.run_sweep(plan, engine.RunOptions(keep=0), gram=False)
    assert none.store is None
