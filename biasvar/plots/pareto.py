"""Fig. 4: squared bias against variance, one curve per family over its hyper-parameter, the
reference at b2 = 0, Pareto marks from the intervals, labels placed without collisions, and the
densest cluster repeated in an inset."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biasvar.errors import AnalysisError
from biasvar.plots.common import (
    _GRMC,
    _RC,
    FORMATS,
    OKABE_ITO,
    PlotResult,
    _caption,
    _grmc_style,
    _log_ticks_125,
    _new_figure,
    _one_per_spec,
    _overlap,
    _save,
    _Style,
    _symlog,
    _wrap,
)
from biasvar.report import Report, RunResult, sort_key
from biasvar.spec import parse_spec


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
                _log_ticks_125(axis)
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


