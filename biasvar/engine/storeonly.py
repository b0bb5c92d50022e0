"""A sweep that writes only the statistics store (``sweep --store-only``): no run files.

Each run's block sums are kept in memory (on the sampling device: a torch tensor on a GPU) while
the sweep lasts. When a run completes, its products with itself, with the store's special rows and
with every run held in memory are computed there (:func:`biasvar.gramstore.build.compute`) and the
store file is rewritten atomically: the store is complete after every run, and a killed sweep loses
only the run in progress.

Resuming (the same command again) keeps every run the store already holds whole. Block sums do not
outlive the process, so a pair of runs drawn by two different calls has no product in the store
(reports and paired contrasts do not need it; a report against one of those runs as the reference
does, and refuses in one line), except with the **reference**: when the store holds
the reference and runs are left to draw, the reference is drawn again first (counter noise: the same
draws, checked against its stored products) so that every run pairs with it and every report row
can be computed. A complete run file of a planned run is read instead of drawing it.

The store's runs name the run file each would have had (relative to the store's folder); no such
file exists, so they read as runs whose files were deleted (:mod:`biasvar.gramstore.maintenance`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from biasvar import store
from biasvar.engine.blocks import keep_index
from biasvar.engine.calibration import Calibration
from biasvar.engine.plan import RunOptions, RunPlan, plan_run
from biasvar.engine.runs import add_time, exact_flat, fill
from biasvar.engine.sweeps import PlannedRun, RunProgress, SweepPlan, SweepProgress, SweepResult
from biasvar.errors import AnalysisError, BiasvarError

MEMORY_FRACTION = 0.8  # of the device's free memory the held block sums may take
REDRAW_RTOL = 1e-9  # a redrawn reference's own products against the stored ones
SAVE_EVERY_S = 60.0  # the store is rewritten at most this often (and at the end)


def _free_bytes(device: Any) -> int | None:
    """Free memory where block sums are held (None: not known)."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(x: float) -> str:
    return f"{x / 2**30:.1f} GiB"


def check_memory(rplan: RunPlan, runs: list[PlannedRun], free: int | None) -> None:
    """Refuse (one line) a store-only sweep whose block sums cannot all be held.

    Every run of ``runs`` keeps ``ceil(n / block_size)`` float32 sums of ``dim`` entries, and the
    products need two float64 copies of one run's.
    """
    dim, bs = rplan.selection.dim, rplan.block_size
    need = [4 * dim * math.ceil(r.n / bs) for r in runs]
    total = sum(need) + 2 * 2 * max(need, default=0)
    if free is None or total <= MEMORY_FRACTION * free:
        return
    fit, acc = 0, 4 * max(need)
    for b in need:
        if acc + b > MEMORY_FRACTION * free:
            break
        acc, fit = acc + b, fit + 1
    raise BiasvarError(f"--store-only keeps every run's block sums in memory: {len(runs)} runs need "
                       f"{_gb(total)}, {rplan.device} has {_gb(free)} free ({fit} runs fit); sweep fewer "
                       "estimators at a time, or drop --store-only (run files)")


def _label(run: PlannedRun, folder: Path) -> str:
    return os.path.relpath(run.path, folder)


def _stored_whole(state: Any, run: PlannedRun) -> bool:
    for r in state.gram.runs if state is not None else ():
        if r.key == (run.spec, run.seed):
            return r.attrs.get("status") == "complete" and int(r.attrs.get("n_done", 0)) >= run.n
    return False


def _on_device(run: store.RunData, device: Any) -> store.RunData:
    """A run read from its file with its block sums moved where the others are held."""
    if device is None or str(device) == "cpu" or run.block_sum is None:
        return run
    import dataclasses

    import torch

    return dataclasses.replace(run, block_sum=torch.as_tensor(run.block_sum, device=device))


def _self_products(state: Any, key: tuple[str, int]) -> np.ndarray:
    rows = next(r for r in state.gram.runs if r.key == key).rows
    return state.gram.q[-1][np.ix_(rows, rows)]


