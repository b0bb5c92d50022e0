"""What the statistics store costs (``biasvar gram``), measured on this machine: results/gram-store/.

1. **Build** the store of R run files of the Fig. 1 VAE (d = 1,149,456, 12 parameter groups, 34
   blocks per run: the real file size, 2 draws per block so the sampling is cheap), in a fresh
   process each time (peak memory = its max RSS): from scratch, and adding one run to the R - 1
   others; the GEMM rate of this CPU on the same shapes for the fraction of it the build reaches.
2. **Size** of the store of the full Fig. 1 + Fig. 4 protocol (R = 80 runs, 2 unbiased), made of
   random numbers in the store's own layout (float64 does not compress much, so this is close to
   the real size), against the run files it replaces, and against one device call's return
   (8 files of 16 MiB, 64 MiB in all).

    python scripts/gram_store_cost.py --runs 6 --out results/gram-store/cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FIG1_BLOCKS = 34


def _cpu() -> str:
    import torch

    from biasvar.provenance import device_name

    return device_name(torch.device("cpu"))


def _child(args: argparse.Namespace) -> None:
    """One timed update in this process; prints JSON (wall, CPU, max RSS)."""
    from biasvar import gramstore

    t0, c0 = time.perf_counter(), time.process_time()
    res = gramstore.update_store(args.runs_dir, path=args.store, memory_bytes=int(args.memory))
    print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "added": len(res.added), "runs": res.runs, "bytes": res.path.stat().st_size}))


def _timed(runs_dir: Path, store: Path, memory: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "--runs-dir", str(runs_dir), "--store", str(store),
                          "--memory", str(memory)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gemm_rate(m: int, d: int) -> float:
    """float64 GFLOP/s of ``x y'`` with x, y [m, d] (one thread)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, d))
    x[:, :1000] @ x[:, :1000].T
    t = time.perf_counter()
    x @ x.T
    return 2.0 * m * m * d / (time.perf_counter() - t) / 1e9


def build_cost(runs: int, memory: int, keep: Path | None) -> dict:
    import torch

    from biasvar.engine import sample_run
    from biasvar.problems.vae import VAE
    from biasvar.snapshot import snapshot_of

    torch.set_num_threads(1)
    specs = ["rf(M=4)", "zgr", "st", "st(t=2)", "gs-st(t=0.5)", "gs(t=0.5)", "darn", "st(t=4)"][:runs]
    tmp = Path(tempfile.mkdtemp(prefix="gram-cost-", dir=keep))
    snap = snapshot_of(VAE(), provenance={"bench": "gram-store"})
    t = time.perf_counter()
    for spec in specs:
        sample_run(snap, spec, n=2 * FIG1_BLOCKS, seed=0, runs_dir=tmp, device="cpu", keep=0)
    sampling = time.perf_counter() - t
    folder = tmp / snap.id
    files = sorted(folder.glob("*.h5"))
    run_bytes = sum(p.stat().st_size for p in files)
    # all but the last, then the last added to them, then all at once
    last = files[-1]
    aside = tmp / "aside"
    aside.mkdir()
    os.replace(last, aside / last.name)
    store = tmp / "store.hdf5"
    first = _timed(tmp, store, memory)
    os.replace(aside / last.name, last)
    add_one = _timed(tmp, store, memory)
    store.unlink()
    whole = _timed(tmp, store, memory)
    dim = 1_149_456
    m = runs * FIG1_BLOCKS
    rate = _gemm_rate(FIG1_BLOCKS * 4, dim)
    flops = 2.0 * m * m * dim / 2  # one triangle of the m x m Gram (the code computes panel x run tiles)
    out = {"runs": runs, "specs": specs, "blocks_per_run": FIG1_BLOCKS, "dim": dim, "run_files_bytes": run_bytes,
           "sampling_s": sampling, "memory_budget_bytes": memory, "build_all": whole,
           f"build_{runs - 1}": first, f"add_one_to_{runs - 1}": add_one, "store_bytes": whole["bytes"],
           "gemm_gflops_1_thread": rate, "build_gflops": flops / whole["cpu_s"] / 1e9,
           "gemm_fraction": flops / whole["cpu_s"] / 1e9 / rate}
    if keep is None:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def protocol_size(runs: int = 80, unbiased: int = 2) -> dict:
    """The store of ``runs`` Fig. 1 runs (random numbers in its layout): bytes on disk."""
    from biasvar.gramstore import AnchoredGram, GramState, RunRows, write_store
    from biasvar.gramstore.anchored import SPECIAL
    from biasvar.gramstore.build import _pair_groups
    from biasvar.problems.vae import VAE

    layout = VAE().layout()
    sizes = np.array([int(np.prod(shape)) for _, shape, _ in layout], dtype=np.int64)
    G, nb = len(sizes), FIG1_BLOCKS
    M = SPECIAL + runs * nb
    rng = np.random.default_rng(0)
    rows = [RunRows(key=("rf(M=4)" if i < unbiased else f"st(t={1 + i / 100:g})", i), attrs={"spec": "x"},
                    path=f"run{i}.h5", rows=SPECIAL + i * nb + np.arange(nb), count=np.full(nb, 295.0),
                    nonfinite=np.zeros(nb, np.int64), m2=rng.random((nb, G)), sumsq=rng.random((nb, G)),
                    exact_sha="", file_sha="0" * 64) for i in range(runs)]
    q = np.full((G + 1, M, M), np.nan)
    x = rng.standard_normal((M, 64))
    full = x @ x.T
    q[G] = full
    q[:G, :SPECIAL, :] = full[None, :SPECIAL, :]
    q[:G, :, :SPECIAL] = full[None, :, :SPECIAL]
    for a in rows:
        for b in rows:
            if _pair_groups(a, b):
                q[:G, a.rows[:, None], b.rows[None, :]] = full[a.rows[:, None], b.rows[None, :]]
    gram = AnchoredGram(groups=tuple(n for n, _, _ in layout), group_sizes=sizes, q=q, runs=tuple(rows),
                        has_exact=False)
    state = GramState(gram, rng.standard_normal(int(sizes.sum())).astype(np.float32), "synthetic", "*",
                      int(sizes.sum()))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_store(Path(tmp) / "store.hdf5", state)
        size = path.stat().st_size
    run_file = 132e6  # a Fig. 1 run file at n = 10^4 with the default filter (README, "Run-file size")
    return {"runs": runs, "unbiased_runs": unbiased, "blocks_per_run": nb, "groups": G, "rows": M,
            "store_bytes": size, "store_mib": size / 2**20, "run_files_bytes": runs * run_file,
            "ratio": size / (runs * run_file), "device_return_limit_mib": 64, "parts_of_16_mib": -(-size // 2**24)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--memory", type=float, default=2 * 2**30)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the run files in a folder under this one")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--runs-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args)
    from biasvar.provenance import git_commit

    t = time.perf_counter()
    result = {"command": "python scripts/gram_store_cost.py " + " ".join(sys.argv[1:]), "cpu": _cpu(),
              "commit": git_commit(), "threads": 1, "size": protocol_size(),
              "build": build_cost(args.runs, int(args.memory), args.keep)}
    result["wall_s"] = time.perf_counter() - t
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
