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


# ---------------------------------------------------------------------------------------------
# issue 22, item 6: the verdicts about the full-scale run are the claims ledger's; quotes are the paper's

import json  # noqa: E402

CLAIMS = ROOT / "results" / "fig1-full-gpu" / "claims.json"
PAPER = ROOT.parent / "shared" / "paper" / "zgr-cold-analysis.txt"
TRIPLE = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?(?:e-?\d+)?) \[(-?\d+(?:\.\d+)?(?:e-?\d+)?), "
                    r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)\]")
VERDICTS = ("supported", "contradicted", "undecided", "not measured")
# quoted words that are ours, not the paper's: schematic claims, a table name, and estimator specs / commands
NOT_QUOTES = {"A equals / beats B", "A differs from B", "A equals B", "A beats B", "Paired contrasts"}


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start:text.index("\n## ", start + 1)]


@pytest.fixture(scope="module")
def ledger() -> dict:
    return {c["id"]: c for c in json.loads(CLAIMS.read_text())["claims"]}


def _triples(ledger: dict, report: R.Report) -> list[tuple[float, float, float]]:
    out = [(c_["value"], c_["low"], c_["high"]) for c in ledger.values() for c_ in c["checks"]]
    out += [(e.value, e.low, e.high) for r in report.rows for e in (r.b2, r.variance) if e is not None]
    return out


def test_gpu_ledger_table_is_the_ledgers(ledger):
    """Every claim of the ledger has one row, with the ledger's verdict, place and words; the
    numbers of its 'decided by' cell are the ledger's checks."""
    section = _section("## `fig1-full-gpu/`")
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    assert [r[0].strip("`") for r in rows] == list(ledger)
    checks = [(k["value"], k["low"], k["high"]) for c in ledger.values() for k in c["checks"]]
    for cid, where, words, verdict, decided in rows:
        c = ledger[cid.strip("`")]
        assert verdict == f"**{c['verdict']}**", cid
        assert where == c["claim"]["where"] and words == f'"{c["claim"]["words"]}"', cid
        for m in TRIPLE.finditer(decided):
            assert any(all(_same(x, v) for x, v in zip(m.groups(), k, strict=True)) for k in checks), (cid, m[0])
    counts = json.loads(CLAIMS.read_text())["counts"]
    line = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    assert f"**{len(ledger)} claims: {line}**" in section


def test_gpu_section_names_the_ledgers_verdicts_and_numbers(ledger):
    """Where the prose names a claim, the verdict next to it is the ledger's; every estimate with an
    interval is one of the report's or the ledger's; the quoted V/b2 minima are the ledger's."""
    rep = F.report_from_json(GPU_REPORT.read_text())
    section = _section("## `fig1-full-gpu/`")
    prose = "\n".join(line for line in section.splitlines() if not line.startswith("|"))
    named = re.findall(r"`([a-z0-9-]+)`[:,]? \*?(supported|contradicted|undecided|not measured)", prose)
    assert len(named) >= 4
    for cid, verdict in named:
        assert ledger[cid]["verdict"] == verdict, cid
    for cid in ("variance-orders-above-bias-gsst", "variance-orders-above-bias-grmc10",
                "variance-orders-above-bias-grmc100", "mse-is-variance-gs"):
        assert ledger[cid]["verdict"] == "contradicted"
    assert ledger["variance-orders-above-bias-zgr"]["verdict"] == "supported"
    known = _triples(ledger, rep)
    found = TRIPLE.findall(prose)
    assert len(found) >= 20
    for t in found:
        assert any(all(_same(x, v) for x, v in zip(t, k, strict=True)) for k in known), t
    # "the lowest lower end of V/b2 at t <= 0.141": the ledger's exact minima (not rounded up)
    for cid, text in (("variance-orders-above-bias-gsst", "1126.51"), ("variance-orders-above-bias-grmc10", "315.865"),
                      ("variance-orders-above-bias-grmc100", "245.795")):
        lows = [k["low"] for k in ledger[cid]["checks"] if float(re.search(r"t=([\d.]+)", k["label"])[1]) <= 0.141]
        assert _same(text, min(lows)) and text in prose, cid
    # the two full-scale results that contradict the reduced run are stated
    rows = {r.spec: r for r in rep.rows}
    zgr, gs, grmc = rows["zgr"], rows["gs(t=0.01)"], rows["gr-mc(M=100,t=0.141)"]
    assert gs.b2.high < zgr.b2.low and "GS at t = 0.01 is less biased than ZGR" in prose
    assert grmc.b2.high < zgr.b2.low and grmc.variance.high < zgr.variance.low and "ZGR is dominated" in prose


