"""Sharded runs: block-aligned shard files that merge into the single-process run file bit for bit,
resume like runs, and show in ``ls``/``report``; the local executor; ``--executor ray`` without Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from biasvar_cli.main import app
from conftest import stop_after
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from biasvar import engine, store
from biasvar.engine import executors, sweeps
from biasvar.engine import shards as sh
from biasvar.engine.plan import RunOptions
from biasvar.errors import SpecError, StoreError
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import save_snapshot, snapshot_of

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

# Chunks of 7 draws in blocks of 10: without block-aligned chunks a shard that starts at draw 330
# cuts its chunks elsewhere than the single-process run, and the last bits of some draws differ
# (vectorized kernels treat the rows past the last full SIMD vector differently): this setting
# fails the bit-for-bit tests if chunks are not aligned to blocks.
CHUNK, BS = 7, 10


def _datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def assert_same_run(a: Path, b: Path) -> None:
    """Every dataset equal bit for bit; the state row too, except wall time and update time."""
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for k in da:
        if k == "state":
            keep = [i for i, name in enumerate(store.STATE) if name not in ("wall_s", "updated")]
            assert np.array_equal(da[k][keep], db[k][keep]), k
        else:
            assert da[k].dtype == db[k].dtype and da[k].shape == db[k].shape, k
            assert da[k].tobytes() == db[k].tobytes(), k
    ha, hb = store.read_header(a), store.read_header(b)
    skip = {"created", "hostname", "cpu_threads", "snapshot_path"}  # where it ran, not what
    assert {k: v for k, v in ha.items() if k not in skip} == {k: v for k, v in hb.items() if k not in skip}


def shard(snap, spec, *, n, first, end, seed, runs_dir, restart=False, progress=None, **options):
    """Draws [first, end) of a run into its shard file (options: those of :class:`RunOptions`)."""
    return sh.sample_shard(snap, spec, n=n, first=first, end=end, seed=seed, runs_dir=runs_dir,
                           options=RunOptions(**options), restart=restart, progress=progress)


def sweep(snap, specs, *, runs_dir, reference="rf(M=4)", n=10_000, reference_n=None, seed=0, executor=None,
          progress=None, **options):
    """A sweep through the one entry point (``executors.run_sweep``)."""
    plan = engine.plan_sweep(snap, specs, reference=reference, n=n, reference_n=reference_n, seed=seed,
                             runs_dir=runs_dir)
    return executors.run_sweep(plan, RunOptions(**options), executor=executor, progress=progress)


@pytest.fixture(scope="module")
def toy():
    return snapshot_of(ToyCat(vars=3, categories=4))


@pytest.fixture(scope="module")
def single(toy, tmp_path_factory):
    """The reference: each run in one process (chunks of CHUNK draws, or as asked)."""
    root = tmp_path_factory.mktemp("single")
    made: dict = {}

    class Runs(dict):
        def __missing__(self, key):
            spec, chunk = key if isinstance(key, tuple) else (key, CHUNK)
            made[key] = engine.sample_run(toy, spec, n=500, seed=1, runs_dir=root / f"c{chunk}", chunk=chunk,
                                          block_size=BS, method="vmap")  # shards' path for method auto
            return made[key]

    return Runs()


@given(n=st.integers(1, 2000), bs=st.integers(1, 97), count=st.integers(1, 40), start_blocks=st.integers(0, 30))
def test_shard_ranges_tile_whole_blocks(n, bs, count, start_blocks):
    start = min(n, start_blocks * bs)
    ranges = sh.shard_ranges(n, bs, count, start=start)
    if start >= n:
        assert ranges == []
        return
    blocks = -(-(n - start) // bs)
    assert len(ranges) == min(count, blocks)
    assert ranges[0][0] == start and ranges[-1][1] == n
    assert all(a < b for a, b in ranges)
    assert all(b == c for (_, b), (c, _) in zip(ranges[:-1], ranges[1:], strict=True))
    assert all((a - start) % bs == 0 for a, _ in ranges)  # no block spans two shards
    sizes = [-(-(b - a) // bs) for a, b in ranges]  # blocks per shard: as even as possible
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("spec", "chunk"), [("zgr", CHUNK), ("gr-mc(M=10,t=0.5)", CHUNK), ("zgr", None)])
def test_shards_merge_bit_for_bit_in_any_order(toy, single, tmp_path, spec, chunk):
    """Chunks of 7 draws on a grid from draw 0, in blocks of 10; default (4096): one chunk of the
    whole run, which every shard recomputes and trims."""
    ranges = sh.shard_ranges(500, BS, 3)
    assert ranges == [(0, 160), (160, 330), (330, 500)]
    run = store.run_path(tmp_path, toy.id, spec, 1)
    for first, end in (ranges[2], ranges[1]):  # no shard at draw 0 yet: nothing to merge
        shard(toy, spec, n=500, first=first, end=end, seed=1, runs_dir=tmp_path, chunk=chunk,
                        block_size=BS)
    result = sh.merge_run(run)
    assert not run.exists() and result.merged == 0 and result.left == 2
    shard(toy, spec, n=500, first=0, end=160, seed=1, runs_dir=tmp_path, chunk=chunk, block_size=BS)
    result = sh.merge_run(run)
    assert result.merged == 3 and result.complete and result.left == 0
    assert not sh.shard_folder(run).exists()
    assert_same_run(single[spec, chunk], run)


def test_shards_starting_inside_a_chunk_recompute_it_whole(toy, single, tmp_path):
    """Chunks of 36 draws on a grid from draw 0; 25 shards of 20 draws start and end inside grid
    chunks. Each shard computes its grid chunks whole and keeps its own draws; computing only its
    own draws as a shorter chunk changes the last bits of some gr-mc draws (checked: this test
    then fails)."""
    spec = "gr-mc(M=10,t=0.5)"
    for first, end in sh.shard_ranges(500, BS, 25):
        shard(toy, spec, n=500, first=first, end=end, seed=1, runs_dir=tmp_path, chunk=36, block_size=BS)
    run = store.run_path(tmp_path, toy.id, spec, 1)
    assert sh.merge_run(run).merged == 25
    assert_same_run(single[spec, 36], run)


def test_partly_merged_run_is_a_shorter_valid_run(toy, single, tmp_path):
    run = store.run_path(tmp_path, toy.id, "zgr", 1)
    for first, end in [(0, 160), (330, 500)]:
        shard(toy, "zgr", n=500, first=first, end=end, seed=1, runs_dir=tmp_path, chunk=CHUNK,
                        block_size=BS)
    assert sh.merge_run(run, whole=True).merged == 0 and not run.exists()  # [160, 330) missing: wait
    result = sh.merge_run(run)
    assert (result.merged, result.n_done, result.n_target, result.complete, result.left) == (1, 160, 500, False, 1)
    assert sorted(p.name for p in run.parent.iterdir()) == [run.name, sh.shard_folder(run).name]  # no leftovers
    part, whole = store.read_run(run), store.read_run(single["zgr"])
    assert part.status != "complete" and part.n == 160  # a shorter run, not being written
    assert part.block_sum.tobytes() == whole.block_sum[:16].tobytes()
    assert part.block_m2.tobytes() == whole.block_m2[:16].tobytes()
    infos = sh.sharded_runs(tmp_path)[run]
    assert [(s.first, s.end, s.complete) for s in infos] == [(330, 500, True)]


def test_shard_resumes_after_interruption(toy, single, tmp_path):
    run = store.run_path(tmp_path, toy.id, "zgr", 1)
    with pytest.raises(KeyboardInterrupt):
        shard(toy, "zgr", n=500, first=160, end=330, seed=1, runs_dir=tmp_path, chunk=CHUNK, block_size=BS,
              progress=stop_after(60))
    part = sh.list_shards(run)
    assert len(part) == 1 and not part[0].complete and 0 < part[0].n_done < 170
    for first, end in sh.shard_ranges(500, BS, 3):  # the interrupted shard resumes; the others are new
        shard(toy, "zgr", n=500, first=first, end=end, seed=1, runs_dir=tmp_path, chunk=CHUNK,
                        block_size=BS)
    assert sh.merge_run(run).complete
    assert_same_run(single["zgr"], run)


def test_merge_continues_a_run_file_inside_a_shard(toy, single, tmp_path):
    """A run file that already holds part of a shard's blocks (a merge or a single-process run cut
    short) takes only the shard's blocks after its committed draws."""
    with pytest.raises(KeyboardInterrupt):
        engine.sample_run(toy, "zgr", n=500, seed=1, runs_dir=tmp_path, chunk=CHUNK, block_size=BS,
                          progress=stop_after(80), method="vmap")
    run = store.run_path(tmp_path, toy.id, "zgr", 1)
    held = store.read_run(run, load_sums=False).attrs["n_done"]
    assert 0 < held < 250
    shard(toy, "zgr", n=500, first=0, end=250, seed=1, runs_dir=tmp_path, chunk=CHUNK, block_size=BS)
    shard(toy, "zgr", n=500, first=250, end=500, seed=1, runs_dir=tmp_path, chunk=CHUNK, block_size=BS)
    assert sh.merge_run(run).complete
    assert_same_run(single["zgr"], run)


