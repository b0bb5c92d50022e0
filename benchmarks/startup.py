"""Start-up time of the CLI: ``python benchmarks/startup.py --out results/startup.json``.

Runs ``biasvar --help``, ``--version``, ``ls`` and ``estimators`` (and, for scale, ``python -c pass``
and ``python -c "import torch"``) ``--repeats`` times each, interleaved, as fresh processes, and
reports the median and best wall time of each with the machine's load average. On a shared machine
the absolute numbers move with the load; the ratio to ``import torch`` in the same run does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "biasvar --version": [sys.executable, "-m", "biasvar_cli.main", "--version"],
    "biasvar --help": [sys.executable, "-m", "biasvar_cli.main", "--help"],
    "biasvar ls": [sys.executable, "-m", "biasvar_cli.main", "ls"],
    "biasvar estimators": [sys.executable, "-m", "biasvar_cli.main", "estimators"],
}


def measure(repeats: int, runs_dir: Path) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    for _ in range(repeats):
        for name, cmd in COMMANDS.items():
            cmd = cmd + (["--runs-dir", str(runs_dir)] if name == "biasvar ls" else [])
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - t0)
    return {k: {"median_s": round(statistics.median(v), 3), "best_s": round(min(v), 3)} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        load0 = os.getloadavg()
        result = measure(args.repeats, Path(tmp))
        load1 = os.getloadavg()
    out = {"commands": result, "repeats": args.repeats, "load_average_before_after": [load0[0], load1[0]],
           "cpu_count": os.cpu_count(), "python": platform.python_version(),
           "command": "python benchmarks/startup.py " + " ".join(sys.argv[1:])}
    text = json.dumps(out, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
