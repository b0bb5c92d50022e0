"""Fault injection: what run files and the CLI do under kill -9, truncation, flipped bytes, bad
input and concurrent writers. ``python -m biasvar.studies.faults --out results/reliability.json``.

Every experiment runs the code under test in child processes (a hang cannot stop the harness: a
child that outlives its timeout is counted as a hang and killed) on the built-in toy problem, and
returns plain counts:

* :func:`kill9`: a writer (``engine.sample_run``, saving its block in progress every 50 ms so that
  kills land in saves too) is killed with SIGKILL at uniformly random moments, 1-3 times per
  trial, then the same call finishes the run; the file must be bit for bit the file of a run that
  was never killed (every dataset but wall-clock bookkeeping);
* :func:`interrupts`: the same with SIGINT (Ctrl-C) or SIGTERM sent to ``biasvar sample``: it must
  exit promptly with one line, keep the whole steps it drew, and resume to the same bits;
* :func:`truncations` / :func:`bitflips`: copies of a complete and of an interrupted run file
  truncated at, or with one byte flipped at, uniformly random offsets; reading each (``read_run``
  and ``scan_runs``) must end in seconds with one line (or read intact data), never a wrong number;
* :func:`bad_inputs`: the CLI with bad arguments and files: exit code 1 or 2, no traceback, one
  ``error:`` line for errors the user caused, and the pre-existing run files unchanged;
* :func:`concurrent_writers`: two writers of one run started together: one is refused with one
  line, the file ends complete and identical;
* ``limits`` (:mod:`biasvar.studies.faults_limits`): a full disk under a run file and under every other
  writer, memory refused or running out during a run, a damaged file asked for more draws, a dead Ray
  address: one line each, nothing saved lost, no damaged file extended, the resume exact.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from biasvar.studies import faults_limits
from biasvar.studies.faults_common import DATASETS, _env, _snapshot, identical  # noqa: F401 - re-exported

SPEC = "zgr"
N, BLOCK, CHUNK = 60_000, 20_000, 500  # steps of 4096 draws (STEP_MAX): saves land inside blocks
TIMEOUT_S = 120.0
READ_TIMEOUT_S = 30.0

_WRITER = r"""
import sys, torch
torch.set_num_threads(1)
from biasvar import engine
from biasvar.snapshot import load_snapshot
snap = load_snapshot(sys.argv[1])
print("started", flush=True)
engine.sample_run(snap, sys.argv[2], n=int(sys.argv[3]), seed=0, runs_dir=sys.argv[4], block_size=int(sys.argv[5]),
                  chunk=int(sys.argv[6]), keep=8, save_every_s=float(sys.argv[7]))
print("done", flush=True)
"""

_READER = r"""
import sys
from biasvar import store
path, root = sys.argv[1], sys.argv[2]
try:
    r = store.read_run(path)
    import numpy as np
    ref = store.read_run(sys.argv[3])
    same = all(np.array_equal(getattr(r, k), getattr(ref, k)) for k in
               ("block_count", "block_nonfinite", "block_sum", "block_m2", "block_sumsq", "samples"))
    print("intact" if same and r.progress.n_done == ref.progress.n_done else "misread")
except store.StoreError as e:
    print("error" if "\n" not in str(e) else "multiline")
runs, bad = store.scan_runs(root)
print("listed-damaged" if [b.problem for b in bad] == ["damaged"] and not runs else
      "listed-ok" if len(runs) == 1 and not bad else "listed-other")
