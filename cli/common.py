"""Shared pieces of the CLI: consoles, the app class that turns BiasvarError into one line."""

from __future__ import annotations

import contextlib
import os
import signal
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
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from biasvar.errors import BiasvarError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit(1) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (so the run in progress saves what it has, like Ctrl-C)."""


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    raise Terminated()


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("[", r"\[")


class ErrorHandlingGroup(TyperGroup):
    """The one place where errors become one line on stderr: exit code 1 for errors a user can cause
    (and, without a traceback, for anything else: ``BIASVAR_DEBUG=1`` shows it), 2 for a command line
    click cannot parse, 130 for Ctrl-C and 143 for SIGTERM."""

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except BiasvarError as e:
            raise fail(_one_line(e)) from None
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except KeyboardInterrupt as e:
            err_console.print("interrupted" + (" (SIGTERM)" if isinstance(e, Terminated) else ""))
            sys.exit(143 if isinstance(e, Terminated) else 130)
        except OSError as e:
            if os.environ.get("BIASVAR_DEBUG"):
                raise
            where = f" {e.filename}" if getattr(e, "filename", None) else ""
            raise fail(_one_line(f"{e.strerror or e}:{where}")) from None
        except Exception as e:  # noqa: BLE001 - a bug: still one line, the traceback on request
            if os.environ.get("BIASVAR_DEBUG"):
                raise
            raise fail(_one_line(f"internal error ({type(e).__name__}: {e}); rerun with BIASVAR_DEBUG=1 for "
                                 "the traceback and please report it")) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        """click's main, with a usage error as one line (exit 2) and SIGTERM as an interruption."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        previous = None
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:  # the help is printed already
            sys.exit(e.exit_code)
        except UsageError as e:
            cmd = e.ctx.command_path if e.ctx is not None else "biasvar"
            err_console.print(f"[bold red]error:[/] {_one_line(e.format_message())} (see `{cmd} --help`)",
                              highlight=False)
            sys.exit(2)
        except ClickException as e:
            err_console.print(f"[bold red]error:[/] {_one_line(e.format_message())}", highlight=False)
            sys.exit(e.exit_code)
        except typer.Abort:
            err_console.print("interrupted")
            sys.exit(130)
        except KeyboardInterrupt as e:  # outside a command (while parsing)
            err_console.print("interrupted")
            sys.exit(143 if isinstance(e, Terminated) else 130)
        finally:
            if previous is not None:
                with contextlib.suppress(ValueError):
                    signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)


class lazy:  # noqa: N801 - reads like the module it stands for
    """A module imported on first attribute access (the CLI starts without torch, scipy, matplotlib)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module(self._name), attr)


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
