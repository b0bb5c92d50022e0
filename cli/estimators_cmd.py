"""``biasvar estimators``: the table of estimator families."""

from __future__ import annotations

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from biasvar.spec import FAMILIES, example

from .common import console


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
        return table if min_fits(table, rows) else None

    def narrow() -> Group:  # one block per family: nothing is cut at any width
        out = [Text(title, style="bold"), Text("")]
        for ex, hyper, paper, cost, summary in rows:
            out.append(Text.assemble((ex, "bold"), f"  ·  {paper}  ·  cost {cost}"))
            out.append(Text(f"    {summary}"))
            if hyper != "-":
                out.append(Text(f"    hyper-parameters: {hyper}", style="dim"))
        return Group(*out)

    console.print(wide() or narrow())


def _columns(table: Table, rows: list[tuple[str, ...]]) -> list[tuple[object, list[str]]]:
    """Each column of ``table`` with its cells (``rows``, as added)."""
    return [(col, [str(row[i]) for row in rows]) for i, col in enumerate(table.columns)]


def min_fits(table: Table, rows: list[tuple[str, ...]], width: int | None = None) -> bool:
    """Whether the wrapping columns of ``table`` (cells ``rows``) get at least 16 columns each at ``width``."""
    width = console.width if width is None else width
    columns = _columns(table, rows)
    fixed = sum(max(len(c) for c in [*cells, str(col.header)]) + 3 for col, cells in columns if col.no_wrap)
    free = [cells for col, cells in columns if not col.no_wrap]
    return width - fixed - 1 >= 16 * len(free) + 3 * len(free) and fits_words(free, width - fixed)


def fits_words(free: list[list[str]], room: int) -> bool:
    """No word of a wrapping column (its cells ``free``) is longer than its share of ``room`` (rich would
    cut it)."""
    share = room // max(1, len(free)) - 3
    return all(len(word) <= share for cells in free for cell in cells for word in cell.split())


def register(app: typer.Typer) -> None:
    app.command("estimators")(estimators)
