"""Run files: whole blocks, resume after an interruption or a SIGKILL, refusal of mismatched files,
one writer at a time, readers during writing, the reader contract of the analysis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import sigkill_after_blocks

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
    assert partial.status == "interrupted" and partial.attrs["n_done"] == 256 and len(partial.block_count) == 4
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
    seen_running = sigkill_after_blocks(proc, path, timeout=60)
    assert seen_running is not None and seen_running.status == "running"
    assert seen_running.samples.shape[0] == seen_running.n == int(seen_running.block_count.sum())
    killed = store.read_run(path)
    assert killed.status == "interrupted" and 2 <= len(killed.block_count) < n // bs
    assert killed.attrs["n_done"] == bs * len(killed.block_count)

    recovered = []
    copy = store.maintenance.copy_committed
    monkeypatch.setattr(store.maintenance, "copy_committed", lambda p: (recovered.append(p), copy(p)))
    engine.sample_run(snap, spec, n=n, seed=0, runs_dir=tmp_path / "killed", block_size=bs, keep=4,
                      chunk=5000)
    assert recovered == [path]  # HDF5 kept the killed writer's "open" flag: the file was rewritten
    whole = engine.sample_run(snap, spec, n=n, seed=0, runs_dir=tmp_path / "whole", block_size=bs, keep=4,
                              chunk=5000)
    resumed = store.read_run(path)
    assert resumed.status == "complete" and resumed.n == n
    assert_same_run(resumed, store.read_run(whole))
    assert not store.lock_path(path).exists()


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
    assert store.read_run(path).status == "interrupted"


def test_damaged_or_foreign_files_give_store_errors(tmp_path):
    bad = tmp_path / "abc" / "zgr-s0.h5"
    bad.parent.mkdir()
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(store.DamagedError, match="damaged \\(not an HDF5 file\\).*--restart"):
        store.read_run(bad)
    with pytest.raises(StoreError, match="not found"):
        store.read_run(tmp_path / "missing.h5")
    assert store.list_runs(tmp_path) == []
    runs, bad_runs = store.scan_runs(tmp_path)
    assert runs == [] and bad_runs == [store.BadRun(str(bad), "damaged", "not an HDF5 file")]
    (tmp_path / "abc" / "empty-s0.h5").write_bytes(b"")
    with pytest.raises(store.DamagedError, match="empty file"):
        store.read_run(tmp_path / "abc" / "empty-s0.h5")
    (tmp_path / "abc" / "dir-s0.h5").mkdir()
    with pytest.raises(StoreError, match="is not a file"):
        store.read_run(tmp_path / "abc" / "dir-s0.h5")


def _truncate_in_child(path: Path, out: Path, size: int, timeout: float = 60) -> str:
    """Copy ``path`` truncated to ``size`` bytes and read it in a child process (a hang cannot
    block the test run): the child's one-line outcome."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(path.read_bytes()[:size])
    code = ("import sys\nfrom biasvar import store\n"
            "try:\n    r = store.read_run(sys.argv[1])\n    print('read', r.n)\n"
            "except store.StoreError as e:\n    print('error', e)\n"
            "runs, bad = store.scan_runs(sys.argv[2])\nprint('scan', len(runs), [b.problem for b in bad])\n")
    res = subprocess.run([sys.executable, "-c", code, str(out), str(out.parent.parent)], capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    return res.stdout


def test_a_truncated_run_file_is_reported_in_bounded_time_never_hangs(tmp_path):
    """Issue 12, case 1: a SWMR reader of a truncated file used to retry for hours (HDF5 doubles
    its sleep between 100 metadata read attempts); now every truncation is a one-line error, and
    the listing goes on with the other files."""
    snap = snapshot_of(ToyCat(vars=3, categories=4))
    path = engine.sample_run(snap, "zgr", n=5000, seed=0, runs_dir=tmp_path / "runs", block_size=100, keep=4)
    size = path.stat().st_size
    for i, frac in enumerate((0.0, 0.01, 0.1, 0.3, 0.5, 0.8, 0.99)):
        cut = int(size * frac)
        t0 = time.monotonic()
        out = _truncate_in_child(path, tmp_path / f"t{i}" / snap.id / path.name, cut)
        assert time.monotonic() - t0 < 30
        lines = out.splitlines()
        assert lines[0].startswith("error run file") and "is damaged (" in lines[0], (frac, out)
        assert "truncated" in lines[0] or "empty" in lines[0] or "not an HDF5" in lines[0], lines[0]
        assert lines[1] == "scan 0 ['damaged']", lines


def test_status_is_truthful_running_interrupted_complete(tmp_path):
    """Issue 12, case 2: a writer that stopped is not "running"; a live one is."""
    snap = snapshot_of(ToyCat())
    path = store.run_path(tmp_path, snap.id, "zgr", 0)
    seen = []

    def look(done, total, nonfinite, rate):
        if done >= 20 and not seen:
            seen.append(store.read_run(path, load_sums=False).status)
            assert store.writer_alive(path)
            raise Stop

    with pytest.raises(Stop):
        engine.sample_run(snap, "zgr", n=100, seed=0, runs_dir=tmp_path, chunk=10, block_size=10, progress=look)
    assert seen == ["running"]
    assert not store.writer_alive(path)
    assert store.read_run(path).status == "interrupted"
    engine.sample_run(snap, "zgr", n=100, seed=0, runs_dir=tmp_path, block_size=10)
    assert store.read_run(path).status == "complete"


def test_a_run_that_fails_before_its_first_draw_leaves_no_file(tmp_path):
    """Issue 12, case 2: `--seed -1` used to leave a file listed as "running 0/200"."""
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": 3, "dtype": "float64", "block_size": 2, "layout": [["w", [3], 0]]}
    path = tmp_path / "s" / "x-s0.h5"
    with pytest.raises(Stop), store.RunWriter.open(path, header, n_target=10, group_sizes=np.array([3]),
                                                   sample_index=np.array([0])):
        assert path.exists()
        raise Stop
    assert not path.exists() and not store.lock_path(path).exists()
    assert store.list_run_files(tmp_path) == []


def test_runs_dir_that_is_a_file_is_one_store_error(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": 3, "dtype": "float64", "block_size": 2}
    with pytest.raises(StoreError, match="a file is in the way"):
        store.RunWriter.open(f / "s" / "x-s0.h5", header, n_target=10, group_sizes=np.array([3]),
                             sample_index=np.array([0]))
    assert store.list_run_files(f) == []


def test_a_run_file_in_another_snapshots_folder_is_listed_as_misplaced(tmp_path):
    """Issue 12, case 4: it used to be analysed under its own id without a word."""
    snap = snapshot_of(ToyCat())
    path = engine.sample_run(snap, "zgr", n=50, seed=0, runs_dir=tmp_path, block_size=10)
    other = tmp_path / "0123456789ab" / path.name
    other.parent.mkdir()
    other.write_bytes(path.read_bytes())
    renamed = path.with_name("st-s0.h5")
    renamed.write_bytes(path.read_bytes())
    runs, bad = store.scan_runs(tmp_path)
    assert [r.path for r in runs] == [str(path)]
    assert [(b.path, b.problem) for b in bad] == [(str(other), "misplaced"), (str(renamed), "misplaced")]
    assert f"lies in the folder of snapshot 0123456789ab; move it to {path}" in bad[0].reason
    assert "holds the run zgr seed 0, but is named st-s0.h5" in bad[1].reason
    assert [r.path for r in store.list_runs(tmp_path)] == [str(path)]


def test_the_block_in_progress_is_saved_and_resumed_exactly(tmp_path):
    """A saved partial block survives the writer (and a SIGKILL-style recovery copy); readers see
    whole blocks only, ``n_done`` counts the saved draws, and a smaller save is refused."""
    path = tmp_path / "s" / "x-s0.h5"
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": 3, "dtype": "float64", "block_size": 4, "layout": [["w", [3], 0]]}
    open_args = dict(n_target=10, group_sizes=np.array([3]), sample_index=np.array([0, 2]))
    s = np.arange(6, dtype=np.float32).reshape(3, 2)
    with store.RunWriter.open(path, header, **open_args) as w:
        w.append(store.BlockStats(4, 0, np.ones(3, np.float32), np.ones(1), np.ones(1), np.ones((4, 2), np.float32)),
                 wall_s=0.5)
        w.save_pending(store.PendingStats(1, 1, np.full(3, 0.1), np.array([0.2]), np.array([0.3]), s[:1]),
                       wall_s=0.25)
        w.save_pending(store.PendingStats(2, 1, np.full(3, 1 / 3), np.array([2 / 3]), np.array([0.7]), s[:2]),
                       wall_s=0.25)
        with pytest.raises(ValueError, match="shrink"):
            w.save_pending(store.PendingStats(1, 0, np.zeros(3), np.zeros(1), np.zeros(1), s[:1]), wall_s=0)
        run = store.read_run(path)
        assert run.status == "running" and run.attrs["n_done"] == 7 and run.attrs["n_pending"] == 3
        assert run.n == 4 and run.samples.shape == (4, 2)
    run = store.read_run(path)
    assert run.status == "interrupted" and run.attrs["n_done"] == 7 and run.attrs["wall_s"] == 1.0
    store.maintenance.copy_committed(path)  # what a resume after SIGKILL does
    with store.RunWriter.open(path, header, **open_args) as w:
        assert w.n_done == 7 and w.n_blocks == 1
        p = w.pending()
        assert (p.count, p.nonfinite, p.draws) == (2, 1, 3)
        np.testing.assert_array_equal(p.sum, np.full(3, 1 / 3))
        np.testing.assert_array_equal(p.m2, [2 / 3])
        np.testing.assert_array_equal(p.samples, s[:2])
        w.append(store.BlockStats(3, 1, np.ones(3, np.float32), np.ones(1), np.ones(1), s), wall_s=0.1)
        assert w.pending() is None and w.n_done == 8
    run = store.read_run(path)
    assert run.block_count.tolist() == [4, 3] and run.block_nonfinite.tolist() == [0, 1]
    np.testing.assert_array_equal(run.samples[4:], s)
    assert run.attrs["n_pending"] == 0 and run.attrs["n_done"] == 8


def test_a_first_layout_file_is_upgraded_on_resume(tmp_path):
    """Files written before the block-in-progress slots (8-entry state row) still read and resume."""
    import h5py

    path = tmp_path / "s" / "x-s0.h5"
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": 3, "dtype": "float64", "block_size": 2, "layout": [["w", [3], 0]]}
    open_args = dict(n_target=10, group_sizes=np.array([3]), sample_index=np.array([0]))
    with store.RunWriter.open(path, header, **open_args) as w:
        w.append(store.BlockStats(2, 0, np.ones(3, np.float32), np.ones(1), np.ones(1), np.ones((2, 1), np.float32)),
                 wall_s=0.1)
    with h5py.File(path, "a", libver="latest") as f:  # back to the first layout
        state = f["state"][()][:8]
        for name in ("state", "pending_sum", "pending_m2", "pending_sumsq"):
            del f[name]
        f.create_dataset("state", data=state)
    assert store.read_run(path).n == 2
    with store.RunWriter.open(path, header, **open_args) as w:
        assert w.n_done == 2 and w.pending() is None
        w.save_pending(store.PendingStats(1, 0, np.ones(3), np.ones(1), np.ones(1), np.ones((1, 1), np.float32)),
                       wall_s=0.1)
    assert store.read_run(path).attrs["n_done"] == 3


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
    assert run.samples.shape == (3, 2) and run.attrs["n_done"] == 4 and run.status == "interrupted"
    np.testing.assert_array_equal(run.block_sum[1], [2, 2, 2])


def test_run_path_is_safe_for_every_canonical_spec(tmp_path):
    p = store.run_path(tmp_path, "abc", "st-zgr(alpha=0.5,t=2)", 3)
    assert p == Path(tmp_path) / "abc" / "st-zgr(alpha=0.5,t=2)-s3.h5"


def test_a_fig1_sized_run_file_stays_under_200_mb(tmp_path, monkeypatch):
    """d = 1,149,456 parameters (12 groups), n = 1e4 draws, K = 256 kept coordinates, default blocks,
    without the lossless filter (the bound must not rest on how well the sums compress)."""
    monkeypatch.setenv(store.COMPRESSION_ENV, "none")
    dim, n, G = 1_149_456, 10_000, 12
    bs = engine.choose_block_size(n, dim)
    header = {"schema_version": store.SCHEMA_VERSION, "spec": "zgr", "seed": 0, "snapshot_hash": "h",
              "params_glob": "*", "dim": dim, "dtype": "float32", "block_size": bs,
              "layout": [["w", [dim], 0]]}
    gen = np.random.default_rng(0)
    row = gen.standard_normal(dim).astype(np.float32)
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


def assert_identical_runs(a: store.RunData, b: store.RunData) -> None:
    """Every dataset of the run file bit for bit (wall-clock bookkeeping aside)."""
    for name in ("block_count", "block_nonfinite", "block_sum", "block_m2", "block_sumsq", "samples",
                 "sample_index", "group_sizes"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), (name, np.max(np.abs(x.astype(float) - y.astype(float))))


@pytest.mark.parametrize(("spec", "whole_chunk", "chunks"), [
    ("gr-mc(t=0.5,M=3)", 50, (50, 50, 50)), ("zgr", 64, (64, 64, 64)),
    ("rf(M=4)", 50, (7, 100, 13)), ("rf(M=4)", 50, (1000, 3, 64)),
])
def test_resume_is_bit_identical(tmp_path, monkeypatch, spec, whole_chunk, chunks):
    """Issue 12, case 3: block_m2/block_sumsq used to differ in the last bits after a resume (the
    block moments were merged chunk by chunk). Steps of 64 draws in blocks of 500: an interruption
    saves the whole steps of the block in progress, and the resumed run continues them.

    With the same chunk size every estimator resumes to the same bits (aligned chunks); across
    chunk sizes the statistics add no dependence of their own: rf's per-draw gradients do not
    depend on the chunking, and its files are the same bits whatever the chunks."""
    monkeypatch.setattr(engine.blocks, "STEP_MAX", 64)
    snap = snapshot_of(ToyCat(vars=3, categories=4))
    kw = dict(n=3000, seed=2, block_size=500, keep=5)
    whole = store.read_run(engine.sample_run(snap, spec, runs_dir=tmp_path / "a", chunk=whole_chunk, **kw))
    calls, stops = [], [1234, 2345]

    def stop(done, total, nonfinite, rate):
        calls.append(done)
        if done >= stops[0]:
            stops.pop(0)
            raise Stop

    path = store.run_path(tmp_path / "b", snap.id, whole.spec, 2)
    pending = []
    for c in chunks[:2]:
        with pytest.raises(Stop):
            engine.sample_run(snap, spec, runs_dir=tmp_path / "b", chunk=c, progress=stop, **kw)
        a = store.read_run(path).attrs
        assert a["status"] == "interrupted" and a["n_done"] == 500 * a["blocks"] + a["n_pending"]
        assert a["n_pending"] % 64 == 0 and a["n_done"] > calls[-1] - 64
        pending.append(a["n_pending"])
    assert any(pending)
    engine.sample_run(snap, spec, runs_dir=tmp_path / "b", chunk=chunks[-1], **kw)
    resumed = store.read_run(path)
    assert resumed.status == "complete" and resumed.n == whole.n
    assert_identical_runs(resumed, whole)


@pytest.mark.parametrize(("kw", "msg"), [
    (dict(seed=-1), "seed must be between 0 and"), (dict(seed=2**64), "seed must be between 0 and"),
    (dict(n=0), "n must be at least 1 draws"), (dict(chunk=0), "chunk must be at least 1"),
    (dict(block_size=0), "block size must be at least 1"), (dict(keep=-3), "keep must be at least 0"),
    (dict(seed=1.5), "seed must be an integer"),
])
def test_out_of_range_run_arguments_are_one_line_and_leave_no_file(tmp_path, kw, msg):
    """Issue 12, case 4: `--seed -1` was a numpy ValueError and left a file listed as running."""
    from biasvar.errors import SpecError

    snap = snapshot_of(ToyCat())
    with pytest.raises(SpecError, match=msg):
        engine.sample_run(snap, "zgr", **{"n": 10, **kw}, runs_dir=tmp_path)
    assert list(tmp_path.rglob("*")) == []


def test_report_leaves_out_damaged_and_misplaced_files_with_a_note(tmp_path):
    """Issue 12, cases 1 and 4: `report` names each file it cannot use, and analyses the rest."""
    from biasvar.report import analyze_runs

    snap = snapshot_of(ToyCat())
    path = engine.sample_run(snap, "zgr", n=400, seed=0, runs_dir=tmp_path, block_size=20)
    data = path.read_bytes()
    path.with_name("st-s0.h5").write_bytes(data)  # a copy under another run's name
    (path.parent / "darn-s0.h5").write_bytes(data[: len(data) // 2])  # truncated
    (tmp_path / "0123456789ab").mkdir()
    (tmp_path / "0123456789ab" / path.name).write_bytes(data)  # another snapshot's folder
    rep = analyze_runs(tmp_path, reference="exact", n_resamples=50)
    assert [r.spec for r in rep.rows] == ["zgr"]
    notes = "\n".join(rep.notes)
    assert "darn-s0.h5: damaged (truncated:" in notes and "st-s0.h5: misplaced" in notes
    assert "0123456789ab/zgr-s0.h5: misplaced (made from snapshot" in notes
    path.unlink()
    with pytest.raises(Exception, match="no readable runs .* 3 run files are damaged or misplaced"):
        analyze_runs(tmp_path, reference="exact", n_resamples=50)


def test_a_reader_holding_the_file_briefly_does_not_make_the_writer_fail(tmp_path):
    """Found by the fault injection: a reader opening the file (HDF5 locks it) just as a writer
    reopens it made the writer fail with "unable to lock file"; the writer now waits a moment."""
    snap = snapshot_of(ToyCat())
    path = engine.sample_run(snap, "zgr", n=50, seed=0, runs_dir=tmp_path, block_size=10)
    hold = ("import h5py, sys, time\nf = h5py.File(sys.argv[1], 'r', libver='latest', swmr=True)\n"
            "print('open', flush=True)\ntime.sleep(0.4)\nf.close()\n")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        engine.sample_run(snap, "zgr", n=80, seed=0, runs_dir=tmp_path, block_size=10)
    finally:
        proc.wait()
    assert store.read_run(path).n == 80


def test_block_builder_gives_the_same_bits_whatever_the_pieces():
    """The block statistics are merged over fixed steps: any way of feeding the draws gives the same
    bits, and ``stats()`` folds in a last short step (callers need not flush)."""
    import torch

    from biasvar.engine.blocks import BlockBuilder

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 7, generator=gen, dtype=torch.float64)
    x[13, 2] = float("nan")
    bounds = [(0, 3), (3, 4)]

    def build(pieces):
        bb = BlockBuilder(bounds, np.array([1, 5]), torch.device("cpu"), step=64)
        lo = 0
        for m in pieces:
            bb.add(x[lo:lo + m])
            lo += m
        return bb.stats(7)

    ref = build([1000])
    for pieces in ([1] * 1000, [7] * 142 + [6], [500, 500], [63, 1, 64, 872]):
        got = build(pieces)
        for name in ("sum", "m2", "sumsq", "samples"):
            assert getattr(got, name).tobytes() == getattr(ref, name).tobytes(), (pieces[:3], name)
        assert (got.count, got.nonfinite) == (ref.count, ref.nonfinite) == (999, 1)
