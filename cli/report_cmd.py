"""``biasvar report`` and ``biasvar plot``: Eq. 16 with bootstrap intervals over a runs folder; figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from biasvar import names
from biasvar.errors import AnalysisError
from biasvar.presets import REFERENCE

if TYPE_CHECKING:
    from biasvar.report import Report

from . import options as o
from .common import console, err_console, first_fitting, lazy, step_task
from .shards_cmd import shard_notes

formats = lazy("biasvar.formats")  # numpy, scipy: loaded when a report is made, not for --help

Opt = typer.Option
Format = o.choices("Format", names.REPORT_FORMATS)
Method = o.choices("Method", names.METHODS)
Figure = o.choices("Figure", names.PLOT_FIGURES)

_METHOD = Annotated[Method, Opt("--method", metavar="NAME", help="Interval method: gauss-eb (default; a "
                                "Gaussian test inverted, bias direction by empirical Bayes), gauss-fit (gauss-eb "
                                "with its prior's power fitted to the pair), pivot (an inverted "
                                "bootstrap test), jackknife-t (delete one block per run, Welch t), or scipy's "
                                "percentile, basic, bca of the plain Eq. 16; coverage: results/coverage/.")]


def _progress() -> Progress:
    """On stderr (stdout may carry JSON/CSV), and only on a terminal."""
    return Progress(TextColumn("[bold]analysing[/] {task.description}"), BarColumn(bar_width=24),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True,
                    disable=not err_console.is_terminal)


def analyze_with_progress(runs_dir: Path, *, snapshot_id: str | None, reference: str, n_resamples: int,
                          method: str, bootstrap_seed: int, contrasts: tuple[tuple[str, str], ...] = (),
                          store: Path | None = None) -> Report:
    """``analyze_runs`` with a progress bar (one step per run)."""
    from biasvar.report import analyze_runs

    with _progress() as prog:
        return analyze_runs(runs_dir, snapshot=snapshot_id, reference=reference, n_resamples=n_resamples,
                            method=method, seed=bootstrap_seed, progress=step_task(prog), contrasts=contrasts,
                            store=store)


MEDIUM_COLUMNS = ("spec", "seed", "n", "b2 [95% CI]", "V [95% CI]", "MSE", "cost", "draws/s", "non-finite",
                  "Pareto")
NARROW_COLUMNS = ("spec", "n", "b2 [95% CI]", "V [95% CI]", "MSE", "Pareto")


CAPTION = {
    "b2 [95% CI]": "b2: unbiased squared bias per parameter (Eq. 16; can be negative)",
    "V [95% CI]": "V: variance per parameter",
    "MSE": "MSE = b2 + V",
    "cost": "cost: forward passes per draw",
    "V×cost": "V×cost: variance times cost",
    "cos": "cos: cosine of the mean with the reference's",
    "Pareto": "",  # formats.PARETO_NOTE (read when a table is made: formats imports scipy)
}


def _caption(col: str) -> str:
    return formats.PARETO_NOTE if col == "Pareto" else CAPTION[col]


def report_table(report: Report, *, width: int | None = None) -> Table:
    """The report as a rich table, one row per run (``biasvar demo`` prints this too).

    Intervals go on a second line. The widest layout that fits ``width`` (default: the console's,
    80 in a pipe) without cutting a number is used: every column, then without V×cost and the
    cosine, then also without seed, cost, draws/s and non-finite, then with n under the spec.
    Every column stays in the Markdown, JSON and CSV formats; the caption explains the columns
    shown and names the hidden ones.
    """
    width = console.width if width is None else width
    stacked = ("spec", "b2 [95% CI]", "V [95% CI]", "MSE", "Pareto")
    layouts = (formats.TABLE_COLUMNS, MEDIUM_COLUMNS, NARROW_COLUMNS, stacked)
    builds = [lambda c=c: _report_table(report, c) for c in layouts]
    return first_fitting([*builds, lambda: _report_list(report)], width)


def _report_list(report: Report) -> Group:
    """The narrowest form: a few short lines per run (terminals under ~75 columns)."""
    lines = [Text(formats.report_header(report), style="bold"), Text("")]
    for r, cells in zip(report.rows, formats.table_rows(report), strict=True):
        mark = f"  Pareto {cells['Pareto'].strip()}" if cells["Pareto"].strip() else ""
        lines.append(Text(f"{cells['spec']}  n {cells['n']}{mark}", style="bold" if r.role != "reference" else "dim"))
        lines.append(Text(f"  b2  {cells['b2 [95% CI]']}"))
        lines.append(Text(f"  V   {cells['V [95% CI]']}"))
        lines.append(Text(f"  MSE {cells['MSE']}"))
    lines.append(Text(""))
    lines.append(Text(" · ".join(_caption(c) for c in ("b2 [95% CI]", "V [95% CI]", "MSE", "Pareto"))
                      + " · more columns: --format md"))
    return Group(*lines)


def _report_table(report: Report, cols: tuple[str, ...]) -> Table:
    hidden = [c for c in formats.TABLE_COLUMNS if c not in cols and not (c == "n" and "spec" in cols)]
    caption = " · ".join(_caption(col) for col in CAPTION if col in cols)
    if hidden:
        caption += f" · hidden at this width: {', '.join(hidden)} (see --format md)"
    table = Table(title=formats.report_header(report), title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, caption=caption, caption_justify="left")
    right = {"seed", "n", "MSE", "cost", "draws/s", "V×cost", "cos", "non-finite"}
    short = {"non-finite": "non-\nfinite", "Pareto": "P", "draws/s": "draws/s", "b2 [95% CI]": "b2\n[95% CI]",
             "V [95% CI]": "V\n[95% CI]"}
    with_n = "n" not in cols  # the narrowest layout: n on the spec's second line
    for col in cols:
        head = "spec\nn" if col == "spec" and with_n else short.get(col, col)
        table.add_column(head, justify="right" if col in right else "left", no_wrap=True,
                         style="bold" if col == "spec" else None)
    for r, cells in zip(report.rows, formats.table_rows(report), strict=True):
        row = [cells[c].replace(" [", "\n[") for c in cols]
        if with_n:
            row[0] = f"{cells['spec']}\n[not bold]{cells['n']}[/]"
        table.add_row(*row, style="dim" if r.role == "reference" else None)
    return table


def contrasts_table(report: Report) -> Table:
    """The paired contrasts (``--contrast A,B``), one row each; intervals on a second line."""
    table = Table(title=formats.contrasts_header(report), title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1), pad_edge=False)
    for col in ("A - B", "b2_A - b2_B\n[CI]", "V_A - V_B\n[CI]", "se\nratio"):
        table.add_column(col, no_wrap=True)
    for c, cells in zip(report.contrasts, formats.contrast_rows(report), strict=True):
        table.add_row(f"{c.a}\n- {c.b}", cells["b2_A - b2_B [CI]"].replace(" [", "\n[") + "\n" + cells["b2"],
                      cells["V_A - V_B [CI]"].replace(" [", "\n[") + "\n" + cells["V"], cells["se ratio"])
    return table


def groups_table(report: Report) -> Table:
    """Per parameter group: b2 and V of every run."""
    table = Table(title="per parameter group", title_justify="left")
    for col in ("spec", "seed", "group", "dim", "b2 [95% CI]", "V [95% CI]"):
        table.add_column(col)
    for r in report.rows:
        for g in r.groups:
            table.add_row(r.spec, str(r.seed), g.name, str(g.dim), formats.fmt_estimate(g.b2),
                          formats.fmt_estimate(g.variance))
    return table


def report(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
    store: o.Store = None,
    reference: o.Reference = REFERENCE,
    fmt: Annotated[Format, Opt("--format", help="table: rich, on screen; md: Markdown; json; csv.")]
    = Format("table"),
    out: Annotated[Path | None, Opt("--out", help="Write the report to FILE (atomically) instead of the "
                                    "screen; with --format table it is written as Markdown.")] = None,
    n_resamples: o.NResamples = 1000,
    bootstrap_seed: o.BootstrapSeed = 0,
    method: _METHOD = Method(names.DEFAULT_METHOD),
    groups: Annotated[bool, Opt("--groups", help="Also show b2 and V per parameter group.")] = False,
    contrast: Annotated[list[str] | None, Opt("--contrast", metavar="A,B", help="b2_A - b2_B and V_A - V_B "
                                              "with intervals that account for the shared reference "
                                              "(repeatable).")] = None,
    old_bootstrap: o.OldBootstrap = None,
) -> None:
    """Squared bias (Eq. 16), variance and MSE of every run against the reference, with 95% bootstrap
    intervals; one row per run, sorted by family then hyper-parameter."""
    from biasvar.stats.contrast import split_pair

    pairs = tuple(split_pair(c) for c in contrast or ())
    sid = snapshot_id
    rep = analyze_with_progress(
        runs_dir, snapshot_id=sid, reference=reference,
        n_resamples=o.alias(n_resamples, old_bootstrap, default=1000, new_flag="--n-resamples",
                            old_flag="--bootstrap"),
        method=method.value, bootstrap_seed=bootstrap_seed, contrasts=pairs, store=store)
    table = fmt.value == "table"
    if out is not None:
        text = formats.format_report(rep, "md" if table else fmt.value)
        from biasvar.atomic import write_atomic

        write_atomic(out, text)
        console.print(f"wrote {out} ({len(rep.rows)} runs, snapshot {rep.snapshot_hash[:12]})",
                      highlight=False)
        return
    if table:
        console.print(report_table(rep))
        if rep.contrasts:
            console.print(contrasts_table(rep))
        if groups:
            console.print(groups_table(rep))
        for note in [*rep.notes, *shard_notes(runs_dir, sid)]:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        from biasvar.report.resolve import unresolved

        for res in unresolved(rep.rows):  # issue 24: how many draws would decide b2 = 0
            console.print(f"[cyan]b2 near 0:[/] {res.line()}", highlight=False)
        return
    for note in shard_notes(runs_dir, sid):  # stdout may carry JSON/CSV
        err_console.print(f"note: {note}", highlight=False)
    typer.echo(formats.format_report(rep, fmt.value), nl=False)


def plot(
    figure: Annotated[Figure, typer.Argument(help="fig1 (bias and variance vs t), pareto (Fig. 4), "
                                             "quant-unit (Fig. B.5).")],
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
    store: o.Store = None,
    reference: o.Reference = REFERENCE,
    out: Annotated[Path | None, Opt("--out", help="Output file; PNG and PDF are written beside each other "
                                    "(default figures/<figure>.png).")] = None,
    from_report: Annotated[Path | None, Opt("--report", help="Plot a saved JSON report (`biasvar report "
                                            "--format json --out FILE`) instead of the runs.")] = None,
    n_resamples: o.NResamples = 1000,
    bootstrap_seed: o.BootstrapSeed = 0,
    method: _METHOD = Method(names.DEFAULT_METHOD),
    quant_n: o.QuantDraws = 10_000,
    seed: Annotated[int | None, Opt("--seed", help="Seed of the noise (quant-unit; default 0).")] = None,
    etas: Annotated[int, Opt("--etas", help="quant-unit: inputs eta on [-1, K].")] = 61,
    old_bootstrap: o.OldBootstrap = None,
) -> None:
    """Draw a figure of the paper from the runs of one snapshot (PNG and PDF).

    quant-unit (Fig. B.5) runs the single-quantizer study itself (exact references; cheap) and plots it; it does not read run files.
    """  # noqa: E501 - one line: the help keeps the docstring's line breaks
    from biasvar import plots  # matplotlib only when plotting

    target = out if out is not None else Path("figures") / f"{figure.value}.png"
    if figure.value == "quant-unit":
        _plot_quant_unit(target, n=quant_n, seed=0 if seed is None else seed, points=etas)
        return
    if seed is not None:
        raise typer.BadParameter(f"{figure.value} draws no noise (the bootstrap's seed is --bootstrap-seed)",
                                 param_hint="'--seed'")
    if from_report is not None:
        from biasvar.report_file import read_report

        rep = read_report(from_report)
    else:
        rep = analyze_with_progress(
            runs_dir, snapshot_id=snapshot_id, reference=reference,
            n_resamples=o.alias(n_resamples, old_bootstrap, default=1000, new_flag="--n-resamples",
                                old_flag="--bootstrap"),
            method=method.value, bootstrap_seed=bootstrap_seed, store=store)
    draw = plots.plot_fig1 if figure.value == "fig1" else plots.plot_pareto
    res = draw(rep, target)
    console.print(f"wrote {', '.join(res.paths)}", highlight=False)
    console.print(f"drawn: {', '.join(res.drawn)}", highlight=False)
    if res.missing:
        console.print(f"[yellow]missing:[/] {', '.join(res.missing)}", highlight=False)


def _plot_quant_unit(target: Path, *, n: int, points: int, seed: int) -> None:
    from biasvar import plots
    from biasvar.studies.quantstudy import DEFAULT_SPECS, quant_unit_study

    if n < 2 or points < 2:
        raise AnalysisError(f"quant-unit needs --quant-n >= 2 and --etas >= 2, got --quant-n {n} --etas {points}")
    with _progress() as bar:
        study = quant_unit_study(n=n, points=points, seed=seed, progress=step_task(bar, "Fig. B.5 study"))
    res = plots.plot_quant_unit(study, target)
    console.print(f"single quantizer, K = 4, {n} draws per eta at {points} inputs; estimators: "
                  f"{', '.join(DEFAULT_SPECS)}", highlight=False)
    console.print(f"wrote {', '.join(res.paths)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("plot")(plot)
