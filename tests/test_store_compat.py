"""Run files stay byte-compatible across the split of ``biasvar/store.py`` into a package (issue 20):
files the old store wrote (commit 201ed0b, ``tests/data/old-run-*.h5``) read the same, and the
files the store writes now have the same datasets, storage, attributes and bits as the old
store's for the same run (the old module is loaded from git; skipped where git lacks it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import store_scenario as scenario

from biasvar import store

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", sorted(scenario.FIXTURES))
def test_a_file_written_by_the_old_store_reads_the_same(tmp_path, name):
    kw = scenario.FIXTURES[name]
    dim, path = kw["dim"], tmp_path / name
    shutil.copy(DATA / name, path)
    run = store.read_run(path)
    assert run.attrs == json.loads((DATA / name).with_suffix(".json").read_text())
    blocks = scenario.blocks(dim, 4)
    np.testing.assert_array_equal(run.block_count, [b[0] for b in blocks])
    np.testing.assert_array_equal(run.block_nonfinite, [b[1] for b in blocks])
    np.testing.assert_array_equal(run.block_sum, np.stack([b[2] for b in blocks]))
    np.testing.assert_array_equal(run.block_m2, np.stack([b[3] for b in blocks]))
    np.testing.assert_array_equal(run.block_sumsq, np.stack([b[4] for b in blocks]))
    np.testing.assert_array_equal(run.samples, scenario.kept(dim, kw["finish"]))
    assert run.groups == ["a", "b"] and run.header.snapshot_path is None and run.header.stats_step == 2
    assert store.storage_info(path)["filters"] == store.FILTERS[kw["compression"] or "none"]
    with store.RunWriter.open(path, scenario.header(dim), n_target=20, group_sizes=run.group_sizes,
                              sample_index=run.sample_index) as w:  # and resumes: the block in progress too
        part = w.pending()
        assert w.n_done == run.attrs["n_done"] and (part is None) == kw["finish"]
        if part is not None:
            want = scenario.pending(dim)
            assert (part.count, part.nonfinite) == want[:2]
            for got, expected in zip((part.sum, part.m2, part.sumsq, part.samples), want[2:], strict=True):
                np.testing.assert_array_equal(got, expected)


def _old_store():
    try:
        return scenario.load_old_store()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"git or commit {scenario.OLD_COMMIT} not at hand")


def _contents(path: Path) -> dict:
    """Everything in a run file but the time it was last written (``state`` entry ``updated``)."""
    out = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        for name, ds in f.items():
            data = np.asarray(ds[()])
            if name == "state":
                data = np.delete(data, store.STATE.index("updated"))
            out[name] = (ds.dtype.str, ds.shape, ds.maxshape, ds.chunks, ds.compression, ds.compression_opts,
                         ds.shuffle, ds.fletcher32, ds.fillvalue, ds.id.get_storage_size() > 0, data.tobytes())
    return out


@pytest.mark.parametrize("name", sorted(scenario.FIXTURES))
def test_the_new_store_writes_what_the_old_one_wrote(tmp_path, name):
    old = _old_store()
    kw = scenario.FIXTURES[name]
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    a, b = tmp_path / "old" / name, tmp_path / "new" / name
    scenario.write(old, a, kw["dim"], compression=kw["compression"], finish=kw["finish"])
    scenario.write(store, b, kw["dim"], compression=kw["compression"], finish=kw["finish"])
    assert _contents(a) == _contents(b)
    old._copy_committed(a)  # recovery after a killed writer: the rewrite is the same too
    store.maintenance.copy_committed(b)
    assert _contents(a) == _contents(b)
    assert old.read_run(b).attrs == {**store.read_run(a).attrs, "updated": old.read_run(b).attrs["updated"]}
