"""The numbers quoted in ``results/README.md`` are those of the committed ``results/reduced-cpu/report.json``.

The table rows are parsed and compared value by value (to the printed precision), with the
Pareto marks recomputed from the intervals; every other number in scientific notation in the
section on the paper's statements must be one of the report's b2 / V estimates or interval ends.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from biasvar import formats as F
from biasvar import report as R

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "results" / "README.md"
REPORT = ROOT / "results" / "reduced-cpu" / "report.json"
NUM = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
SCI = re.compile(r"(?<![\w.])-?\d\.\d+e-?\d+")


def _same(text: str, value: float | None) -> bool:
    """``text`` is ``value`` rounded to the significant digits ``text`` shows."""
    if value is None:
        return False
    mant = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0") or "0"
    digits = max(len(mant), 1)
    return float(text) == float(f"{value:.{digits}g}")


def _estimate(cell: str) -> tuple[str, str, str]:
    m = re.fullmatch(r"\s*(\S+) \[(\S+), (\S+)\]\s*", cell)
    assert m, cell
    return m.group(1), m.group(2), m.group(3)


@pytest.fixture(scope="module")
def report() -> R.Report:
    return R.remark_pareto(F.report_from_json(REPORT.read_text()))


@pytest.fixture(scope="module")
def section() -> str:
    text = README.read_text()
    return text[text.index("### The table (from `reduced-cpu/report.json`)"):text.index("**Which ST-ZGR.**")]


def _table(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| estimator")]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]


def test_table_rows_match_the_report(report, section):
    rows = _table(section)
    assert len(rows) >= 25
    for spec_cell, n, b2, v, mark in rows:
        spec, _, which = spec_cell.partition(", ")
        if which == "reference":
            row = next(r for r in report.rows if r.role == "reference")
        else:
            seed = int(which.removeprefix("seed ")) if which else None
            row = next(r for r in report.rows if r.role == "test" and r.spec == spec
                       and (seed is None or r.seed == seed))
        assert int(n) == row.n, spec_cell
        if row.b2 is None:
            assert b2 == "—"
        else:
            for text, num in zip(_estimate(b2), (row.b2.value, row.b2.low, row.b2.high), strict=True):
                assert _same(text, num), (spec_cell, "b2", text, num)
        for text, num in zip(_estimate(v), (row.variance.value, row.variance.low, row.variance.high), strict=True):
            assert _same(text, num), (spec_cell, "V", text, num)
        assert mark == row.pareto_mark, (spec_cell, mark, row.pareto_mark)


def test_every_quoted_estimate_is_in_the_report(report, section):
    known = []
    for r in report.rows:
        for e in (r.b2, r.variance):
            if e is not None:
                known += [x for x in (e.value, e.low, e.high) if x is not None]
    quoted = SCI.findall(section.split("### Against the paper's statements")[1])
    assert len(quoted) > 40
    missing = [q for q in quoted if not any(_same(q, k) for k in known)]
    assert not missing, missing


def test_the_number_check_would_catch_a_wrong_number():
    assert _same("2.49e-6", 2.4912e-6) and not _same("2.49e-6", 2.4812e-6)
    assert _same("0.0457", 0.04567) and not _same("-3.47e-7", 3.47e-7)


GPU_REPORT = ROOT / "results" / "fig1-full-gpu" / "report.json"


def test_every_number_of_the_gpu_section_is_in_the_gpu_report():
    """The section on ``fig1-full-gpu/`` quotes only b2 / V estimates and interval ends of its
    report (derived ratios are written as plain decimals), and claims no contrast it cannot have."""
    rep = F.report_from_json(GPU_REPORT.read_text())
    text = README.read_text()
    start = text.index("## `fig1-full-gpu/`")
    section = text[start:text.index("\n## ", start + 1)]
    known = [x for r in rep.rows for e in (r.b2, r.variance) if e is not None
             for x in (e.value, e.low, e.high) if x is not None]
    variances = section.split("(V = ")[1].split(")")[0]  # GS's V at low t, written as decimals
    quoted = SCI.findall(section) + re.findall(r"(?<![\w.])0\.0\d+", variances)
    assert len(quoted) >= 25
    missing = [q for q in quoted if not any(_same(q, k) for k in known)]
    assert not missing, missing
    # the intervals the section's single-interval statements rest on
    rows = {r.spec: r for r in rep.rows}
    assert rows["zgr"].b2.low > 0 and rows["st"].b2.low > 0
    assert rows["gs(t=0.01)"].b2.low < 0 < rows["gs(t=0.01)"].b2.high
    for r in rep.rows:
        if r.family in ("gs-st", "gr-mc"):
            assert r.b2.low > 0, r.spec
    assert "no paired contrast" in section
