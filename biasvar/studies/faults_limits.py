"""Fault injection at the machine's limits (issue 26), the ``limits`` experiment of
:mod:`biasvar.studies.faults`: a full disk, memory that is not there, a damaged file, a dead cluster.

Every case runs ``biasvar`` in a child process (a hang is a timeout) on the built-in toy problem and
counts outcomes; a case passes with exit 1, one ``error:`` line and no traceback (where the command
must refuse before any work, the only line it prints: no progress line before it), and

* **full disk, run file** (a tmpfs of random size under the run's, the size estimate skipped so the
  disk fills during the run): the file left ``interrupted`` with the blocks saved, and the same
  command, once there is room, resumes to the bits of a run never interrupted; without the skip the
  run is refused before any draw ("not enough space"), leaving no file;
* **full disk, other writers** (``snapshot --out``, ``train --out``, ``report --out``, ``plot``,
  ``compact``, ``gram`` on a full tmpfs): every file that was there before unchanged, no temporary
  file left;
* **memory refused** (``gr-mc`` with a random M of 10^8-10^9 on toy-cat): refused in seconds naming
  the largest M that fits, nothing written;
* **out of memory during a run** (a ``MemoryError`` injected after a random number of chunks): the
  draws saved, the file ``interrupted``, and the resumed run identical to one never interrupted;
* **damaged file not extended** (two flipped bytes in a block-sum chunk, or one flipped bit of the
  root group's header): ``sample`` asked for more draws refuses it, the file not changed by a byte;
* **dead Ray address** (nothing listens at ``127.0.0.1:1``; ``10.255.255.1:6379``, where this sandbox's
  proxy answers HTTP/2 but is not Ray): one line within the connect timeout (2 s) plus start-up.

The tmpfs cases need ``mount`` (root); elsewhere they are counted as skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from biasvar.studies.faults_common import _env, _snapshot, identical

LIMIT_N, LIMIT_BLOCK, LIMIT_CHUNK, LIMIT_KEEP = 40_000, 2_000, 500, 8  # a run file of ~1.4 MB (its kept draws)
TIMEOUT_S = 180.0

# biasvar with its size estimate before a run skipped: the disk then fills during the run (taken by others)
_WITHOUT_ESTIMATE = ("import runpy, sys\nimport biasvar.engine.runs as r\nr.check_run_room = lambda plan: None\n"
                     "sys.argv[0] = 'biasvar'\nrunpy.run_module('biasvar_cli.main', run_name='__main__')\n")
# biasvar whose draws fail with MemoryError once they reach draw int(sys.argv[1])
_OUT_OF_MEMORY = ("import runpy, sys\nfrom biasvar.engine.draws import DrawPath\nreal = DrawPath.draws\n"
                  "at = int(sys.argv.pop(1))\n"
                  "def draws(self, seed, start, end, **kw):\n"
                  "    for c in real(self, seed, start, end, **kw):\n"
                  "        if c.start >= at:\n            raise MemoryError()\n        yield c\n"
                  "DrawPath.draws = draws\nsys.argv[0] = 'biasvar'\n"
                  "runpy.run_module('biasvar_cli.main', run_name='__main__')\n")


def _run(code_or_module: list[str], args: list[Any], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, *code_or_module, *(str(a) for a in args)], cwd=cwd, env=_env(),
                       capture_output=True, text=True, timeout=TIMEOUT_S)
    return r, time.monotonic() - t0


def _cli(args: list[Any], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    return _run(["-m", "biasvar_cli.main"], args, cwd)


def one_line(r: subprocess.CompletedProcess, words: str, *, only: bool = False) -> bool:
    """Exit 1, one ``error:`` line holding ``words``, no traceback; with ``only``, nothing else printed
    (a refusal before any work: no progress line before it), else after progress lines at most."""
    lines = [line for line in (r.stderr + r.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (r.returncode == 1 and "Traceback" not in r.stderr + r.stdout and len(errors) == 1
            and words in errors[0] and (not only or len(lines) == 1))


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[bool]:
    """A tmpfs of ``size`` mounted at ``folder`` (yields False where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if r.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)