def test_merge_refuses_a_shard_of_another_block_size(toy, tmp_path):
    engine.sample_run(toy, "zgr", n=100, seed=1, runs_dir=tmp_path, block_size=BS, chunk=CHUNK)
    run = store.run_path(tmp_path, toy.id, "zgr", 1)
    # extend the run with a shard cut into blocks of 20 (a header that says so)
    shard(toy, "zgr", n=300, first=100, end=300, seed=1, runs_dir=tmp_path, block_size=20)
    with pytest.raises(StoreError, match="block_size"):
        sh.merge_run(run)


def test_bad_shards_are_refused(toy, tmp_path):
    with pytest.raises(SpecError, match="whole blocks"):
        shard(toy, "zgr", n=500, first=5, end=160, seed=1, runs_dir=tmp_path, block_size=BS)
    with pytest.raises(SpecError, match="whole blocks"):
        shard(toy, "zgr", n=500, first=0, end=600, seed=1, runs_dir=tmp_path, block_size=BS)
    for text in ("3", "a/b", "2/2", "0/0", "-1/3"):
        with pytest.raises(SpecError):
            sh.parse_shard(text)
    assert sh.parse_shard(" 2 / 5 ") == (2, 5)


def test_local_executor_with_shards_equals_the_plain_sweep(toy, tmp_path):
    kw = dict(reference="rf(M=4)", n=200, reference_n=300, seed=0, chunk=CHUNK, block_size=BS, method="vmap")
    plain = sweep(toy, ["zgr", "st"], runs_dir=tmp_path / "a", **kw)
    seen = []
    sharded = sweep(toy, ["zgr", "st"], runs_dir=tmp_path / "b", executor=executors.Local(4),
                    progress=lambda p: seen.append((p.run.spec, p.done, p.total)), **kw)
    assert len(sharded.computed) == 12 and len(plain.computed) == 3
    for a, b in zip(plain.plan, sharded.plan, strict=True):
        assert_same_run(a.path, b.path)
    assert ("zgr", 200, 200) in seen and ("rf(M=4)", 300, 300) in seen
    again = sweep(toy, ["zgr", "st"], runs_dir=tmp_path / "b", executor=executors.Local(4), **kw)
    assert again.computed == [] and again.reused_draws == 700


