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


# Fig. 1 curves (x = t) and reference lines (horizontal).
_FIG1_CURVES = (
    ("gs", None, _Style("GS(t)", OKABE_ITO["orange"], "o")),
    ("gs-st", None, _Style("GS-ST(t)", OKABE_ITO["sky"], "s", "--")),
    ("gr-mc", 10, _Style("GR-MC(t, M=10)", OKABE_ITO["green"], "^", "-.")),
    ("gr-mc", 100, _Style("GR-MC(t, M=100)", OKABE_ITO["blue"], "v", ":")),
)
_FIG1_LINES = (
    ("zgr", _Style("ZGR", OKABE_ITO["vermillion"], "", "-")),
    ("st", _Style("ST", OKABE_ITO["purple"], "", "--")),
    ("rf(M=4)", _Style("RF(4)", OKABE_ITO["black"], "", ":")),
)


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


def _linthresh(values: Sequence[float]) -> float:
    """A symlog threshold one decade below the smallest non-zero |value| (at least 1e-12 of the max)."""
    vals = np.abs(np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float))
    if not len(vals) or vals.max() == 0:
        return 1e-6
    pos = vals[vals > vals.max() * 1e-12]
    return float(10 ** math.floor(math.log10(pos.min()))) if len(pos) else float(vals.max() * 1e-6)


def _symlog(ax: Any, values: Sequence[float]) -> None:
    """Symlog y (log when every value is positive: nothing to show below zero)."""
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if vals and min(vals) > 0:
        ax.set_yscale("log")
        return
    ax.set_yscale("symlog", linthresh=_linthresh(vals), linscale=0.5)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)


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
            xs_all: list[float] = []
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
                                  label=style.label)
                ax.fill_between(t, lo, hi, color=style.color, alpha=0.2, linewidth=0)
                if len(t) == 1:  # a band needs two temperatures: an error bar instead
                    ax.errorbar(t, val, yerr=[val - lo, hi - val], fmt="none", ecolor=style.color, capsize=2)
                handles[style.label] = line
                allvals += [*val, *lo, *hi]
                xs_all += list(t)
                if what == "b2":
                    drawn.append(style.label)
            for spec, style in _FIG1_LINES:
                r = rows.get(str(parse_spec(spec)))
                v = _value(r, what) if r is not None else None
                if v is None:
                    if what == "b2" and style.label not in missing:
                        missing.append(style.label + (" (b2 needs a tested run)" if r is not None else ""))
                    continue
                val, lo, hi = v
                line = ax.axhline(val, color=style.color, linestyle=style.linestyle, label=style.label)
                for edge in (lo, hi):  # band edges as thin lines: overlapping filled bands turn muddy
                    ax.axhline(edge, color=style.color, linestyle=style.linestyle, linewidth=0.6, alpha=0.7)
                ax.axhspan(lo, hi, color=style.color, alpha=0.06, linewidth=0)
                handles.setdefault(style.label, line)
                allvals += [val, lo, hi]
                if style.label not in drawn:
                    drawn.append(style.label)
            ax.set_xscale("log")
            _symlog(ax, allvals)
            ax.set_xlabel("temperature t")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", color="0.9", linewidth=0.5)
            if xs_all:
                ax.set_xlim(min(xs_all) / 1.3, max(xs_all) * 1.3)
        axes[0].set_title("Squared bias")
        axes[1].set_title("Variance")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncol=min(7, len(handles)), frameon=False)
        fig.suptitle(_caption(report), fontsize=7, color="0.3")
    return fig, drawn, missing


