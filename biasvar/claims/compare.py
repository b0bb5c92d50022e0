"""Comparing ledgers: the same claims decided on two (or more) independent sets of runs (another training
seed, another noise seed, another machine), claim by claim, and whether the verdicts agree.

A claim's verdicts are put in one of these classes:

* ``agree`` — every ledger gives the same verdict, and it is supported or contradicted;
* ``disagree`` — one ledger supports the claim and another contradicts it: the repeat does not reproduce;
* ``undecided in some`` — one ledger decides it and another cannot (its interval is too wide): no conflict,
  but the verdict rests on one set of runs;
* ``undecided in all`` — no ledger decides it;
* ``not measured in some`` — a ledger lacks a run the claim needs, or lacks the claim (it is judged on the
  others only);
* ``not measured in all`` — no ledger has the runs it needs.

The inputs are ``claims.json`` files as ``biasvar claims --out`` writes them (:mod:`biasvar.claims.write`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biasvar.claims.model import CONTRADICTED, NOT_MEASURED, SUPPORTED, UNDECIDED, ClaimsError

AGREE, DISAGREE = "agree", "disagree"
UNDECIDED_SOME, UNDECIDED_ALL = "undecided in some", "undecided in all"
NOT_MEASURED_SOME, NOT_MEASURED_ALL = "not measured in some", "not measured in all"
CLASSES = (AGREE, DISAGREE, UNDECIDED_SOME, UNDECIDED_ALL, NOT_MEASURED_SOME, NOT_MEASURED_ALL)


@dataclass(frozen=True)
class Compared:
    """One claim across the ledgers: its verdict in each (``None`` where a ledger has no such claim)."""

    claim_id: str
    verdicts: tuple[str | None, ...]
    reasons: tuple[str, ...]

    @property
    def status(self) -> str:
        present = [v for v in self.verdicts if v is not None]
        decided = {v for v in present if v in (SUPPORTED, CONTRADICTED)}
        if len(decided) > 1:
            return DISAGREE
        if all(v == NOT_MEASURED for v in present):
            return NOT_MEASURED_ALL
        if len(present) < len(self.verdicts) or NOT_MEASURED in present:
            return NOT_MEASURED_SOME
        if not decided:
            return UNDECIDED_ALL
        return AGREE if UNDECIDED not in present else UNDECIDED_SOME


def read_ledger(path: str | Path) -> dict[str, Any]:
    """A ``claims.json`` as a dict; one :class:`ClaimsError` line for a missing or malformed file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ClaimsError(f"cannot read ledger {p}: {e.strerror or e}") from None
    except ValueError as e:
        raise ClaimsError(f"{p} is not a claims.json ledger: not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ClaimsError(f"{p} is not a claims.json ledger (`biasvar claims --out DIR` writes one): no claims list")
    for c in data["claims"]:
        if not isinstance(c, dict) or "id" not in c or "verdict" not in c:
            raise ClaimsError(f"{p}: a claim without an id or a verdict")
    return data


def compare_ledgers(ledgers: Sequence[dict[str, Any]]) -> list[Compared]:
    """Every claim id of any ledger (in the first ledger's order, then the others'), with its verdicts."""
    if len(ledgers) < 2:
        raise ClaimsError("comparing ledgers needs at least two")
    by_id = [{c["id"]: c for c in L["claims"]} for L in ledgers]
    ids: list[str] = []
    for L in ledgers:
        ids += [c["id"] for c in L["claims"] if c["id"] not in ids]
    out = []
    for cid in ids:
        found = [m.get(cid) for m in by_id]
        out.append(Compared(cid, tuple(c["verdict"] if c else None for c in found),
                            tuple(str(c.get("reason", "")) if c else "" for c in found)))
    return out


def counts(rows: Sequence[Compared]) -> dict[str, int]:
    """How many claims fall in each class (every class named, zeros included)."""
    return {k: sum(r.status == k for r in rows) for k in CLASSES}


def summary_line(rows: Sequence[Compared]) -> str:
    c = counts(rows)
    return f"{len(rows)} claims: " + ", ".join(f"{v} {k}" for k, v in c.items())


def comparison_markdown(rows: Sequence[Compared], labels: Sequence[str], reasons: bool = True) -> str:
    """A table, one row per claim: the verdict in each ledger and the class; then the disagreements with
    the numbers each ledger decided them by."""
    head = "| claim | " + " | ".join(labels) + " | comparison |\n|---|" + "---|" * len(labels) + "---|\n"
    body = "".join(f"| {r.claim_id} | " + " | ".join(v or "absent" for v in r.verdicts) + f" | {r.status} |\n"
                   for r in rows)
    text = f"{summary_line(rows)}\n\n{head}{body}"
    if reasons:
        worth = [r for r in rows if r.status in (DISAGREE, UNDECIDED_SOME)]
        if worth:
            text += "\nWhere the verdicts differ, the numbers that decided each:\n\n"
            for r in worth:
                text += f"- **{r.claim_id}** ({r.status})\n"
                text += "".join(f"  - {lab}: {v}: {why}\n"
                                for lab, v, why in zip(labels, r.verdicts, r.reasons, strict=True))
    return text