# --- CLI ----------------------------------------------------------------------------------------


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def test_cli_shards_ls_report_merge(tmp_path, single):
    snap = save_snapshot(tmp_path / "toy.pt", ToyCat(vars=3, categories=4))
    runs = tmp_path / "runs"
    common = ["--snapshot", snap.path, "-e", "zgr", "--n", "500", "--seed", "1", "--runs-dir", runs,
              "--chunk", CHUNK, "--block-size", BS]
    r = invoke("sample", *common, "--shard", "2/3")
    assert r.exit_code == 0, r.output
    assert "shard 2/3 complete: draws [330, 500)" in r.output and "1 shard file(s) waiting" in r.output
    r = invoke("ls", "--runs-dir", runs)
    assert r.exit_code == 0 and "unmerged shards" in r.output and "330-500" in r.output
    r = invoke("sample", *common, "--shard", "0/3")
    assert r.exit_code == 0 and "2 shard file(s) waiting" in r.output, r.output
    r = invoke("merge", "--runs-dir", runs)  # as far as the shards reach: [0, 160)
    assert r.exit_code == 0 and "merged 1 shard(s); run file 160/500 draws, 1 shard(s) left" in r.output, r.output
    r = invoke("ls", "--runs-dir", runs)
    assert "160/500" in r.output and ("running" in r.output or "interrupted" in r.output) and "1/2" in r.output
    assert "160-330(not" in "".join(r.output.split())  # shard 1/3: never started, counted
    r = invoke("report", "--runs-dir", runs, "--reference", "exact", "--bootstrap", "20")
    assert r.exit_code == 0 and "not merged" in r.output, r.output
    r = invoke("sample", *common, "--shard", "1/3")
    assert r.exit_code == 0 and "run file complete" in r.output  # the last shard merges all
    run = store.run_path(runs, snap.id, "zgr", 1)
    assert_same_run(single["zgr"], run)
    r = invoke("sample", *common, "--shard", "1/3")
    assert r.exit_code == 0 and "already in the run file" in r.output
    r = invoke("merge", "--runs-dir", runs)
    assert r.exit_code == 0 and "no shard files" in r.output
    r = invoke("sample", *common, "--shard", "0/51")
    assert r.exit_code == 1 and "at most 50 shards" in r.output
    r = invoke("sample", *common, "--shard", "3/3")
    assert r.exit_code == 1 and "0 <= i < N" in r.output
    r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--runs-dir", runs, "--executor", "dask")
    assert r.exit_code == 2 and "dask" in r.output and "local" in r.output and "ray" in r.output, r.output


