"""Compare two report JSON files run by run (e.g. the same protocol on two devices).

    python scripts/compare_reports.py A.json B.json [--out FILE.md]

For every spec present in both, with the same number of draws: V and b2 of each and their
relative difference (|A/B - 1|). Runs with different n are listed apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    ra = {r["spec"]: r for r in json.loads(Path(args.a).read_text())["rows"]}
    rb = {r["spec"]: r for r in json.loads(Path(args.b).read_text())["rows"]}

    def rel(x: float | None, y: float | None) -> str:
        return "-" if x is None or y is None or y == 0 else f"{abs(x / y - 1):.1e}"

    lines = [f"Runs of `{args.a}` (A) against `{args.b}` (B), same spec and n:", "",
             "| spec | n | V (A) | V (B) | rel. diff | b2 (A) | b2 (B) | rel. diff |",
             "|---|---|---|---|---|---|---|---|"]
    other = []
    for spec, a in ra.items():
        b = rb.get(spec)
        if b is None:
            continue
        if a["n"] != b["n"]:
            other.append(f"{spec} (n {a['n']} vs {b['n']})")
            continue
        va, vb = a["variance"]["value"], b["variance"]["value"]
        ba = a["b2"]["value"] if a.get("b2") else None
        bb = b["b2"]["value"] if b.get("b2") else None
        lines.append(f"| {spec} | {a['n']} | {va:.6g} | {vb:.6g} | {rel(va, vb)} | "
                     f"{'-' if ba is None else f'{ba:.6g}'} | {'-' if bb is None else f'{bb:.6g}'} | {rel(ba, bb)} |")
    if other:
        lines += ["", "Different n (left out): " + ", ".join(other) + "."]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
