"""Time the Fig. B.5 study (``biasvar.studies.quantstudy.quant_unit_study``) before and after the change
that builds each chunk's grid once and runs it on a chosen device, in ONE process on the CPU.

The "before" code is read from git (commit 233bfcf, ``biasvar/quantstudy.py``) and imported beside
the current one; both run the full study (6 panels x 6 estimators, n draws x 61 inputs) in
interleaved rounds after a warm-up (compiled kernels), and the means and standard deviations of
the two must be identical bit for bit.

    OMP_NUM_THREADS=1 python scripts/quantstudy_timing.py results/bench/quantstudy-cpu-1thread.json
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from biasvar.studies import quantstudy as new

OLD_COMMIT = "233bfcf"


def _old_module():
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:biasvar/quantstudy.py"], capture_output=True, text=True,
                         check=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "quantstudy_before.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("quantstudy_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["quantstudy_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def main(out: str, n: int = 10_000, rounds: int = 2) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    old = _old_module()
    new.quant_unit_study(n=200)  # warm-up: compiled kernels, allocator
    times: dict[str, list[list[float]]] = {"before": [], "after": []}
    studies = {}
    for _ in range(rounds):
        for name, mod in (("before", old), ("after", new)):
            t, c = time.perf_counter(), time.process_time()
            studies[name] = mod.quant_unit_study(n=n)
            times[name].append([round(time.perf_counter() - t, 2), round(time.process_time() - c, 2)])
    a, b = studies["before"], studies["after"]
    same = all(np.array_equal(a[k][s].mean, b[k][s].mean) and np.array_equal(a[k][s].std, b[k][s].std)
               for k in a for s in a[k])
    best = {k: min(v[0] for v in vs) for k, vs in times.items()}
    res = {"command": "python " + " ".join(sys.argv), "n": n, "points": 61, "rounds": rounds,
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": "cpu",
           "load_average": os.getloadavg(), "wall_and_cpu_s": times, "best_wall_s": best,
           "speedup_best_wall": round(best["before"] / best["after"], 2), "identical_mean_and_std": same}
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
