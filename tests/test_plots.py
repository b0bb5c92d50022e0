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
    assert any(m.startswith("RF(4)") for m in res.missing)  # the reference alone has no b2
    res = P.plot_pareto(rep, tmp_path / "pareto.png")
    _check_png(res.paths[0])
    assert "ST(t)" in res.missing and "RF(M)" in res.missing


def test_nothing_to_draw_is_an_error(tmp_path):
    rep = R.analyze(fig_runs(["rf(M=2)", "darn"]), reference="rf(M=2)", n_resamples=0)
    with pytest.raises(AnalysisError, match="nothing to draw"):
        P.plot_fig1(rep, tmp_path / "x.png")
    with pytest.raises(AnalysisError, match="format"):
        P.plot_pareto(rep, tmp_path / "x.png", formats=("svgz",))


def test_quant_unit_layout(tmp_path):
    eta = np.linspace(-1, 4, 21)

    class Curve:  # the shape of biasvar.quantstudy.UnitCurve
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
    # the Pareto front's halo passes through exactly the rows marked pareto
    front = sorted((r for r in report.rows if r.pareto), key=lambda r: r.variance.value)
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
    assert ax.get_title() == "zgr" and ax.get_xlabel() == "η" and ax.get_ylabel() == "linear\nlogistic"
