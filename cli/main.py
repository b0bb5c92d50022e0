"""Entry point: composes the command modules into one typer app."""

from __future__ import annotations

from typing import Annotated

import typer

import biasvar

from . import (
    check_cmd,
    claims_cmd,
    compact_cmd,
    data_cmd,
    demo_cmd,
    estimators_cmd,
    gram_cmd,
    leaderboard_cmd,
    report_cmd,
    reproduce_cmd,
    sample_cmd,
    shards_cmd,
    snapshot_cmd,
    train_cmd,
)
from .common import console, new_app, use_command_class

app = new_app()


def _version(value: bool) -> None:
    if value:
        console.print(f"biasvar {biasvar.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    """Measure the bias and variance of gradient estimators for discrete random variables."""


for _module in (demo_cmd, estimators_cmd, data_cmd, train_cmd, snapshot_cmd, sample_cmd, shards_cmd, compact_cmd,
                gram_cmd, report_cmd, reproduce_cmd, claims_cmd, check_cmd, leaderboard_cmd):
    _module.register(app)
use_command_class(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