def _fill(folder: Path) -> None:
    """Take every free byte of ``folder``'s device."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def _sample_args(snap: Path, runs: Path, n: int = LIMIT_N) -> list[Any]:
    return ["sample", "--snapshot", snap, "-e", "zgr", "--n", n, "--block-size", LIMIT_BLOCK, "--chunk", LIMIT_CHUNK,
            "--keep", LIMIT_KEEP, "--runs-dir", runs]


def full_disk_runs(work: Path, trials: int, rng: random.Random, snap: Path, sid: str, ref: Path) -> Counter:
    from biasvar import store

    out = Counter()
    for t in range(trials):
        disk = work / f"disk{t}"
        size = rng.randint(1600, 2300)  # KiB: the run file takes ~1,400, the writer keeps 1 MiB + 2 blocks free
        with tmpfs(disk, f"{size}k") as mounted:
            if not mounted:
                out["full disk, run file: skipped (cannot mount a tmpfs)"] += 1
                continue
            args = _sample_args(snap, disk / "runs")
            r, _ = _cli(args, work)
            refused = one_line(r, "not enough space in", only=True) and not list(disk.rglob("*.h5"))
            out["full disk, run file: refused before any draw, no file" if refused else
                "full disk, run file: NOT refused before drawing"] += 1
            r, _ = _run(["-c", _WITHOUT_ESTIMATE], args, work)
            path = store.run_path(disk / "runs", sid, "zgr", 0)
            saved = store.read_run(path, load_sums=False) if path.is_file() else None
            ok = (one_line(r, "no space left on the device of") and saved is not None
                  and saved.status == "interrupted" and saved.progress.n_done > 0)
            out["full disk, run file filled during the run: one line, interrupted, blocks saved" if ok else
                "full disk, run file filled during the run: NOT ok"] += 1
            subprocess.run(["mount", "-o", "remount,size=16m", "tmpfs", str(disk)], check=True)
            r, _ = _cli(args, work)
            same = r.returncode == 0 and identical(path, ref)
            out["full disk, run file: resumed identical" if same else "full disk, run file: resumed DIFFERENT"] += 1
    return out


def full_disk_writers(work: Path, snap: Path, runs: Path, wide: Path) -> Counter:
    out = Counter()
    disk = work / "disk"
    with tmpfs(disk, "4m") as mounted:
        if not mounted:
            out["full disk, other writers: skipped (cannot mount a tmpfs)"] += 1
            return out
        shutil.copytree(wide, disk / "wide")
        shutil.copytree(runs, disk / "runs")
        target = disk / "out"
        target.mkdir()
        for name in ("s.pt", "t.pt", "r.md", "p.png", "p.pdf"):
            (target / name).write_text(f"the old {name}\n")
        _fill(disk)
        before = _tree(disk)
        writers = {
            "snapshot --out": ["snapshot", "--problem", "toy-cat", "--out", target / "s.pt"],
            "train --out": ["train", "--model", "toy-cat", "--epochs", "1", "--out", target / "t.pt"],
            "report --out": ["report", "--runs-dir", runs, "--reference", "exact", "--n-resamples", "0",
                             "--out", target / "r.md"],
            "plot": ["plot", "pareto", "--runs-dir", runs, "--reference", "exact", "--out", target / "p.png"],
            "compact": ["compact", "--runs-dir", disk / "wide", "--compression", "none"],
            "gram": ["gram", "--runs-dir", disk / "runs"],
        }
        for name, args in writers.items():
            r, _ = _cli(args, work)
            ok = one_line(r, "no space left on the device of", only=True) and _tree(disk) == before
            out[f"full disk, {name}: one line, old files unchanged" if ok else f"full disk, {name}: NOT ok"] += 1
    return out


def memory_refused(work: Path, trials: int, rng: random.Random) -> Counter:
    out = Counter()
    slowest = 0.0
    for t in range(trials):
        m = rng.randint(10**8, 10**9)
        r, dt = _cli(["sample", "--problem", "toy-cat", "-e", f"gr-mc(t=0.5,M={m})", "--n", "100",
                      "--runs-dir", work / f"mem{t}"], work)
        slowest = max(slowest, dt)
        ok = one_line(r, "the largest M that fits is", only=True) and not (work / f"mem{t}").exists()
        out["memory refused: one line naming the largest M, nothing written" if ok else "memory refused: NOT ok"] += 1
    out["memory refused: slowest s"] = round(slowest, 1)
    return out


def out_of_memory(work: Path, trials: int, rng: random.Random, snap: Path, sid: str, ref: Path) -> Counter:
    from biasvar import store

    out = Counter()
    for t in range(trials):
        runs = work / f"oom{t}"
        at = rng.randrange(LIMIT_CHUNK, LIMIT_N, LIMIT_CHUNK)
        args = _sample_args(snap, runs)
        r, _ = _run(["-c", _OUT_OF_MEMORY, str(at)], args, work)
        path = store.run_path(runs, sid, "zgr", 0)
        saved = store.read_run(path, load_sums=False) if path.is_file() else None
        ok = (one_line(r, "out of memory on cpu") and saved is not None and saved.status == "interrupted"
              and 0 < saved.progress.n_done + saved.progress.n_pending <= at)
        out["out of memory during a run: one line, the draws saved" if ok else
            "out of memory during a run: NOT ok"] += 1
        r, _ = _cli(args, work)
        same = r.returncode == 0 and identical(path, ref)
        out["out of memory during a run: resumed identical" if same else
            "out of memory during a run: resumed DIFFERENT"] += 1
    return out


def _flip(path: Path, rng: random.Random, how: str) -> None:
    import h5py

    data = bytearray(path.read_bytes())
    if how == "metadata":
        data[128] ^= 0x10  # the root group's object header (its checksum then fails)
    else:
        with h5py.File(path, "r") as f:
            ds = f["block_sum"]
            info = ds.id.get_chunk_info(rng.randrange(ds.id.get_num_chunks()))
            offset, size = info.byte_offset, info.size
        for k in rng.sample(range(size - 4), 2):
            data[offset + k] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def damaged_not_extended(work: Path, trials: int, rng: random.Random, snap: Path, sid: str, ref: Path) -> Counter:
    from biasvar import store

    out = Counter()
    for t in range(trials):
        runs = work / f"dmg{t}"
        path = store.run_path(runs, sid, "zgr", 0)
        path.parent.mkdir(parents=True)
        shutil.copy(ref, path)
        how = ("block sums", "metadata")[t % 2]
        _flip(path, rng, how)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        r, _ = _cli(_sample_args(snap, runs, n=2 * LIMIT_N), work)
        ok = one_line(r, "is damaged", only=True) and hashlib.sha256(path.read_bytes()).hexdigest() == before
        out[f"damaged ({how}) not extended: one line, not a byte written" if ok else
            f"damaged ({how}): NOT ok"] += 1
    return out


def dead_ray(work: Path, snap: Path) -> Counter:
    out = Counter()
    try:
        import ray  # noqa: F401
    except ImportError:
        out["dead Ray address: skipped (ray not installed)"] += 1
        return out
    for address in ("127.0.0.1:1", "10.255.255.1:6379"):
        runs = work / address.replace(":", "-")
        r, dt = _cli(["sweep", "--snapshot", snap, "--estimators", "zgr", "--n", "40", "--executor", "ray",
                      "--address", address, "--connect-timeout", "2", "--runs-dir", runs], work)
        ok = one_line(r, "Ray cluster", only=True) and dt < 30 and not runs.exists()
        lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        errors = sum(line.startswith("error:") for line in lines)
        written = sorted(str(p.relative_to(runs)) for p in runs.rglob("*") if p.is_file()) if runs.exists() else []
        out[f"dead Ray address {address}: one line in {dt:.1f} s, nothing written" if ok else
            f"dead Ray address {address}: NOT ok: exit {r.returncode}, {errors} error line(s) after "
            f"{len(lines) - errors} other line(s), {dt:.1f} s, written: {', '.join(written) or 'nothing'}"] += 1
    return out


def limits(work: Path, trials: int, rng: random.Random) -> dict[str, Any]:
    """Every case above, ``trials`` times where it draws something random."""
    import torch

    from biasvar import engine
    from biasvar.problems.vae import VAE
    from biasvar.snapshot import load_snapshot, save_snapshot

    snap, sid = _snapshot(work)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = load_snapshot(snap)
        ref = engine.sample_run(s, "zgr", n=LIMIT_N, seed=0, runs_dir=work / "reference", block_size=LIMIT_BLOCK,
                                chunk=LIMIT_CHUNK, keep=LIMIT_KEEP)
        toy_runs = work / "toy-runs"
        for spec in ("zgr", "st"):
            engine.sample_run(s, spec, n=400, seed=0, runs_dir=toy_runs, block_size=20)
        wide = save_snapshot(work / "vae.pt", VAE(vars=2, categories=4, hidden=(16,)))
        engine.sample_run(wide, "st", n=40, seed=0, runs_dir=work / "wide-runs", block_size=10)
    finally:
        torch.set_num_threads(threads)
    out = Counter()
    for name, part in (("full-disk-runs", lambda w: full_disk_runs(w, trials, rng, snap, sid, ref)),
                       ("full-disk-writers", lambda w: full_disk_writers(w, snap, toy_runs, work / "wide-runs")),
                       ("memory", lambda w: memory_refused(w, trials, rng)),
                       ("oom", lambda w: out_of_memory(w, trials, rng, snap, sid, ref)),
                       ("damaged", lambda w: damaged_not_extended(w, 2 * trials, rng, snap, sid, ref)),
                       ("ray", lambda w: dead_ray(w, snap))):
        sub = work / name
        sub.mkdir()
        out.update(part(sub))
    return {"trials": trials, **dict(sorted(out.items()))}


__all__ = ["limits", "one_line", "tmpfs"]
