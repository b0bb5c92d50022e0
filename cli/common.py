"""Shared pieces of the CLI: consoles, the app class that turns BiasvarError into one line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperGroup

from biasvar.errors import BiasvarError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit(1) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(1)


class ErrorHandlingGroup(TyperGroup):
    """The one place where errors a user can cause become one line on stderr and exit code 1."""

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except BiasvarError as e:
            raise fail(str(e).replace("[", r"\[")) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)


def natural_width(renderable) -> int:
    """Columns ``renderable`` takes when nothing limits it (a table: every cell in full)."""
    import io

    from rich.cells import cell_len

    wide = Console(width=10_000, file=io.StringIO(), color_system=None, legacy_windows=False)
    with wide.capture() as cap:
        wide.print(renderable)
    return max((cell_len(line.rstrip()) for line in cap.get().splitlines()), default=0)


def fits(renderable, width: int | None = None) -> bool:
    """Whether ``renderable`` fits ``width`` columns (default: the console's) without cutting a cell."""
    return natural_width(renderable) <= (console.width if width is None else width)


def first_fitting(builds, width: int | None = None):
    """The first of the renderables ``builds`` (callables, widest layout first) that fits ``width``;
    the last one when none does."""
    out = None
    for build in builds:
        out = build()
        if fits(out, width):
            return out
    return out


def new_app(**kwargs) -> typer.Typer:
    return typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, **kwargs)


def progress_bar(*fields: str, eta: bool = True, **kwargs) -> Progress:
    """The CLI's one progress display: description, bar, done/total, ``fields`` (format strings
    over ``task``), then ETA and elapsed time. ``kwargs`` go to :class:`rich.progress.Progress`."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
               *(TextColumn(f) for f in fields)]
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    kwargs.setdefault("console", console)
    return Progress(*columns, TimeElapsedColumn(), **kwargs)
