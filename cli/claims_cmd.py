"""``biasvar claims``: decide a claims ledger (the paper's, or a file of your own) on a runs folder."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from biasvar.errors import AnalysisError

from . import options as o
from .common import console, err_console, progress_bar, step_task

Opt = typer.Option


class Format(str, Enum):
    table = "table"
    md = "md"
    json = "json"


class Correction(str, Enum):
    bonferroni = "bonferroni"
    none = "none"


#: the auto --n-resamples: enough draws for ~10 in each tail of the corrected level, within these bounds
RESAMPLES_MIN, RESAMPLES_MAX = 1000, 50_000


def tested_specs(runs_dir: Path, snapshot_id: str | None, reference: str, store: Path | None = None) -> set[str]:
    """Canonical specs with a tested row among the runs (the reference's lowest seed is not one)."""
    from biasvar.report import runs_of
    from biasvar.spec import parse_spec
    from biasvar.stats.compare import run_attr

    counts: dict[str, int] = {}
    for r in runs_of(runs_dir, snapshot_id, store).runs:
        s = str(parse_spec(run_attr(r, "spec")))
        counts[s] = counts.get(s, 0) + 1
    ref = None if reference.strip().lower() == "exact" else str(parse_spec(reference))
    return {s for s, k in counts.items() if s != ref or k > 1}


def auto_resamples(alpha_each: float) -> int:
    """Resamples for ~10 draws in each tail of the ``1 - alpha_each`` single-run intervals (bounded)."""
    return int(min(RESAMPLES_MAX, max(RESAMPLES_MIN, math.ceil(10 / (alpha_each / 2)))))


def read_report(path: Path):
    """A saved JSON report (its rows; contrasts only if it holds them)."""
    from biasvar.formats import report_from_json

    try:
        return report_from_json(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise AnalysisError(f"cannot read report {path}: {e.strerror or e}") from None


def analyze_for(claims, runs_dir: Path, snapshot_id: str | None, reference: str, *, alpha: float, correction: str,
                n_resamples: int | None, bootstrap_seed: int, store: Path | None = None):
    """The analysis a ledger needs: every run at the corrected level, with the paired contrasts its
    claims compare (:func:`biasvar.claims.plan`); a progress bar on a terminal's stderr."""
    from biasvar.claims import plan
    from biasvar.report import analyze_runs

    p = plan(claims, tested_specs(runs_dir, snapshot_id, reference, store), reference, alpha=alpha,
             correction=correction)
    if n_resamples is None:
        single = any(c.kind in ("floor", "ratio") and not p.missing[c.id] for c in claims)
        n_resamples = auto_resamples(p.alpha_each) if single else RESAMPLES_MIN
    with progress_bar(eta=False, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        return analyze_runs(runs_dir, snapshot=snapshot_id, reference=reference, n_resamples=n_resamples,
                            confidence_level=p.level, seed=bootstrap_seed,
                            progress=step_task(bar, "analysing", empty="contrasts"), contrasts=p.pairs, store=store)


def ledger_table(ledger) -> Table:
    """One row per claim: id, verdict, the numbers that decided it (wrapped to the terminal)."""
    style = {"supported": "green", "contradicted": "red", "undecided": "yellow", "not measured": "dim"}
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, title_justify="left",
                  title="claims ledger", title_style="bold")
    table.add_column("claim", overflow="fold", ratio=3)
    table.add_column("verdict", no_wrap=True)
    table.add_column("decided by", overflow="fold", ratio=5)
    for r in ledger.results:
        reason = r.reason
        if len(r.missing) > 3:
            reason = f"missing {len(r.missing)}: {', '.join(r.missing[:2])}, ... (all: --format md)"
        table.add_row(r.claim.id, f"[{style[r.verdict]}]{r.verdict}[/]", reason)
    return table


def claims(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
    store: o.Store = None,
    claims_file: Annotated[Path | None, Opt("--claims", metavar="FILE", help="Claims file (JSON, see "
                                            "docs/claims.md); default: the paper's ledger.")] = None,
    reference: o.Reference = "rf(M=4)",
    alpha: Annotated[float, Opt("--fwer", metavar="A", help="Family-wise error rate of all the claims' "
                                                          "comparisons together.")] = 0.05,
    correction: Annotated[Correction, Opt("--correction", help="bonferroni (over every comparison of the "
                                          "measured claims) or none.")] = Correction.bonferroni,
    out: Annotated[Path | None, Opt("--out", metavar="DIR", help="Write claims.json and claims.md into "
                                    "DIR instead of printing.")] = None,
    fmt: Annotated[Format, Opt("--format", help="table (on screen), md or json.")] = Format.table,
    n_resamples: Annotated[int | None, Opt("--n-resamples", help="Resamples of the single-run intervals "
                                           "(default: enough for the corrected level, 1000 to 50000).")] = None,
    bootstrap_seed: o.BootstrapSeed = 0,
    from_report: Annotated[Path | None, Opt("--report", metavar="FILE", help="Judge a saved JSON report (`biasvar "
                                            "report --format json`) instead of the runs: no block data, so claims "
                                            "on a b2 or MSE difference are not measured.")] = None,
    compare: Annotated[list[Path] | None, Opt("--compare", metavar="FILE", help="Instead of deciding: compare "
                                              "two or more claims.json ledgers (repeat the option; e.g. two seeds) "
                                              "claim by claim, and say where the verdicts disagree.")] = None,
) -> None:
    """Decide claims (less, greater, equal within a margin, floor, monotone in t, log-log slope,
    ratio) from paired contrasts and intervals: supported, contradicted, undecided or not measured."""
    from biasvar import claims as C

    if compare:
        compare_ledgers(compare, out, fmt)
        return
    ledger_claims = C.load_claims(claims_file)
    C.plan(ledger_claims, (), reference, alpha=alpha, correction=correction.value)  # bad --fwer before any work
    if from_report is not None:
        rep = read_report(from_report)
    else:
        rep = analyze_for(ledger_claims, runs_dir, snapshot_id, reference, alpha=alpha, correction=correction.value,
                          n_resamples=n_resamples, bootstrap_seed=bootstrap_seed, store=store)
    source = str(claims_file) if claims_file is not None else "paper.json (biasvar/claims/paper.json)"
    ledger = C.evaluate_report(ledger_claims, rep, alpha=alpha, correction=correction.value, source=source)
    if out is not None:
        from biasvar.atomic import write_atomic

        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "claims.json", C.ledger_to_json(ledger))
        write_atomic(out / "claims.md", C.ledger_to_markdown(ledger))
        console.print(f"{C.summary_line(ledger)}\nwrote {out / 'claims.json'}, {out / 'claims.md'}", highlight=False)
        return
    if fmt is Format.json:
        typer.echo(C.ledger_to_json(ledger), nl=False)
        return
    if fmt is Format.md:
        typer.echo(C.ledger_to_markdown(ledger), nl=False)
        return
    console.print(ledger_table(ledger))
    console.print(C.summary_line(ledger), highlight=False, style="bold")
    console.print(f"family-wise: {C.family_statement(ledger)}", highlight=False)
    for note in ledger.notes + rep.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def compare_ledgers(paths: list[Path], out: Path | None, fmt: Format) -> None:
    """``--compare``: the verdicts of ledgers decided on independent runs, side by side."""
    import json

    from biasvar.claims import compare as K

    if len(paths) < 2:
        raise typer.BadParameter("give at least two ledgers (--compare A/claims.json --compare B/claims.json)",
                                 param_hint="--compare")
    rows = K.compare_ledgers([K.read_ledger(p) for p in paths])
    labels = [str(p) for p in paths]
    md = K.comparison_markdown(rows, labels)
    doc = json.dumps({"ledgers": labels, "counts": K.counts(rows),
                      "claims": [{"id": r.claim_id, "verdicts": list(r.verdicts), "comparison": r.status}
                                 for r in rows]}, indent=1) + "\n"
    if out is not None:
        from biasvar.atomic import write_atomic

        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "comparison.json", doc)
        write_atomic(out / "comparison.md", md)
        console.print(f"{K.summary_line(rows)}\nwrote {out / 'comparison.json'}, {out / 'comparison.md'}",
                      highlight=False)
    elif fmt is Format.json:
        typer.echo(doc, nl=False)
    elif fmt is Format.md:
        typer.echo(md, nl=False)
    else:
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
        table.add_column("claim", overflow="fold")
        for i in range(len(labels)):
            table.add_column(f"#{i + 1}", no_wrap=True)
        table.add_column("comparison", overflow="fold")
        for r in rows:
            table.add_row(r.claim_id, *(v or "absent" for v in r.verdicts), r.status)
        console.print(table)
        for i, lab in enumerate(labels):
            console.print(f"#{i + 1}: {lab}", highlight=False)
        console.print(K.summary_line(rows), highlight=False, style="bold")


def register(app: typer.Typer) -> None:
    app.command("claims")(claims)
