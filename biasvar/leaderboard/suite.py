"""The leaderboard's fixed suite of snapshots: what each one is, how it is made, and its hash.

A suite is data, not code: a JSON file (the committed one is ``benchmarks/suite/suite.json``)
naming, per snapshot, a built-in model and its options, the training that makes it (data,
estimator, epochs, steps per epoch, batch size, learning rate, seed), the reference it is measured
against (``rf(M=4)``, or ``exact`` where the problem is enumerable) and, per *size*, the content
hash (:func:`biasvar.snapshot.content_hash`) the training gives on a CPU with one torch thread:

    {"schema": 1, "name": ..., "seed": 0, "n": 256, "n_resamples": 1000, "estimators": [...],
     "snapshots": [{"name": "fig1-vae", "title": ..., "model": "vae", "options": {...},
                    "reference": "rf(M=4)", "params": null,
                    "sizes": {"cpu": {"train": {...}, "hash": "9f...", "file": null},
                              "full": {"train": {...}, "hash": null}}}]}

``cpu`` is what this project's 2-core CPU trains (fewer epochs or steps where the full size does
not fit it); ``full`` is the full-size definition, for a GPU (its hash is recorded once made).
``file`` is a committed snapshot (small ones), relative to the suite file; ``measure`` (optional)
gives a snapshot its own ``n``, ``slow_n`` or ``max_cost`` where the suite's do not fit the CPU. :func:`make_snapshots`
trains every snapshot of a size (one torch thread: the same bits on every run) and checks each
against its recorded hash; ``record=True`` writes the hashes into the suite file instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biasvar.errors import BiasvarError

SCHEMA = 1
SIZES = ("cpu", "full")
#: the committed suite: ``benchmarks/suite/suite.json`` of the repository
SUITE_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "suite" / "suite.json"
TRAIN_KEYS = ("data", "estimator", "epochs", "steps_per_epoch", "batch_size", "lr", "eval_batch_size", "seed")

Say = Callable[[str], None]


class SuiteError(BiasvarError, ValueError):
    """A suite file that cannot be read, or a snapshot that does not match its recorded hash."""


@dataclass(frozen=True)
class Entry:
    """One snapshot of the suite at one size."""

    name: str
    title: str
    model: str
    options: dict[str, Any]
    reference: str
    params: str | None
    size: str
    train: dict[str, Any]
    hash: str | None
    file: str | None  # committed snapshot, relative to the suite file's folder
    measure: dict[str, Any] = field(default_factory=dict)  # this snapshot's n / slow_n / max_cost, if not the suite's

    @property
    def id(self) -> str:
        return (self.hash or "")[:12]


@dataclass(frozen=True)
class Suite:
    """A suite file read at one size."""

    path: Path
    name: str
    size: str
    seed: int
    n: int
    n_resamples: int
    estimators: tuple[str, ...]
    entries: tuple[Entry, ...]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    slow_n: int | None = None
    max_cost: int | None = None

    def settings(self, entry: Entry) -> tuple[int, int | None, int | None]:
        """``(n, slow_n, max_cost)`` of a snapshot: its own ``measure`` values, else the suite's."""
        m = entry.measure
        return int(m.get("n", self.n)), m.get("slow_n", self.slow_n), m.get("max_cost", self.max_cost)

    def entry(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise SuiteError(f"suite {self.name} has no snapshot {name!r}; it has "
                         + ", ".join(e.name for e in self.entries))


def _need(d: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise SuiteError(f"{where}: missing {key!r}")
    return d[key]


def read_json(path: Path, what: str, schema: int) -> dict[str, Any]:
    """A JSON object of ``schema`` (its ``schema`` key); one-line :class:`SuiteError` otherwise."""
    if not path.is_file():
        raise SuiteError(f"{what} not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeError, json.JSONDecodeError) as e:
        raise SuiteError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None
    if not isinstance(raw, dict) or raw.get("schema") != schema:
        raise SuiteError(f"{path} is not a {what} of schema {schema}")
    return raw


def load_suite(path: str | Path | None = None, size: str = "cpu") -> Suite:
    """Read a suite file (default :data:`SUITE_FILE`) at ``size``; one-line :class:`SuiteError` otherwise."""
    path = Path(path) if path is not None else SUITE_FILE
    if size not in SIZES:
        raise SuiteError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    raw = read_json(path, "suite file", SCHEMA)
    entries = []
    for i, s in enumerate(_need(raw, "snapshots", str(path))):
        where = f"{path}: snapshot {i}"
        sizes = _need(s, "sizes", where)
        if size not in sizes:
            raise SuiteError(f"{where} ({s.get('name')}) has no size {size!r}")
        at = sizes[size]
        train = dict(_need(at, "train", where))
        unknown = sorted(set(train) - set(TRAIN_KEYS))
        if unknown:
            raise SuiteError(f"{where}: unknown training keys {', '.join(unknown)}; known: {', '.join(TRAIN_KEYS)}")
        entries.append(Entry(name=str(_need(s, "name", where)), title=str(s.get("title", "")),
                             model=str(_need(s, "model", where)), options=dict(s.get("options") or {}),
                             reference=str(s.get("reference", "rf(M=4)")), params=s.get("params"), size=size,
                             train=train, hash=at.get("hash"), file=at.get("file"),
                             measure=dict(at.get("measure") or {})))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise SuiteError(f"{path}: snapshot names repeat: {', '.join(names)}")
    return Suite(path=path, name=str(raw.get("name", path.stem)), size=size, seed=int(raw.get("seed", 0)),
                 n=int(raw.get("n", 256)), n_resamples=int(raw.get("n_resamples", 1000)),
                 estimators=tuple(raw.get("estimators") or ()), entries=tuple(entries), raw=raw,
                 slow_n=raw.get("slow_n"), max_cost=raw.get("max_cost"))


def snapshot_file(entry: Entry, suite: Suite, out_dir: str | Path | None) -> Path:
    """Where a snapshot is: the committed file, else ``<out_dir>/<name>-<size>.pt``."""
    if entry.file and (out_dir is None or not (Path(out_dir) / f"{entry.name}-{entry.size}.pt").is_file()):
        return suite.path.parent / entry.file
    if out_dir is None:
        raise SuiteError(f"snapshot {entry.name} is not committed: make it with `biasvar leaderboard snapshots "
                         f"--out DIR` and pass --snapshots DIR")
    return Path(out_dir) / f"{entry.name}-{entry.size}.pt"


def load_entry(entry: Entry, suite: Suite, out_dir: str | Path | None):
    """The entry's snapshot, checked against its recorded hash (one line when it differs or is missing)."""
    from biasvar.snapshot import load_snapshot

    path = snapshot_file(entry, suite, out_dir)
    if not path.is_file():
        raise SuiteError(f"snapshot {entry.name} not found at {path}: make it with `biasvar leaderboard snapshots "
                         f"--out {path.parent}`")
    snap = load_snapshot(path)
    if entry.hash and snap.hash != entry.hash:
        raise SuiteError(f"snapshot {path} has hash {snap.id}, the suite records {entry.id} for {entry.name} "
                         f"({entry.size}): not the suite's snapshot")
    return snap


def train_entry(entry: Entry, out: Path, *, data_dir: str | Path | None = None, say: Say = lambda m: None):
    """Train the entry's snapshot into ``out`` on the CPU with one torch thread (bit-for-bit reproducible)."""
    import torch

    from biasvar.data import load
    from biasvar.train import build_problem, train

    t = entry.train
    seed = int(t.get("seed", 0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        problem = build_problem(entry.model, entry.options, seed=seed)
        data = load(t["data"], "train", data_dir=data_dir) if t.get("data") else None
        say(f"training {entry.name} ({entry.size}): {entry.model} {json.dumps(entry.options, sort_keys=True)}, "
            f"{t.get('epochs', 1)} epochs of {t.get('estimator', 'rf(M=4)')} -> {out}")
        return train(problem, data=data, estimator=t.get("estimator", "rf(M=4)"), epochs=int(t.get("epochs", 1)),
                     batch_size=int(t.get("batch_size", 50)), lr=float(t.get("lr", 1e-4)), seed=seed,
                     eval_batch_size=int(t.get("eval_batch_size", 200)), steps_per_epoch=t.get("steps_per_epoch"),
                     out=out, device="cpu")
    finally:
        torch.set_num_threads(threads)


def make_snapshots(suite: Suite, out_dir: str | Path, *, only: tuple[str, ...] = (), data_dir: str | Path | None = None,
                   record: bool = False, say: Say = lambda m: None) -> list[tuple[Entry, Any, str]]:
    """Make every snapshot of the suite (or those named in ``only``) under ``out_dir``.

    A file already there with the recorded hash is kept. Returns ``(entry, snapshot, status)`` with
    status ``"kept"``, ``"made"`` (hash as recorded), ``"recorded"`` (``record``: the hash written into
    the suite file) or ``"new"`` (no hash recorded yet). A made snapshot whose hash differs from the
    recorded one is a :class:`SuiteError` (the file is left for inspection).
    """
    from biasvar.errors import SnapshotError
    from biasvar.snapshot import load_snapshot

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {e.name for e in suite.entries}
    unknown = [o for o in only if o not in names]
    if unknown:
        raise SuiteError(f"no snapshot {', '.join(unknown)} in suite {suite.name}; it has {', '.join(sorted(names))}")
    done = []
    for entry in suite.entries:
        if only and entry.name not in only:
            continue
        path = out_dir / f"{entry.name}-{entry.size}.pt"
        if path.is_file() and entry.hash and not record:
            try:
                snap = load_snapshot(path)
            except SnapshotError:
                snap = None
            if snap is not None and snap.hash == entry.hash:
                say(f"{entry.name}: {path} has the recorded hash {entry.id}; kept")
                done.append((entry, snap, "kept"))
                continue
        snap = train_entry(entry, path, data_dir=data_dir, say=say)
        if record:
            status = "recorded"
        elif entry.hash is None:
            status = "new"
        elif snap.hash == entry.hash:
            status = "made"
        else:
            raise SuiteError(f"{entry.name}: the snapshot made at {path} has hash {snap.id}, the suite records "
                             f"{entry.id}: not reproduced (another torch version or CPU?)")
        say(f"{entry.name}: snapshot {snap.id} ({status})")
        done.append((entry, snap, status))
    if record:
        record_hashes(suite, {e.name: s.hash for e, s, _ in done})
    return done


def record_hashes(suite: Suite, hashes: Mapping[str, str]) -> Path:
    """Write ``hashes`` (name -> content hash) into the suite file at the suite's size."""
    from biasvar.atomic import write_atomic

    raw = json.loads(json.dumps(suite.raw))
    for s in raw["snapshots"]:
        if s["name"] in hashes:
            s["sizes"][suite.size]["hash"] = hashes[s["name"]]
    return write_atomic(suite.path, json.dumps(raw, indent=1) + "\n")


__all__ = ["SIZES", "SUITE_FILE", "Entry", "Suite", "SuiteError", "load_entry", "load_suite", "make_snapshots",
           "read_json", "record_hashes", "snapshot_file", "train_entry"]
