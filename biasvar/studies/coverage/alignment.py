"""How far a bias leans onto the noise's strong directions, estimated without bias from a setting's pairs.

For pairs of one setting (the same true offset ``m`` and mean-error covariance ``C``), each pair's Gram
matrices give unbiased estimates of ``||m||^2 = E ||y||^2 - tr C`` and ``m'Cm = E[y' C^ y] - tr C^2``
(``y`` the observed offset, ``C^`` the sample covariance of the mean, independent of ``y`` for Gaussian
block means; ``tr C^2`` Wishart-corrected, :func:`~biasvar.stats.intervals.gauss_eb.gauss_model`). The
**alignment** is ``(m'Cm / ||m||^2) / (tr C^2 / tr C)``: 1 for a bias shaped like the noise (gauss-eb's prior
with power 1), about ``tr C / (rank tr C^2 / tr C)``-small for a bias off the strong directions, and at most
``lam_max tr C / tr C^2`` (reported as ``max``) for a bias on the strongest direction. Averaged over the
pairs, so it describes the setting, not a pair (one pair's estimate is far too noisy near ``b2 = 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def alignment(grams: Sequence[Any]) -> dict[str, float]:
    """``{"alignment", "max", "b2_over_trace"}`` over the pairs ``grams`` (all-parameters layer);
    ``b2_over_trace`` is ``||m||^2 / tr C`` (about b2 over V/n), the alignment NaN where it is <= 0."""
    from biasvar.stats.intervals.gauss_eb import gauss_model
    from biasvar.stats.intervals.resample import pivot_parts

    rows = []
    for pg in grams:
        m = gauss_model(pg, pivot_parts(pg), len(pg.dims) - 1)
        rows.append([float(np.sum(m.y**2 * m.lam)), m.s**2 * float(np.sum(m.lam**2)), float(m.y @ m.y) + m.r2,
                     float(m.lam.sum()), float(m.lam.max(initial=0.0))])
    ycy, tr2, yy, tr, top = np.mean(rows, axis=0)
    mm = yy - tr
    return {"alignment": float((ycy - tr2) / mm / (tr2 / tr)) if mm > 0 else float("nan"),
            "max": float(top * tr / tr2), "b2_over_trace": float(mm / tr)}


__all__ = ["alignment"]
