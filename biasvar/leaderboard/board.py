"""Measuring the suite: the committed board of the built-in estimators, and a new row for any spec.

:func:`measure_board` runs every estimator of the suite on every snapshot through the engine
(:func:`~biasvar.engine.plan_sweep` names the runs, :func:`~biasvar.engine.plan_run` and
:func:`~biasvar.engine.sample` compute each with its own block size: the reference ``rf(M=4)`` at
the suite's seed, each estimator at the same seed, a second ``rf(M=4)`` at seed + 1 as the tested
RF(4)), keeps each snapshot's statistics store (:mod:`biasvar.gramstore`) and analyses it
(:func:`biasvar.report.analyze`: Eq. 16, bootstrap intervals, paired contrasts against ZGR and
RF(4)) into the board, a plain dict (``results/leaderboard.json``).

:func:`measure_row` measures one more spec (built-in or a plug-in ``file.py:make(...)``) on the
suite *without rerunning the board's estimators*: per snapshot it samples the spec and, where the
reference is a run, the reference run again (the same seed gives the same draws: its block
statistics are checked against the stored ones), adds the new run to a copy of the committed store
(only its products with the reference and itself are computed) and analyses the copy exactly as
the board was analysed, so its row and its contrasts against ZGR and RF(4) equal those of
``biasvar report --store <copy> --contrast SPEC,zgr`` (the copy is left in the runs folder).

Every run is computed on the board's device (``"cpu"`` by default; the full-size board on a GPU:
``device="cuda"``), on the vmap path, without kept raw draws: a reference run made again for a new
row (on the board's device) must give the board's bits.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.errors import BiasvarError
from biasvar.leaderboard.suite import Entry, Suite, SuiteError, load_entry, read_json

REFERENCE = "rf(M=4)"  # the reference run, and the RF(4) contrasted against (its tested run is seed + 1)
BASELINES = ("zgr", REFERENCE)  # every row is contrasted against these
BOARD_SCHEMA = 1
#: the committed board: ``results/leaderboard.json`` of the repository
BOARD_FILE = Path(__file__).resolve().parents[2] / "results" / "leaderboard.json"
BLOCKS = 32  # blocks per run (the engine's floor; the Fig. 1 VAE gets 34 by default)
MAX_MEMORY = "3GB"  # the chunks' budget (rf(M=4) on the quantized net needs ~0.8 GB of noise a draw)
SLOW_COST = 16  # estimators of more forward passes per draw than this get the suite's slow_n draws

Say = Callable[[str], None]


def run_options(entry: Entry, n: int, device: str = "cpu"):
    """The settings of every leaderboard run of ``n`` draws: vmap, no kept raw draws, the entry's
    parameters, :data:`BLOCKS` blocks (whatever the problem's size: small stores)."""
    from biasvar.engine import RunOptions

    return RunOptions(params=entry.params, keep=0, device=device, method="vmap", block_size=math.ceil(n / BLOCKS),
                      max_memory=MAX_MEMORY)


def plan_specs(suite: Suite, entry: Entry, snap: Any, specs: Sequence[str]) -> tuple[list[str], list[str],
                                                                                  dict[str, str]]:
    """``(fast, slow, skipped)``: the specs that apply to the snapshot's problem, those of more than
    :data:`SLOW_COST` passes per draw (sampled ``slow_n`` times), and ``{spec: reason}`` of the rest."""
    from biasvar.estimators import build
    from biasvar.problems.base import passes
    from biasvar.spec import parse_spec

    _, slow_n, max_cost = suite.settings(entry)
    fast, slow, skipped = [], [], {}
    for s in specs:
        canon = str(parse_spec(s))
        est = build(parse_spec(canon))  # an estimator that cannot be built is an error, not a left-out row
        try:
            cost = passes(snap.problem, est)
        except BiasvarError as e:
            skipped[canon] = str(e)
            continue
        if max_cost is not None and cost > int(max_cost):
            skipped[canon] = f"cost {cost} forward passes per draw > {max_cost}"
        elif cost > SLOW_COST and slow_n:
            slow.append(canon)
        else:
            fast.append(canon)
    return fast, slow, skipped


def _est(e: Any) -> list[float | None] | None:
    return None if e is None else [e.value, e.low, e.high]


def _scaled(e: Any, c: float) -> list[float | None] | None:
    return None if e is None else [x * c if x is not None else None for x in (e.value, e.low, e.high)]


def rows_of(report: Any) -> list[dict[str, Any]]:
    """The board's rows of a report: estimates ``[value, low, high]`` and the contrasts per baseline."""
    from biasvar.spec import parse_spec

    vs: dict[tuple[str, int], dict[str, Any]] = {}
    for c in report.contrasts:
        vs.setdefault((c.a, c.a_seed), {})[c.b] = {"b2": _est(c.b2), "V": _est(c.variance),
                                                    "vs_seed": c.b_seed}
    out = []
    for r in report.rows:
        out.append({"spec": r.spec, "seed": r.seed, "role": r.role, "n": r.n, "n_blocks": r.n_blocks,
                    "cost": r.cost, "b2": _est(r.b2), "V": _est(r.variance), "MSE": _est(r.mse),
                    "V_x_cost": _scaled(r.variance, r.cost), "draws_per_s": r.draws_per_s,
                    "pareto": r.pareto_mark, "plugin": bool(parse_spec(r.spec).plugin),
                    "vs": vs.get((r.spec, r.seed), {})})
    return out


def contrast_pairs(report_specs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(spec, baseline)`` for every tested spec and baseline but a spec against itself."""
    return [(s, b) for s, role in report_specs if role == "test" for b in BASELINES if s != b]


def _tested(specs: Sequence[str], reference: str) -> list[tuple[str, str]]:
    """The tested specs of an analysis (against ``exact``, the reference spec's run is tested too)."""
    return [(s, "test") for s in dict.fromkeys([*specs, *([REFERENCE] if reference == "exact" else [])])]


def _analyse(runs: list[Any], gram: Any, entry: Entry, suite: Suite, specs: Sequence[str], store: Path) -> Any:
    from biasvar.report import analyze

    return analyze(runs, reference=entry.reference, n_resamples=suite.n_resamples, seed=suite.seed,
                   contrasts=contrast_pairs(_tested(specs, entry.reference)), gram=gram, store=str(store))


def _git_commit() -> str:
    from biasvar.provenance import git_commit

    return git_commit()


def measure_board(suite: Suite, *, snapshots: str | Path | None, runs_dir: str | Path, out_dir: str | Path,
                  specs: Sequence[str] | None = None, only: Sequence[str] = (), command: str = "",
                  device: str = "cpu", say: Say = lambda m: None) -> dict[str, Any]:
    """Measure ``specs`` (default the suite's estimators) on the suite; returns the board (a dict).

    Each snapshot's store is copied to ``<out_dir>/<name>-<size>.gram-store.hdf5`` (the board names
    it relative to ``out_dir``'s parent, the folder of the board's JSON)."""
    import torch

    from biasvar.engine import Calibration, plan_run, plan_sweep, sample
    from biasvar.gramstore import read_store, store_path, stored_runs, update_store
    from biasvar.gramstore.build import file_sha256
    from biasvar.provenance import device_name

    t0 = time.perf_counter()
    specs = list(specs if specs is not None else suite.estimators)
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    board: dict[str, Any] = {
        "schema": BOARD_SCHEMA, "suite": suite.name, "suite_file": os.path.relpath(suite.path, out_dir.parent),
        "size": suite.size, "n": suite.n, "slow_n": suite.slow_n, "max_cost": suite.max_cost, "seed": suite.seed,
        "n_resamples": suite.n_resamples, "reference_spec": REFERENCE, "baselines": list(BASELINES),
        "estimators": specs, "command": command, "commit": _git_commit(), "run_device": device,
        "device": device_name(torch.device(device)),
        "torch_threads": torch.get_num_threads(), "torch_version": str(torch.__version__), "snapshots": [],
    }
    for entry in suite.entries:
        if only and entry.name not in only:
            continue
        t1 = time.perf_counter()
        snap = load_entry(entry, suite, snapshots)
        fast, slow, skipped = plan_specs(suite, entry, snap, specs)
        n, slow_n, max_cost = suite.settings(entry)
        say(f"{entry.name} ({snap.id}): {len(fast) + len(slow)} estimators + reference {REFERENCE}"
            + (f"; left out: {', '.join(skipped)}" if skipped else ""))
        sweeps = [plan_sweep(snap, fast, reference=REFERENCE, n=n, seed=suite.seed, runs_dir=runs_dir)]
        if slow:
            sweeps.append(plan_sweep(snap, slow, reference=REFERENCE, n=int(slow_n), reference_n=n,
                                     seed=suite.seed, runs_dir=runs_dir))
        calibration = Calibration()
        for run in [sweeps[0].runs[0]] + [r for sw in sweeps for r in sw.runs[1:]]:  # each with its block size
            say(f"  {run.spec} seed {run.seed}: {run.n} draws")
            sample(plan_run(snap, run.spec, n=run.n, seed=run.seed, runs_dir=runs_dir,
                            options=run_options(entry, run.n, device), calibration=calibration))
        update_store(runs_dir, snap.id)
        store = out_dir / f"{entry.name}-{entry.size}.gram-store.hdf5"
        shutil.copyfile(store_path(runs_dir, snap.id), store)
        state = read_store(store)
        report = _analyse(stored_runs(state, store.parent), state.gram, entry, suite, fast + slow, store)
        board["snapshots"].append({
            "name": entry.name, "title": entry.title, "size": entry.size, "n": n, "slow_n": slow_n,
            "max_cost": max_cost, "model": entry.model,
            "options": entry.options, "train": entry.train, "snapshot_id": snap.id, "snapshot_hash": snap.hash,
            "reference": report.reference, "params": report.params_glob, "dim": report.dim,
            "method": report.method, "confidence_level": report.confidence_level,
            "store": os.path.relpath(store, out_dir.parent), "store_sha256": file_sha256(store),
            "skipped": skipped, "rows": (rows := rows_of(report)), "notes": list(report.notes),
            "sampling_s": round(sum(r["n"] / r["draws_per_s"] for r in rows if r["draws_per_s"]), 1),
            "wall_s": round(time.perf_counter() - t1, 1),
        })
    board["wall_s"] = round(time.perf_counter() - t0, 1)
    board["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return board


def load_board(path: str | Path) -> dict[str, Any]:
    """Read a board JSON (one-line :class:`SuiteError` otherwise)."""
    return read_json(Path(path), "leaderboard JSON", BOARD_SCHEMA)


def _same_blocks(stored: Any, run: Any) -> bool:
    return (np.array_equal(stored.count, np.asarray(run.block_count, dtype=np.float64))
            and np.array_equal(stored.m2, np.asarray(run.block_m2)) and np.array_equal(stored.sumsq, run.block_sumsq))


def measure_row(spec: str, suite: Suite, board: dict[str, Any], board_dir: str | Path, *,
                snapshots: str | Path | None, runs_dir: str | Path, n: int | None = None,
                only: Sequence[str] = (), rerun_baselines: bool = False, say: Say = lambda m: None) -> dict[str, Any]:
    """The row of ``spec`` on every snapshot of the board: ``{name: {"row": row, "store": path}}`` or
    ``{name: {"skipped": reason}}``; ``n`` draws (default the snapshot's n on the board), the board's seed.

    A reference run made here that differs from the board's (another CPU or torch) is an error, unless
    ``rerun_baselines``: then ZGR and RF(4) are sampled here too (the board's n and seeds) and the row
    is contrasted against those (``"local": True`` in its entry)."""
    from biasvar import store as run_store
    from biasvar.engine import plan_run, sample
    from biasvar.estimators import build
    from biasvar.gramstore import read_store, stored_runs, write_store
    from biasvar.gramstore.build import compute, file_sha256
    from biasvar.spec import parse_spec

    canon = str(parse_spec(spec))
    build(parse_spec(canon))  # a plug-in that cannot be imported or made: one line, before anything runs
    seed, device = int(board["seed"]), str(board.get("run_device", "cpu"))
    runs_dir, board_dir = Path(runs_dir), Path(board_dir)
    out: dict[str, Any] = {}
    done = {s["name"]: s for s in board["snapshots"]}
    for entry in suite.entries:
        if (only and entry.name not in only) or entry.name not in done:
            continue
        b = done[entry.name]
        snap = load_entry(entry, suite, snapshots)
        if snap.hash != b["snapshot_hash"]:
            raise SuiteError(f"{entry.name}: the snapshot {snap.id} is not the board's ({b['snapshot_id']})")
        _, _, skipped = plan_specs(suite, entry, snap, [canon])
        if skipped:
            out[entry.name] = {"skipped": skipped[canon]}
            say(f"{entry.name}: {canon} left out: {skipped[canon]}")
            continue
        store_file = board_dir / b["store"]
        if not store_file.is_file():  # the stores are not committed (26 MB): sample the baselines here
            if not rerun_baselines:
                raise SuiteError(f"{entry.name}: the board's statistics store {store_file} is not here (the "
                                 f"stores are not committed); pass --rerun-baselines to sample ZGR and RF(4) here, "
                                 f"or make the board's runs with `biasvar leaderboard board`")
            m = int(n or b.get("n", board["n"]))
            if entry.reference != "exact":
                ref_n = next(r["n"] for r in b["rows"] if r["role"] == "reference")
                sample(plan_run(snap, REFERENCE, n=int(ref_n), seed=seed, runs_dir=runs_dir,
                                options=run_options(entry, int(ref_n), device)))
            say(f"{entry.name}: no board store here: ZGR and RF(4) sampled here")
            out[entry.name] = _local_row(canon, entry, suite, snap, b, runs_dir, m, seed, device)
            continue
        state = read_store(store_file)
        keys = {r.key for r in state.gram.runs}
        if (canon, seed) in keys:
            raise SuiteError(f"{canon} seed {seed} is a committed row of the board already ({entry.name}); "
                             f"measure another spec")
        present: dict[tuple[str, int], Any] = {}
        if entry.reference != "exact":
            ref_n = next(r["n"] for r in b["rows"] if r["role"] == "reference")
            say(f"{entry.name}: reference {REFERENCE} seed {seed} again ({ref_n} draws; must match the board)")
            ref_path = sample(plan_run(snap, REFERENCE, n=int(ref_n), seed=seed, runs_dir=runs_dir,
                                       options=run_options(entry, int(ref_n), device)))
            ref_run = run_store.read_run(ref_path, load_sums=False)
            stored_ref = state.gram.run(REFERENCE, seed)
            if not _same_blocks(stored_ref, ref_run):
                if not rerun_baselines:
                    raise SuiteError(f"{entry.name}: the reference run made here ({ref_path}) differs from the "
                                     f"board's (another CPU, torch or biasvar?); contrasts need the board's "
                                     f"reference: pass --rerun-baselines to sample ZGR and RF(4) here")
                say(f"{entry.name}: the reference differs from the board's: ZGR and RF(4) sampled here")
                m = int(n or b.get("n", board["n"]))
                out[entry.name] = _local_row(canon, entry, suite, snap, b, runs_dir, m, seed, device)
                continue
            present[stored_ref.key] = ref_run
        m = int(n or b.get("n", board["n"]))
        say(f"{entry.name}: {canon}, {m} draws")
        path = sample(plan_run(snap, canon, n=m, seed=seed, runs_dir=runs_dir, options=run_options(entry, m, device)))
        folder = path.parent
        target = folder / "gram-store.hdf5"
        new = [(run_store.read_run(path, load_sums=False), os.path.relpath(path, folder), file_sha256(path))]
        grown = compute(new, load=lambda r: run_store.read_run(r.path), old=state,
                        old_present=lambda s, present=present: present.get(s.key))
        write_store(target, grown)
        report = _analyse(stored_runs(grown, folder), grown.gram, entry, suite, [canon], target)
        row = next(r for r in rows_of(report) if r["spec"] == canon and r["seed"] == seed and r["role"] == "test")
        out[entry.name] = {"row": row, "store": str(target)}
    return out


def _local_row(canon: str, entry: Entry, suite: Suite, snap: Any, b: dict[str, Any], runs_dir: Path, m: int,
               seed: int, device: str) -> dict[str, Any]:
    """The row of ``canon`` against ZGR and RF(4) sampled here (the board's n and seeds) beside the
    reference already made in ``runs_dir``: a store of these runs, analysed as the board is."""
    from biasvar.engine import plan_run, sample
    from biasvar.gramstore import read_store, stored_runs, update_store

    todo = [(canon, seed, m)]
    for base in BASELINES:  # the board's row of each baseline: its seed and n
        row = min((r for r in b["rows"] if r["spec"] == base and r["role"] == "test"), key=lambda r: r["seed"])
        todo.append((base, int(row["seed"]), int(row["n"])))
    for spec, sd, k in todo:
        sample(plan_run(snap, spec, n=k, seed=sd, runs_dir=runs_dir, options=run_options(entry, k, device)))
    path = update_store(runs_dir, snap.id).path
    state = read_store(path)
    report = _analyse(stored_runs(state, path.parent), state.gram, entry, suite, [canon], path)
    row = next(r for r in rows_of(report) if r["spec"] == canon and r["seed"] == seed and r["role"] == "test")
    return {"row": row, "store": str(path), "local": True}


__all__ = ["BASELINES", "BOARD_FILE", "BOARD_SCHEMA", "REFERENCE", "contrast_pairs", "load_board", "measure_board",
           "measure_row", "plan_specs", "rows_of", "run_options"]
