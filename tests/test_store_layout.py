"""The run-file layout as types (``biasvar.store.layout``) and the files the store makes: typed
header and progress agree with the plain attributes, block statistics are one Moments-based type,
and run files get the ordinary file mode (``0666`` less the umask), like every file
``biasvar.atomic`` writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from biasvar import store
from biasvar.stats.moments import Moments, merge_moments

DIM = 1 << 14  # 64 KiB rows: the block sums are filtered (compact has something to rewrite)


def _header(dim: int = 3) -> dict:
    return {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h", "params_glob": "*",
            "dim": dim, "dtype": "float64", "block_size": 2, "layout": [["w", [dim], 0]], "snapshot_id": "s",
            "snapshot_path": None, "device": "cpu"}


def _write(path, dim: int = 3, compression: str | None = None, blocks: int = 2) -> None:
    with store.RunWriter.open(path, _header(dim), n_target=10, group_sizes=np.array([dim]),
                              sample_index=np.array([0, 1]), compression=compression) as w:
        for b in range(blocks):
            w.append(store.BlockStats(2, b, np.full(dim, b + 1, np.float32), np.ones(1), np.full(1, 2.0),
                                      np.ones((2, 2), np.float32)), wall_s=0.5)
        w.save_pending(store.PendingStats(1, 0, np.full(dim, 0.25), np.zeros(1), np.ones(1),
                                          np.ones((1, 2), np.float32)), wall_s=0.25)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_run_files_have_the_ordinary_mode_when_made_recovered_and_compacted(tmp_path, umask):
    """Issue 20: run files were made through mkstemp, so they had mode 0600 (unreadable by a group
    sharing a results folder)."""
    old = os.umask(umask)
    try:
        path = tmp_path / "s" / "x-s0.h5"
        _write(path, DIM, compression="none")
        mode = 0o666 & ~umask
        assert os.stat(path).st_mode & 0o777 == mode
        store.maintenance.copy_committed(path)  # what resuming a killed writer's file does
        assert os.stat(path).st_mode & 0o777 == mode
        before, after = store.compact(path, "gzip")
        assert after < before and store.storage_info(path)["filters"]
        assert os.stat(path).st_mode & 0o777 == mode
        assert sorted(p.name for p in path.parent.iterdir()) == ["x-s0.h5"]  # no temporary, no lock left
    finally:
        os.umask(old)


def test_header_and_progress_are_the_attributes_typed(tmp_path):
    path = tmp_path / "s" / "x-s0.h5"
    _write(path)
    run = store.read_run(path)
    h, p = run.header, run.progress
    assert (h.spec, h.seed, h.dim, h.block_size, h.dtype, h.snapshot_id, h.groups) == ("x", 0, 3, 2, "float64", "s",
                                                                                      ["w"])
    assert h.snapshot_path is None and run.attrs["snapshot_path"] == "none"  # stored "none" reads as None
    assert h.extra == {"device": "cpu"}  # provenance; no progress key leaks into the header
    assert (p.n_done, p.n_pending, p.n_finite, p.n_nonfinite, p.blocks, p.n_target) == (6, 1, 4, 1, 2, 10)
    assert p.wall_s == 1.25 and p.draws_per_s == 6 / 1.25 and p.status == "interrupted"
    assert {k: run.attrs[k] for k in store.layout.PROGRESS_KEYS} == p.to_attrs()
    assert store.RunHeader.from_attrs(h.to_attrs()) == h
    with pytest.raises(ValueError, match="'dim'"):
        store.RunHeader.from_attrs({"schema_version": 1, "spec": "x", "seed": 0})


def test_the_state_row_round_trips_and_refuses_nonsense():
    row = store.StateRow(blocks=2, n_done=5, n_finite=4, n_nonfinite=1, wall_s=0.1, n_target=9, complete=True,
                         updated=1.5, pending_draws=3, pending_count=2, pending_nonfinite=1, pending_slot=1)
    assert store.StateRow.from_row(row.to_row()) == row and row.saved == 8
    assert store.StateRow.from_row(row.to_row()[:8]).pending_draws == 0  # the first layout
    for bad, why in ((row.to_row()[:7], "7 entries"), (-row.to_row(), "negative"),
                     (row.to_row() + 0.5, "non-integer")):
        with pytest.raises(ValueError, match=why):
            store.StateRow.from_row(bad)


def test_block_stats_are_moments_and_read_back_as_written(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 3))
    mom = Moments.of(x, [2, 1])
    block = store.BlockStats.of(mom, 2, x[:, :2].astype(np.float32))
    assert isinstance(block, Moments) and block.draws == 7 and block.group_sizes == (2, 1)
    merged = merge_moments(block, Moments.of(x, [2, 1]))  # works anywhere a Moments does
    assert merged.count == 10 and np.allclose(merged.mean, x.mean(0))
    assert store.PendingStats is store.BlockStats
    path = tmp_path / "s" / "x-s0.h5"
    _write(path)
    run = store.read_run(path)
    second = run.block(1)
    assert (second.count, second.nonfinite, second.group_sizes) == (2, 1, (3,))
    np.testing.assert_array_equal(second.sum, np.full(3, 2, np.float32))
    np.testing.assert_array_equal(second.samples, np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="load_sums"):
        store.read_run(path, load_sums=False).block(0)
