"""The tables of a ``results/claims-*/README.md``, written from the folder's JSON only (so the README says
no more than the JSON next to it; ``tests/test_results_readme.py`` checks the tables against it).

    python scripts/claims_cpu_tables.py results/claims-cpu [--ledger subset-ledger] [--order SPEC,SPEC,...] [--fill]

Prints to stdout the runs table (from ``report.json``), the ledger's count line and the table of every
measured claim (id, verdict, the ledger's own reason). ``--fill`` writes them into the folder's README.md
instead, in place of its tables (each runs to the next blank line) and its first count line; the prose
around them is left for you to update.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ORDER = ["rf(M=4)", "zgr", "gs-st(t=0.01)", "gs(t=0.01)", "st", "st(t=2)", "gs-st(t=1)", "gr-mc(M=100,t=0.01)",
         "gr-mc(M=10,t=0.01)", "gr-mc(M=100,t=0.0194)", "gs-st(t=0.141)", "gr-mc(M=10,t=0.141)",
         "gr-mc(M=100,t=0.141)", "gs(t=0.141)", "gr-mc(M=10,t=1)", "gr-mc(M=100,t=1)", "gs(t=1)",
         "st-zgr(alpha=0.5,t=1)", "st-zgr(alpha=0.5,t=2)", "st(t=1.5)"]
VERDICT_ORDER = {"supported": 0, "contradicted": 1, "undecided": 2, "not measured": 3}


def runs_table(report: dict, order: list[str]) -> tuple[str, float]:
    """One row per run (reference first), and the total sampling seconds (n / draws per second)."""
    rows = {r["spec"]: r for r in report["rows"]}
    lines = ["| run | n | draws/s (loaded machine) | sampling s | commit recorded |", "|---|---|---|---|---|"]
    total = 0.0
    for spec in [s for s in order if s in rows] + sorted(set(rows) - set(order)):
        r = rows[spec]
        sec = r["n"] / r["draws_per_s"]
        total += sec
        c = r["versions"]["git_commit"]
        c = c[:7] + ("+dirty" if "dirty" in c else "")
        name = f"`{spec}`" + (" (reference)" if r["role"] == "reference" else "")
        lines.append(f"| {name} | {r['n']} | {r['draws_per_s']:.2f} | {sec:.0f} | `{c}` |")
    return "\n".join(lines), total


def count_line(ledger: dict) -> str:
    c = ledger["counts"]
    return (f"{len(ledger['claims'])} claims: **{c['supported']} supported, {c['contradicted']} contradicted, "
            f"{c['undecided']} undecided, {c['not measured']} not measured**")


def claims_table(ledger: dict) -> str:
    """Every measured claim, supported first, with the ledger's reason verbatim."""
    measured = [c for c in ledger["claims"] if c["verdict"] != "not measured"]
    measured.sort(key=lambda c: VERDICT_ORDER[c["verdict"]])
    lines = ["| claim | verdict | decided by (the ledger's words) |", "|---|---|---|"]
    lines += [f"| {c['id']} | {c['verdict']} | {c['reason']} |" for c in measured]
    return "\n".join(lines)


def _swap(text: str, start: str, new: str) -> str:
    """``text`` with the block from ``start`` to the next blank line replaced by ``new``."""
    a = text.index(start)
    b = text.find("\n\n", a)
    return text[:a] + new + text[len(text) if b < 0 else b:]


def fill(folder: Path, report: dict, ledger: dict, order: list[str]) -> float:
    """Write the tables and the count line into ``folder/README.md``; returns the total sampling seconds."""
    readme = folder / "README.md"
    table, total = runs_table(report, order)
    text = _swap(readme.read_text(), "| run | n |", table)
    text = _swap(text, "| claim | verdict", claims_table(ledger))
    text = re.sub(r"\d+ claims: \*\*[^*]+\*\*", lambda m: count_line(ledger), text, count=1)
    readme.write_text(text)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--ledger", default="subset-ledger")
    ap.add_argument("--order", default=None, help="comma-separated specs (default: the claims-cpu.sh order)")
    ap.add_argument("--fill", action="store_true", help="write the tables into the folder's README.md")
    a = ap.parse_args()
    if a.order is None:
        order = ORDER
    else:
        from biasvar.presets import split_specs  # the commas inside a spec's parentheses stay

        order = split_specs(a.order)
    report = json.loads((a.folder / "report.json").read_text())
    ledger = json.loads((a.folder / a.ledger / "claims.json").read_text())
    if a.fill:
        total = fill(a.folder, report, ledger, order)
        print(f"filled {a.folder / 'README.md'}; total sampling {total:,.0f} s of one thread")
        return
    table, total = runs_table(report, order)
    print(table)
    print(f"\ntotal sampling: {total:,.0f} s of one thread, {len(report['rows'])} runs\n")
    print(count_line(ledger))
    print(f"\n{ledger['family']}\n")
    print(claims_table(ledger))


if __name__ == "__main__":
    main()
