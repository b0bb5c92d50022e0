"""Figures from a small synthetic report: each writes a non-empty PNG (and PDF), tolerates missing
families and says which are missing (``biasvar.plots``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fig_runs

from biasvar import plots as P
from biasvar import report as R
from biasvar.errors import AnalysisError

FIG1 = (["rf(M=4)", "rf(M=4)", "zgr", "st"]
        + [f"{f}(t={t})" for f in ("gs", "gs-st") for t in (0.1, 0.5, 1.1, 2)]
        + [f"gr-mc(t={t},M={M})" for M in (10, 100) for t in (0.1, 0.5, 2)])
PARETO = FIG1 + ["rf(M=2)", "darn", "st(t=1.1)", "st(t=2)", "st(t=4)"] \
    + [f"st-zgr(alpha={a},t=1)" for a in (0, 0.5, 1)]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report() -> R.Report:
    return R.analyze(fig_runs(PARETO, nb=8, bs=200), n_resamples=100)


def _check_png(path: str) -> None:
    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_fig1_writes_png_and_pdf(report, tmp_path):
    res = P.plot_fig1(report, tmp_path / "fig1.png")
    assert [p.rsplit(".", 1)[1] for p in res.paths] == ["png", "pdf"]
    _check_png(res.paths[0])
    assert open(res.paths[1], "rb").read()[:4] == b"%PDF"
    assert set(res.drawn) == {"GS(t)", "GS-ST(t)", "GR-MC(t, M=10)", "GR-MC(t, M=100)", "ZGR", "ST", "RF(4)"}
    assert res.missing == ()


def test_pareto_writes_png(report, tmp_path):
    res = P.plot_pareto(report, tmp_path / "sub" / "pareto", formats=("png",))
    assert res.paths == (str(tmp_path / "sub" / "pareto.png"),)
    _check_png(res.paths[0])
    for label in ("GS(t)", "GS-ST(t)", "GR-MC(t, M=10)", "GR-MC(t, M=100)", "ST(t)", "ST-ZGR(alpha, t=1)",
                  "RF(M)", "ZGR", "DARN"):
        assert label in res.drawn
    assert res.missing == ()


def test_missing_families_are_skipped_and_named(tmp_path):
    rep = R.analyze(fig_runs(["rf(M=4)", "zgr", "gs(t=0.5)", "gs(t=1)"]), n_resamples=50)
    res = P.plot_fig1(rep, tmp_path / "fig1.png")
    _check_png(res.paths[0])
    assert "GS(t)" in res.drawn and "ZGR" in res.drawn
    assert {"GS-ST(t)", "GR-MC(t, M=10)", "GR-MC(t, M=100)", "ST"} <= set(res.missing)
    # the reference's own b2 is never drawn as a bias level (by design, not missing); its V is drawn
    assert "RF(4)" in res.drawn and not any(m.startswith("RF(4)") for m in res.missing)
    res = P.plot_pareto(rep, tmp_path / "pareto.png")
    _check_png(res.paths[0])
    assert "ST(t)" in res.missing
    # no tested RF(M), but the reference RF(4) is drawn at b2 = 0 (unbiased by definition)
    assert "RF(M) reference" in res.drawn and "RF(M)" not in res.missing


def test_nothing_to_draw_is_an_error(tmp_path):
    rep = R.analyze(fig_runs(["rf(M=2)", "darn"]), reference="rf(M=2)", n_resamples=0)
    with pytest.raises(AnalysisError, match="nothing to draw"):
        P.plot_fig1(rep, tmp_path / "x.png")
    with pytest.raises(AnalysisError, match="format"):
        P.plot_pareto(rep, tmp_path / "x.png", formats=("svgz",))


def test_quant_unit_layout(tmp_path):
    eta = np.linspace(-1, 4, 21)

    class Curve:  # the shape of biasvar.studies.quantstudy.UnitCurve
        def __init__(self, k):
            self.eta, self.mean, self.std, self.exact = eta, np.sin(eta) + 0.1 * k, 0.2 + 0 * eta, np.sin(eta)

    data = {
        ("linear", "logistic"): {"zgr": (eta, np.sin(eta), 0.1 + 0 * eta, np.sin(eta)), "st": Curve(1)},
        ("quadratic", "triangular"): {"zgr": Curve(2)},
    }
    res = P.plot_quant_unit(data, tmp_path / "b5.png")
    _check_png(res.paths[0])
    assert len(res.drawn) == 3 and res.missing == ("quadratic/triangular: st",)
    with pytest.raises(AnalysisError, match="no data"):
        P.plot_quant_unit({}, tmp_path / "none.png")


# ---------------------------------------------------------------------------------------------
# content: the returned Figure's artists hold the report's numbers


def _lines(ax) -> dict:
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def _tested(report, spec):
    rows = [r for r in report.rows if r.spec == spec]
    return min(rows, key=lambda r: (r.role == "reference", r.seed))


def test_fig1_figure_shows_the_report_series(report, tmp_path):
    res = P.plot_fig1(report, tmp_path / "fig1.png", formats=("png",))
    fig = res.figure
    ax_b2, ax_v = fig.axes[:2]
    assert ax_b2.get_title() == "Squared bias" and ax_v.get_title() == "Variance"
    assert ax_b2.get_xlabel() == "temperature t" and ax_b2.get_ylabel() == "squared bias per parameter"
    assert ax_v.get_ylabel() == "variance per parameter"
    assert ax_b2.get_xscale() == "log" and ax_v.get_xscale() == "log"
    assert ax_b2.get_yscale() in ("symlog", "log") and ax_v.get_yscale() == "log"  # variances are > 0
    for ax, what in ((ax_b2, "b2"), (ax_v, "variance")):
        lines = _lines(ax)
        for label, family, M in (("GS(t)", "gs", None), ("GS-ST(t)", "gs-st", None),
                                 ("GR-MC(t, M=10)", "gr-mc", 10), ("GR-MC(t, M=100)", "gr-mc", 100)):
            specs = sorted({r.spec for r in report.rows if r.family == family
                            and (M is None or r.hyper.get("M") == M)}, key=lambda s: R.sort_key(s))
            rows = sorted((_tested(report, s) for s in specs), key=lambda r: r.hyper["t"])
            np.testing.assert_allclose(lines[label].get_xdata(), [r.hyper["t"] for r in rows])
            np.testing.assert_allclose(lines[label].get_ydata(), [getattr(r, what).value for r in rows])
        for label, spec in (("ZGR", "zgr"), ("ST", "st"), ("RF(4)", "rf(M=4)")):
            if what == "b2" and spec == report.reference:  # 0 by definition: not drawn as a bias level
                assert label not in lines
                continue
            assert lines[label].get_ydata()[0] == pytest.approx(getattr(_tested(report, spec), what).value)
    assert "ZGR" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_pareto_figure_places_every_run_at_its_variance_and_b2(report, tmp_path):
    res = P.plot_pareto(report, tmp_path / "pareto.png", formats=("png",))
    ax = res.figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() in ("symlog", "log")
    assert ax.get_xlabel() == "variance per parameter" and ax.get_ylabel() == "squared bias per parameter"
    lines = _lines(ax)
    zgr, darn = _tested(report, "zgr"), _tested(report, "darn")
    assert (lines["ZGR"].get_xdata()[0], lines["ZGR"].get_ydata()[0]) == pytest.approx(
        (zgr.variance.value, zgr.b2.value))
    assert (lines["DARN"].get_xdata()[0], lines["DARN"].get_ydata()[0]) == pytest.approx(
        (darn.variance.value, darn.b2.value))
    st = sorted((r for r in report.rows if r.family == "st" and r.role == "test"), key=lambda r: r.hyper["t"])
    np.testing.assert_allclose(lines["ST(t)"].get_xdata(), [r.variance.value for r in st])
    np.testing.assert_allclose(lines["ST(t)"].get_ydata(), [r.b2.value for r in st])
    # the Pareto front's step line passes through exactly the rows marked "*" (not the near-ties "~")
    front = sorted((r for r in report.rows if r.pareto_mark == "*"), key=lambda r: r.variance.value)
    halo = [ln for ln in ax.get_lines() if ln.get_drawstyle() == "steps-post"]
    assert len(halo) == 1 and front
    np.testing.assert_allclose(halo[0].get_xdata(), [r.variance.value for r in front])


def test_quant_unit_figure_draws_mean_and_exact(tmp_path):
    eta = np.linspace(-1, 4, 11)
    data = {("linear", "logistic"): {"zgr": (eta, np.cos(eta), 0.1 + 0 * eta, np.sin(eta))}}
    fig = P.plot_quant_unit(data, tmp_path / "b5.png", formats=("png",)).figure
    ax = fig.axes[0]
    lines = _lines(ax)
    np.testing.assert_allclose(lines["estimator mean ± 1 std"].get_ydata(), np.cos(eta))
    np.testing.assert_allclose(lines["exact gradient"].get_ydata(), np.sin(eta))
    assert lines["exact gradient"].get_linestyle() == "--"
    assert ax.get_title() == "ZGR" and ax.get_xlabel() == "η" and ax.get_ylabel() == "linear\nlogistic"


# ---------------------------------------------------------------------------------------------
# readability, checked through the returned Figure's artists (on the committed reduced CPU report)

from pathlib import Path  # noqa: E402

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from biasvar import formats as F  # noqa: E402

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "reduced-cpu" / "report.json"


@pytest.fixture(scope="module")
def committed() -> R.Report:
    return R.remark_pareto(F.report_from_json(COMMITTED.read_text()))


def test_symlog_linear_zone_comes_from_the_data():
    # an estimate within its noise of 0 ([-3.57e-6, 3.11e-6]): the zone is that noise level, not 1e-7
    lt = P._linthresh([-3.47e-7, 2.5e-6, 6e-4], [(-3.57e-6, 3.11e-6), (2.0e-6, 3.0e-6), (5.9e-4, 6.0e-4)])
    assert lt == 2e-6
    # no interval holds 0: the smallest negative value (rounded down), else a decade below the smallest
    assert P._linthresh([-4.95e-7, 3e-6], [(-8.9e-7, -1.4e-7), (2e-6, 4e-6)]) == 2e-7
    assert P._linthresh([3e-6, 5e-4]) == 1e-6
    for v in (3.3e-6, 7e-5, 1.5e-6):
        assert P._nice(v, up=False) <= v <= P._nice(v, up=True)


def test_fig1_zone_and_no_reference_bias_level(committed):
    fig, drawn, _ = P.figure_fig1(committed)
    ax_b2, ax_v = fig.axes[:2]
    assert ax_b2.get_yscale() == "symlog"
    lt = ax_b2.yaxis.get_transform().linthresh
    gs = committed.row("gs(t=0.01)").b2
    assert lt >= 1e-6 and lt <= max(abs(gs.low), abs(gs.high))  # not the old fixed 1e-7
    black = [ln for ln in ax_b2.get_lines() if ln.get_color() == P.OKABE_ITO["black"]]
    assert not black  # RF(4) against the RF(4) reference: no bias level drawn
    assert [ln for ln in ax_v.get_lines() if ln.get_color() == P.OKABE_ITO["black"]]  # its variance is
    assert "RF(4)" in drawn


def _boxes(fig, texts):
    renderer = FigureCanvasAgg(fig).get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def test_fig4_labels_do_not_collide_and_marks_do_not_hide_markers(committed):
    fig, _, _ = P.figure_pareto(committed)
    ax = fig.axes[0]
    insets = list(ax.child_axes)
    assert len(insets) == 1  # the central cluster, enlarged
    for a in (ax, *insets):
        boxes = _boxes(fig, a.texts)
        assert len(boxes) >= 5
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert P._overlap(boxes[i], boxes[j]) == 0, (a.texts[i].get_text(), a.texts[j].get_text())
        marks = [c for c in a.collections if c.get_gid() in ("pareto-front", "pareto-tie")]
        markers = [ln for ln in a.get_lines() if ln.get_marker() not in (None, "None", "")]
        assert marks and markers
        assert max(c.get_zorder() for c in marks) < min(ln.get_zorder() for ln in markers)
    # the near-ties have their own mark (dashed ring), and identical estimators share the front disc
    ties = [c for c in ax.collections if c.get_gid() == "pareto-tie"]
    assert ties and ties[0].get_linestyle()[0][1] is not None
    front = next(c for c in ax.collections if c.get_gid() == "pareto-front").get_offsets()
    for spec in ("zgr", "st-zgr(alpha=1)", "st(t=2)", "st-zgr(alpha=0,t=2)"):
        r = committed.row(spec)
        assert any(np.isclose(x, r.variance.value) and np.isclose(y, r.b2.value) for x, y in front), spec
    # no inset label sits on a marker
    inset = insets[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    pts = np.concatenate([np.column_stack(ln.get_data()) for ln in inset.get_lines()
                          if ln.get_marker() not in (None, "None", "") and len(ln.get_xdata())])
    px = inset.transData.transform(pts.astype(float))
    for box in _boxes(fig, inset.texts):
        inside = (px[:, 0] > box.x0 + 1) & (px[:, 0] < box.x1 - 1) & (px[:, 1] > box.y0 + 1) & (px[:, 1] < box.y1 - 1)
        assert not inside.any()
    del renderer


GPU_REPORT = Path(__file__).resolve().parents[1] / "results" / "fig1-full-gpu" / "report.json"


@pytest.mark.parametrize("path", [COMMITTED, GPU_REPORT], ids=["reduced-cpu", "fig1-full-gpu"])
def test_fig4_inset_draws_only_inside_its_window_and_points_sit_on_their_curves(path):
    """The inset's artists are clipped to it, its labels lie inside it and name points inside its
    limits; a series reaching the window is drawn whole there, so a point at the window's edge (GS
    at t = 0.274 in the GPU report) sits on its curve instead of floating alone."""
    rep = R.remark_pareto(F.report_from_json(path.read_text()))
    fig, _, _ = P.figure_pareto(rep)
    (inset,) = fig.axes[0].child_axes
    (v0, v1), (b0, b1) = inset.get_xlim(), inset.get_ylim()
    renderer = FigureCanvasAgg(fig).get_renderer()
    frame = inset.get_window_extent(renderer)
    drawn = [a for a in (*inset.lines, *inset.collections) if a.get_visible()]
    assert drawn
    for a in drawn:
        assert a.get_clip_on() and a.get_clip_box() is not None, a
        np.testing.assert_allclose(a.get_clip_box().extents, frame.extents, atol=1)
    texts = [t for t in inset.texts if t.get_visible() and t.get_text()]
    assert len(texts) >= 5
    for t in texts:
        x, y = t.xy
        assert v0 <= x <= v1 and b0 <= y <= b1, t.get_text()
        box = t.get_window_extent(renderer)
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1 and frame.y0 - 1 <= box.y0 \
            and box.y1 <= frame.y1 + 1, t.get_text()
    # every curve with a point inside the window is drawn whole: its line holds the whole series
    fams = {"gs": P.OKABE_ITO["orange"], "gs-st": P.OKABE_ITO["sky"]}
    for fam, color in fams.items():
        rows = [r for r in rep.rows if r.family == fam and r.role == "test" and r.b2 is not None]
        inside = [r for r in rows if v0 <= r.variance.value <= v1 and b0 <= r.b2.value <= b1]
        if not inside:
            continue
        lines = [ln for ln in inset.get_lines() if ln.get_color() == color and len(ln.get_xdata()) > 1]
        assert lines and max(len(ln.get_xdata()) for ln in lines) == len(rows), fam


# ---------------------------------------------------------------------------------------------
# issue 22, item 5: figures a reader trusts (each test fails on the figures before the fix)

REPORTS = {"reduced-cpu": COMMITTED, "fig1-full-gpu": GPU_REPORT}


@pytest.fixture(scope="module", params=sorted(REPORTS))
def saved(request) -> R.Report:
    return R.remark_pareto(F.report_from_json(REPORTS[request.param].read_text()))


def _one_per_spec(report):
    return list(P._one_per_spec([r for r in report.rows if r.role == "test"]).values())


def _visible_ticklabels(fig, ax, axis="y"):
    """The window extents of the tick labels drawn (ticks inside the view limits, with text)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in labels
            if t.get_visible() and t.get_text() and lo <= t.get_position()[1 if axis == "y" else 0] <= hi]


