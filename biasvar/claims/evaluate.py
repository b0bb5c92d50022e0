"""Evaluating a ledger: the verdict of every claim from analysed rows and paired contrasts.

:func:`evaluate` takes what an analysis produced (report rows and paired contrasts, never run
files, so any source of those objects can be judged; :func:`evaluate_report` for a
:class:`~biasvar.report.Report`), marks the claims whose runs or contrasts are missing as not
measured, sizes the family of the rest (Bonferroni: ``alpha_each = alpha / n``), decides each claim
(:mod:`biasvar.claims.kinds`, where the rules are) and returns a :class:`~biasvar.claims.model.Ledger`.
:func:`plan` (:mod:`biasvar.claims.planning`) says beforehand which contrasts to compute, which runs
are missing and how many comparisons the family holds (so the analysis can be run at the corrected
level); :func:`family_statement` says in one sentence how the family was corrected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from biasvar.claims.kinds import (
    DECIDE,
    NO_CONTRAST,
    Data,
    Num,
    combine,
    decide_less,
    decide_within,
    fmt,
    quantile,
    t_interval,
    wls_slope,
)
from biasvar.claims.model import (
    CONTRADICTED,
    NOT_MEASURED,
    SUPPORTED,
    UNDECIDED,
    Check,
    Claim,
    ClaimResult,
    FloorClaim,
    Ledger,
    RatioClaim,
)
from biasvar.claims.planning import Plan, canon_reference, items, plan


def _numbers(ch: Check) -> str:
    """A check's label with its interval and bound (a check without numbers: its label and bound)."""
    if ch.value is None and ch.low is None and ch.high is None:
        return f"{ch.label} ({ch.bound})"
    return f"{ch.label}: {fmt(ch.value)} [{fmt(ch.low)}, {fmt(ch.high)}] vs {ch.bound}"


def _reason(verdict: str, checks: Sequence[Check]) -> str:
    k = len(checks)
    if k == 1:
        return _numbers(checks[0])
    if verdict == SUPPORTED:
        return f"all {k} checks supported"
    bad = [ch for ch in checks if ch.outcome == CONTRADICTED]
    if bad:
        return f"{len(bad)} of {k} checks contradicted, first {_numbers(bad[0])}"
    open_ = [ch for ch in checks if ch.outcome == UNDECIDED]
    return f"{k - len(open_)} of {k} checks supported, {len(open_)} undecided (first {open_[0].label})"


def evaluate(claims: Sequence[Claim], rows: Sequence[Any], contrasts: Sequence[Any] = (), *, alpha: float = 0.05,
             correction: str = "bonferroni", row_level: float = 0.95, reference: str | None = None,
             source: str = "", runs_dir: str | None = None, snapshot: str = "", store: str | None = None) -> Ledger:
    """Verdicts of ``claims`` from analysed rows and paired contrasts (rules: :mod:`biasvar.claims.kinds`).

    Args:
        claims: from :func:`biasvar.claims.load_claims`.
        rows: report rows (tested rows have a b2; the reference run's row has b2 None).
        contrasts: paired contrasts ``A - B`` (either orientation is used); :func:`plan` lists them.
        alpha, correction: the family-wise level and its correction (``bonferroni`` or ``none``).
        row_level: the confidence level of the rows' own intervals.
        reference: the reference's spec (or ``exact``); names it among the missing runs.
        source, runs_dir, snapshot, store: recorded in the ledger (``store``: the statistics store the
            numbers came from, None when from run files).
    """
    ref = canon_reference(reference)
    data = Data(rows, contrasts, row_level)
    p = plan(claims, data.tested, ref, alpha=alpha, correction=correction)
    lacking = {c.id: data.lacking(c) for c in claims if not p.missing[c.id]}
    n = sum(item.weight for c in claims if not p.missing[c.id] and not lacking[c.id] for item in items(c))
    each = alpha / max(n, 1) if correction == "bonferroni" else alpha
    results = []
    for c in claims:
        if p.missing[c.id] or lacking[c.id]:  # marginal intervals decide nothing about a difference
            miss = p.missing[c.id] or lacking[c.id]
            results.append(ClaimResult(c, NOT_MEASURED, "missing: " + ", ".join(miss), missing=miss))
            continue
        checks = DECIDE[type(c)](c, data, each)
        verdict = combine([ch.outcome for ch in checks])
        results.append(ClaimResult(c, verdict, _reason(verdict, checks), tuple(checks)))
    notes = []
    if correction == "bonferroni" and row_level < 1 - each - 1e-9 and any(
            isinstance(c, (FloorClaim, RatioClaim)) and not p.missing[c.id] for c in claims):
        notes.append(f"single-run intervals are at level {row_level:.6g}, below the corrected {1 - each:.6g}: "
                     f"floor and ratio verdicts are not family-wise corrected (analyse at the corrected level)")
    return Ledger(tuple(results), alpha=alpha, correction=correction, n_comparisons=n, alpha_each=each,
                  row_level=row_level, reference=reference or "", source=source,
                  runs_dir=runs_dir, snapshot=snapshot, notes=tuple(notes), store=store)


def evaluate_report(claims: Sequence[Claim], report: Any, *, alpha: float = 0.05, correction: str = "bonferroni",
                    source: str = "") -> Ledger:
    """:func:`evaluate` on a :class:`biasvar.report.Report` (its rows, contrasts and level)."""
    return evaluate(claims, report.rows, report.contrasts, alpha=alpha, correction=correction,
                    row_level=report.confidence_level, reference=report.reference, source=source,
                    runs_dir=report.runs_dir, snapshot=report.snapshot_hash, store=getattr(report, "store", None))


def family_statement(ledger: Ledger) -> str:
    """One sentence: how the family of comparisons was corrected, and the levels used."""
    each = f"{ledger.alpha_each:.3g}"
    if ledger.correction == "bonferroni":
        head = (f"Bonferroni over the {ledger.n_comparisons} comparisons of the measured claims: family-wise "
                f"alpha {ledger.alpha:g}, each comparison at alpha/{ledger.n_comparisons} = {each}")
    else:
        head = f"no family-wise correction: each comparison at alpha {ledger.alpha:g}"
    return (f"{head}; less/greater/monotone use two-sided {1 - ledger.alpha_each:.6g} intervals, equal and slope "
            f"(two one-sided tests) {1 - 2 * ledger.alpha_each:.6g} intervals, floor and ratio the runs' own "
            f"{ledger.row_level:.6g} intervals.")


__all__ = ["NO_CONTRAST", "Num", "Plan", "combine", "decide_less", "decide_within", "evaluate", "evaluate_report",
           "family_statement", "plan", "quantile", "t_interval", "wls_slope"]
