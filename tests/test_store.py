"""Run files: whole blocks, resume after an interruption or a SIGKILL, refusal of mismatched files,
one writer at a time, readers during writing, the reader contract of the analysis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from biasvar import engine, store
from biasvar.errors import StoreError
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import save_snapshot, snapshot_of

CONTRACT_ATTRS = ("schema_version", "spec", "seed", "n_target", "n_done", "block_size", "status",
                  "snapshot_hash", "snapshot_path", "problem", "params_glob", "layout", "dim", "cost",
                  "draws_per_s", "wall_s", "device", "dtype", "biasvar_version", "torch_version",
                  "cuda_version", "git_commit", "created")


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_run(a: store.RunData, b: store.RunData) -> None:
    np.testing.assert_array_equal(a.block_count, b.block_count)
    np.testing.assert_array_equal(a.block_nonfinite, b.block_nonfinite)
    np.testing.assert_allclose(a.block_sum, b.block_sum, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.block_m2, b.block_m2, rtol=1e-9)
    np.testing.assert_allclose(a.block_sumsq, b.block_sumsq, rtol=1e-9)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(a.sample_index, b.sample_index)


class Stop(Exception):
    pass


def test_contract_of_a_complete_run(tmp_path):
    problem = ToyCat(vars=2, categories=4)
    snap = snapshot_of(problem)
    path = engine.sample_run(snap, "gr-mc(t=0.5,M=3)", n=250, seed=4, runs_dir=tmp_path, block_size=100)
    assert path == store.run_path(tmp_path, snap.id, "gr-mc(M=3,t=0.5)", 4)
    assert path.name == "gr-mc(M=3,t=0.5)-s4.h5" and path.parent.name == snap.id
    run = store.read_run(path)
    for key in CONTRACT_ATTRS:
        assert key in run.attrs, key
    assert run.status == "complete" and run.spec == "gr-mc(M=3,t=0.5)" and run.seed == 4
    assert run.attrs["n_done"] == run.attrs["n_target"] == run.n == 250
    assert run.block_count.tolist() == [100, 100, 50]
    assert run.block_sum.dtype == np.float32 and run.block_sum.shape == (3, 8)
    assert run.block_m2.shape == run.block_sumsq.shape == (3, 1) and run.block_m2.dtype == np.float64
    assert run.groups == ["logits"] and run.group_sizes.tolist() == [8]
    assert run.attrs["layout"] == [["logits", [2, 4], 0]] and run.attrs["problem"]["kind"] == "toy-cat"
    assert run.exact is not None and run.exact.shape == (8,)
    assert run.attrs["snapshot_hash"] == snap.hash and run.attrs["cost"] == 1
    cheap = store.read_run(path, load_sums=False)
    assert cheap.block_sum is None and cheap.n == 250
    assert [r.path for r in store.list_runs(tmp_path)] == [str(path)]
    assert store.list_runs(tmp_path, "nope") == []
    # a complete run is not redone; a larger n extends it
    again = engine.sample_run(snap, "gr-mc(t=0.5,M=3)", n=250, seed=4, runs_dir=tmp_path)
    assert store.read_run(again).n == 250
    engine.sample_run(snap, "gr-mc(t=0.5,M=3)", n=300, seed=4, runs_dir=tmp_path)
    assert store.read_run(path).block_count.tolist() == [100, 100, 50, 50]


def test_interrupted_run_resumes_to_the_same_statistics(tmp_path):
    snap = snapshot_of(ToyCat(vars=3, categories=4))
    kw = dict(n=1000, seed=1, block_size=64, keep=6)
    whole = store.read_run(engine.sample_run(snap, "rf(M=3)", runs_dir=tmp_path / "a", chunk=100, **kw))

    calls = []

    def stop_after_three(done, total, nonfinite, rate):
        calls.append(done)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        engine.sample_run(snap, "rf(M=3)", runs_dir=tmp_path / "b", chunk=100, progress=stop_after_three,
                          **kw)
    path = store.run_path(tmp_path / "b", snap.id, "rf(M=3)", 1)
    partial = store.read_run(path)
    assert partial.status == "running" and partial.attrs["n_done"] == 256 and len(partial.block_count) == 4
    engine.sample_run(snap, "rf(M=3)", runs_dir=tmp_path / "b", chunk=37, **kw)
    resumed = store.read_run(path)
    assert resumed.status == "complete"
    assert_same_run(resumed, whole)


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """A writer killed with SIGKILL leaves whole blocks only; readers see them while it runs; the same
    command resumes (recovering the file HDF5 flags as still open) and ends equal to a clean run."""
    snap_path = tmp_path / "toy.pt"
    snap = save_snapshot(snap_path, ToyCat(vars=3, categories=4))
    n, bs, spec = 200_000, 1000, "zgr"
    cmd = [sys.executable, "-m", "biasvar_cli.main", "sample", "--snapshot", str(snap_path), "--estimator",
           spec,
           "--n", str(n), "--block-size", str(bs), "--chunk", "20", "--keep", "4", "--runs-dir",
           str(tmp_path / "killed")]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = store.run_path(tmp_path / "killed", snap.id, spec, 0)
    seen_running = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                try:
                    run = store.read_run(path)  # a reader while the writer is active (SWMR)
                except StoreError:
                    run = None
                if run is not None and len(run.block_count) >= 2:
                    seen_running = run
                    break
            time.sleep(0.02)
        assert proc.poll() is None, f"writer ended early: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert seen_running is not None and seen_running.status == "running"
    assert seen_running.samples.shape[0] == seen_running.n == int(seen_running.block_count.sum())
    killed = store.read_run(path)
    assert killed.status == "running" and 2 <= len(killed.block_count) < n // bs
    assert killed.attrs["n_done"] == bs * len(killed.block_count)

    recovered = []
    copy = store._copy_committed
    monkeypatch.setattr(store, "_copy_committed", lambda p: (recovered.append(p), copy(p)))
    engine.sample_run(snap, spec, n=n, seed=0, runs_dir=tmp_path / "killed", block_size=bs, keep=4,
                      chunk=5000)
    assert recovered == [path]  # HDF5 kept the killed writer's "open" flag: the file was rewritten
    whole = engine.sample_run(snap, spec, n=n, seed=0, runs_dir=tmp_path / "whole", block_size=bs, keep=4,
                              chunk=5000)
    resumed = store.read_run(path)
    assert resumed.status == "complete" and resumed.n == n
    assert_same_run(resumed, store.read_run(whole))
    assert not store._lock_path(path).exists()


def test_mismatched_file_is_refused_and_restart_overwrites(tmp_path):
    snap = snapshot_of(ToyCat())
    path = engine.sample_run(snap, "zgr", n=50, seed=0, runs_dir=tmp_path, block_size=10)
    size = path.stat().st_size
    with pytest.raises(StoreError, match="params_glob='\\*'.*params_glob='logits'.*--restart"):
        engine.sample_run(snap, "zgr", n=80, seed=0, runs_dir=tmp_path, params="logits")
    with pytest.raises(StoreError, match="dtype"):
        engine.sample_run(snap, "zgr", n=80, seed=0, runs_dir=tmp_path, dtype="float32")
    assert path.stat().st_size == size and store.read_run(path).n == 50
    # a file copied under another run's name (another spec) is refused too
    other = store.run_path(tmp_path, snap.id, "st", 0)
    other.write_bytes(path.read_bytes())
    with pytest.raises(StoreError, match="spec='zgr'.*spec='st'"):
        engine.sample_run(snap, "st", n=50, seed=0, runs_dir=tmp_path)
    # another snapshot (hash) under this snapshot's folder
    wrong = snapshot_of(ToyCat(seed=1))
    moved = store.run_path(tmp_path, wrong.id, "zgr", 0)
    moved.parent.mkdir(parents=True)
    moved.write_bytes(path.read_bytes())
    with pytest.raises(StoreError, match="snapshot_hash"):
        engine.sample_run(wrong, "zgr", n=50, seed=0, runs_dir=tmp_path)
    engine.sample_run(snap, "zgr", n=80, seed=0, runs_dir=tmp_path, params="logits", restart=True)
    run = store.read_run(path)
    assert run.attrs["params_glob"] == "logits" and run.n == 80


def test_one_writer_at_a_time(tmp_path):
    snap = snapshot_of(ToyCat())
    path = store.run_path(tmp_path, snap.id, "zgr", 0)

    def try_second(done, total, nonfinite, rate):
        with pytest.raises(StoreError, match="being written by another process"):
            engine.sample_run(snap, "zgr", n=30, seed=0, runs_dir=tmp_path)
        raise Stop

    with pytest.raises(Stop):
        engine.sample_run(snap, "zgr", n=30, seed=0, runs_dir=tmp_path, chunk=5, progress=try_second)
    assert store.read_run(path).status == "running"


def test_damaged_or_foreign_files_give_store_errors(tmp_path):
    bad = tmp_path / "abc" / "zgr-s0.h5"
    bad.parent.mkdir()
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="cannot read run file"):
        store.read_run(bad)
    with pytest.raises(StoreError, match="not found"):
        store.read_run(tmp_path / "missing.h5")
    assert store.list_runs(tmp_path) == []


def test_writer_commits_whole_blocks_only(tmp_path):
    """Rows written past the committed count (a block cut short) are invisible to readers and dropped
    on reopening."""
    path = tmp_path / "s" / "x-s0.h5"
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": 3, "dtype": "float64", "block_size": 2, "layout": [["w", [3], 0]]}
    open_args = dict(n_target=10, group_sizes=np.array([3]), sample_index=np.array([0, 2]))
    block = store.BlockStats(2, 0, np.ones(3, np.float32), np.ones(1), np.ones(1),
                             np.ones((2, 2), np.float32))
    with store.RunWriter.open(path, header, **open_args) as w:
        w.append(block, wall_s=0.1)
        f = w._f  # simulate a crash mid-block: rows resized and written, state not committed
        for name in ("block_sum", "block_count"):
            f[name].resize(2, axis=0)
        f["samples"].resize(4, axis=0)
        f.flush()
        run = store.read_run(path)
        assert len(run.block_count) == 1 and run.samples.shape == (2, 2) and run.attrs["n_done"] == 2
    with store.RunWriter.open(path, header, **open_args) as w:
        assert w.n_done == 2 and w.n_blocks == 1
        w.append(store.BlockStats(1, 1, 2 * np.ones(3, np.float32), np.zeros(1), np.ones(1),
                                  np.ones((1, 2), np.float32)), wall_s=0.1)
    run = store.read_run(path)
    assert run.block_count.tolist() == [2, 1] and run.block_nonfinite.tolist() == [0, 1]
    assert run.samples.shape == (3, 2) and run.attrs["n_done"] == 4 and run.status == "running"
    np.testing.assert_array_equal(run.block_sum[1], [2, 2, 2])


def test_run_path_is_safe_for_every_canonical_spec(tmp_path):
    p = store.run_path(tmp_path, "abc", "st-zgr(alpha=0.5,t=2)", 3)
    assert p == Path(tmp_path) / "abc" / "st-zgr(alpha=0.5,t=2)-s3.h5"


def test_a_fig1_sized_run_file_stays_under_200_mb(tmp_path):
    """d = 1,149,456 parameters (12 groups), n = 1e4 draws, K = 256 kept coordinates, default blocks."""
    dim, n, G = 1_149_456, 10_000, 12
    bs = engine.choose_block_size(n, dim)
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "zgr", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": dim, "dtype": "float32", "block_size": bs,
              "layout": [["w", [dim], 0]]}
    gen = np.random.default_rng(0)
    row = gen.standard_normal(dim).astype(np.float32)  # incompressible (no compression is used anyway)
    path = tmp_path / "s" / "zgr-s0.h5"
    with store.RunWriter.open(path, header, n_target=n, group_sizes=np.full(G, dim // G),
                              sample_index=engine.keep_index(dim, 256)) as w:
        while w.n_done < n:
            c = min(bs, n - w.n_done)
            kept = gen.standard_normal((c, 256)).astype(np.float32)
            w.append(store.BlockStats(c, 0, row, np.ones(G), np.ones(G), kept), wall_s=0.0)
        w.finish()
    run = store.read_run(path, load_sums=False)
    assert len(run.block_count) >= 32 and run.n == n and run.samples.shape == (n, 256)
    assert path.stat().st_size < 200e6