"""

def _writer(snap: Path, runs: Path, *, n: int = N, save_every: float = 0.05) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(snap), SPEC, str(n), str(runs), str(BLOCK),
                             str(CHUNK), str(save_every)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(snap: Path, runs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WRITER, str(snap), SPEC, str(N), str(runs), str(BLOCK),
                           str(CHUNK), "0.05"], env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


def _reference(work: Path, snap: Path, sid: str) -> Path:
    """The run never interrupted (in this process, one thread, as the children)."""
    import torch

    from biasvar import engine
    from biasvar.snapshot import load_snapshot

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return engine.sample_run(load_snapshot(snap), SPEC, n=N, seed=0, runs_dir=work / "reference",
                                 block_size=BLOCK, chunk=CHUNK, keep=8)
    finally:
        torch.set_num_threads(threads)


def _drawing_s(work: Path, snap: Path) -> float:
    """Seconds one run's drawing takes here: a second reference run in this process (imports and the
    path calibration done), one thread as the children. The children create their run file once
    the engine's path is known (run files record it), so the time left after the file appears is
    about this; a signal meant to land mid-run is sent within it."""
    import torch

    from biasvar import engine
    from biasvar.snapshot import load_snapshot

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.monotonic()
        engine.sample_run(load_snapshot(snap), SPEC, n=N, seed=0, runs_dir=work / "timing", block_size=BLOCK,
                          chunk=CHUNK, keep=8)
        return time.monotonic() - t0
    finally:
        torch.set_num_threads(threads)


def kill9(work: Path, trials: int, rng: random.Random, max_kills: int = 3) -> dict[str, Any]:
    """SIGKILL a writer 1-``max_kills`` times at random moments, then finish: identical to a straight run?"""
    from biasvar import store

    snap, sid = _snapshot(work)
    ref = _reference(work, snap, sid)
    out = Counter()
    lost = []
    for t in range(trials):
        runs = work / f"kill{t}"
        for _ in range(rng.randint(1, max_kills)):
            proc = _writer(snap, runs)
            proc.stdout.readline()  # "started": torch imported, the snapshot loaded
            time.sleep(rng.uniform(0.0, 1.5))
            killed_at = time.time()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            out["kills"] += 1
            path = store.run_path(runs, sid, SPEC, 0)
            if path.exists():
                run = store.read_run(path, load_sums=False)
                out[f"after kill: {run.status}"] += 1
                if run.status != "complete":
                    lost.append(killed_at - run.progress.updated)
            else:
                out["after kill: no file yet"] += 1
        res = _finish(snap, runs)
        ok = res.returncode == 0 and identical(store.run_path(runs, sid, SPEC, 0), ref)
        out["identical" if ok else "different"] += 1
        shutil.rmtree(runs, ignore_errors=True)
    return {"trials": trials, **out, "max_s_since_last_save_at_kill": round(max(lost), 3) if lost else None}


def _default_sigint() -> None:
    """A shell starts background jobs with SIGINT ignored, and Python keeps it so: undo that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupts(work: Path, trials: int, rng: random.Random,
               signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> dict[str, Any]:
    """SIGINT / SIGTERM to ``biasvar sample`` at random moments: one line, work kept, same bits."""
    from biasvar import store

    snap, sid = _snapshot(work)
    ref = _reference(work, snap, sid)
    window = min(1.0, 0.8 * _drawing_s(work, snap))  # signals land while the child draws
    out = Counter()
    for t in range(trials):
        runs = work / f"int{t}"
        sig = signals[t % len(signals)]
        cmd = [sys.executable, "-m", "biasvar_cli.main", "sample", "--snapshot", str(snap), "-e", SPEC, "--n",
               str(N), "--block-size", str(BLOCK), "--chunk", str(CHUNK), "--keep", "8", "--runs-dir", str(runs)]
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)
        path = store.run_path(runs, sid, SPEC, 0)
        deadline = time.monotonic() + TIMEOUT_S
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, window))
        sent = time.monotonic()
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            out["hung after the signal"] += 1
            continue
        out["max_exit_s"] = max(out.get("max_exit_s", 0), round(time.monotonic() - sent, 2))
        name = signal.Signals(sig).name
        if proc.returncode == 0:
            out[f"{name}: finished before the signal"] += 1
        else:
            out[f"{name}: exit {proc.returncode}"] += 1
            if "Traceback" in err:
                out["tracebacks"] += 1
            if path.exists():
                status = store.read_run(path, load_sums=False).progress.status
                out["interrupted status" if status == "interrupted" else f"status {status}"] += 1
        res = _finish(snap, runs)
        ok = res.returncode == 0 and identical(path, ref)
        out["identical" if ok else "different"] += 1
        shutil.rmtree(runs, ignore_errors=True)
    return {"trials": trials, **out}


