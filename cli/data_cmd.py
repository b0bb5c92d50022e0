"""``biasvar data``: dataset files (``data verify``), and a rich download progress for other commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from biasvar import data

from . import options as o
from .common import console, err_console, new_app

data_app = new_app(help="Dataset files: where they are, whether they are intact.")

_STYLE = {"present": "green", "missing": "yellow", "corrupt": "bold red"}


@data_app.command("verify")
def verify(
    data_dir: o.DataDir = None,
) -> None:
    """List each dataset file: present (checksum verified), missing, or corrupt, with its path."""
    statuses = data.verify(data_dir)
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


@contextmanager
def download_progress() -> Iterator[data.Progress]:
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
