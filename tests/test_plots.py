"""Figures from a small synthetic report: each writes a non-empty PNG (and PDF), tolerates missing
families and says which are missing (``biasvar.plots``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_analysis import fig_runs

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
