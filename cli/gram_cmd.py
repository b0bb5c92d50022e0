"""``biasvar gram``: build or update a snapshot's statistics store from its run files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import options as o
from .common import console, lazy

gramstore = lazy("biasvar.gramstore")  # numpy, h5py: loaded when the command runs

Rebuild = Annotated[bool, typer.Option("--rebuild", help="Compute the store anew from the run files present "
                                       "(runs whose files are gone are dropped).")]
DropRuns = Annotated[bool, typer.Option(
    "--drop-runs", help="After the update, delete the run files the store holds whole (complete runs, "
                        "the same file bytes, every product with the other runs computed).")]
MemoryBudget = Annotated[str | None, typer.Option(
    "--max-memory", metavar="SIZE", help="Memory for the runs held at once, e.g. 4GB (default 2GB).")]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def gram(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
    store_file: o.Store = None,
    rebuild: Rebuild = False,
    drop_runs: DropRuns = False,
    max_memory: MemoryBudget = None,
) -> None:
    """Build or update the statistics store of one snapshot's runs: everything `report`, `plot` and
    `claims` need, in one small file, so the run files can be deleted (see README, "Run files and
    the store"). Only the runs new to the store are computed."""
    from biasvar.engine import parse_memory
    from biasvar.gramstore.build import MEMORY_BYTES
    from biasvar.gramstore.maintenance import drop_stored_runs

    budget = parse_memory(max_memory) if max_memory else MEMORY_BYTES
    with console.status("gram", spinner="dots") as status:  # transient: an error is its one line
        res = gramstore.update_store(runs_dir, snapshot_id, path=store_file, rebuild=rebuild, memory_bytes=budget,
                                     progress=lambda line: status.update(line))
    for note in res.notes:
        console.print(note, highlight=False, soft_wrap=True)
    parts = [f"{len(res.added)} added"]
    if res.recomputed:
        parts.append(f"{len(res.recomputed)} recomputed")
    if res.kept_without_file:
        parts.append(f"{len(res.kept_without_file)} kept without their files")
    parts.append(f"{res.unchanged - len(res.kept_without_file)} unchanged")
    console.print(f"{res.path}: {res.runs} runs ({', '.join(parts)}), {_mb(res.path.stat().st_size)}",
                  highlight=False, soft_wrap=True)
    if drop_runs:
        dropped, kept = drop_stored_runs(res.path)
        for line in kept:
            console.print(f"kept {line}", highlight=False, soft_wrap=True)
        freed = sum(size for _, size in dropped)
        console.print(f"deleted {len(dropped)} run file(s), {_mb(freed)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("gram")(gram)
