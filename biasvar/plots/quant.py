"""Fig. B.5: one stochastic quantizer; per (test function, noise) row and estimator column, the
estimator's mean +-1 std against eta and the exact gradient; panel titles in words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from biasvar.errors import AnalysisError
from biasvar.plots.common import _RC, FORMATS, OKABE_ITO, PlotResult, _new_figure, _save
from biasvar.report import sort_key
from biasvar.spec import parse_spec

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


