"""The issue-24 candidates that read the bias's lean from the pair (biasvar/stats/intervals/adapt.py): the bias
shapes, and the upper end moving with what the offset shows on the strong noise directions. (~15 s of one CPU.)"""

from __future__ import annotations

import numpy as np
import pytest

from biasvar.stats.intervals import adapt
from biasvar.stats.intervals.gauss_eb import gauss_model
from biasvar.stats.intervals.resample import pivot_parts
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.gauss_kind import gauss_tables

pytestmark = pytest.mark.usefixtures("one_thread")

ST = multi.MSetting("zgr", "exact", 1024, 32)  # b2 ~ 2.6 V/n


def _model(pg):
    return gauss_model(pg, pivot_parts(pg), len(pg.dims) - 1)


def _pairs(align: float, reps: int):
    tab = gauss_tables(rank=300, decay=1.1, align=align, seed=21)
    rng = np.random.default_rng(4)
    return [tab.pair(tab.run(ST.spec, ST.n, ST.blocks, rng), None) for _ in range(reps)]


def test_shapes_run_from_even_over_all_coordinates_to_the_strongest_direction():
    m = _model(_pairs(1.0, 1)[0])
    w, w_iso = adapt.shape_weights(m, 0.0)
    assert w.sum() + w_iso == pytest.approx(1.0)
    np.testing.assert_allclose(w, 1.0 / m.dim)  # p = 0: every one of the d coordinates alike
    w6, iso6 = adapt.shape_weights(m, 6.0)
    assert w6[np.argmax(m.lam)] > 0.5 and iso6 < 1e-6


def _upper_ratio(align: float, interval) -> float:
    """Mean upper end of ``interval`` over gauss-eb's on the same pairs and simulated draws."""
    from biasvar.stats.intervals.gauss_eb import gauss_eb_interval

    out = []
    for pg in _pairs(align, 12):
        m, est = _model(pg), float(multi.eq16_of(pg)[0][-1])
        hi = interval(m, est, 0.025, 1.0, np.random.default_rng(1), 4000, dof=31)[1]
        out.append((hi - est) / (gauss_eb_interval(m, est, 0.025, 1.0, np.random.default_rng(1), 4000)[1] - est))
    return float(np.mean(out))


def test_the_upper_end_comes_down_off_the_strong_directions_and_not_on_them():
    """gauss-adapt-eb is gauss-eb with the power read from the offset: below 1.5 where the bias lies off the strong
    directions (upper half narrower), at 1.5 or above where it lies on them (as wide or wider)."""
    off, on = _upper_ratio(0.1, adapt.adapt_eb_interval), _upper_ratio(2.5, adapt.adapt_eb_interval)
    assert off < 0.95 and on > 0.98 and on - off > 0.08, (off, on)
