"""Figures: Fig. 1 (bias and variance vs temperature), Fig. 4 (Pareto), Fig. B.5 (single quantizer).

The functions lay out what a :class:`biasvar.report.Report` (or, for Fig. B.5, a small
in-memory structure) already holds; they compute nothing. They draw with matplotlib's
object-oriented API on a private ``Figure`` (no pyplot, no global state), write PNG and PDF,
and use the Okabe-Ito colour-blind-safe palette with distinct markers and line styles, so the
curves stay apart in grey-scale too. 95% intervals are drawn as bands (or error bars in the
Pareto diagram). Missing families are skipped; the result says which.

The only module of biasvar that imports matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter

from biasvar.errors import AnalysisError
from biasvar.report import Report, RunResult, sort_key
from biasvar.spec import parse_spec

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
        fig.savefig(path, dpi=200 if fmt == "png" else None, bbox_inches="tight",
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


# ---------------------------------------------------------------------------------------------
# Fig. 1


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
        iax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 3 and 4 x 10^k would crowd
        iax.yaxis.set_minor_formatter(NullFormatter())
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


# ---------------------------------------------------------------------------------------------
# Fig. 4 (Pareto)


def _pareto_series(rows: Sequence[RunResult]) -> list[tuple[str, _Style, list[RunResult]]]:
    """One series per family curve, in a fixed order, each sorted along its hyper-parameter."""
    groups: dict[tuple, list[RunResult]] = {}
    for r in rows:
        s = parse_spec(r.spec)
        key = {"gr-mc": ("gr-mc", s.get("M")), "st-zgr": ("st-zgr", s.get("t")),
               "st-zgr-author": ("st-zgr-author", s.get("t"))}.get(s.name, (s.name,))
        groups.setdefault(key, []).append(r)
    palette = {
        "gs": _Style("GS(t)", OKABE_ITO["orange"], "o"),
        "gs-st": _Style("GS-ST(t)", OKABE_ITO["sky"], "s", "--"),
        "st": _Style("ST(t)", OKABE_ITO["purple"], "D", "-"),
        "zgr": _Style("ZGR", OKABE_ITO["vermillion"], "*", ""),
        "darn": _Style("DARN", OKABE_ITO["yellow"], "X", ""),
        "rf": _Style("RF(M)", OKABE_ITO["black"], "P", ""),
        "reinmax": _Style("ReinMax(t)", OKABE_ITO["blue"], "d", "-"),
        "arsm": _Style("ARSM", OKABE_ITO["black"], "v", ""),
        "indecater": _Style("IndeCateR", OKABE_ITO["black"], "^", ""),
        "disarm": _Style("DisARM", OKABE_ITO["black"], "<", ""),
    }
    stzgr = [(OKABE_ITO["vermillion"], "--"), (OKABE_ITO["yellow"], "-."), (OKABE_ITO["purple"], ":")]
    out = []
    order = sorted(groups, key=lambda k: sort_key(groups[k][0].spec))
    i_mc = i_sz = 0
    for key in order:
        rs = sorted(groups[key], key=lambda r: sort_key(r.spec, r.seed))
        name = key[0]
        if name == "gr-mc":
            style = _grmc_style(key[1], i_mc)
            i_mc += key[1] not in _GRMC
        elif name in ("st-zgr", "st-zgr-author"):
            col, ls = stzgr[i_sz % len(stzgr)]
            i_sz += 1
            t = key[1]
            label = "ST-ZGR" if name == "st-zgr" else "ST-ZGR-author"
            style = _Style(f"{label}(alpha, t={t:g})", col, "h" if name == "st-zgr" else "p", ls)
        else:
            style = palette[name]
        out.append((name, style, rs))
    return out


def _swept(r: RunResult) -> float | None:
    s = parse_spec(r.spec)
    if s.name in ("st-zgr", "st-zgr-author"):
        return float(s["alpha"])
    return float(s["t"]) if s.get("t") is not None else None


_LABEL_OFFSETS = ((5, 2), (5, -9), (-5, 2), (-5, -9), (0, 7), (0, -13), (9, 9), (9, -15), (-9, 9), (-9, -15),
                  (14, -3), (-14, -3), (0, 14), (0, -20), (18, 6), (-18, 6))


def _place_labels(fig: Figure, ax: Any, labels: Sequence[tuple[str, float, float, str]],
                  points: Sequence[tuple[float, float]], extra: Sequence[Any] = (), *, drop: bool = False,
                  radius: float = 3.0) -> None:
    """Annotate ``(text, x, y, colour)`` so that no two labels overlap and none sits on a data point.

    Greedy: each label takes the first offset of :data:`_LABEL_OFFSETS` whose box is free of the
    labels already placed, of every point's marker and of ``extra`` artists (an inset), and lies
    inside the axes; if none is, the one overlapping least, or (``drop``) no label at all.
    """
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # fixes the layout, so that display coordinates are final
    renderer = canvas.get_renderer()
    pts_px = fig.dpi / 72.0
    r = radius * pts_px  # a marker's half-size, in points
    occupied = [Bbox.from_extents(px - r, py - r, px + r, py + r)
                for px, py in ax.transData.transform(np.asarray(points, dtype=float).reshape(-1, 2))]
    occupied += [e.get_window_extent(renderer) for e in extra]  # e.g. an inset: labels avoid it
    frame = ax.get_window_extent(renderer)
    halo = [patheffects.withStroke(linewidth=1.8, foreground="white")]  # readable over lines
    placed: list[Any] = []
    for text, x, y, color in labels:
        best, best_cost = None, math.inf
        for dx, dy in _LABEL_OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=6, color=color,
                              ha=ha, va="bottom", zorder=5, path_effects=halo)
            box = ann.get_window_extent(renderer).expanded(1.04, 1.1)
            cost = sum(_overlap(box, o) for o in placed) + 0.25 * sum(_overlap(box, o) for o in occupied)
            cost += box.width * box.height - _overlap(box, frame)  # the part outside the axes
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (ann, box), cost
            else:
                ann.remove()
            if cost == 0:
                break
        if best is not None and drop and best_cost > 0:
            best[0].remove()
        elif best is not None:
            placed.append(best[1])


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


PARETO_FOOTER = ("Pareto marks from the 95% intervals: grey disc = not dominated; dashed ring = near-tie "
                 "(dominated at the point estimates, not beyond the intervals); unmarked = another estimator is "
                 "better in both beyond the intervals. st-zgr(alpha=1) = zgr and st-zgr(alpha=0,t) = st(t) "
                 "share one mark.")


def _draw_pareto(ax: Any, series: Sequence[tuple[str, _Style, list[RunResult]]], tested: Sequence[RunResult], *,
                 inset: tuple[float, float, float, float] | None = None
                 ) -> tuple[list[tuple[str, float, float, str]], list[tuple[float, float]],
                            list[float], list[tuple[float, float]]]:
    """Draw the series and the Pareto marks on ``ax``; returns ``(labels, points, values, intervals)``.

    In the main panel the labels name the low end of each curve's hyper-parameter (both ends for
    alpha) and RF(M). In an inset (``inset`` = its window ``(v0, v1, b0, b1)``) the curves are drawn
    whole and clipped by the inset's axes, so a point near the window's edge sits on its curve, and
    every point inside the window is labelled with its hyper-parameter.
    """
    labels: list[tuple[str, float, float, str]] = []
    points: list[tuple[float, float]] = []
    allb: list[float] = []
    intervals: list[tuple[float, float]] = []
    ms = 1.25 if inset is not None else 1.0
    for name, style, rs in series:
        v = np.array([r.variance.value for r in rs])
        b = np.array([r.b2.value for r in rs])
        vlo = np.array([r.variance.low if r.variance.low is not None else r.variance.value for r in rs])
        vhi = np.array([r.variance.high if r.variance.high is not None else r.variance.value for r in rs])
        blo = np.array([r.b2.low if r.b2.low is not None else r.b2.value for r in rs])
        bhi = np.array([r.b2.high if r.b2.high is not None else r.b2.value for r in rs])
        ax.errorbar(v, b, xerr=[v - vlo, vhi - v], yerr=[b - blo, bhi - b], fmt="none",
                    ecolor=style.color, alpha=0.35, elinewidth=0.7, capsize=0, zorder=2)
        line_kw = dict(color=style.color, marker=style.marker, zorder=3,
                       label=None if inset is not None else style.label)
        alpha_curve = name in ("st-zgr", "st-zgr-author")
        if name in ("rf", "zgr", "darn", "arsm", "indecater", "disarm"):  # points; a dark edge (yellow is faint)
            ax.plot(v, b, linestyle="", markersize=6 * ms, markeredgecolor="0.25", markeredgewidth=0.5, **line_kw)
        else:
            ax.plot(v, b, linestyle=style.linestyle, markersize=4 * ms, **line_kw)
            if len(rs) > 1 and inset is None:  # name the low end of the hyper-parameter (both ends for alpha)
                ends = ((rs[0], v[0], b[0]), (rs[-1], v[-1], b[-1])) if alpha_curve else ((rs[0], v[0], b[0]),)
                for r, x, y in ends:
                    p = _swept(r)
                    if p is not None:
                        labels.append((f"{'α' if alpha_curve else 't'}={p:g}", x, y, style.color))
        if inset is not None:
            v0, v1, b0, b1 = inset
            for r, x, y in zip(rs, v, b, strict=True):
                if not (v0 <= x <= v1 and b0 <= y <= b1):
                    continue  # clipped away: no label
                p = _swept(r)
                text = r.spec.upper().replace("M=", "") if name == "rf" else "ZGR" if name == "zgr" else \
                    (f"{'α' if alpha_curve else 't'}={p:g}" if p is not None else r.spec)
                labels.append((text, x, y, style.color if name not in ("rf", "zgr") else "0.1"))
        if name in ("gs", "gs-st", "gr-mc", "st"):
            for r, x, y in zip(rs, v, b, strict=True):
                t = parse_spec(r.spec).get("t")
                ring = {2.0: "o", 1.1: "s"}.get(round(float(t), 6)) if t is not None else None
                if ring:
                    ax.plot(x, y, marker=ring, markersize=9 * ms, markerfacecolor="none",
                            markeredgecolor=style.color, linestyle="", zorder=3)
        if name == "rf" and inset is None:
            for r, x, y in zip(rs, v, b, strict=True):
                labels.append((r.spec.upper().replace("M=", ""), x, y, "0.1"))
        allb += [*b, *blo, *bhi]
        intervals += list(zip(blo, bhi, strict=True))
        points += list(zip(v, b, strict=True))
    front = sorted([r for r in tested if (r.pareto_mark or ("*" if r.pareto else "")) == "*"],
                   key=lambda r: r.variance.value)
    ties = [r for r in tested if r.pareto_mark == "~"]
    if front:
        fv, fb = [r.variance.value for r in front], [r.b2.value for r in front]
        ax.plot(fv, fb, linestyle="-", color="0.6", alpha=0.35, linewidth=2.5, zorder=0, drawstyle="steps-post")
        ax.scatter(fv, fb, **{**_FRONT_KW, "s": 90 * ms**2}, zorder=1, gid="pareto-front")
    if ties:
        ax.scatter([r.variance.value for r in ties], [r.b2.value for r in ties], **{**_TIE_KW, "s": 90 * ms**2},
                   zorder=1, gid="pareto-tie")
    return labels, points, allb, intervals


_FRONT_KW: dict[str, Any] = dict(s=90, color="0.55", alpha=0.35, linewidths=0)
_TIE_KW: dict[str, Any] = dict(s=90, facecolors="none", edgecolors="0.35", linewidths=0.9, linestyles=(0, (2, 1.5)))


def _draw_references(ax: Any, report: Report) -> tuple[float, float] | None:
    """The reference run (an unbiased estimator, e.g. RF(4)) at squared bias 0: its b2 is 0 by
    definition, so it is a point of the trade-off no tested run can dominate in bias. Returns the
    point (None when the reference is the exact gradient, which has no variance)."""
    refs = _one_per_spec([r for r in report.rows if r.role == "reference" and r.spec == report.reference])
    r = refs.get(report.reference)
    if r is None or r.variance is None:
        return None
    v = r.variance
    lo = v.low if v.low is not None else v.value
    hi = v.high if v.high is not None else v.value
    ax.errorbar([v.value], [0.0], xerr=[[v.value - lo], [hi - v.value]], fmt="none", ecolor="0.1", alpha=0.35,
                elinewidth=0.7, zorder=2)
    ax.plot([v.value], [0.0], linestyle="", marker="P", markersize=7, color=OKABE_ITO["black"],
            markeredgecolor="white", markeredgewidth=0.5, zorder=3, gid="reference",
            label=f"{r.spec.upper().replace('M=', '')}: reference, b2 = 0 (unbiased)")
    return v.value, 0.0


def _cluster(points: Sequence[tuple[float, float]], *, dv: float = 0.45, db: float = 0.6,
             least: int = 8) -> tuple[float, float, float, float] | None:
    """The densest window ``(v0, v1, b0, b1)`` of ``2 dv`` x ``2 db`` decades around a point with b2 > 0
    holding at least ``least`` points (None: no cluster worth an inset)."""
    pos = np.asarray([(v, b) for v, b in points if v > 0 and b > 0], dtype=float).reshape(-1, 2)
    if len(pos) < least:
        return None
    lp = np.log10(pos)
    inside = (np.abs(lp[:, None, 0] - lp[None, :, 0]) <= dv) & (np.abs(lp[:, None, 1] - lp[None, :, 1]) <= db)
    counts = inside.sum(1)
    best = int(np.argmax(counts))
    if counts[best] < least:
        return None
    sel = lp[inside[best]]
    (v0, b0), (v1, b1) = sel.min(0), sel.max(0)
    pad_v, pad_b = 0.08 * (v1 - v0) + 0.04, 0.08 * (b1 - b0) + 0.04
    return 10 ** (v0 - pad_v), 10 ** (v1 + pad_v), 10 ** (b0 - pad_b), 10 ** (b1 + pad_b)


def figure_pareto(report: Report) -> tuple[Figure, list[str], list[str]]:
    """Fig. 4 layout: squared bias (symlog y, linear zone from the data) against variance (log x).

    Markers sit above their error bars, which sit above the Pareto marks (light discs for the
    front, dashed rings for near-ties), so no mark hides a marker; labels are placed so that none
    collides with another or with a marker (:func:`_place_labels`). The densest cluster of points
    (:func:`_cluster`) is repeated, enlarged and with every point labelled, in an inset in the
    lower left (low variance and low bias: the corner no estimator reaches).
    """
    import matplotlib

    tested = [r for r in _one_per_spec([r for r in report.rows if r.b2 is not None]).values()]
    series = _pareto_series(tested)
    fig = _new_figure(7.0, 5.4)
    expected = ["GS(t)", "GS-ST(t)", "GR-MC(t, M=...)", "ST(t)", "ST-ZGR(alpha, ...)", "RF(M)"]
    with matplotlib.rc_context(_RC):
        ax = fig.subplots()
        labels, points, allb, intervals = _draw_pareto(ax, series, tested)
        drawn = [style.label for _, style, _ in series]
        ref = _draw_references(ax, report)
        if ref is not None:
            points.append(ref)
            allb.append(0.0)
            drawn.append("RF(M) reference")
        ax.set_xscale("log")
        _symlog(ax, allb, intervals)
        ax.margins(x=0.08, y=0.08)
        ax.set_xlabel("variance per parameter")
        ax.set_ylabel("squared bias per parameter")
        ax.grid(True, which="major", color="0.9", linewidth=0.5)
        ax.set_title("Bias-variance trade-off (Fig. 4)")
        ring_kw = dict(markersize=8, markerfacecolor="none", markeredgecolor="0.3", linestyle="")
        extra = [
            Line2D([], [], marker="o", label="t = 2", **ring_kw),
            Line2D([], [], marker="s", label="t = 1.1", **ring_kw),
            # legend keys drawn like the marks themselves (the same scatter properties: a dashed ring)
            ax.scatter([], [], **_FRONT_KW, label="Pareto: not dominated"),
            ax.scatter([], [], **_TIE_KW, label="Pareto: near-tie"),
        ]
        h, lab = ax.get_legend_handles_labels()
        keep = [(hh, ll) for hh, ll in zip(h, lab, strict=True) if hh not in extra]
        fig.legend([k[0] for k in keep] + extra, [k[1] for k in keep] + [e.get_label() for e in extra],
                   loc="outside right center", frameon=False)
        fig.suptitle(_caption(report), fontsize=7, color="0.3")
        missing = [e for e in expected if not any(d.startswith(e.split("(")[0] + "(") for d in drawn)]
        footer = PARETO_FOOTER + (f" Not in this report: {', '.join(missing)}." if missing else "")
        fig.supxlabel(_wrap(footer, 130), fontsize=6, color="0.3")
        window = _cluster(points)
        if window is not None:
            v0, v1, b0, b1 = window
            # the series that reach the window, drawn whole (the inset's axes clip them): a point at
            # the window's edge then sits on its curve instead of floating alone
            inner = [(n, s_, rs) for n, s_, rs in series
                     if any(v0 <= x.variance.value <= v1 and b0 <= x.b2.value <= b1 for x in rs)]
            iax = ax.inset_axes([0.03, 0.04, 0.47, 0.47])
            i_labels, i_points, _, _ = _draw_pareto(iax, inner, tested, inset=window)
            iax.set_xscale("log")
            iax.set_yscale("log")
            iax.set_xlim(v0, v1)
            iax.set_ylim(b0, b1)
            for axis in (iax.xaxis, iax.yaxis):  # labels at 1, 2, 5 x 10^k only: 3 and 4 x 10^k collide
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_minor_formatter(NullFormatter())
            iax.tick_params(labelsize=5, which="both")
            iax.set_facecolor("white")
            iax.set_zorder(6)
            ax.indicate_inset_zoom(iax, edgecolor="0.5", alpha=0.6)
            _inset_labels_inside(fig, ax, iax, (0.03, 0.04, 0.47, 0.47))
            outside = [lb for lb in labels if not (v0 <= lb[1] <= v1 and b0 <= lb[2] <= b1)]  # the inset names those
            _place_labels(fig, ax, outside, points, extra=[iax])
            _place_labels(fig, iax, i_labels, i_points, drop=True, radius=5.0)
        else:
            _place_labels(fig, ax, labels, points)
    return fig, drawn, missing


def _inset_labels_inside(fig: Figure, ax: Any, iax: Any, bounds: tuple[float, float, float, float]) -> None:
    """Move the inset (``bounds`` in ``ax``'s axes fraction) right and up until its tick labels lie
    inside ``ax``: left of or below ``ax`` they would collide with ``ax``'s own tick labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox, TransformedBbox

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    frame, tight = ax.get_window_extent(renderer), iax.get_tightbbox(renderer)
    pad = 3 * fig.dpi / 72.0
    dx = max(0.0, frame.x0 + pad - tight.x0) / frame.width
    dy = max(0.0, frame.y0 + pad - tight.y0) / frame.height
    if dx or dy:
        box = Bbox.from_bounds(bounds[0] + dx, bounds[1] + dy, bounds[2] - dx, bounds[3] - dy)
        iax.set_axes_locator(lambda _a, _r: TransformedBbox(box, ax.transAxes - fig.transSubfigure))


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def plot_pareto(report: Report, out: str | Path, *, formats: Sequence[str] = FORMATS) -> PlotResult:
    """Fig. 4: squared bias (symlog y) against variance (log x), one line per family over its
    hyper-parameter (GS, GS-ST, GR-MC by M, ST(t), ST-ZGR(alpha) by t), RF(M), ZGR and DARN as
    points; empty circles at t = 2, squares at t = 1.1; Pareto marks from the intervals
    (``RunResult.pareto_mark``): a light disc and step line for the front, a dashed ring for
    near-ties, explained in a footer. 95% intervals as error bars in both directions."""
    fig, drawn, missing = figure_pareto(report)
    if not drawn:
        raise AnalysisError("pareto: nothing to draw; the report has no tested runs with a squared bias")
    return PlotResult(_save(fig, out, formats), tuple(drawn), tuple(missing), fig)


# ---------------------------------------------------------------------------------------------
# Fig. B.5 (single quantizer)

QuantUnitData = Mapping[tuple[str, str], Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float],
                                                              Sequence[float]]]]


