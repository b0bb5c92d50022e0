"""A report saved as JSON (``biasvar report --format json --out FILE``), read back for plotting.

Reports written before the Pareto marks took the intervals into account get their marks recomputed
(:func:`biasvar.report.remark_pareto`), so a figure of an old file marks what a new report would.
"""

from __future__ import annotations

from pathlib import Path

from biasvar.errors import AnalysisError


def read_report(path: str | Path):
    """The :class:`~biasvar.report.Report` saved in ``path`` (JSON), with interval-aware Pareto marks.

    Raises:
        AnalysisError: the file cannot be read, or is not a biasvar report.
    """
    from biasvar import formats
    from biasvar.report import remark_pareto

    try:
        text = Path(path).read_text()
    except OSError as e:
        raise AnalysisError(f"cannot read report {path}: {e.strerror}") from None
    rep = formats.report_from_json(text)
    if not any(r.pareto_mark for r in rep.rows):  # written before interval-aware marks
        rep = remark_pareto(rep)
    return rep