def test_fig4_extended_numbers_are_its_reports():
    """Every number of the fig4-extended section is an estimate or interval end of its report.json,
    or printed verbatim in its report.md (the paired contrasts are only there)."""
    base = ROOT / "results" / "fig4-extended-cpu"
    rep = F.report_from_json((base / "report.json").read_text())
    md = set(NUM.findall((base / "report.md").read_text()))
    known = [x for r in rep.rows for e in (r.b2, r.variance) if e is not None for x in (e.value, e.low, e.high)
             if x is not None]
    section = _section("## `fig4-extended-cpu/`")
    quoted = SCI.findall(section) + [x for t in TRIPLE.findall(section) for x in t]
    assert len(quoted) >= 30
    missing = [q for q in quoted if q not in md and not any(_same(q, k) for k in known)]
    assert not missing, missing
    # ReinMax's variance falls from t = 1.1 to t = 2 (disjoint), so "both grow with t" is not said
    rows = {r.spec: r for r in rep.rows}
    assert rows["reinmax(t=2)"].variance.high < rows["reinmax(t=1.1)"].variance.low
    assert "variance both grow" not in section and "unbiased as measured" not in section


def test_quotes_are_the_papers():
    """Every quoted phrase of results/README.md is the paper's, verbatim ('...' joins two pieces),
    except our schematic claims and quoted estimator specs / commands."""
    if not PAPER.exists():
        pytest.skip(f"the paper's text is not at {PAPER}")
    norm = lambda s: re.sub(r"\s+", " ", s)  # noqa: E731
    paper = norm(PAPER.read_text())
    quotes = re.findall(r'"([^"]{3,}?)"', norm(README.read_text()))
    checked = 0
    for q in quotes:
        if q in NOT_QUOTES or " " not in q:  # a spec list or a command argument
            continue
        assert all(p.strip() in paper for p in q.split("...") if p.strip()), q
        checked += 1
    assert checked >= 30
    assert "does not state the temperature" not in README.read_text()


# issue 22, items 3-4: each CPU claims run's README (results/claims-cpu*/) says no more than its JSON
CPU_RUNS = sorted(p for p in (ROOT / "results").glob("claims-cpu*") if (p / "README.md").is_file())


def _cpu_tables():
    import importlib.util

    spec = importlib.util.spec_from_file_location("claims_cpu_tables", ROOT / "scripts" / "claims_cpu_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _floats(x) -> list[float]:
    """Every number of a JSON document: its floats, and the numbers written inside its strings (a check's
    bound, e.g. "within +-5.77e-06 (TOST)")."""
    if isinstance(x, float):
        return [x]
    if isinstance(x, str):
        return [float(v) for v in SCI.findall(x)]
    if isinstance(x, dict):
        return [f for v in x.values() for f in _floats(v)]
    if isinstance(x, list):
        return [f for v in x for f in _floats(v)]
    return []


def test_the_cpu_claims_runs_are_found():
    assert ROOT / "results" / "claims-cpu" in CPU_RUNS


@pytest.mark.parametrize("CPU", CPU_RUNS, ids=[p.name for p in CPU_RUNS])
def test_cpu_claims_readme_tables_are_the_ledgers_and_the_reports(CPU):
    T = _cpu_tables()
    text = (CPU / "README.md").read_text()
    report = json.loads((CPU / "report.json").read_text())
    ledger = json.loads((CPU / "subset-ledger" / "claims.json").read_text())
    assert T.runs_table(report, T.ORDER)[0] in text
    assert T.count_line(ledger) in text
    assert T.claims_table(ledger) in text
    # the paper's ledger on the same store gives the counts the README says it does
    paper = json.loads((CPU / "paper-ledger" / "claims.json").read_text())
    if "The paper's ledger on the same runs gives the same counts" in text:
        assert paper["counts"] == ledger["counts"]


@pytest.mark.parametrize("CPU", CPU_RUNS, ids=[p.name for p in CPU_RUNS])
def test_every_number_of_the_cpu_claims_readme_is_in_its_json(CPU):
    """Each number in scientific notation in the README is an estimate or interval end of the ledger or
    the report (to the digits shown), or of a ledger its comparison names: nothing quoted from elsewhere."""
    text = (CPU / "README.md").read_text()
    values = _floats(json.loads((CPU / "subset-ledger" / "claims.json").read_text()))
    values += _floats(json.loads((CPU / "report.json").read_text()))
    for cmp in CPU.glob("*/comparison.json"):  # a repeat may quote the ledgers it is compared with
        for ledger in json.loads(cmp.read_text())["ledgers"]:
            values += _floats(json.loads((ROOT / ledger).read_text()))
    values += [-v for v in values]
    for num in set(SCI.findall(text)):
        assert any(_same(num, v) for v in values), num
