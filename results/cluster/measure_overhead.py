"""Local executor vs Ray on this machine: draws/s of the same sweep, measured as ratios in one run.

    OMP_NUM_THREADS=1 python results/cluster/measure_overhead.py --repeats 3 [--out results/cluster/overhead-cpu.json]

For each problem (toy-cat; the Fig. 1 VAE, 16 x 16, 1.15M parameters, random init) the same sweep
(reference rf(M=4) + zgr, CPU, one torch thread per process) is run, interleaved, ``--repeats``
times each way:

* ``local``: the embedded path, one process;
* ``ray-1``: Ray with one task slot (a cluster of 1 CPU), one shard per run: the pure overhead of
  going through Ray (task submission, the shard file shipped back as bytes, the driver's merge);
* ``ray-2``: Ray with two task slots and two shards per run (a cluster of 2 CPUs).

Every Ray result is checked bit for bit against the local one. Also measured: the driver's merge
rate (MB/s of shard file written and merged into the run file), which bounds the draws/s a
cluster can deliver for a problem whose run files are large (the Fig. 1 VAE: ~16 KB per draw).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import torch

from biasvar import store
from biasvar.engine import executors
from biasvar.engine import shards as sh
from biasvar.provenance import environment, git_commit
from biasvar.snapshot import snapshot_of
from biasvar.studies import bench

PROBLEMS = {"toy-cat": 20_000, "vae-fig1": 64}  # draws per run
# Blocks: the toy's default (100 blocks); the VAE in one block per run, so that, as in a real run
# (34 blocks of ~300 draws), writing the 4.6 MB block sums is small next to computing the draws.
BLOCK_SIZE = {"toy-cat": None, "vae-fig1": 64}
SPECS = ["zgr"]  # plus the reference rf(M=4)


def _same(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(fa[k][()].tobytes() == fb[k][()].tobytes() for k in fa if k != "state")


def _sweep(snap, n: int, root: Path, block_size: int | None, **kw) -> tuple[float, executors.SweepResult]:
    t0 = time.perf_counter()
    res = executors.run_sweep(snap, SPECS, n=n, reference_n=n, runs_dir=root, device="cpu", block_size=block_size,
                              method="vmap", **kw)  # one gradient path for both executors
    return time.perf_counter() - t0, res


def _merge_rate(res: executors.SweepResult) -> float:
    """MB/s of the driver writing and merging one run's file from one shard (timed again here)."""
    run = res.plan[0].path
    data = run.read_bytes()
    first_end = (0, int(store.read_run(run, load_sums=False).attrs["n_done"]))
    with tempfile.TemporaryDirectory() as d:
        target = Path(d) / run.parent.name / run.name
        t0 = time.perf_counter()
        from biasvar.atomic import write_atomic

        write_atomic(sh.shard_path(target, *first_end), data)
        sh.merge_run(target)
        dt = time.perf_counter() - t0
    return len(data) / 2**20 / dt


def merge_only(out: str, blocks: int = 8, repeats: int = 3) -> None:
    """The driver's cost per shard for the Fig. 1 VAE: a shard of ``blocks`` blocks (4.6 MB of block
    sums each, as in a real run) written from bytes and merged into its run file."""
    snap = snapshot_of(bench.bench_problem("vae-fig1"))
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        shard = sh.sample_shard(snap, "zgr", n=blocks, first=0, end=blocks, runs_dir=Path(tmp) / "w", device="cpu",
                                block_size=1)
        data = Path(shard).read_bytes()
        for rep in range(repeats):
            run = store.run_path(Path(tmp) / f"d{rep}", snap.id, "zgr", 0)
            t0 = time.perf_counter()
            from biasvar.atomic import write_atomic

            write_atomic(sh.shard_path(run, 0, blocks), data)
            sh.merge_run(run)
            rates.append(len(data) / 2**20 / (time.perf_counter() - t0))
    res = {"command": f"OMP_NUM_THREADS=1 python results/cluster/measure_overhead.py --merge-only --out {out}",
           "problem": "vae-fig1", "blocks_per_shard": blocks, "shard_mb": len(data) / 2**20,
           "mb_per_s": rates, "best_mb_per_s": max(rates), "load_average": os.getloadavg(),
           "git_commit": git_commit(), "environment": environment(torch.device("cpu"))}
    Path(out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps({k: res[k] for k in ("shard_mb", "mb_per_s", "load_average")}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/cluster/overhead-cpu.json")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--merge-only", action="store_true", help="only the driver's merge rate (Fig. 1 VAE)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.merge_only:
        merge_only(args.out)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray

    load0 = os.getloadavg()
    snaps = {name: snapshot_of(bench.bench_problem(name)) for name in PROBLEMS}
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in PROBLEMS}
    checks, merge_mb_s, startup = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for slots in (1, 2):
            t0 = time.perf_counter()
            ray.init(num_cpus=slots, include_dashboard=False, log_to_driver=False)
            startup[f"ray_init_{slots}cpu_s"] = time.perf_counter() - t0
            for name, n in PROBLEMS.items():
                snap = snaps[name]
                warm = time.perf_counter()  # first tasks start the workers (import torch): timed apart
                bs = BLOCK_SIZE[name]
                _sweep(snap, n, root / f"warm-{name}-{slots}", bs, executor="ray", shards=slots)
                startup[f"first_sweep_{name}_{slots}cpu_s"] = time.perf_counter() - warm
                for rep in range(args.repeats):
                    key = f"ray-{slots}"
                    dt_l, loc = _sweep(snap, n, root / f"local-{name}-{slots}-{rep}", bs)
                    dt_r, rem = _sweep(snap, n, root / f"{key}-{name}-{rep}", bs, executor="ray", shards=slots)
                    draws = sum(r.n for r in loc.plan)
                    rows[name].setdefault(f"local (with {key})", []).append(draws / dt_l)
                    rows[name].setdefault(key, []).append(draws / dt_r)
                    checks.append(all(_same(a.path, b.path) for a, b in zip(loc.plan, rem.plan, strict=True)))
                    if slots == 1 and rep == 0:
                        merge_mb_s[name] = _merge_rate(rem)
            ray.shutdown()
    load1 = os.getloadavg()
    out = {
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "draws_per_run": PROBLEMS, "block_size": BLOCK_SIZE, "runs_per_sweep": 1 + len(SPECS),
        "specs": ["rf(M=4)", *SPECS],
        "draws_per_s": {name: {k: {"all": v, "best": max(v)} for k, v in d.items()} for name, d in rows.items()},
        "ratio_ray1_over_local": {name: max(d["ray-1"]) / max(d["local (with ray-1)"]) for name, d in rows.items()},
        "ratio_ray2_over_local": {name: max(d["ray-2"]) / max(d["local (with ray-2)"]) for name, d in rows.items()},
        "bit_identical": all(checks), "comparisons": len(checks),
        "driver_merge_mb_per_s": merge_mb_s,
        "startup_s": startup,
        "load_average_start": load0, "load_average_end": load1,
        "ray_version": ray.__version__, "git_commit": git_commit(),
        "environment": environment(torch.device("cpu")),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps({k: out[k] for k in ("ratio_ray1_over_local", "ratio_ray2_over_local", "bit_identical",
                                          "driver_merge_mb_per_s", "load_average_start", "load_average_end")},
                     indent=1))


if __name__ == "__main__":
    main()
