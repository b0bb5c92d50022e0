"""``biasvar estimators``: the table of estimator families."""

from __future__ import annotations

import typer
from rich.table import Table

from biasvar.spec import FAMILIES, example

from .common import console


def estimators() -> None:
    """List every estimator family: spec, hyper-parameters, paper equation, cost."""
    table = Table(title="biasvar estimators (cost = forward passes per gradient sample)")
    table.add_column("example", no_wrap=True, style="bold")
    table.add_column("hyper-parameters")
    table.add_column("paper")
    table.add_column("cost", justify="right")
    table.add_column("what it is")
    for name, fam in FAMILIES.items():
        table.add_row(example(name), "; ".join(p.short() for p in fam.params) or "-", fam.equation,
                      fam.cost_rule, fam.summary)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("estimators")(estimators)
