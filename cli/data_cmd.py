"""``biasvar data``: dataset files (``data verify``), and a rich download progress for other commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from . import options as o
from .common import console, err_console, new_app

data_app = new_app(help="Dataset files: where they are, whether they are intact.")

_STYLE = {"present": "green", "missing": "yellow", "corrupt": "bold red"}


@data_app.command("verify")
def verify(
    datasets: Annotated[list[str] | None, typer.Argument(
        help="Datasets to check (mnist-b, mnist, fmnist, ...; default: every one).", show_default=False,
    )] = None,
    data_dir: o.DataDir = None,
) -> None:
    """List each dataset file: present (checksum verified), missing, or corrupt, with its path. Exits 1
    when a file of the datasets asked for is missing or corrupt."""
    from biasvar import data
    from biasvar.errors import DataError

    unknown = [d for d in datasets or () if d not in data.DATASETS]
    if unknown:
        raise DataError(f"unknown dataset {', '.join(unknown)}; known: {', '.join(data.DATASETS)}")
    statuses = data.verify(data_dir)
    if datasets:
        statuses = [s for s in statuses if set(s.used_by) & set(datasets)]
    table = Table(title=f"dataset files in {data.data_dir(data_dir)}")
    for col, kw in (("dataset", {"no_wrap": True}), ("split", {}), ("file", {}), ("state", {}),
                    ("path", {"overflow": "fold"}), ("detail", {"overflow": "fold"})):
        table.add_column(col, **kw)
    for s in statuses:
        style = _STYLE.get(s.state, "")
        table.add_row(s.dataset, s.split, s.role, f"[{style}]{s.state}[/]", str(s.path), s.detail)
    console.print(table)
    counts = {state: sum(s.state == state for s in statuses) for state in _STYLE}
    console.print(", ".join(f"{n} {state}" for state, n in counts.items()), highlight=False)
    if counts["missing"] or counts["corrupt"]:
        raise DataError(f"{counts['missing']} dataset files missing, {counts['corrupt']} corrupt"
                        + ("" if datasets else " (check only the ones you use: biasvar data verify mnist-b)"))


@contextmanager
def download_progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress bar (on stderr) as a ``progress`` callback for :func:`biasvar.data.load`.

    Example: ``with download_progress() as p: ds = data.load("mnist-b", progress=p)``.
    """
    columns = (TextColumn("downloading {task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        yield update


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