def run_store_only(plan: SweepPlan, options: RunOptions, *, progress: SweepProgress | None = None,
                   calibration: Calibration | None = None, restart: bool = False,
                   path: str | Path | None = None, save_every_s: float = SAVE_EVERY_S) -> SweepResult:
    """Run ``plan`` into the snapshot's store only (see the module docstring).

    Args:
        plan: the sweep (its runs' paths name the files they would have had).
        options: the settings of every run.
        progress: called with a :class:`~biasvar.engine.sweeps.RunProgress` as runs advance.
        calibration: where ``method="auto"`` keeps its measurements.
        restart: draw every run again (the store's rows of the plan's runs are replaced).
        path: the store file (default ``<runs>/<snapshot>/gram-store.hdf5``).
        save_every_s: the store is rewritten after a completed run at most this often (a big store takes
            seconds to write), and always at the end, also when the sweep is stopped.

    Returns:
        a :class:`SweepResult` whose ``store`` says what was added.
    """
    from biasvar.gramstore.build import compute, drop_runs
    from biasvar.gramstore.file import read_store, store_path, write_store
    from biasvar.gramstore.update import UpdateResult

    calibration = calibration or Calibration()
    target = Path(path) if path is not None else store_path(plan.runs_dir, plan.snapshot.id)
    folder = target.parent
    state = read_store(target) if target.is_file() else None
    if state is not None and state.snapshot_hash and state.snapshot_hash != plan.snapshot.hash:
        raise AnalysisError(f"store {target} holds snapshot {state.snapshot_hash[:12]}, this sweep is of "
                            f"{str(plan.snapshot.hash)[:12]}; pass another --runs-dir")
    if restart and state is not None:
        state = drop_runs(state, [(r.spec, r.seed) for r in plan])
        if not state.gram.runs:
            state = None
    result = SweepResult(plan)
    held: dict[tuple[str, int], store.RunData] = {}
    added: list[str] = []
    todo = [r for r in plan if not _stored_whole(state, r)]
    ref = plan[0]
    redraw = bool(todo) and ref not in todo and state is not None  # the reference, to pair the new runs with
    checked = False

    def report(run: PlannedRun, base: int = 0) -> Callable[[int, int, int, float], None]:
        def cb(done: int, _total: int, bad: int, rate: float) -> None:
            if progress is not None:
                progress(RunProgress(run, min(run.n, base + done), run.n, bad, rate))
        return cb

    last_write, unsaved = time.perf_counter(), False
    try:
        for run in plan:
            if run not in todo and not (redraw and run is ref):
                result.reused_draws += run.n
                if progress is not None:
                    progress(RunProgress(run, run.n, run.n))
                continue
            t = time.perf_counter()
            rplan = plan_run(plan.snapshot, run.spec, n=run.n, seed=run.seed, runs_dir=plan.runs_dir, options=options,
                             calibration=calibration)
            add_time(result.timing, "setup_s", time.perf_counter() - t)
            if not checked:
                check_memory(rplan, todo + ([ref] if redraw else []), _free_bytes(rplan.device))
                checked = True
            device = rplan.device if rplan.device.type != "cpu" else None
            if rplan.complete:  # its run file is there, complete: read it
                mem = _on_device(store.read_run(rplan.run_path), device)
                sha = _sha(rplan.run_path)
            else:
                sel = rplan.selection
                sizes = np.array([b[1] for b in sel.bounds])
                writer = store.MemoryWriter(rplan.header, n_target=run.n, group_sizes=sizes,
                                            sample_index=keep_index(sel.dim, int(rplan.header["keep"])),
                                            exact=exact_flat(rplan.problem, sel.names), device=device,
                                            label=_label(run, folder))
                spent: dict[str, float] = {}
                fill(rplan, writer, 0, run.n, progress=report(run), timing=spent)
                add_time(result.timing, "draw_s", spent.get("draw_s", 0.0))
                add_time(result.timing, "store_s", spent.get("write_s", 0.0))  # holding the blocks for the store
                writer.finish()
                mem, sha = writer.run(), ""
                result.computed.append((run.path, 0, run.n))
            key = (run.spec, run.seed)
            held[key] = mem
            t = time.perf_counter()
            if redraw and run is ref:  # already stored: check the redraw, then only hold it
                _check_redraw(state, key, mem)
            else:
                if state is not None and any(r.key == key for r in state.gram.runs):
                    state = drop_runs(state, [key])
                state = compute([(mem, _label(run, folder), sha)], load=lambda r: r, old=state,
                                old_present=lambda s: held.get(s.key))
                added.append(f"{run.spec} seed {run.seed}")
                unsaved = True
                if time.perf_counter() - last_write >= save_every_s:
                    write_store(target, state)
                    last_write, unsaved = time.perf_counter(), False
            add_time(result.timing, "store_s", time.perf_counter() - t)
            if progress is not None:
                progress(RunProgress(run, run.n, run.n, int(mem.attrs["n_nonfinite"]), float(mem.attrs["draws_per_s"])))
    finally:  # what is held is saved, even when the sweep is stopped (Ctrl-C, SIGTERM, an error)
        if unsaved and state is not None:
            t = time.perf_counter()
            write_store(target, state)
            add_time(result.timing, "store_s", time.perf_counter() - t)
    notes = _missing_pairs(state, plan)
    result.store = UpdateResult(path=target, added=tuple(added), recomputed=(), kept_without_file=(),
                                unchanged=len(state.gram.runs) - len(added) if state is not None else 0,
                                notes=tuple(notes), runs=len(state.gram.runs) if state is not None else 0)
    return result


def _sha(path: Path) -> str:
    from biasvar.gramstore.build import file_sha256

    return file_sha256(path)


def _check_redraw(state: Any, key: tuple[str, int], mem: store.RunData) -> None:
    """The reference drawn again must give its stored products (the same noise, the same bits)."""
    from biasvar.gramstore.build import self_products

    want = _self_products(state, key)
    got = self_products(mem, state.anchor, state.gram.group_sizes)[-1]
    if want.shape != got.shape or not np.allclose(got, want, rtol=REDRAW_RTOL, atol=0):
        raise BiasvarError(f"the reference {key[0]} seed {key[1]} drawn again differs from the one in the store "
                           "(another device, dtype or code?); rerun with --restart to draw every run again")


def _missing_pairs(state: Any, plan: SweepPlan) -> list[str]:
    """A note on the pairs of the plan's runs the store has no products of."""
    if state is None:
        return []
    keys = {(r.spec, r.seed) for r in plan}
    runs = [r for r in state.gram.runs if r.key in keys]
    q = state.gram.q[-1]
    missing = sum(1 for i, a in enumerate(runs) for b in runs[i + 1:] if np.isnan(q[a.rows[0], b.rows[0]]))
    if not missing:
        return []
    return [f"{missing} pair(s) of runs drawn by different store-only calls have no products in the store "
            "(reports and paired contrasts need only each run's products with the reference; a report "
            "against another reference refuses)"]


__all__ = ["MEMORY_FRACTION", "check_memory", "run_store_only"]
