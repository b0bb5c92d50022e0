"""Writing a ledger: ``claims.json`` (every number at full precision) and ``claims.md`` (a summary
table, then each claim with the paper's words, its test and the checks that decided it)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import biasvar
from biasvar.claims.evaluate import family_statement
from biasvar.claims.model import VERDICTS, Claim, ClaimResult, Ledger

LEDGER_SCHEMA = 1


def _finite(x: Any) -> Any:
    """JSON has no inf/nan: they are written as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def claim_dict(c: Claim) -> dict[str, Any]:
    """A claim as its file entry (fields at their defaults left out, except id/kind/words)."""
    d = {k: v for k, v in asdict(c).items() if v not in (None, "", ()) or k in ("id", "kind", "words")}
    if d.get("t"):
        d["t"] = list(d["t"])
    for k in ("families", "members"):
        if d.get(k):
            d[k] = list(d[k])
    if d.get("margin"):
        d["margin"] = {k: v for k, v in d["margin"].items() if v is not None}
    return d


def describe(c: Claim) -> str:
    """The test of a claim in a few words, e.g. ``less: V of zgr < V of st``."""
    d = claim_dict(c)
    ts = f" for t in {{{', '.join(f'{t:g}' for t in d['t'])}}}" if d.get("t") else ""
    m = ""
    if d.get("margin"):
        mg = d["margin"]
        m = f", margin {mg['abs']:g}" if "abs" in mg else f", margin {mg['rel']:g} x " + (
            f"|{mg['of']}|" if "of" in mg else "the larger estimate")
    q = d.get("quantity", "")
    if c.kind in ("less", "greater", "equal"):
        op = {"less": "<", "greater": ">", "equal": "="}[c.kind]
        return f"{c.kind}: {q} of {d['a']} {op} {q} of {d['b']}{m}{ts}"
    if c.kind == "floor":
        return f"floor: {q} of {d['run']} = {d.get('value', 0.0):g}{m}{ts}"
    if c.kind == "monotone":
        return f"monotone: {q} of {d['run']} {d['direction']} in t{ts}"
    if c.kind == "slope":
        lo, hi = d.get("low"), d.get("high")
        return f"slope of log {q} on log t of {d['run']} in [{lo if lo is not None else '-inf'}, " \
               f"{hi if hi is not None else 'inf'}]{ts}"
    if c.kind == "front":
        extra = " and the lowest-V unbiased run" if d.get("unbiased", True) else ""
        of = f" ({len(d['members'])} runs of theirs named)" if d.get("members") else ""
        return f"front: every run not of {', '.join(d['families'])}{of}{extra} dominated in (b2, V)"
    return f"ratio: {d['numerator']} / {d['denominator']} of {d['run']} >= {d['at_least']:g}{ts}"


def _result_dict(r: ClaimResult) -> dict[str, Any]:
    return {"id": r.claim.id, "verdict": r.verdict, "reason": r.reason, "test": describe(r.claim),
            "claim": claim_dict(r.claim), "missing": list(r.missing), "checks": [asdict(ch) for ch in r.checks]}


def ledger_to_json(ledger: Ledger) -> str:
    """``claims.json``: the settings, the family-wise statement, counts, and every claim's checks."""
    out = {
        "schema": LEDGER_SCHEMA, "biasvar_version": biasvar.__version__, "source": ledger.source,
        "runs_dir": ledger.runs_dir, "store": ledger.store, "snapshot": ledger.snapshot,
        "reference": ledger.reference,
        "alpha": ledger.alpha, "correction": ledger.correction, "n_comparisons": ledger.n_comparisons,
        "alpha_each": ledger.alpha_each, "row_level": ledger.row_level, "family": family_statement(ledger),
        "counts": ledger.counts(), "notes": list(ledger.notes), "claims": [_result_dict(r) for r in ledger.results],
    }
    return json.dumps(_finite(out), indent=1, allow_nan=False) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt(x: float | None) -> str:
    if x is None:
        return "—"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def summary_line(ledger: Ledger) -> str:
    """``31 claims: 10 supported, 2 contradicted, 8 undecided, 11 not measured``."""
    counts = ledger.counts()
    return f"{len(ledger.results)} claims: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)


def ledger_to_markdown(ledger: Ledger) -> str:
    """``claims.md``: summary, family-wise statement, one table row per claim, then the checks."""
    lines = ["# Claims ledger", ""]
    where = (f"the statistics store `{ledger.store}`" if ledger.store else f"runs `{ledger.runs_dir}`"
             if ledger.runs_dir else "the analysis given")
    snap = f", snapshot `{ledger.snapshot[:12]}`" if ledger.snapshot else ""
    lines += [f"Claims: `{ledger.source or 'paper.json'}`; numbers: {where}{snap}; reference "
              f"`{ledger.reference or '?'}`.", "", f"**{summary_line(ledger)}.**", "",
              f"Family-wise: {family_statement(ledger)}", ""]
    lines += [f"Note: {n}" for n in ledger.notes] + ([""] if ledger.notes else [])
    lines += ["Verdicts: *supported* (the interval lies on the claimed side, or inside the margin), "
              "*contradicted* (it lies on the other side, or entirely outside the margin), *undecided* "
              "(neither), *not measured* (a run it needs is missing: named).", ""]
    lines += ["| id | where | test | verdict | decided by |", "|---|---|---|---|---|"]
    for r in ledger.results:
        lines.append(f"| {_md(r.claim.id)} | {_md(r.claim.where)} | {_md(describe(r.claim))} | **{r.verdict}** "
                     f"| {_md(r.reason)} |")
    lines.append("")
    for r in ledger.results:
        c = r.claim
        lines += [f"## {c.id}: {r.verdict}", "", f"> {c.words}", ""]
        lines += [f"— {c.where}", ""] if c.where else []
        lines.append(f"Test: {describe(c)}.")
        if c.note:
            lines += ["", f"How the words became this test: {c.note}"]
        lines += ["", f"Verdict: **{r.verdict}** — {r.reason}.", ""]
        if r.checks:
            lines += ["| check | estimate | interval | level | against | outcome | method |",
                      "|---|---|---|---|---|---|---|"]
            for ch in r.checks:
                lines.append(f"| {_md(ch.label)} | {fmt(ch.value)} | [{fmt(ch.low)}, {fmt(ch.high)}] | "
                             f"{ch.level:.6g} | {_md(ch.bound)} | {ch.outcome} | {_md(ch.method)} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["LEDGER_SCHEMA", "claim_dict", "describe", "fmt", "ledger_to_json", "ledger_to_markdown",
           "summary_line"]