def _no_overlap(boxes):
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert P._overlap(boxes[i][1], boxes[j][1]) == 0, (boxes[i][0], boxes[j][0])


def test_symlog_zone_from_data_tick_labels_apart_and_no_empty_panel(saved):
    """The GPU report's fig1 had 10^-7, 0 and -10^-7 overprinted and ~40% of the bias panel below any
    data; now the zone is the noise level of the data, its labels are apart, the limits are the data's."""
    in_fig1 = {"gs", "gs-st", "gr-mc", "zgr", "st"}
    for fig, drawn in ((P.figure_fig1(saved)[0], lambda r: r.family in in_fig1 and r.hyper.get("M") in (None, 10, 100)
                        and (r.family != "st" or r.spec == "st")),
                       (P.figure_pareto(saved)[0], lambda r: True)):
        ax = fig.axes[0]
        assert ax.get_yscale() == "symlog"
        lt = ax.yaxis.get_transform().linthresh
        b2 = [r.b2 for r in _one_per_spec(saved) if r.b2 is not None and drawn(r)]
        noise = min(max(abs(e.low), abs(e.high)) for e in b2 if e.low <= 0 <= e.high)
        assert noise / 10 < lt <= noise  # within the data's small values, not a fixed 1e-7
        ticks = [y for y in ax.get_yticks() if min(ax.get_ylim()) <= y <= max(ax.get_ylim())]
        assert 0.0 in ticks and not [y for y in ticks if 0 < abs(y) < lt]  # no tick inside the zone but 0
        _no_overlap(_visible_ticklabels(fig, ax))
        # the panel holds the data: at most 10% of its height below the lowest interval end
        tr = ax.yaxis.get_transform()
        lows = [e.low for e in b2]
        (y0, y1), lowest = tr.transform(np.array([[v] for v in ax.get_ylim()])).ravel(), tr.transform([[min(lows)]])
        assert (float(lowest.ravel()[0]) - y0) / (y1 - y0) < 0.1


