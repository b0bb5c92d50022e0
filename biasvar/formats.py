"""Report formats: JSON (round-trips), CSV (full precision), Markdown, and the cells of the table.

The CLI's rich table (``biasvar report --format table``) and the Markdown table show the same
cells (:func:`table_rows`); JSON and CSV keep every number in full precision with the provenance.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from biasvar.errors import AnalysisError
from biasvar.names import REPORT_FORMATS
from biasvar.report import REPORT_SCHEMA, Report, RunResult
from biasvar.stats.compare import GroupResult
from biasvar.stats.contrast import Contrast, verdict
from biasvar.stats.intervals import Estimate

FORMATS: tuple[str, ...] = REPORT_FORMATS


def report_to_dict(report: Report) -> dict[str, Any]:
    return asdict(report)


def report_to_json(report: Report) -> str:
    """JSON text with every number in full precision (``repr`` floats) and the provenance."""
    return json.dumps(report_to_dict(report), indent=1, allow_nan=False)


def _estimate(d: dict | None) -> Estimate | None:
    return None if d is None else Estimate(**d)


def _group(d: dict) -> GroupResult:
    return GroupResult(d["name"], int(d["dim"]), _estimate(d["b2"]), _estimate(d["variance"]),
                       _estimate(d["mse"]))


def report_from_dict(d: dict[str, Any]) -> Report:
    if d.get("schema") != REPORT_SCHEMA:
        raise AnalysisError(f"report schema {d.get('schema')!r} is not supported; expected {REPORT_SCHEMA}")
    rows = []
    for r in d["rows"]:
        r = dict(r)
        for k in ("b2", "variance", "mse"):
            r[k] = _estimate(r[k])
        r["groups"] = tuple(_group(g) for g in r["groups"])
        rows.append(RunResult(**r))
    d = dict(d)
    d["rows"] = tuple(rows)
    d["notes"] = tuple(d.get("notes", ()))
    d["contrasts"] = tuple(_contrast(c) for c in d.get("contrasts", ()))
    return Report(**d)


def _contrast(d: dict) -> Contrast:
    d = dict(d)
    d["b2"], d["variance"] = _estimate(d["b2"]), _estimate(d["variance"])
    return Contrast(**d)


def report_from_json(text: str) -> Report:
    """Read back :func:`report_to_json`; ``report_from_json(report_to_json(r)) == r``."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnalysisError(f"not a biasvar report (JSON): {e}") from e
    return report_from_dict(d)


CSV_COLUMNS = (
    "spec", "family", "seed", "role", "status", "n", "n_blocks", "dim",
    "b2", "b2_low", "b2_high", "b2_se", "variance", "variance_low", "variance_high", "variance_se",
    "mse", "mse_low", "mse_high", "mse_se", "ref_share", "ref_only_width", "cost", "draws_per_s",
    "variance_x_cost", "cosine", "nonfinite", "pareto", "pareto_mark", "snapshot_hash", "reference", "method",
    "n_resamples", "confidence_level", "bootstrap_seed", "path", "biasvar_version", "torch_version",
    "cuda_version", "git_commit", "device", "dtype", "engine",
)


