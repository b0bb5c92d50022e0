"""Shared pieces of the CLI: consoles, the app class that turns errors into one line, layouts that fit.

Only public APIs: typer (whose click may be its own copy or the click package) is reached through
``typer`` and the click objects it hands over (a context, an exception), never a private module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from typer.core import TyperCommand, TyperGroup

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


def _with_flag(e: BiasvarError) -> str:
    """The library's message, led by the option it is about where the error names the library argument
    (``TrainError(argument="save_at")`` -> ``--save-at: ...``): options are named as the arguments."""
    argument = getattr(e, "argument", None)
    return f"--{argument.replace('_', '-')}: {e}" if argument else str(e)


def _click_error(e: BaseException) -> bool:
    """Whether ``e`` is click's own error (a usage error, a bad value, a missing file): click's
    ``ClickException`` protocol, an ``exit_code`` and ``format_message()``. Recognised by that public
    protocol rather than by class, since typer may run on its own copy of click."""
    return isinstance(getattr(e, "exit_code", None), int) and callable(getattr(e, "format_message", None))


def _usage_error(e: BaseException) -> bool:
    """A command line click cannot parse (click's ``UsageError``: exit code 2, with its context)."""
    return _click_error(e) and e.exit_code == 2 and hasattr(e, "ctx")


def _plain_flags(params: list) -> list:
    """Flags (``--restart``, ``--help``) show no value type in the help (typer writes ``<bool>``)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every sub-command's class (:func:`use_command_class`): flags without a value type in the help."""

    def get_params(self, ctx):  # noqa: D102
        return _plain_flags(super().get_params(ctx))


class ErrorHandlingGroup(TyperGroup):
    """The one place where errors become one line on stderr: exit code 1 for errors a user can cause
    (and, without a traceback, for anything else: ``BIASVAR_DEBUG=1`` shows it), 2 for a command line
    click cannot parse, 130 for Ctrl-C and 143 for SIGTERM."""

    def invoke(self, ctx):  # noqa: D102
        try:
            return super().invoke(ctx)
        except BiasvarError as e:
            raise fail(_one_line(_with_flag(e))) from None
        except (typer.Exit, typer.Abort):
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
            if _click_error(e) or os.environ.get("BIASVAR_DEBUG"):
                raise
            raise fail(_one_line(f"internal error ({type(e).__name__}: {e}); rerun with BIASVAR_DEBUG=1 for "
                                 "the traceback and please report it")) from None

    def get_params(self, ctx):  # noqa: D102
        return _plain_flags(super().get_params(ctx))

    def parse_args(self, ctx, args):  # noqa: D102
        """No arguments: the help (exit 2, as click's ``no_args_is_help``), printed here so that no
        exception has to carry it."""
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            help_text = ctx.get_help()  # typer's rich help prints itself and returns ""
            if help_text:
                typer.echo(help_text)
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        """click's main, with a usage error as one line (exit 2) and SIGTERM as an interruption."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        previous = None
        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err_console.print("interrupted")
            sys.exit(130)
        except KeyboardInterrupt as e:  # outside a command (while parsing)
            err_console.print("interrupted")
            sys.exit(143 if isinstance(e, Terminated) else 130)
        except Exception as e:
            if not _click_error(e):
                raise
            message = _one_line(e.format_message())
            if _usage_error(e):
                cmd = e.ctx.command_path if e.ctx is not None else "biasvar"
                message += f" (see `{cmd} --help`)"
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
            sys.exit(e.exit_code)
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
    """Columns ``renderable`` takes when nothing limits it (a table: every cell in full), measured by
    rich (nothing is rendered)."""
    unlimited = console.options.update_width(sys.maxsize // 2)
    return Measurement.get(console, unlimited, renderable).maximum


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


def use_command_class(app: typer.Typer) -> None:
    """Make :class:`Command` the class of every command registered on ``app`` and its sub-apps
    without a class of its own (call once, after every command is registered)."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):  # typer's default
            info.cls = Command
    for group in app.registered_groups:
        use_command_class(group.typer_instance)


class LazyProgress(Progress):
    """A progress display that shows itself at its first update, not when entered: a command that
    fails before it starts (a bad file, a refused request) prints its one error line, no ``0/N`` line."""

    def __enter__(self) -> LazyProgress:
        return self

    def update(self, *args, **kwargs) -> None:  # noqa: D102
        super().update(*args, **kwargs)
        if not self.live.is_started:
            self.start()


def progress_bar(*fields: str, eta: bool = True, **kwargs) -> Progress:
    """The CLI's one progress display (a :class:`LazyProgress`): description, bar, done/total, ``fields``
    (format strings over ``task``), then ETA and elapsed time. ``kwargs`` go to :class:`rich.progress.Progress`."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
               *(TextColumn(f) for f in fields)]
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    kwargs.setdefault("console", console)
    return LazyProgress(*columns, TimeElapsedColumn(), **kwargs)


def step_task(bar: Progress, description: str = "", *, empty: str = "") -> Callable[[int, int, str], None]:
    """A new task of ``bar`` (its total unknown yet) and the ``progress(done, total, label)`` callback
    that moves it: ``done`` of ``total`` steps, described by ``label`` (``empty`` where it is empty)."""
    task = bar.add_task(description, total=None)

    def step(done: int, total: int, label: str) -> None:
        bar.update(task, completed=done, total=total, description=label or empty)

    return step