def test_fig1_level_lines_under_the_curves_markers(saved):
    """ZGR's line and band are drawn below every curve, so the low-t GS-ST / GR-MC markers that
    coincide with ZGR stay visible (both were at zorder 2, ZGR drawn last, on top)."""
    fig, _, _ = P.figure_fig1(saved)
    for ax in fig.axes[:2]:
        lines = _lines(ax)
        curves = [lines[k] for k in ("GS-ST(t)", "GR-MC(t, M=10)", "GR-MC(t, M=100)")]
        levels = [ln for ln in ax.get_lines() if ln.get_color() == P.OKABE_ITO["vermillion"]]
        spans = [p for p in ax.patches if np.allclose(p.get_facecolor()[:3], matplotlib_rgb(P.OKABE_ITO["vermillion"]))]
        assert levels
        assert max(a.get_zorder() for a in levels + spans) < min(c.get_zorder() for c in curves)


def matplotlib_rgb(color):
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def test_fig1_markers_at_t_near_1_are_not_overprinted():
    """t = 1, 1.03, 1.1 lie 0.013 and 0.029 decades apart: on the log t axis their markers overprint;
    each panel repeats them in an inset on a linear t axis where they are apart."""
    rep = F.report_from_json(GPU_REPORT.read_text())
    fig, _, _ = P.figure_fig1(rep)
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes[:2]:
        (inset,) = ax.child_axes
        assert inset.get_xscale() == "linear"
        for label in ("GS(t)", "GS-ST(t)", "GR-MC(t, M=10)", "GR-MC(t, M=100)"):
            main = _lines(ax)[label]
            (line,) = [ln for ln in inset.get_lines() if ln.get_gid() == f"inset:{label}"]
            np.testing.assert_allclose(line.get_xdata(), [1, 1.03, 1.1])
            size = line.get_markersize() * fig.dpi / 72
            px = inset.transData.transform(np.column_stack(line.get_data()))[:, 0]
            assert np.diff(px).min() > size  # apart in the inset
            t = np.asarray(main.get_xdata())
            near = np.isin(np.round(t, 6), [1, 1.03, 1.1])
            mpx = ax.transData.transform(np.column_stack([t, main.get_ydata()]))[near, 0]
            assert np.diff(mpx).min() < size  # and overprinted in the main panel (why the inset is there)