def _num(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return repr(x)
    return str(x)


def report_to_csv(report: Report) -> str:
    """One line per run, every number in full precision (``repr``), with provenance columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report.rows:
        vals: dict[str, Any] = {k: getattr(r, k) for k in ("spec", "family", "seed", "role", "status", "n",
                                                           "n_blocks", "dim", "ref_share", "ref_only_width",
                                                           "cost", "draws_per_s", "variance_x_cost", "cosine",
                                                           "nonfinite", "pareto", "pareto_mark", "snapshot_hash",
                                                           "path")}
        for k in ("b2", "variance", "mse"):
            e = getattr(r, k)
            for part in ("value", "low", "high", "se"):
                vals[k if part == "value" else f"{k}_{part}"] = getattr(e, part) if e is not None else None
        vals.update(reference=report.reference, method=report.method, n_resamples=report.n_resamples,
                    confidence_level=report.confidence_level, bootstrap_seed=report.seed)
        for k in ("biasvar_version", "torch_version", "cuda_version", "git_commit", "device", "dtype", "engine"):
            vals[k] = r.versions.get(k)
        w.writerow([_num(vals.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def fmt(x: float | None, digits: int = 3) -> str:
    """A number in short scientific form for tables (``-`` for None)."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e6:
        out = f"{x:.{digits}g}"
        return f"{x:.0f}" if "e" in out else out  # 7137, not 7.14e+03
    mant, _, exp = f"{x:.{digits - 1}e}".partition("e")
    return f"{mant}e{int(exp)}"  # 1.64e-4, not 1.64e-04


def fmt_estimate(e: Estimate | None) -> str:
    """``value [low, high]`` (``-`` when absent)."""
    if e is None:
        return "-"
    if e.low is None or e.high is None:
        return fmt(e.value)
    for digits in range(3, 7):  # enough digits to tell the interval's ends apart
        v, lo, hi = fmt(e.value, digits), fmt(e.low, digits), fmt(e.high, digits)
        if e.low == e.high or lo != hi:
            break
    return f"{v} [{lo}, {hi}]"


TABLE_COLUMNS = ("spec", "seed", "n", "b2 [95% CI]", "V [95% CI]", "MSE", "cost", "draws/s", "V×cost",
                 "cos", "non-finite", "Pareto")


def table_rows(report: Report) -> list[dict[str, str]]:
    """The cells of the report table (the CLI's rich table and the Markdown table show these)."""
    out = []
    for r in report.rows:
        out.append({
            "spec": r.spec + (" (ref)" if r.role == "reference" else ""),
            "seed": str(r.seed),
            "n": str(r.n),
            "b2 [95% CI]": fmt_estimate(r.b2),
            "V [95% CI]": fmt_estimate(r.variance),
            "MSE": fmt(r.mse.value) if r.mse is not None else "-",
            "cost": fmt(r.cost),
            "draws/s": fmt(r.draws_per_s),
            "V×cost": fmt(r.variance_x_cost),
            "cos": f"{r.cosine:.4f}" if r.cosine is not None else "-",
            "non-finite": str(r.nonfinite),
            "Pareto": r.pareto_mark or ("*" if r.pareto else ""),
        })
    return out


def report_header(report: Report) -> str:
    """One line: snapshot, reference, interval method."""
    ref = report.reference
    if ref != "exact":
        ref = f"{ref} (seed {report.reference_seed})"
    pct = f"{report.confidence_level * 100:g}%"
    how = {"gauss-eb": f"gauss-eb (Gaussian model of Eq. 16 over blocks; V, MSE: pivot, {report.n_resamples} "
                       "resamples)",
           "gauss-fit": f"gauss-fit (gauss-eb, its prior's power fitted to the pair; V, MSE: pivot, "
                        f"{report.n_resamples} resamples)",
           "jackknife-t": "jackknife-t (delete one block per run)"}.get(
        report.method, f"{report.method} bootstrap over blocks, {report.n_resamples} resamples")
    source = f" · from the store {report.store}" if report.store else ""
    return (f"snapshot {report.snapshot_hash[:12]} · dim {report.dim} · reference {ref} · {pct} intervals: "
            f"{how}{source}")


def report_to_markdown(report: Report) -> str:
    """A Markdown table of :func:`table_rows` with a header line and the notes."""
    rows = table_rows(report)
    cols = TABLE_COLUMNS
    lines = [report_header(report), "", "| " + " | ".join(cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in cols) + " |")
    lines.append("")
    lines.append("b2: unbiased squared bias per parameter (Eq. 16, can be negative); "
                 "V: variance per parameter; MSE = b2 + V; cost: forward passes per draw; " + PARETO_NOTE)
    for n in report.notes:
        lines.append(f"- {n}")
    if report.contrasts:
        lines += ["", contrasts_header(report), "", "| " + " | ".join(CONTRAST_COLUMNS) + " |",
                  "|" + "|".join("---" for _ in CONTRAST_COLUMNS) + "|"]
        for row in contrast_rows(report):
            lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in CONTRAST_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


PARETO_NOTE = ("Pareto: * not dominated; ~ near-tie: dominated at the point estimates in (max(b2, 0), V) but "
               "not beyond the intervals; blank: another run is better in both beyond the intervals "
               "(estimators identical by definition, st-zgr(alpha=1) = zgr and st-zgr(alpha=0,t) = st(t), "
               "share one mark).")

CONTRAST_COLUMNS = ("A - B", "b2_A - b2_B [CI]", "b2", "V_A - V_B [CI]", "V", "se ratio")


def contrasts_header(report: Report) -> str:
    pct = f"{report.confidence_level * 100:g}%"
    return (f"Paired contrasts against {report.reference} ({pct} intervals: delete-one-block jackknife-t; the "
            f"shared reference's blocks are left out of both b2 at once). se ratio: the standard error one "
            f"would get treating the two b2 as independent, over the right one.")


def contrast_rows(report: Report) -> list[dict[str, str]]:
    """The cells of the contrast table (Markdown and the CLI's rich table)."""
    out = []
    for c in report.contrasts:
        ratio = (c.b2_se_independent / c.b2.se) if c.b2_se_independent is not None and c.b2.se else None
        out.append({
            "A - B": f"{c.a} - {c.b}",
            "b2_A - b2_B [CI]": fmt_estimate(c.b2),
            "b2": verdict(c.b2),
            "V_A - V_B [CI]": fmt_estimate(c.variance),
            "V": verdict(c.variance),
            "se ratio": fmt(ratio),
        })
    return out


def format_report(report: Report, fmt_name: str) -> str:
    """The report as ``md``, ``json`` or ``csv`` text."""
    if fmt_name == "md":
        return report_to_markdown(report)
    if fmt_name == "json":
        return report_to_json(report) + "\n"
    if fmt_name == "csv":
        return report_to_csv(report)
    raise AnalysisError(f"unknown report format {fmt_name!r}; expected one of: md, json, csv (or table)")


__all__ = ["CONTRAST_COLUMNS", "CSV_COLUMNS", "FORMATS", "PARETO_NOTE", "TABLE_COLUMNS", "contrast_rows",
           "contrasts_header", "fmt", "fmt_estimate", "format_report", "report_from_dict", "report_from_json",
           "report_header", "report_to_csv", "report_to_dict", "report_to_json", "report_to_markdown", "table_rows"]
