"""``biasvar merge`` and the shard/cluster pieces of ``sample``, ``sweep``, ``ls`` and ``report``.

Light at import (the CLI starts without torch or h5py): the engine is imported where it is used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from biasvar import names
from biasvar.errors import SpecError
from biasvar.selection import snapshot_prefix

if TYPE_CHECKING:
    from biasvar.engine import shards as sh
    from biasvar.engine.sweeps import RunProgress, SweepPlan, SweepProgress

from . import options as o
from .common import console, progress_bar

Opt = typer.Option
ExecutorName = o.choices("ExecutorName", names.EXECUTORS)

Shard = Annotated[str | None, Opt("--shard", metavar="i/N", help="Compute only shard i of N (counted from 0): "
                                  "a range of whole blocks, into a shard file beside the run file; the run "
                                  "file is assembled when the shards are merged (`biasvar merge`, or by the "
                                  "last shard to finish).")]
Executor = Annotated[ExecutorName, Opt("--executor", help="Where the runs are computed: local (here) or "
                                       "ray (a Ray cluster, one task per run and shard; needs "
                                       "`pip install \"biasvar\\[ray]\"`).")]
Address = Annotated[str | None, Opt("--address", help="Ray cluster address (auto: the cluster `ray start` "
                                    "made on this machine; default: RAY_ADDRESS, else a new local cluster).")]
Shards = Annotated[int | None, Opt("--shards", help="Shards per run (default: 1 locally; with Ray, enough to "
                                   "give every task slot of the cluster work).")]
GpusPerTask = Annotated[float, Opt("--gpus-per-task", help="GPUs each Ray task asks for (0: CPU tasks; a "
                                   "task with GPUs samples on cuda).")]
CpusPerTask = Annotated[int, Opt("--cpus-per-task", help="CPUs each Ray task asks for (and its torch "
                                 "threads).")]
ConnectTimeout = Annotated[float, Opt("--connect-timeout", help="Seconds a Ray address (host:port) is given "
                                      "to answer before the sweep is refused.")]
MaxRetries = Annotated[int, Opt("--max-retries", help="Retries of a Ray task whose worker died.")]


def check_executor(shards: int | None) -> None:
    if shards is not None and shards < 1:
        raise SpecError(f"--shards must be >= 1, got {shards}")


@contextmanager
def sweep_progress(plan: SweepPlan) -> Iterator[SweepProgress]:
    """Rich progress of a sweep: one overall bar, and one bar per run while it is in progress."""
    with progress_bar(transient=False) as bar:
        overall = bar.add_task("sweep", total=sum(r.n for r in plan))
        tasks: dict[Path, int] = {}
        done: dict[Path, int] = {}

        def update(p: RunProgress) -> None:
            run, n_done, total = p.run, p.done, p.total
            done[run.path] = n_done
            if run.path not in tasks:
                tasks[run.path] = bar.add_task(f"{run.spec} s{run.seed}", total=total)
            bar.update(tasks[run.path], completed=n_done, total=total, visible=n_done < total)
            bar.update(overall, completed=sum(done.values()))

        yield update
        bar.update(overall, description="sweep done")


def shard_line(result: sh.MergeResult) -> str:
    if not result.merged and result.left:
        return (f"{result.run_path}: {result.left} shard file(s) waiting; they are merged when the last one is "
                f"done, or now, as far as they reach, by `biasvar merge`")
    if result.complete:
        state = "complete"
    elif result.run_path.is_file():
        state = f"{result.n_done}/{result.n_target} draws"
    else:
        state = "not started (it begins with the shard at draw 0)"
    left = f", {result.left} shard(s) left" if result.left else ""
    return f"{result.run_path}: merged {result.merged} shard(s); run file {state}{left}"


def print_shards(runs_dir: Path, snapshot_id: str | None = None) -> int:
    """The runs with shard files not yet merged, as one table; returns how many."""
    if not any(Path(runs_dir).glob("*/*.shards")):  # the common case, without loading the engine
        return 0
    from biasvar.engine import shards as sh

    found = sh.sharded_runs(runs_dir, snapshot_id)
    if not found:
        return 0
    table = Table(title=f"unmerged shards under {runs_dir} (merge: biasvar merge --runs-dir {runs_dir})",
                  title_justify="left")
    for col, just in (("run", "left"), ("shards done", "right"), ("draws in shards", "right"),
                      ("ranges", "left")):
        table.add_column(col, justify=just, no_wrap=col != "ranges")
    for run, infos in found.items():
        complete = sum(s.complete for s in infos)
        missing = sh.unstarted_shards(infos, _merged_draws(run))
        parts = [(s.first, f"{s.first}-{s.end}" + ("" if s.complete else f" ({s.n_done})")) for s in infos]
        parts += [(a, f"{a}-{b} (not started)") for a, b, _ in missing]
        ranges = ", ".join(text for _, text in sorted(parts)[:6])
        table.add_row(f"{run.parent.name}/{run.name}", f"{complete}/{len(infos) + sum(k for *_, k in missing)}",
                      str(sum(s.n_done for s in infos)), ranges + (" ..." if len(parts) > 6 else ""))
    console.print(table)
    return len(found)


def _merged_draws(run: Path) -> int:
    """The draws the run file already holds (0 without a readable one): shards merged into it."""
    from biasvar import store
    from biasvar.errors import StoreError

    if not run.is_file():
        return 0
    try:
        return int(store.read_run(run, load_sums=False).attrs["n_done"])
    except StoreError:
        return 0


def shard_notes(runs_dir: Path, snapshot_id: str | None = None) -> list[str]:
    """One note per run whose shards are not merged yet (``report`` prints them)."""
    if not any(Path(runs_dir).glob("*/*.shards")):
        return []
    from biasvar.engine import shards as sh

    return [f"{run.name}: {len(infos)} shard file(s) not merged into the run file "
            f"(its rows count only merged draws; run `biasvar merge --runs-dir {runs_dir}`)"
            for run, infos in sh.sharded_runs(runs_dir, snapshot_prefix(snapshot_id)).items()]


def merge(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
) -> None:
    """Merge shard files (`sample --shard`, `sweep --shards`) into their run files, bit for bit."""
    if not Path(runs_dir).is_dir():
        raise SpecError(f"runs folder not found: {runs_dir}")
    from biasvar.engine import shards as sh

    results = sh.merge_all(runs_dir, snapshot_prefix(snapshot_id) or None)
    if not results:
        console.print(f"no shard files under {runs_dir}", highlight=False)
        return
    for r in results:
        console.print(shard_line(r), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