def _damaged_files(work: Path) -> tuple[Path, Path, list[tuple[str, Path]]]:
    """A complete run file and an interrupted one (with a saved block in progress)."""
    from biasvar import store

    snap, sid = _snapshot(work)
    ref = _reference(work, snap, sid)
    runs = work / "partial"
    proc = _writer(snap, runs, save_every=0.0)
    proc.stdout.readline()
    path = store.run_path(runs, sid, SPEC, 0)
    while proc.poll() is None:
        if path.exists() and store.read_run(path, load_sums=False).progress.n_done > BLOCK + 5000:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    if not path.exists():
        raise RuntimeError(f"the interrupted run was not written: {err[-2000:]}")
    return ref, path, [("complete", ref), ("interrupted", path)]


def _read_child(path: Path, root: Path, original: Path) -> tuple[str, ...]:
    try:
        res = subprocess.run([sys.executable, "-c", _READER, str(path), str(root), str(original)], env=_env(),
                             capture_output=True, text=True, timeout=READ_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return ("hang",)
    if res.returncode != 0 or "Traceback" in res.stderr:
        return ("traceback",)
    return tuple(res.stdout.split())


def _damage(work: Path, files: int, rng: random.Random, how: str,
            sources: list[tuple[str, Path]] | None = None) -> dict[str, Any]:
    """Damage copies of the sources (``how``: truncate or flip) and read each in its own child."""
    sources = sources or _damaged_files(work)[2]
    out = Counter()
    worst = 0.0
    for i in range(files):
        kind, src = sources[i % len(sources)]
        data = bytearray(src.read_bytes())
        off = rng.randrange(len(data))
        if how == "truncate":
            data = data[:off]
        else:
            data[off] ^= 1 << rng.randrange(8)
        folder = work / how / f"f{i}" / src.parent.name
        folder.mkdir(parents=True)
        target = folder / src.name
        target.write_bytes(bytes(data))
        t0 = time.monotonic()
        result = _read_child(target, folder.parent, src)
        worst = max(worst, time.monotonic() - t0)
        out[f"{kind}: " + " + ".join(result)] += 1
        out["files"] += 1
    return {**dict(sorted(out.items())), "slowest_read_s": round(worst, 2)}


def truncations(work: Path, files: int, rng: random.Random, sources=None) -> dict[str, Any]:
    return _damage(work, files, rng, "truncate", sources)


def bitflips(work: Path, files: int, rng: random.Random, sources=None) -> dict[str, Any]:
    return _damage(work, files, rng, "flip", sources)


def acceptable_read(outcome: str) -> bool:
    """A damaged copy read as one line and listed as damaged, or read intact (the byte was unused)."""
    return outcome.split(": ", 1)[-1] in ("error + listed-damaged", "intact + listed-ok")


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "biasvar_cli.main", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def bad_input_cases(work: Path, snap: Path, runs: Path, sid: str) -> list[list[str]]:
    """Argument lists a user could get wrong (the issue's cases first)."""
    (work / "notes.txt").write_text("just some notes\n")
    (work / "f").write_text("")
    (work / "empty.pt").write_bytes(b"")
    (work / "half.pt").write_bytes(snap.read_bytes()[: snap.stat().st_size // 2])
    (work / "adir.pt").mkdir(exist_ok=True)
    misplaced = runs / "0123456789ab"
    misplaced.mkdir(parents=True, exist_ok=True)
    shutil.copy(runs / sid / f"{SPEC}-s0.h5", misplaced / f"{SPEC}-s0.h5")
    s = str(snap)
    return [
        ["sample", "--snapshot", "notes.txt", "-e", "zgr"],
        ["sample", "--snapshot", s, "-e", "zgr", "--seed", "-1", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--runs-dir", "f"],
        ["data", "verify", "--data-dir", str(work / "nodata")],
        ["report", "--runs-dir", str(runs), "--reference", "exact"],
        ["sample", "--snapshot", "empty.pt", "-e", "zgr"],
        ["sample", "--snapshot", "half.pt", "-e", "zgr"],
        ["sample", "--snapshot", "adir.pt", "-e", "zgr"],
        ["sample", "--snapshot", "missing.pt", "-e", "zgr"],
        ["sample", "--snapshot", s, "-e", "nope"],
        ["sample", "--snapshot", s, "-e", "gr-mc(t=-1)"],
        ["sample", "--snapshot", s, "-e", "zgr", "--n", "0", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--n", "-5", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--n", "abc"],
        ["sample", "--snapshot", s, "-e", "zgr", "--chunk", "0", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--block-size", "0", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--keep", "-3", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--device", "tpu", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--dtype", "int8", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--max-memory", "lots", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--params", "nothing.*", "--runs-dir", str(runs)],
        ["sample", "--snapshot", s, "-e", "zgr", "--n", "100", "--params", "logits", "--runs-dir", str(runs)],
        ["ls", "--runs-dir", "f"],
        ["report", "--runs-dir", "f"],
        ["report", "--runs-dir", str(runs), "--format", "xml"],
        ["report", "--runs-dir", str(runs), "--bootstrap", "-1"],
        ["report", "--runs-dir", str(runs), "--reference", "nope"],
        ["report", "--runs-dir", str(runs), "--out", "f/x.md"],
        ["sweep", "--snapshot", s, "--preset", "nope"],
        ["sweep", "--snapshot", s],
        ["train", "--model", "nope", "--out", "x.pt"],
        ["plot", "nope"],
        ["bench", "--bench", "nope"],
        ["nope"],
    ]


def bad_inputs(work: Path) -> dict[str, Any]:
    """Each bad argument list once: exit 1/2, no traceback, one error line; no file damaged."""
    import hashlib

    snap, sid = _snapshot(work)
    runs = work / "runs"
    res = _finish(snap, runs)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in runs.rglob("*.h5")}
    before[snap] = hashlib.sha256(snap.read_bytes()).hexdigest()
    out = Counter()
    details = []
    for args in bad_input_cases(work, snap, runs, sid):
        r = _cli(args, work)
        err_lines = [line for line in r.stderr.splitlines() if line.strip()]
        one_line = r.returncode == 2 or (len([x for x in err_lines if x.startswith("error:")]) == 1
                                         and len(err_lines) <= 3)
        ok = r.returncode in (1, 2) and "Traceback" not in r.stderr + r.stdout and one_line
        if args[:2] == ["report", "--runs-dir"] and args[3:] == ["--reference", "exact"]:
            ok = r.returncode in (0, 1) and "misplaced" in r.stderr + r.stdout and "Traceback" not in r.stderr
        out["tried"] += 1
        out["one line, exit 1/2" if ok else "NOT ok"] += 1
        details.append({"args": args, "exit": r.returncode, "stderr": err_lines[-3:], "ok": ok})
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before if p.exists()}
    out["pre-existing files changed"] = sum(after.get(p) != h for p, h in before.items())
    return {**out, "cases": details}


def concurrent_writers(work: Path, trials: int) -> dict[str, Any]:
    """Two writers of one run at once: one refused, the file complete and identical."""
    from biasvar import store

    snap, sid = _snapshot(work)
    ref = _reference(work, snap, sid)
    out = Counter()
    for t in range(trials):
        runs = work / f"conc{t}"
        procs = [_writer(snap, runs, save_every=0.05) for _ in range(2)]
        results = [p.communicate(timeout=TIMEOUT_S) for p in procs]
        codes = sorted(p.returncode for p in procs)
        refused = sum("being written by another process" in err for _, err in results)
        one = [err for (_, err), p in zip(results, procs, strict=True) if p.returncode != 0]
        if codes == [0, 1] and refused == 1 or codes == [0, 0]:  # both 0: the second came after the first
            out["one refused" if codes == [0, 1] else "one after the other"] += 1
        else:
            out["NOT ok"] += 1
            out.setdefault("errors", []).extend(e[-300:] for e in one)  # type: ignore[union-attr]
        path = store.run_path(runs, sid, SPEC, 0)
        out["identical" if identical(path, ref) else "different"] += 1
        shutil.rmtree(runs, ignore_errors=True)
    return {"trials": trials, **out}


EXPERIMENTS = ("kill9", "interrupts", "truncations", "bitflips", "bad_inputs", "concurrent_writers", "limits")


def run_all(work: Path, *, kills: int, files: int, concurrent: int, seed: int = 0, limit_trials: int = 3,
            only: tuple[str, ...] = EXPERIMENTS,
            signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> dict[str, Any]:
    t0 = time.time()
    out: dict[str, Any] = {}
    for name, fn in (("kill9", lambda w, r: kill9(w, kills, r)),
                     ("interrupts", lambda w, r: interrupts(w, kills, r, signals)),
                     ("truncations", lambda w, r: truncations(w, files, r)),
                     ("bitflips", lambda w, r: bitflips(w, files, r)), ("bad_inputs", lambda w, r: bad_inputs(w)),
                     ("concurrent_writers", lambda w, r: concurrent_writers(w, concurrent)),
                     ("limits", lambda w, r: faults_limits.limits(w, limit_trials, r))):
        if name not in only:
            continue
        rng = random.Random(f"{seed}-{name}")  # each experiment's draws do not depend on the others
        sub = work / name
        sub.mkdir()
        t = time.time()
        out[name] = fn(sub, rng)
        out[name]["wall_s"] = round(time.time() - t, 1)
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "cases"}), flush=True)
    out["settings"] = {"spec": SPEC, "n": N, "block_size": BLOCK, "chunk": CHUNK, "seed": seed,
                       "wall_s": round(time.time() - t0, 1)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="kill -9 trials (and as many SIGINT/SIGTERM trials)")
    ap.add_argument("--files", type=int, default=20, help="truncated files (and as many with a flipped byte)")
    ap.add_argument("--concurrent", type=int, default=5, help="trials of two writers at once")
    ap.add_argument("--limit-trials", type=int, default=3, help="limits: trials of each random case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--signals", default="INT,TERM", help="interrupts: the signals sent in turn (INT, TERM)")
    ap.add_argument("--only", default=",".join(EXPERIMENTS), help=f"comma-separated subset of {EXPERIMENTS}")
    ap.add_argument("--out", type=Path, default=None, help="write the counts as JSON here (merged into an "
                    "existing file: experiments run now replace theirs)")
    args = ap.parse_args(argv)
    only = tuple(x.strip() for x in args.only.split(",") if x.strip())
    with tempfile.TemporaryDirectory(prefix="biasvar-faults-") as tmp:
        sigs = tuple(getattr(signal, "SIG" + x.strip()) for x in args.signals.split(",") if x.strip())
        result = run_all(Path(tmp), kills=args.kills, files=args.files, concurrent=args.concurrent, seed=args.seed,
                         limit_trials=args.limit_trials, only=only, signals=sigs)
    args_text = " ".join(argv if argv is not None else sys.argv[1:])
    result["settings"]["command"] = "python -m biasvar.studies.faults " + args_text
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.is_file() else {}
        old.setdefault("runs", []).append(result.pop("settings"))
        old.update(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(old, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