_NAMES = {"gs": "GS", "gs-st": "GS-ST", "gr-mc": "GR-MC", "st": "ST", "zgr": "ZGR", "darn": "DARN", "rf": "RF",
          "reinmax": "ReinMax", "arsm": "ARSM", "indecater": "IndeCateR", "disarm": "DisARM",
          "st-zgr": "ST-ZGR", "st-zgr-author": "ST-ZGR (author's code)"}


def spec_words(spec: str) -> str:
    """A panel title for an estimator spec, in words: ``gr-mc(t=0.1,M=100)`` -> ``GR-MC, t = 0.1, M = 100``
    (the estimator's name as the paper writes it, then its parameters as equations)."""
    s = parse_spec(spec)
    order = ("t", "alpha", "M")
    canon = str(s)  # the parameters the canonical spec names (a default, like ST's t = 1, is left out)
    params = sorted(((k, v) for k, v in s.as_dict().items() if f"{k}=" in canon),
                    key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    words = [_NAMES.get(s.name, s.name.upper())]
    words += [f"{'α' if k == 'alpha' else k} = {v:g}" if isinstance(v, float | int) else f"{k} = {v}"
              for k, v in params]
    return ", ".join(words)


def _curve(c: Any) -> tuple[np.ndarray, ...]:
    """``(eta, mean, std, exact)`` from a 4-tuple or an object with those attributes
    (``biasvar.studies.quantstudy.UnitCurve``)."""
    parts = (c.eta, c.mean, c.std, c.exact) if hasattr(c, "eta") else tuple(c)
    if len(parts) != 4:
        raise AnalysisError(f"quant-unit: expected (eta, mean, std, exact) per estimator, "
                            f"got {len(parts)} items")
    return tuple(np.asarray(a, dtype=float) for a in parts)


def figure_quant_unit(data: QuantUnitData) -> tuple[Figure, list[str], list[str]]:
    """Fig. B.5 layout: rows = (test function, noise), columns = estimators; mean +-1 std vs eta."""
    import matplotlib

    keys = list(data)
    if not keys:
        raise AnalysisError("quant-unit: no data; expected {(loss, noise): {spec: (eta, mean, std, exact)}}")
    specs: list[str] = []
    for k in keys:
        for s in data[k]:
            c = str(parse_spec(s))
            if c not in specs:
                specs.append(c)
    specs.sort(key=sort_key)
    nr, nc = len(keys), len(specs)
    fig = _new_figure(1.55 * nc + 0.6, 1.35 * nr + 0.6)
    drawn, missing = [], []
    with matplotlib.rc_context(_RC):
        axes = np.atleast_2d(fig.subplots(nr, nc, sharex=True, sharey="row", squeeze=False))
        for i, key in enumerate(keys):
            by_canon = {str(parse_spec(s)): v for s, v in data[key].items()}
            for j, spec in enumerate(specs):
                ax = axes[i, j]
                if i == 0:
                    ax.set_title(spec_words(spec))
                if j == 0:
                    ax.set_ylabel(f"{key[0]}\n{key[1]}")
                if i == nr - 1:
                    ax.set_xlabel("η")
                ax.grid(True, color="0.92", linewidth=0.5)
                if spec not in by_canon:
                    ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center", color="0.5")
                    missing.append(f"{key[0]}/{key[1]}: {spec}")
                    continue
                eta, mean, std, exact = _curve(by_canon[spec])
                ax.fill_between(eta, mean - std, mean + std, color=OKABE_ITO["vermillion"], alpha=0.25,
                                linewidth=0)
                ax.plot(eta, mean, color=OKABE_ITO["vermillion"], label="estimator mean ± 1 std")
                ax.plot(eta, exact, color=OKABE_ITO["blue"], linestyle="--", label="exact gradient")
                drawn.append(f"{key[0]}/{key[1]}: {spec}")
        h, labels = axes[0, 0].get_legend_handles_labels()
        if not h:
            for ax in axes.flat:
                h, labels = ax.get_legend_handles_labels()
                if h:
                    break
        if h:
            fig.legend(h, labels, loc="outside lower center", ncol=2, frameon=False)
    return fig, drawn, missing


def plot_quant_unit(data: QuantUnitData, out: str | Path, *, formats: Sequence[str] = FORMATS) -> PlotResult:
    """Fig. B.5: one stochastic quantizer; for each (test function, noise) row and estimator column,
    the mean of the estimator with a +-1 std band against eta, and the exact gradient dashed.

    Args:
        data: ``{(loss, noise): {spec: (eta[], mean[], std[], exact[])}}``; the values may also be
            objects with ``eta, mean, std, exact`` attributes (``biasvar.studies.quantstudy.UnitCurve``).
        out: output path (its suffix is replaced by each format).
    """
    fig, drawn, missing = figure_quant_unit(data)
    return PlotResult(_save(fig, out, formats), tuple(drawn), tuple(missing), fig)


__all__ = ["FORMATS", "OKABE_ITO", "PlotResult", "figure_fig1", "figure_pareto", "figure_quant_unit",
           "plot_fig1", "plot_pareto", "plot_quant_unit", "spec_words"]
