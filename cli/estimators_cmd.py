"""``biasvar estimators``: the table of estimator families."""

from __future__ import annotations

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from biasvar.spec import FAMILIES, example

from .common import command, console


def estimators() -> None:
    """List every estimator family: spec, hyper-parameters, paper equation, cost."""
    title = "biasvar estimators (cost = forward passes per gradient sample)"
    rows = [(example(name), "; ".join(p.short() for p in fam.params) or "-", fam.equation,
             fam.cost_rule, fam.summary) for name, fam in FAMILIES.items()]

    def wide() -> Table:
        table = Table(title=title)
        for col in ("example", "hyper-parameters", "paper", "cost", "what it is"):
            table.add_column(col, no_wrap=col in ("example", "cost"), style="bold" if col == "example" else None,
                             justify="right" if col == "cost" else "left", overflow="fold")
        for row in rows:
            table.add_row(*row)
        return table if min_fits(table) else None

    def narrow() -> Group:  # one block per family: nothing is cut at any width
        out = [Text(title, style="bold"), Text("")]
        for ex, hyper, paper, cost, summary in rows:
            out.append(Text.assemble((ex, "bold"), f"  ·  {paper}  ·  cost {cost}"))
            out.append(Text(f"    {summary}"))
            if hyper != "-":
                out.append(Text(f"    hyper-parameters: {hyper}", style="dim"))
        return Group(*out)

    console.print(wide() or narrow())


def min_fits(table: Table, width: int | None = None) -> bool:
    """Whether the wrapping columns of ``table`` get at least 16 columns each at ``width``."""
    width = console.width if width is None else width
    fixed = sum(max(len(c) for c in col._cells + [str(col.header)]) + 3 for col in table.columns if col.no_wrap)
    free = [col for col in table.columns if not col.no_wrap]
    return width - fixed - 1 >= 16 * len(free) + 3 * len(free) and fits_words(table, width - fixed)


def fits_words(table: Table, room: int) -> bool:
    """No word of a wrapping column is longer than its share of ``room`` (rich would cut it)."""
    free = [col for col in table.columns if not col.no_wrap]
    share = room // max(1, len(free)) - 3
    return all(len(word) <= share for col in free for cell in col._cells for word in str(cell).split())


def register(app: typer.Typer) -> None:
    command(app, "estimators", estimators)