def test_grmc_same_marker_in_every_figure(report):
    fig1, _, _ = P.figure_fig1(report)
    pareto, _, _ = P.figure_pareto(report)
    for M in (10, 100):
        a, b = _lines(fig1.axes[0])[f"GR-MC(t, M={M})"], _lines(pareto.axes[0])[f"GR-MC(t, M={M})"]
        assert (a.get_marker(), a.get_color(), a.get_linestyle()) == (b.get_marker(), b.get_color(),
                                                                       b.get_linestyle()), M
    assert _lines(fig1.axes[0])["GR-MC(t, M=10)"].get_marker() != _lines(fig1.axes[0])["GR-MC(t, M=100)"].get_marker()


def test_fig4_reference_point_legend_keys_and_inset_labels(saved):
    fig, drawn, _ = P.figure_pareto(saved)
    ax = fig.axes[0]
    ref = next(r for r in saved.rows if r.role == "reference" and r.spec == saved.reference)
    (pt,) = [ln for ln in ax.get_lines() if ln.get_gid() == "reference"]
    assert (pt.get_xdata()[0], pt.get_ydata()[0]) == pytest.approx((ref.variance.value, 0.0))
    assert "RF(M) reference" in drawn
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert any("reference" in t and "unbiased" in t for t in texts)
    # the near-tie key is drawn like the near-tie marks: a dashed, unfilled ring
    tie_key = legend.legend_handles[texts.index("Pareto: near-tie")]
    (tie,) = [c for c in ax.collections if c.get_gid() == "pareto-tie"]
    assert tie_key.get_linestyle()[0][1] is not None and tie_key.get_linestyle() == tie.get_linestyle()
    assert len(tie_key.get_facecolor()) == 0
    # the inset's tick labels lie inside the main axes and off its tick labels
    (inset,) = ax.child_axes
    renderer = FigureCanvasAgg(fig).get_renderer()
    frame = ax.get_window_extent(renderer)
    inner = _visible_ticklabels(fig, inset, "y") + _visible_ticklabels(fig, inset, "x")
    assert inner
    for text, box in inner:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    outer = _visible_ticklabels(fig, ax, "y") + _visible_ticklabels(fig, ax, "x")
    for text, box in inner:
        assert all(P._overlap(box, o) == 0 for _, o in outer), text
    _no_overlap(_visible_ticklabels(fig, inset, "x"))


def test_quant_unit_titles_in_words():
    eta = np.linspace(-1, 4, 5)
    curve = (eta, eta, 0 * eta, eta)
    specs = ("st", "gs-st(t=0.1)", "gr-mc(t=0.1,M=100)", "rf(M=2)")
    fig = P.figure_quant_unit({("linear", "logistic"): {s: curve for s in specs}})[0]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["ST", "GS-ST, t = 0.1", "GR-MC, t = 0.1, M = 100", "RF, M = 2"]
    assert not any("(" in t or "=" in t.replace(" = ", "") for t in titles)
