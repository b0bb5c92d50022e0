"""What a store-only sweep costs against a sweep with run files, on this machine (issue 21, item 5):
the same sweep of the Fig. 1 VAE (d = 1,149,456, 34 blocks per run, 2 draws per block so sampling is
cheap), once with run files and the store built at its end (`biasvar sweep`), once store-only
(`biasvar sweep --store-only`), each in a fresh process (CPU seconds and peak RSS of that process),
alternated ``--repeats`` times; then the two stores compared pair by pair.

    python scripts/store_only_cost.py --out results/gram-store/store-only.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPECS = ["zgr", "st", "st(t=2)", "gs-st(t=0.5)", "gs(t=0.5)"]
BLOCKS = 34


def _run(cmd: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": time.perf_counter() - t,
            "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "max_rss_mb_so_far": after.ru_maxrss / 1024}  # the largest child so far (getrusage), not this one


def _max_rel(a, b) -> float:
    worst = 0.0
    for ra in a.gram.runs:
        rb = b.gram.run(*ra.key)
        for sa in a.gram.runs:
            sb = b.gram.run(*sa.key)
            qa = a.gram.q[-1][np.ix_(ra.rows, sa.rows)]
            qb = b.gram.q[-1][np.ix_(rb.rows, sb.rows)]
            worst = max(worst, float(np.max(np.abs(qa - qb)) / np.max(np.abs(qa))))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    from biasvar import gramstore
    from biasvar.problems.vae import VAE
    from biasvar.provenance import device_name, git_commit
    from biasvar.snapshot import save_snapshot

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="store-only-cost-"))
    snap_path = tmp / "vae.pt"
    save_snapshot(snap_path, VAE(), provenance={"bench": "store-only"})
    n = 2 * BLOCKS
    base = [sys.executable, "-c", "import sys; from biasvar_cli.main import main; sys.argv[0]='biasvar'; main()",
            "sweep", "--snapshot", str(snap_path), "--estimators", ",".join(SPECS), "--n", str(n), "--keep", "0",
            "--device", "cpu", "--seed", "0", "--chunk", "4"]  # a fixed chunk: both modes draw the same bits
    rows: dict[str, list[dict]] = {"run_files": [], "store_only": []}
    stores = {}
    for rep in range(args.repeats):
        for mode in ("run_files", "store_only"):
            rd = tmp / f"{mode}-{rep}"
            rows[mode].append(_run(base + ["--runs-dir", str(rd)] + (["--store-only"] if mode == "store_only" else [])))
            files = list(rd.rglob("*.h5"))
            rows[mode][-1]["run_files_bytes"] = sum(p.stat().st_size for p in files)
            store = next(rd.rglob("gram-store.hdf5"))
            rows[mode][-1]["store_bytes"] = store.stat().st_size
            stores[mode] = gramstore.read_store(store)
    med = {m: float(np.median([r["cpu_s"] for r in v])) for m, v in rows.items()}
    result = {"command": "python scripts/store_only_cost.py " + " ".join(sys.argv[1:]), "commit": git_commit(),
              "cpu": device_name(torch.device("cpu")), "threads": 1, "snapshot": "untrained Fig. 1 VAE "
              "(snapshot_of(VAE()), init seed 0)", "specs": ["rf(M=4) (reference)"] + SPECS, "n": n, "seed": 0,
              "blocks_per_run": BLOCKS, "dim": 1_149_456, "runs": rows, "median_cpu_s": med,
              "store_only_over_run_files_cpu": med["store_only"] / med["run_files"],
              "stores_max_rel_diff": _max_rel(stores["run_files"], stores["store_only"])}
    shutil.rmtree(tmp, ignore_errors=True)
    result["wall_s"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
