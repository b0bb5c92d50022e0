"""``biasvar compact``: store the block sums of existing run files through the lossless filter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biasvar.errors import StoreError
from biasvar.names import DEFAULT_FILTER, FILTER_ENV, FILTER_NAMES
from biasvar.selection import select_snapshot

from . import options as o
from .common import console, lazy
from .sample_cmd import _size

store = lazy("biasvar.store")  # h5py: loaded when the command runs, not when the CLI starts

Compression = Annotated[str | None, typer.Option(
    "--compression", metavar="NAME",
    help=f"Filter of the block sums: {', '.join(FILTER_NAMES)} (default: what new run files get, "
         f"${FILTER_ENV} or {DEFAULT_FILTER}).")]


def compact(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
    compression: Compression = None,
) -> None:
    """Rewrite run files so their block sums are stored through the lossless filter that new run
    files get (the numbers read back are the same bits; files being written are skipped)."""
    name = store.compression_name(compression)  # an unknown name: one line, nothing touched
    if runs_dir.exists() and not runs_dir.is_dir():
        raise StoreError(f"--runs-dir {runs_dir} is a file, not a folder of run files")
    files = select_snapshot(store.list_run_files(runs_dir), snapshot_id)
    if not files:
        console.print(f"no run files under {runs_dir}", highlight=False)
        return
    total_before = total_after = skipped = 0
    for path in files:
        label = f"{path.parent.name}/{path.name}"
        try:
            before, after = store.compact(path, name)
        except store.DamagedError as e:
            console.print(f"{label}: skipped, damaged ({e.reason})", highlight=False, soft_wrap=True)
            skipped += 1
            continue
        except StoreError as e:
            console.print(f"{label}: skipped ({' '.join(str(e).split())})", highlight=False, soft_wrap=True)
            skipped += 1
            continue
        total_before, total_after = total_before + before, total_after + after
        what = f"{_size(before)} -> {_size(after)}" if after != before else f"unchanged, {_size(after)}"
        console.print(f"{label}: {what}", highlight=False)
    console.print(f"{len(files) - skipped} run file(s): {_size(total_before)} -> {_size(total_after)} ({name})"
                  + (f"; {skipped} skipped" if skipped else ""), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("compact")(compact)
