"""The multi-model coverage study's sampler (biasvar/studies/coverage/tables.py): its exact gradient and
expectations agree with the enumeration code, its draws have the expectations they claim, and the
reduced coordinates keep Eq. 16 (the real dim, the inner products)."""

from __future__ import annotations

import numpy as np
import pytest

from biasvar.problems.enumeration import enumerate_expectation, enumerate_gradient
from biasvar.stats.gram import eq16, pair_gram
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.pairs import memory_run
from biasvar.studies.coverage.tables import outcome_tables


def _flat(d: dict, names: list[str]) -> np.ndarray:
    return np.concatenate([d[k].reshape(-1).double().numpy() for k in names])


@pytest.fixture(scope="module", params=["vae-bin", "toy-quartic", "hvae-bin"])
def case(request):
    model = next(m for m in multi.MODELS if m.name == request.param)
    problem = model.problem()
    return problem, outcome_tables(problem, ["zgr", "st"])


def test_the_tables_truth_is_the_enumeration_codes(case):
    problem, tab = case
    names = list(problem.params)
    params = {k: v.double() for k, v in problem.params.items()}
    g = _flat(enumerate_gradient(problem, params, problem.batch.double()), names)
    assert tab.dim == len(g)
    np.testing.assert_allclose(np.linalg.norm(tab.g_exact), np.linalg.norm(g), rtol=1e-10)
    for spec in ("zgr", "st"):
        e = _flat(enumerate_expectation(problem, spec).mean, names)
        want = float(np.sum((e - g) ** 2) / len(g))
        assert want > 0
        assert tab.truth[spec] == pytest.approx(want, rel=1e-8)


def test_draws_have_the_expectation_they_claim(case):
    _, tab = case
    rng = np.random.default_rng(0)
    for spec, truth in (("rf(M=4)", 0.0), ("zgr", tab.truth["zgr"])):
        x = tab.draws(spec, 40_000, rng)
        err = x.mean(0) - tab.g_exact
        v = x.var(0, ddof=1).sum() / tab.dim
        b2 = float(err @ err) / tab.dim - v / len(x)  # Eq. 16 against the exact gradient: unbiased
        assert abs(b2 - truth) < 5 * np.sqrt(2 * v * v / tab.rank + 4 * truth * v) / np.sqrt(len(x)) + 1e-12


def test_a_pair_from_the_tables_keeps_the_real_dim_and_eq16(case):
    _, tab = case
    x = tab.draws("zgr", 64, np.random.default_rng(1))
    pg = tab.pair(tab.run("zgr", 64, 8, np.random.default_rng(1)), None)  # the same draws, in 8 blocks
    assert list(pg.dims) == [tab.dim]
    b2, v, _ = (a[-1] for a in eq16(pg, np.ones(0), np.ones(8)))
    err = x.mean(0) - tab.g_exact
    want_v = float(x.var(0, ddof=1).sum()) / tab.dim
    assert v == pytest.approx(want_v, rel=1e-9)
    assert b2 == pytest.approx(float(err @ err) / tab.dim - want_v / 64, rel=1e-9, abs=1e-15)
    raw = pair_gram(None, memory_run(x, 8), exact=tab.g_exact)[0]
    assert int(raw.dims[-1]) == tab.rank  # without the replacement the reduced size would be taken as d


def test_rf_draws_are_the_estimators_formula():
    """rf(M) from the tables is ``mean_m [D + M/(M-1) (f_m - mean f) S]`` of M independent outcomes."""
    model = next(m for m in multi.MODELS if m.name == "toy-quartic")
    tab = outcome_tables(model.problem(), ["zgr"])
    rng = np.random.default_rng(3)
    idx = tab._outcomes(np.random.default_rng(3), (1, 4))[0, :, 0]  # the outcomes the first draw will take
    f = tab.rf_f[0, idx]
    want = np.mean([tab.rf_d[0, i] + 4 / 3 * (f[j] - f.mean()) * tab.rf_s[0, i] for j, i in enumerate(idx)], 0)
    np.testing.assert_allclose(tab.draws("rf(M=4)", 1, rng)[0], want, rtol=1e-12, atol=1e-14)