def plot_fig1(report: Report, out: str | Path, *, formats: Sequence[str] = FORMATS) -> PlotResult:
    """Fig. 1: squared bias (left) and variance (right) against temperature (log x, symlog y).

    Curves GS, GS-ST, GR-MC(M=10), GR-MC(M=100) with their 95% bands; ZGR, ST and RF(4) as
    horizontal lines with bands (RF(4)'s squared bias needs a tested RF(4) run besides the
    reference, or the exact reference). Families absent from the report are listed in ``missing``.
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
        key = {"gr-mc": ("gr-mc", s.get("M")), "st-zgr": ("st-zgr", s.get("t"))}.get(s.name, (s.name,))
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
    grmc = [("v", OKABE_ITO["green"], "-."), ("^", OKABE_ITO["blue"], ":"), ("<", OKABE_ITO["green"], "--")]
    stzgr = [(OKABE_ITO["vermillion"], "--"), (OKABE_ITO["yellow"], "-."), (OKABE_ITO["purple"], ":")]
    out = []
    order = sorted(groups, key=lambda k: sort_key(groups[k][0].spec))
    i_mc = i_sz = 0
    for key in order:
        rs = sorted(groups[key], key=lambda r: sort_key(r.spec, r.seed))
        name = key[0]
        if name == "gr-mc":
            mk, col, ls = grmc[i_mc % len(grmc)]
            i_mc += 1
            style = _Style(f"GR-MC(t, M={key[1]})", col, mk, ls)
        elif name == "st-zgr":
            col, ls = stzgr[i_sz % len(stzgr)]
            i_sz += 1
            t = key[1]
            style = _Style(f"ST-ZGR(alpha, t={t:g})", col, "h", ls)
        else:
            style = palette[name]
        out.append((name, style, rs))
    return out


def _swept(r: RunResult) -> float | None:
    s = parse_spec(r.spec)
    return float(s["alpha"]) if s.name == "st-zgr" else (float(s["t"]) if s.get("t") is not None else None)


def figure_pareto(report: Report) -> tuple[Figure, list[str], list[str]]:
    """Fig. 4 layout: squared bias (symlog y) against variance (log x)."""
    import matplotlib

    tested = [r for r in _one_per_spec([r for r in report.rows if r.b2 is not None]).values()]
    series = _pareto_series(tested)
    fig = _new_figure(5.2, 3.9)
    drawn = []
    expected = ["GS(t)", "GS-ST(t)", "GR-MC(t, M=...)", "ST(t)", "ST-ZGR(alpha, ...)", "RF(M)"]
    with matplotlib.rc_context(_RC):
        ax = fig.subplots()
        allb: list[float] = []
        for name, style, rs in series:
            v = np.array([r.variance.value for r in rs])
            b = np.array([r.b2.value for r in rs])
            vlo = np.array([r.variance.low if r.variance.low is not None else r.variance.value for r in rs])
            vhi = np.array([r.variance.high if r.variance.high is not None else r.variance.value for r in rs])
            blo = np.array([r.b2.low if r.b2.low is not None else r.b2.value for r in rs])
            bhi = np.array([r.b2.high if r.b2.high is not None else r.b2.value for r in rs])
            ax.errorbar(v, b, xerr=[v - vlo, vhi - v], yerr=[b - blo, bhi - b], fmt="none",
                        ecolor=style.color, alpha=0.35, elinewidth=0.7, capsize=0)
            line_kw = dict(color=style.color, marker=style.marker, label=style.label)
            if name in ("rf", "zgr", "darn", "arsm", "indecater", "disarm"):  # points; a dark edge (yellow is faint)
                ax.plot(v, b, linestyle="", markersize=6, markeredgecolor="0.25", markeredgewidth=0.5,
                        **line_kw)
            else:
                ax.plot(v, b, linestyle=style.linestyle, **line_kw)
                if len(rs) > 1:  # name the low end of the hyper-parameter (both ends for alpha)
                    ends = ((rs[0], v[0], b[0]), (rs[-1], v[-1], b[-1])) if name == "st-zgr" else \
                        ((rs[0], v[0], b[0]),)
                    for r, x, y in ends:
                        p = _swept(r)
                        if p is not None:
                            key = "α" if name == "st-zgr" else "t"
                            ax.annotate(f"{key}={p:g}", (x, y), textcoords="offset points",
                                        xytext=(4, -3 - 7 * (len(drawn) % 2)), fontsize=6, color=style.color)
            if name in ("gs", "gs-st", "gr-mc", "st"):
                for r, x, y in zip(rs, v, b, strict=True):
                    t = parse_spec(r.spec).get("t")
                    ring = {2.0: "o", 1.1: "s"}.get(round(float(t), 6)) if t is not None else None
                    if ring:
                        ax.plot(x, y, marker=ring, markersize=9, markerfacecolor="none",
                                markeredgecolor=style.color, linestyle="")
            if name in ("rf",):
                for r, x, y in zip(rs, v, b, strict=True):
                    ax.annotate(r.spec.upper().replace("M=", ""), (x, y), textcoords="offset points",
                                xytext=(4, -8), fontsize=6)
            allb += [*b, *blo, *bhi]
            drawn.append(style.label)
        front = sorted([r for r in tested if r.pareto], key=lambda r: r.variance.value)
        if front:
            fv, fb = [r.variance.value for r in front], [r.b2.value for r in front]
            ax.plot(fv, fb, linestyle="-", marker="o", markersize=12, color="0.45", alpha=0.3, linewidth=3,
                    markeredgewidth=0, zorder=0, drawstyle="steps-post")
        ax.set_xscale("log")
        _symlog(ax, allb)
        ax.margins(x=0.06, y=0.08)
        ax.set_xlabel("variance per parameter")
        ax.set_ylabel("squared bias per parameter")
        ax.grid(True, which="major", color="0.9", linewidth=0.5)
        ax.set_title("Bias-variance trade-off (Fig. 4)")
        ring_kw = dict(markersize=8, markerfacecolor="none", markeredgecolor="0.3", linestyle="")
        extra = [
            Line2D([], [], marker="o", label="t = 2", **ring_kw),
            Line2D([], [], marker="s", label="t = 1.1", **ring_kw),
            Line2D([], [], marker="o", markersize=10, color="0.45", alpha=0.3, linewidth=3, markeredgewidth=0,
                   label="Pareto front"),
        ]
        h, labels = ax.get_legend_handles_labels()
        fig.legend(h + extra, labels + [e.get_label() for e in extra], loc="outside right center",
                   frameon=False)
        fig.suptitle(_caption(report), fontsize=7, color="0.3")
    missing = [e for e in expected if not any(d.startswith(e.split("(")[0] + "(") for d in drawn)]
    return fig, drawn, missing


def plot_pareto(report: Report, out: str | Path, *, formats: Sequence[str] = FORMATS) -> PlotResult:
    """Fig. 4: squared bias (symlog y) against variance (log x), one line per family over its
    hyper-parameter (GS, GS-ST, GR-MC by M, ST(t), ST-ZGR(alpha) by t), RF(M), ZGR and DARN as
    points; empty circles at t = 2, squares at t = 1.1; the non-dominated runs (Pareto front,
    ``RunResult.pareto``) on a grey halo and step line. 95% intervals as error bars in both
    directions."""
    fig, drawn, missing = figure_pareto(report)
    if not drawn:
        raise AnalysisError("pareto: nothing to draw; the report has no tested runs with a squared bias")
    return PlotResult(_save(fig, out, formats), tuple(drawn), tuple(missing), fig)


# ---------------------------------------------------------------------------------------------
# Fig. B.5 (single quantizer)

QuantUnitData = Mapping[tuple[str, str], Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float],
                                                              Sequence[float]]]]


def _curve(c: Any) -> tuple[np.ndarray, ...]:
    """``(eta, mean, std, exact)`` from a 4-tuple or an object with those attributes
    (``biasvar.quantstudy.UnitCurve``)."""
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
                    ax.set_title(spec)
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
            objects with ``eta, mean, std, exact`` attributes (``biasvar.quantstudy.UnitCurve``).
        out: output path (its suffix is replaced by each format).
    """
    fig, drawn, missing = figure_quant_unit(data)
    return PlotResult(_save(fig, out, formats), tuple(drawn), tuple(missing), fig)


__all__ = ["FORMATS", "OKABE_ITO", "PlotResult", "figure_fig1", "figure_pareto", "figure_quant_unit",
           "plot_fig1", "plot_pareto", "plot_quant_unit"]
