"""Pareto marks that use the intervals, and the order of rows (see :mod:`biasvar.report`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from biasvar.report.types import Report, RunResult
from biasvar.spec import FAMILIES, parse_spec
from biasvar.stats.intervals import Estimate

_GROUPING = {"gr-mc": ("M", "t"), "st-zgr": ("t", "alpha")}


def sort_key(spec: str, seed: int = 0) -> tuple:
    """Family (in the order of ``spec.FAMILIES``, plug-ins after them by name), then hyper-parameters
    (curve first), then seed. A plug-in's module is not imported."""
    s = parse_spec(spec)
    order = list(FAMILIES)
    if s.plugin:
        return (len(order), s.name, tuple(float(v) for _, v in s.params), seed)
    keys = _GROUPING.get(s.name, tuple(p.key for p in s.family.params))
    return (order.index(s.name), "", tuple(float(s.get(k, 0.0)) for k in keys), seed)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which points are not dominated in (b2, V): no other point is <= in both and < in one.

    >>> pareto_front([(1, 1), (0, 2), (2, 2), (1, 1)])
    [True, True, False, True]
    """
    out = []
    for i, (b, v) in enumerate(points):
        dominated = any(
            (b2 <= b and v2 <= v and (b2 < b or v2 < v)) for j, (b2, v2) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out


def identity(spec: str) -> str:
    """The estimator a spec is by definition: ``st-zgr(alpha=1,...)`` is ``zgr`` and
    ``st-zgr(alpha=0,t)`` is ``st(t)`` (likewise ``st-zgr-author``); others are themselves.

    >>> identity("st-zgr(alpha=0,t=2)"), identity("st-zgr(alpha=1,t=2)"), identity("gs(t=2)")
    ('st(t=2)', 'zgr', 'gs(t=2)')
    """
    s = parse_spec(spec)
    if s.name in ("st-zgr", "st-zgr-author"):
        alpha = float(s["alpha"])
        if alpha == 1.0:
            return "zgr"
        if alpha == 0.0:
            return str(parse_spec(f"st(t={float(s['t'])!r})"))
    return str(s)


def beats_by_intervals(a: RunResult, b: RunResult) -> bool:
    """Both of ``a``'s marginal intervals lie below ``b``'s (b2 and V): ``a`` better beyond them."""
    def below(x: Estimate, y: Estimate) -> bool:
        if x.high is None or y.low is None:
            return x.value < y.value
        return x.high < y.low
    return below(a.b2, b.b2) and below(a.variance, b.variance)


_RANK = {"*": 2, "~": 1, "": 0}


def mark_pareto(rows: Sequence[RunResult],
                beats: Callable[[RunResult, RunResult], bool] | None = None) -> list[RunResult]:
    """Pareto marks of the tested rows (module docstring): ``*`` front, ``~`` near-tie, ``""`` dominated.

    Args:
        rows: report rows (rows without b2, the reference, get no mark).
        beats: ``beats(a, b)``: ``a`` is better than ``b`` in both b2 and V beyond the intervals;
            default: both marginal intervals of ``a`` lie below ``b``'s.
    """
    beats = beats or beats_by_intervals
    idx = [i for i, r in enumerate(rows) if r.b2 is not None]
    ident = {i: identity(rows[i].spec) for i in idx}
    mark: dict[int, str] = {}
    for i in idx:
        bi, vi = max(rows[i].b2.value, 0.0), rows[i].variance.value
        point, resolved = False, False
        for j in idx:
            if ident[j] == ident[i]:
                continue
            bj, vj = max(rows[j].b2.value, 0.0), rows[j].variance.value
            if bj <= bi and vj <= vi and (bj < bi or vj < vi):
                point = True
                if beats(rows[j], rows[i]):
                    resolved = True
                    break
        mark[i] = "" if resolved else "~" if point else "*"
    best: dict[str, str] = {}
    for i in idx:
        if _RANK[mark[i]] > _RANK[best.get(ident[i], "")] or ident[i] not in best:
            best[ident[i]] = mark[i]
    out = list(rows)
    for i in idx:
        m = best[ident[i]]
        out[i] = replace(rows[i], pareto=m in ("*", "~"), pareto_mark=m)
    return out


def remark_pareto(report: Report) -> Report:
    """The report with Pareto marks recomputed from its rows' marginal intervals (reports read back
    from JSON written before interval-aware marks: their ``pareto`` came from point estimates)."""
    return replace(report, rows=tuple(mark_pareto(report.rows)))


# ---------------------------------------------------------------------------------------------
# rows
