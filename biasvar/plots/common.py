"""What every figure shares: the palette and styles, the result type, writing PNG/PDF, the symlog
axis with its linear zone from the data, and small layout helpers.

Part of :mod:`biasvar.plots`, the only package of biasvar that imports matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, LogLocator, NullFormatter

from biasvar.atomic import atomic_path
from biasvar.errors import AnalysisError
from biasvar.report import Report, RunResult

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour deficiency.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
}

FORMATS = ("png", "pdf")
_RC = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
       "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.3, "lines.markersize": 4}


@dataclass(frozen=True)
class PlotResult:
    """What a plot function wrote and drew."""

    paths: tuple[str, ...]  # written files (one per format)
    drawn: tuple[str, ...]  # series drawn (family labels)
    missing: tuple[str, ...]  # series asked for but absent from the report
    figure: Figure | None = field(default=None, compare=False, repr=False)  # what was drawn (for inspection)


@dataclass(frozen=True)
class _Style:
    label: str
    color: str
    marker: str
    linestyle: str = "-"


# GR-MC by M: the same marker, colour and line in every figure (Fig. 1 and Fig. 4).
_GRMC = {10: ("^", OKABE_ITO["green"], "-."), 100: ("v", OKABE_ITO["blue"], ":")}
_GRMC_OTHER = (("<", OKABE_ITO["green"], "--"), (">", OKABE_ITO["blue"], "--"))


def _grmc_style(M: Any, i: int = 0) -> _Style:
    """GR-MC(t, M)'s style: fixed for M = 10 and M = 100, else the ``i``-th spare one."""
    mk, col, ls = _GRMC.get(M, _GRMC_OTHER[i % len(_GRMC_OTHER)])
    return _Style(f"GR-MC(t, M={M})", col, mk, ls)


def _save(fig: Figure, out: str | Path, formats: Sequence[str]) -> tuple[str, ...]:
    """Write ``out`` (its suffix replaced) in every format; returns the paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("") if out.suffix.lower().lstrip(".") in FORMATS else out
    paths = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise AnalysisError(f"unknown figure format {fmt!r}; expected one of: {', '.join(FORMATS)}")
        path = stem.with_name(stem.name + "." + fmt)
        with atomic_path(path, suffix="." + fmt) as tmp:  # a full disk: one line, the old figure kept
            fig.savefig(tmp, format=fmt, dpi=200 if fmt == "png" else None, bbox_inches="tight",
                        metadata={"Creator": "biasvar"})
        paths.append(str(path))
    return tuple(paths)


def _new_figure(width: float, height: float) -> Figure:
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _one_per_spec(rows: Sequence[RunResult]) -> dict[str, RunResult]:
    """The lowest-seed tested row of each spec (the reference run only if no tested row)."""
    out: dict[str, RunResult] = {}
    for r in sorted(rows, key=lambda r: (r.role == "reference", r.seed)):
        out.setdefault(r.spec, r)
    return out


def _value(row: RunResult, what: str) -> tuple[float, float, float] | None:
    est = row.b2 if what == "b2" else row.variance
    if est is None:
        return None
    lo = est.low if est.low is not None else est.value
    hi = est.high if est.high is not None else est.value
    return est.value, lo, hi


def _nice(x: float, up: bool) -> float:
    """``x`` rounded to the 1-2-5 sequence (up or down)."""
    e = math.floor(math.log10(x))
    steps = [1, 2, 5, 10]
    m = x / 10**e
    pick = min(s for s in steps if s >= m - 1e-9) if up else max(s for s in steps if s <= m + 1e-9)
    return float(pick * 10**e)


def _linthresh(values: Sequence[float], intervals: Sequence[tuple[float, float]] = ()) -> float:
    """The symlog linear zone, from the data: the noise level of the estimates.

    The smallest extent ``max(|low|, |high|)`` of an interval that holds 0 (an estimate not told
    apart from 0), rounded down to 1-2-5: estimates within their noise of 0 lie in (or at the edge
    of) the linear zone instead of being spread over decades below zero. Without such intervals:
    the smallest negative |value| (rounded down), else one decade below the smallest non-zero |value|.
    """
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(vals) or np.abs(vals).max() == 0:
        return 1e-6
    top = float(np.abs(vals).max())
    unresolved = [max(abs(lo), abs(hi)) for lo, hi in intervals
                  if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi) and lo <= 0 <= hi
                  and max(abs(lo), abs(hi)) > 0]
    if unresolved:
        return max(_nice(min(unresolved), up=False), top * 1e-12)
    neg = np.abs(vals[vals < 0])
    if len(neg):
        return max(_nice(float(neg.min()), up=False), top * 1e-12)
    pos = np.abs(vals[np.abs(vals) > top * 1e-12])
    return float(10 ** math.floor(math.log10(pos.min()))) if len(pos) else top * 1e-6


def _symlog(ax: Any, values: Sequence[float], intervals: Sequence[tuple[float, float]] = ()) -> None:
    """Symlog y with a linear zone from the data (:func:`_linthresh`); log when every value is positive.

    The y limits are the data's, padded by 4% of the axis in display space: matplotlib's symlog
    autoscaling rounds out to whole decades and can leave a large part of the panel empty.
    """
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if vals and min(vals) > 0:
        ax.set_yscale("log")
        return
    ax.set_yscale("symlog", linthresh=_linthresh(vals, intervals), linscale=1.0)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    if vals:
        tr = ax.yaxis.get_transform()
        lo, hi = (float(x) for x in tr.transform(np.array([[min(vals)], [max(vals)]])).ravel())
        pad = 0.04 * (hi - lo) if hi > lo else 0.5
        y0, y1 = (float(x) for x in tr.inverted().transform(np.array([[lo - pad], [hi + pad]])).ravel())
        ax.set_ylim(y0, y1)
        ax.yaxis.set_major_locator(FixedLocator(_symlog_ticks(tr.linthresh, y0, y1)))


def _symlog_ticks(linthresh: float, y0: float, y1: float, most: int = 7) -> list[float]:
    """0 and the powers of 10 at or beyond the linear zone, within ``[y0, y1]``: no tick inside the
    zone but 0, so no two labels are closer than the zone's half-height (one decade with
    ``linscale=1``); at most ``most`` per side (every 2nd, 3rd, ... decade beyond)."""
    out = [0.0] if y0 <= 0 <= y1 else []
    for sign, edge in ((1, y1), (-1, -y0)):
        if edge < linthresh:
            continue
        k0, k1 = math.ceil(math.log10(linthresh) - 1e-9), math.floor(math.log10(edge) + 1e-9)
        step = max(1, math.ceil((k1 - k0 + 1) / most))
        out += [sign * 10.0**k for k in range(k0, k1 + 1, step)]
    return sorted(out)


def _caption(report: Report) -> str:
    ref = "exact gradient" if report.reference == "exact" else report.reference
    return (f"snapshot {report.snapshot_hash[:12]} · reference {ref} · "
            f"{report.confidence_level:.0%} bootstrap intervals ({report.method}, {report.n_resamples})")


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))



def _log_ticks_125(axis: Any) -> None:
    """Label a small log axis (an inset) at 1, 2 and 5 x 10^k, every one of them (matplotlib's
    default formatter leaves some blank on short axes), and no minor labels (3 and 4 x 10^k crowd)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf)))
    axis.set_minor_formatter(NullFormatter())
