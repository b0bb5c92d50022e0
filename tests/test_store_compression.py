"""Run files with compressed block sums: the same bits back, resume after SIGKILL to the same bits,
old (unfiltered) files still read and resume as they are, damaged compressed files are one line."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import sigkill_after_blocks

from biasvar import engine, store
from biasvar.errors import StoreError
from biasvar.problems.vae import VAE
from biasvar.snapshot import save_snapshot, snapshot_of
from biasvar.studies import faults

pytestmark = pytest.mark.usefixtures("one_thread")

def small_vae() -> VAE:
    """A VAE of d = 26,332 (rows of 103 KB: compressed) on 4 binary images whose first 200 pixels
    are 0 (so the encoder weights of those pixels get exactly-zero gradients, as on MNIST)."""
    prob = VAE(categories=4, vars=3, hidden=(16, 8), seed=3)
    x = torch.bernoulli(torch.full((4, 784), 0.3), generator=torch.Generator().manual_seed(1))
    x[:, :200] = 0
    prob.batch = x
    return prob


def _header(dim: int, bs: int = 3) -> dict:
    return {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
            "params_glob": "*", "dim": dim, "dtype": "float32", "block_size": bs, "layout": [["w", [dim], 0]]}


def _rows(nb: int, dim: int, seed: int = 0) -> np.ndarray:
    """Block sums like real ones: a spread of magnitudes, a third of the coordinates exactly 0."""
    gen = np.random.default_rng(seed)
    rows = (gen.standard_normal((nb, dim)) * np.exp(gen.normal(0, 3, dim))).astype(np.float32)
    rows[:, : dim // 3] = 0
    rows[0, 5] = np.float32(np.finfo(np.float32).tiny) / 4  # a subnormal
    rows[1, 6] = -0.0
    return rows


def _write(path, rows, compression, *, finish=True):
    nb, dim = rows.shape
    with store.RunWriter.open(path, _header(dim), n_target=3 * nb, group_sizes=np.array([dim]),
                              sample_index=np.array([1, dim - 1]), compression=compression) as w:
        for r in rows:
            w.append(store.BlockStats(3, 0, r, np.ones(1), np.ones(1), np.ones((3, 2), np.float32)), wall_s=0.0)
        if finish:
            w.finish()


@pytest.mark.parametrize("compression", sorted(store.FILTERS))
def test_every_filter_gives_back_the_same_bits(tmp_path, compression):
    rows = _rows(5, 1 << 15)
    path = tmp_path / "s" / "x-s0.h5"
    _write(path, rows, compression)
    run = store.read_run(path)
    assert run.block_sum.dtype == np.float32 and run.block_sum.tobytes() == rows.tobytes()
    info = store.storage_info(path)
    assert info["filters"] == store.FILTERS[compression] and info["raw_bytes"] == rows.nbytes
    if compression != "none":  # a third zeros, exponents in a narrow range: it must pay
        assert info["stored_bytes"] < 0.8 * rows.nbytes, info
    else:
        assert info["stored_bytes"] >= rows.nbytes


def test_the_default_is_gzip_and_the_environment_picks_another_or_is_refused(tmp_path, monkeypatch):
    rows = _rows(2, 1 << 15)
    monkeypatch.delenv(store.COMPRESSION_ENV, raising=False)
    _write(tmp_path / "a" / "x-s0.h5", rows, None)
    assert store.storage_info(tmp_path / "a" / "x-s0.h5")["filters"] == store.FILTERS["gzip"] == \
        {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    monkeypatch.setenv(store.COMPRESSION_ENV, "lzf")
    _write(tmp_path / "b" / "x-s0.h5", rows, None)
    assert store.storage_info(tmp_path / "b" / "x-s0.h5")["filters"]["compression"] == "lzf"
    monkeypatch.setenv(store.COMPRESSION_ENV, "zstd")
    with pytest.raises(StoreError, match=r"^unknown run-file compression 'zstd' \(from \$BIASVAR_RUN_COMPRESSION\); "
                                         r"use one of none, gzip, lzf$"):
        _write(tmp_path / "c" / "x-s0.h5", rows, None)
    assert not (tmp_path / "c").exists()  # refused before anything was made
    with pytest.raises(StoreError, match="unknown run-file compression 'bz2'"):
        _write(tmp_path / "c" / "x-s0.h5", rows, "bz2")


def test_small_rows_are_not_filtered(tmp_path):
    rows = _rows(3, 100)
    _write(tmp_path / "s" / "x-s0.h5", rows, "gzip")
    assert store.storage_info(tmp_path / "s" / "x-s0.h5")["filters"] == {}
    assert store.read_run(tmp_path / "s" / "x-s0.h5").block_sum.tobytes() == rows.tobytes()


def test_a_file_keeps_its_filter_when_resumed_recovered_or_upgraded(tmp_path):
    """An old unfiltered file resumes unfiltered (nothing rewritten behind the user's back), a
    compressed one stays compressed, also through the rewrite that recovers a killed writer's file."""
    rows = _rows(4, 1 << 15)
    for compression in ("none", "gzip"):
        path = tmp_path / compression / "x-s0.h5"
        _write(path, rows[:2], compression, finish=False)
        store.maintenance.copy_committed(path)  # what resuming does to a file a killed writer left flagged open
        assert store.storage_info(path)["filters"] == store.FILTERS[compression]
        with store.RunWriter.open(path, _header(rows.shape[1]), n_target=12, group_sizes=np.array([rows.shape[1]]),
                                  sample_index=np.array([1, rows.shape[1] - 1]),
                                  compression="lzf") as w:  # a resumed file keeps its own
            for r in rows[2:]:
                w.append(store.BlockStats(3, 0, r, np.ones(1), np.ones(1), np.ones((3, 2), np.float32)), wall_s=0.0)
        run = store.read_run(path)
        assert store.storage_info(path)["filters"] == store.FILTERS[compression]
        assert run.block_sum.tobytes() == rows.tobytes() and run.n == 12


def test_unsaved_pending_slots_take_no_space(tmp_path):
    """A run that never saved a block in progress does not carry 16 bytes x dim of empty slots."""
    dim = 1 << 17
    rows = _rows(2, dim)
    _write(tmp_path / "a" / "x-s0.h5", rows, "none")
    size = (tmp_path / "a" / "x-s0.h5").stat().st_size
    assert size < rows.nbytes + 4 * dim, size  # no 2 x 8 x dim bytes of pending slots
    path = tmp_path / "b" / "x-s0.h5"
    _write(path, rows, "none", finish=False)
    with store.RunWriter.open(path, _header(dim), n_target=12, group_sizes=np.array([dim]),
                              sample_index=np.array([1, dim - 1])) as w:
        assert w.pending() is None
        part = store.PendingStats(1, 0, np.arange(dim, dtype=np.float64), np.ones(1), np.ones(1),
                                  np.ones((1, 2), np.float32))
        w.save_pending(part, wall_s=0.0)
    with store.RunWriter.open(path, _header(dim), n_target=12, group_sizes=np.array([dim]),
                              sample_index=np.array([1, dim - 1])) as w:
        assert w.pending().sum.tobytes() == part.sum.tobytes()
    assert path.stat().st_size >= size + 8 * dim


def test_sigkill_then_resume_of_a_compressed_run_is_bit_identical(tmp_path, monkeypatch):
    """`biasvar sample` on a problem whose rows are compressed, killed with SIGKILL after two
    blocks: readers see whole blocks meanwhile; the same run resumed (through the recovery
    rewrite) ends bit for bit equal to a run never killed, and still compressed."""
    snap_path = tmp_path / "toy.pt"
    snap = save_snapshot(snap_path, small_vae())
    n, bs, spec = 3000, 250, "zgr"
    runs = tmp_path / "killed"
    cmd = [sys.executable, "-m", "biasvar_cli.main", "sample", "--snapshot", str(snap_path), "--estimator", spec,
           "--n", str(n), "--block-size", str(bs), "--chunk", "50", "--keep", "4", "--runs-dir", str(runs)]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    env.pop(store.COMPRESSION_ENV, None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = store.run_path(runs, snap.id, spec, 0)
    seen = sigkill_after_blocks(proc, path, timeout=120)
    assert seen is not None and seen.status == "running"
    assert store.storage_info(path)["filters"] == store.FILTERS["gzip"]
    killed = store.read_run(path)
    assert killed.status == "interrupted" and 2 <= len(killed.block_count) < n // bs
    engine.sample_run(snap, spec, n=n, seed=0, runs_dir=runs, block_size=bs, keep=4, chunk=50)
    monkeypatch.setenv(store.COMPRESSION_ENV, "none")  # the run never killed: unfiltered, for contrast
    whole = engine.sample_run(snap, spec, n=n, seed=0, runs_dir=tmp_path / "whole", block_size=bs, keep=4, chunk=50)
    assert store.storage_info(path)["filters"] == store.FILTERS["gzip"]
    assert store.storage_info(whole)["filters"] == {}
    assert faults.identical(path, whole)  # every dataset, bit for bit
    assert store.storage_info(path)["stored_bytes"] < store.storage_info(whole)["stored_bytes"]


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_truncated_or_flipped_compressed_files_are_one_line_errors(tmp_path, monkeypatch, compression):
    """Copies of a run cut, or with one bit flipped, at random offsets (most of the file is block
    sums), each read in a child: a cut file is one line from the reader and listed as damaged;
    a flipped one is one line from the full reader (every chunk has a checksum) or reads intact,
    never a wrong number. The cheap listing (``scan_runs``, ``biasvar ls``) does not read the
    block sums, so a flip inside them shows at the full read only: the same with and without
    the filter."""
    monkeypatch.setenv(store.COMPRESSION_ENV, compression)
    snap = snapshot_of(small_vae())
    path = engine.sample_run(snap, "zgr", n=600, seed=0, runs_dir=tmp_path / "a", block_size=100, keep=8, chunk=50)
    assert store.storage_info(path)["filters"] == store.FILTERS[compression]
    sources = [("complete", path)]
    rng = random.Random(11)
    out = faults.truncations(tmp_path / "cut", 5, rng, sources)
    assert out["files"] == out.get("complete: error + listed-damaged") == 5, out
    assert out["slowest_read_s"] < faults.READ_TIMEOUT_S
    out = faults.bitflips(tmp_path / "flip", 8, rng, sources)
    outcomes = {k for k in out if k not in ("files", "slowest_read_s")}
    assert out["files"] == 8 and outcomes <= {"complete: error + listed-damaged", "complete: error + listed-ok",
                                               "complete: intact + listed-ok"}, out
    assert out["slowest_read_s"] < faults.READ_TIMEOUT_S


def test_compact_rewrites_old_files_losslessly_and_keeps_a_saved_block_in_progress(tmp_path):
    rows = _rows(4, 1 << 15)
    done = tmp_path / "runs" / "abc" / "x-s0.h5"
    _write(done, rows, "none")
    before = store.read_run(done)
    size0 = done.stat().st_size
    assert store.compact(done) == (size0, done.stat().st_size) and done.stat().st_size < 0.8 * size0
    after = store.read_run(done)
    assert store.storage_info(done)["filters"] == store.FILTERS["gzip"]
    for name in ("block_sum", "block_m2", "block_sumsq", "block_count", "block_nonfinite", "samples"):
        assert getattr(after, name).tobytes() == getattr(before, name).tobytes(), name
    assert after.status == "complete" and after.attrs["n_done"] == before.attrs["n_done"]
    assert store.compact(done)[1] == done.stat().st_size  # already filtered: left as it is
    assert store.compact(done, "none")[1] > size0 * 0.99  # and back (any filter of FILTERS)
    assert store.read_run(done).block_sum.tobytes() == rows.tobytes()

    part = tmp_path / "runs" / "abc" / "y-s0.h5"
    _write(part, rows[:2], "none", finish=False)
    dim = rows.shape[1]
    saved = store.PendingStats(2, 1, np.arange(dim, dtype=np.float64), np.ones(1), np.ones(1),
                               np.ones((2, 2), np.float32))
    with store.RunWriter.open(part, _header(dim), n_target=12, group_sizes=np.array([dim]),
                              sample_index=np.array([1, dim - 1])) as w:
        w.save_pending(saved, wall_s=0.0)
    store.compact(part)
    with store.RunWriter.open(part, _header(dim), n_target=12, group_sizes=np.array([dim]),
                              sample_index=np.array([1, dim - 1])) as w:
        assert w.n_done == 9 and w.pending().sum.tobytes() == saved.sum.tobytes()
        with pytest.raises(StoreError, match="being written by another process"):
            store.compact(part)  # a writer holds it: refused, untouched
        w.append(store.BlockStats(3, 0, rows[2], np.ones(1), np.ones(1), np.ones((3, 2), np.float32)), wall_s=0.0)
    assert store.read_run(part).block_sum.tobytes() == rows[:3].tobytes()
    assert store.storage_info(part)["filters"] == store.FILTERS["gzip"]


def test_compact_command(tmp_path):
    from biasvar_cli import compact_cmd
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    assert compact_cmd.FILTER_NAMES == tuple(store.FILTERS) and compact_cmd.DEFAULT_FILTER == store.COMPRESSION
    assert compact_cmd.FILTER_ENV == store.COMPRESSION_ENV

    runner = CliRunner()
    rows = _rows(3, 1 << 15)
    runs = tmp_path / "runs"
    _write(runs / "abc" / "x-s0.h5", rows, "none")
    (runs / "abc" / "bad-s0.h5").write_bytes(b"not hdf5")
    res = runner.invoke(app, ["compact", "--runs-dir", str(runs)], terminal_width=200)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "abc/bad-s0.h5: skipped, damaged (not an HDF5 file)"
    assert re.fullmatch(r"abc/x-s0\.h5: 1\.0 MB -> \d+\.\d KB", lines[1]), lines
    assert re.fullmatch(r"1 run file\(s\): 1\.0 MB -> \d+\.\d KB \(gzip\); 1 skipped", lines[2]), lines
    assert store.read_run(runs / "abc" / "x-s0.h5").block_sum.tobytes() == rows.tobytes()
    res = runner.invoke(app, ["compact", "--runs-dir", str(runs), "--snapshot-id", "abc"], terminal_width=200)
    assert "abc/x-s0.h5: unchanged" in res.output
    res = runner.invoke(app, ["compact", "--runs-dir", str(runs), "--compression", "zstd"], terminal_width=200)
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        "error: unknown run-file compression 'zstd'; use one of none, gzip, lzf"]
    res = runner.invoke(app, ["compact", "--runs-dir", str(tmp_path / "nowhere")], terminal_width=200)
    assert res.exit_code == 0 and res.output.strip() == f"no run files under {tmp_path / 'nowhere'}"
