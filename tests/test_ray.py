"""The Ray executor on a local 2-CPU Ray cluster: sharded sweeps equal the local sweep bit for bit,
a worker killed half-way through its shard is retried, and a driver killed with SIGKILL is resumed
from the shards it committed. Skipped when Ray is not installed (``pip install -e ".[ray]"``;
CI installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

from test_shards import BS, CHUNK, assert_same_run, sweep  # noqa: E402

from biasvar.engine import executors  # noqa: E402
from biasvar.engine import shards as sh  # noqa: E402
from biasvar.errors import BiasvarError  # noqa: E402
from biasvar.problems.toy import ToyCat  # noqa: E402
from biasvar.snapshot import save_snapshot  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local cluster of 2 CPUs; its workers see the fault-injection flag path (the flag file
    itself exists only while a test wants a worker to die)."""
    flag = tmp_path_factory.mktemp("fault") / "die-once"
    old = {k: os.environ.get(k) for k in (executors.FAULT_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({executors.FAULT_ENV: str(flag), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield flag
    finally:
        ray.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    return save_snapshot(tmp_path_factory.mktemp("snap") / "toy.pt", ToyCat(vars=3, categories=4))


KW = dict(reference="rf(M=4)", n=300, reference_n=400, seed=0, chunk=CHUNK, block_size=BS, method="vmap")


@pytest.fixture(scope="module")
def local(snap, tmp_path_factory):
    """The same sweep with the local executor, one process, no shards."""
    return sweep(snap, ["zgr", "gr-mc(t=0.5,M=10)"], runs_dir=tmp_path_factory.mktemp("local"), **KW)


def assert_same_sweep(a, b):
    """Every run of sweep ``b`` equals the run of the same name in sweep ``a``, bit for bit."""
    mine = {r.path.name: r.path for r in a.plan}
    assert {r.path.name for r in b.plan} <= set(mine)
    for r in b.plan:
        assert_same_run(mine[r.path.name], r.path)


def test_sharded_ray_sweep_equals_local_sweep(cluster, snap, local, tmp_path):
    seen = []
    remote = sweep(snap, ["zgr", "gr-mc(t=0.5,M=10)"], runs_dir=tmp_path, executor=executors.Ray(shards=3),
                   progress=lambda p: seen.append((p.run.spec, p.done, p.total)), **KW)
    assert len(remote.computed) == 9  # 3 runs x 3 shards, each a Ray task
    assert_same_sweep(local, remote)
    assert sh.sharded_runs(tmp_path) == {}  # every shard merged and removed
    assert ("rf(M=4)", 400, 400) in seen and ("zgr", 300, 300) in seen


def test_worker_killed_mid_shard_is_retried(cluster, snap, local, tmp_path):
    cluster.write_text("die once")  # the first task past half its shard deletes it and os._exit()s
    remote = sweep(snap, ["zgr"], runs_dir=tmp_path, executor=executors.Ray(shards=2, max_retries=2), **KW)
    assert not cluster.exists(), "no worker died: the fault was not injected"
    assert_same_sweep(local, remote)


def test_task_failing_past_its_retries_keeps_the_other_shards(cluster, snap, local, tmp_path):
    cluster.write_text("die once")
    with pytest.raises(BiasvarError, match="1 shard\\(s\\) failed after 0 retries"):
        sweep(snap, ["zgr"], runs_dir=tmp_path, executor=executors.Ray(shards=2, max_retries=0), **KW)
    assert not cluster.exists()
    again = sweep(snap, ["zgr"], runs_dir=tmp_path, executor=executors.Ray(shards=2), **KW)
    (_, first, end), = again.computed  # only the failed shard is redone
    assert again.reused_draws == 700 - (end - first)
    assert_same_sweep(local, again)


def test_killed_driver_resumes_from_committed_shards(cluster, snap, local, tmp_path):
    """``biasvar sweep --executor ray --address ...`` in a subprocess, SIGKILLed once its first shard
    is committed; a new driver computes only the rest, and the runs equal the local sweep."""
    runs = tmp_path / "runs"
    address = ray.get_runtime_context().gcs_address
    args = [sys.executable, "-m", "biasvar_cli.main", "sweep", "--snapshot", str(snap.path),
            "--estimators", "zgr", "--n", "300", "--reference-n", "400", "--chunk", str(CHUNK),
            "--block-size", str(BS), "--executor", "ray", "--address", address, "--shards", "4",
            "--runs-dir", str(runs)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "120"})
    folder = runs / snap.id
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(folder.glob("*.h5")) or any(folder.glob("*.shards/*.h5")):
                break
            time.sleep(0.05)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, f"the driver ended by itself first: {err.decode()[-2000:]}"
    again = sweep(snap, ["zgr"], runs_dir=runs, executor=executors.Ray(shards=4), **KW)
    assert again.reused_draws > 0, "nothing was committed before the kill"
    assert 0 < len(again.computed) < 8
    computed = {(p.name, a, b) for p, a, b in again.computed}
    assert len(computed) == len(again.computed)  # no shard computed twice
    assert_same_sweep(local, again)
