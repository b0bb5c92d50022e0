"""Fig. 1: squared bias and variance against temperature (log t, symlog / log y), with the
temperatures that would overprint on the log axis repeated in an inset on a linear t axis."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from biasvar.errors import AnalysisError
from biasvar.plots.common import (
    _RC,
    FORMATS,
    OKABE_ITO,
    PlotResult,
    _caption,
    _grmc_style,
    _log_ticks_125,
    _new_figure,
    _one_per_spec,
    _save,
    _Style,
    _symlog,
    _value,
)
from biasvar.report import Report
from biasvar.spec import parse_spec

# Fig. 1 curves (x = t) and reference lines (horizontal).
_FIG1_CURVES = (
    ("gs", None, _Style("GS(t)", OKABE_ITO["orange"], "o")),
    ("gs-st", None, _Style("GS-ST(t)", OKABE_ITO["sky"], "s", "--")),
    ("gr-mc", 10, _grmc_style(10)),
    ("gr-mc", 100, _grmc_style(100)),
)
_FIG1_LINES = (
    ("zgr", _Style("ZGR", OKABE_ITO["vermillion"], "", "-")),
    ("st", _Style("ST", OKABE_ITO["purple"], "", "--")),
    ("rf(M=4)", _Style("RF(4)", OKABE_ITO["black"], "", ":")),
)


# Drawing order in Fig. 1: bands, then the horizontal levels (ZGR, ST, RF), then the curves with
# their markers on top, so that no level line hides a marker that coincides with it.
_Z_BAND, _Z_LEVEL, _Z_CURVE = 1.0, 1.5, 3.0


def figure_fig1(report: Report) -> tuple[Figure, list[str], list[str]]:
    """Fig. 1 layout: squared bias (left) and variance (right) vs temperature.

    Returns:
        ``(figure, drawn, missing)``.
    """
    rows = _one_per_spec(report.rows)
    fig = _new_figure(7.0, 2.9)
    import matplotlib

    drawn, missing = [], []
    with matplotlib.rc_context(_RC):
        axes = fig.subplots(1, 2)
        panels = (("b2", axes[0], "squared bias per parameter"), ("v", axes[1], "variance per parameter"))
        handles: dict[str, Any] = {}
        for what, ax, ylabel in panels:
            allvals: list[float] = []
            intervals: list[tuple[float, float]] = []
            xs_all: list[float] = []
            curves: list[tuple[_Style, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
            for family, M, style in _FIG1_CURVES:
                pts = []
                for r in rows.values():
                    s = parse_spec(r.spec)
                    if s.name != family or (M is not None and s.get("M") != M):
                        continue
                    v = _value(r, what)
                    if v is not None:
                        pts.append((float(s["t"]), *v))
                if not pts:
                    if what == "b2":
                        missing.append(style.label)
                    continue
                pts.sort()
                t, val, lo, hi = (np.array(c) for c in zip(*pts, strict=True))
                (line,) = ax.plot(t, val, color=style.color, marker=style.marker, linestyle=style.linestyle,
                                  label=style.label, zorder=_Z_CURVE)
                ax.fill_between(t, lo, hi, color=style.color, alpha=0.2, linewidth=0, zorder=_Z_BAND)
                if len(t) == 1:  # a band needs two temperatures: an error bar instead
                    ax.errorbar(t, val, yerr=[val - lo, hi - val], fmt="none", ecolor=style.color, capsize=2)
                handles[style.label] = line
                curves.append((style, t, val, lo, hi))
                allvals += [*val, *lo, *hi]
                intervals += list(zip(lo, hi, strict=True))
                xs_all += list(t)
                if what == "b2":
                    drawn.append(style.label)
            for spec, style in _FIG1_LINES:
                r = rows.get(str(parse_spec(spec)))
                if what == "b2" and str(parse_spec(spec)) == report.reference:
                    # the reference against another run of itself: its b2 is 0 by definition and
                    # the estimate only shows the noise of Eq. 16, not a bias level
                    continue
                v = _value(r, what) if r is not None else None
                if v is None:
                    if what == "b2" and style.label not in missing:
                        missing.append(style.label + (" (b2 needs a tested run)" if r is not None else ""))
                    continue
                val, lo, hi = v
                # under the curves: ZGR's level is where the low-t GS-ST / GR-MC markers should sit
                line = ax.axhline(val, color=style.color, linestyle=style.linestyle, label=style.label,
                                  zorder=_Z_LEVEL)
                for edge in (lo, hi):  # band edges as thin lines: overlapping filled bands turn muddy
                    ax.axhline(edge, color=style.color, linestyle=style.linestyle, linewidth=0.6, alpha=0.7,
                               zorder=_Z_LEVEL)
                ax.axhspan(lo, hi, color=style.color, alpha=0.06, linewidth=0, zorder=_Z_BAND)
                handles.setdefault(style.label, line)
                allvals += [val, lo, hi]
                intervals.append((lo, hi))
                if style.label not in drawn:
                    drawn.append(style.label)
            ax.set_xscale("log")
            _symlog(ax, allvals, intervals)
            ax.set_xlabel("temperature t")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", color="0.9", linewidth=0.5)
            if xs_all:
                ax.set_xlim(min(xs_all) / 1.3, max(xs_all) * 1.3)
                _crowded_inset(ax, curves)
        axes[0].set_title("Squared bias")
        axes[1].set_title("Variance")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncol=min(7, len(handles)), frameon=False)
        fig.suptitle(_caption(report), fontsize=7, color="0.3")
    return fig, drawn, missing


# Temperatures closer than this (in decades) overprint their markers on Fig. 1's log t axis
# (t = 1, 1.03, 1.1 are 0.013 and 0.029 decades apart): they are repeated in an inset on a linear t axis.
_CROWDED_DECADES = 0.06
_INSET_BOXES = ((0.15, 0.58), (0.61, 0.58), (0.15, 0.12), (0.61, 0.12))  # lower-left corners, axes fraction
_INSET_SIZE = (0.36, 0.36)


def _crowded_t(ts: Sequence[float]) -> tuple[float, float] | None:
    """The widest run of temperatures each closer than :data:`_CROWDED_DECADES` to the next
    (``(t_low, t_high)``), or None when no two overprint."""
    u = sorted({float(t) for t in ts if t > 0})
    best, start = None, 0
    for i in range(1, len(u) + 1):
        if i == len(u) or math.log10(u[i] / u[i - 1]) >= _CROWDED_DECADES:
            if i - start >= 2 and (best is None or i - start > best[1] - best[0]):
                best = (start, i)
            start = i
    return None if best is None else (u[best[0]], u[best[1] - 1])


def _crowded_inset(ax: Any, curves: Sequence[tuple[_Style, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
                   ) -> Any:
    """Repeat the crowded temperatures (:func:`_crowded_t`) on a linear t axis in an inset, in the
    corner of the panel that holds the fewest points; returns the inset (None if none is needed)."""
    span = _crowded_t([t for c in curves for t in c[1]])
    if span is None:
        return None
    t0, t1 = span
    pad_t = 0.12 * (t1 - t0)
    sel = [(style, t[(t >= t0) & (t <= t1)], *(a[(t >= t0) & (t <= t1)] for a in (val, lo, hi)))
           for style, t, val, lo, hi in curves]
    sel = [c for c in sel if len(c[1])]
    to_axes = ax.transData + ax.transAxes.inverted()  # data -> axes fraction (independent of the layout)
    pts = np.concatenate([to_axes.transform(np.column_stack([t, v])) for _, t, *vs in curves for v in vs])
    w, h = _INSET_SIZE
    counts = [int(np.sum((pts[:, 0] >= x0) & (pts[:, 0] <= x0 + w) & (pts[:, 1] >= y0) & (pts[:, 1] <= y0 + h)))
              for x0, y0 in _INSET_BOXES]
    x0, y0 = _INSET_BOXES[int(np.argmin(counts))]
    iax = ax.inset_axes([x0, y0, w, h])
    iax.set_zorder(6)
    iax.set_facecolor("white")
    for style, t, val, lo, hi in sel:
        iax.plot(t, val, color=style.color, marker=style.marker, linestyle=style.linestyle, zorder=_Z_CURVE,
                 gid=f"inset:{style.label}")
        iax.fill_between(t, lo, hi, color=style.color, alpha=0.2, linewidth=0, zorder=_Z_BAND)
    ys = [y for c in sel for y in (*c[3], *c[4])]
    if min(ys) > 0:
        iax.set_yscale("log")
        iax.set_ylim(min(ys) / 10 ** 0.06, max(ys) * 10 ** 0.06)
        _log_ticks_125(iax.yaxis)
    else:
        iax.set_yscale(ax.get_yscale(), **({"linthresh": ax.yaxis.get_transform().linthresh}
                                          if ax.get_yscale() == "symlog" else {}))
    iax.set_xlim(t0 - pad_t, t1 + pad_t)
    iax.set_xticks(sorted({float(x) for c in sel for x in c[1]}))
    iax.xaxis.set_major_formatter(lambda x, _pos: f"{x:g}")
    iax.tick_params(labelsize=5, which="both", pad=1.5)
    iax.set_title("t near 1, linear t", fontsize=5, pad=2)
    iax.grid(True, which="major", color="0.92", linewidth=0.5)
    ax.indicate_inset_zoom(iax, edgecolor="0.5", alpha=0.5)
    return iax


def plot_fig1(report: Report, out: str | Path, *, formats: Sequence[str] = FORMATS) -> PlotResult:
    """Fig. 1: squared bias (left) and variance (right) against temperature (log x, symlog y).

    Curves GS, GS-ST, GR-MC(M=10), GR-MC(M=100) with their 95% bands; ZGR, ST and RF(4) as
    horizontal lines with bands. RF(4)'s squared bias is drawn only against another reference
    (the exact gradient): against the RF(4) reference it is 0 by definition. The symlog linear
    zone comes from the data (:func:`_linthresh`). Families absent from the report are listed in
    ``missing``.
    """
    fig, drawn, missing = figure_fig1(report)
    if not drawn:
        raise AnalysisError("fig1: nothing to draw; the report has none of gs, gs-st, gr-mc(M=10|100), "
                            "zgr, st, rf(M=4) (sample them, e.g. `biasvar sweep --preset fig1`)")
    return PlotResult(_save(fig, out, formats), tuple(drawn), tuple(missing), fig)


