"""Summarizing the coverage study: coverage per (setting, method) with its Wilson interval, and the
recommended method."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats

from biasvar.studies.coverage.config import StudyConfig
from biasvar.studies.coverage.truth import Truth


def wilson(hits: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (scipy's ``binomtest(...).proportion_ci``;
    ``(0, 1)`` without trials).

    >>> [round(v, 3) for v in wilson(475, 500)]
    [0.927, 0.966]
    """
    if total == 0:
        return (0.0, 1.0)
    ci = scipy.stats.binomtest(int(hits), int(total)).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def summarize(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (setting, method): coverage with its Wilson interval, widths, misses."""
    cfg: StudyConfig = raw["config"]
    rows = []
    for k, st in enumerate(raw["settings"]):
        truth: Truth = raw["truths"][st.spec]
        est = raw["estimate"][k]
        P = int(np.isfinite(est).sum())
        var_n = (np.nanmean(raw["v_t"][k]) + np.nanmean(raw["v_r"][k])) / cfg.n
        for j, m in enumerate(st.methods):
            lo, hi = raw["low"][k, j], raw["high"][k, j]
            ok = np.isfinite(lo) & np.isfinite(hi)
            hits = int(((lo <= truth.b2) & (truth.b2 <= hi) & ok).sum())
            w = wilson(hits, P, 0.95)
            rows.append({
                "spec": st.spec, "reference": st.reference, "blocks": st.blocks, "method": m,
                "true_b2": truth.b2, "true_b2_se": truth.b2_se, "V_over_n": float(var_n),
                "ratio": float(truth.b2 / var_n) if var_n > 0 else None,
                "pairs": P, "covered": hits, "coverage": hits / P if P else None, "wilson": list(w),
                "miss_below": int(((truth.b2 < lo) & ok).sum()), "miss_above": int(((truth.b2 > hi) & ok).sum()),
                "undefined": int((~ok).sum()),
                "mean_width": float(np.nanmean(hi - lo)), "median_width": float(np.nanmedian(hi - lo)),
                "mean_estimate": float(np.nanmean(est)),
                "estimate_se": float(np.nanstd(est, ddof=1) / math.sqrt(max(P, 1))),
            })
    return rows


def recommend(rows: Sequence[dict[str, Any]], band: tuple[float, float] = (0.93, 0.97)) -> dict[str, Any]:
    """The method whose coverage lies in ``band`` at every setting it was applied to, with the
    narrowest intervals (geometric mean of its width over the pivot's, setting by setting); where no
    method does, ``recommended`` is None and ``safest`` names, among the methods whose worst-case
    coverage is statistically tied with the best one (the Wilson interval of their worst setting
    reaches the best worst-case coverage), the one with the narrowest intervals."""
    methods = sorted({r["method"] for r in rows})
    by = {(r["spec"], r["reference"], r["blocks"], r["method"]): r for r in rows}
    verdict = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        inside = all(band[0] <= r["coverage"] <= band[1] for r in mine)
        worst = min(r["coverage"] for r in mine), max(r["coverage"] for r in mine)
        ratios = [r["mean_width"] / by[(r["spec"], r["reference"], r["blocks"], "pivot")]["mean_width"]
                  for r in mine if (r["spec"], r["reference"], r["blocks"], "pivot") in by]
        verdict[m] = {"all_in_band": inside, "coverage_range": list(worst),
                      "width_vs_pivot": float(np.exp(np.mean(np.log(ratios)))) if ratios else None}
    ok = [m for m in methods if verdict[m]["all_in_band"]]
    best = min(ok, key=lambda m: verdict[m]["width_vs_pivot"] or 1.0) if ok else None
    worst = {m: min((r for r in rows if r["method"] == m), key=lambda r: r["coverage"]) for m in methods}
    best_worst = max(w["coverage"] for w in worst.values())
    tied = [m for m in methods if worst[m]["wilson"][1] >= best_worst]
    safest = min(tied, key=lambda m: verdict[m]["width_vs_pivot"] or 1.0)
    return {"band": list(band), "methods": verdict, "recommended": best, "safest": safest}