def test_cli_merge_command(tmp_path, toy, single):
    for first, end in sh.shard_ranges(500, BS, 2):
        shard(toy, "zgr", n=500, first=first, end=end, seed=1, runs_dir=tmp_path, chunk=CHUNK,
                        block_size=BS)
    r = invoke("merge", "--runs-dir", tmp_path)
    assert r.exit_code == 0 and "merged 2 shard(s); run file complete" in r.output, r.output
    assert_same_run(single["zgr"], store.run_path(tmp_path, toy.id, "zgr", 1))
    r = invoke("merge", "--runs-dir", tmp_path / "nope")
    assert r.exit_code == 1 and "not found" in r.output


def test_executor_ray_without_ray_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    snap = save_snapshot(tmp_path / "toy.pt", ToyCat(vars=3, categories=4))
    r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--n", "50", "--runs-dir", tmp_path / "r",
               "--executor", "ray")
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and 'pip install "biasvar[ray]"' in r.output
    assert not (tmp_path / "r").exists()  # no work before the error


def test_cli_does_not_import_ray():
    code = "import sys, biasvar_cli.main; sys.exit(1 if 'ray' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_plan_shards_fills_only_the_gaps():
    present = [sh.ShardInfo(Path("x"), 100, 200, 100, True), sh.ShardInfo(Path("y"), 300, 350, 50, True)]
    todo = sweeps.plan_shards(50, 500, 10, 5, present)
    assert todo == [(50, 100), (200, 300), (350, 420), (420, 500)]  # shards of about 500 / 5 draws
    covered = sorted(todo + [(s.first, s.end) for s in present])
    assert all(b == c for (_, b), (c, _) in zip(covered[:-1], covered[1:], strict=True))
    assert covered[0][0] == 50 and covered[-1][1] == 500
    assert sweeps.plan_shards(500, 500, 10, 5) == []
