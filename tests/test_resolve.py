"""The draws that would resolve a b2 from zero (``biasvar report``'s "b2 near 0" lines, issue 24 item 4)."""

from __future__ import annotations

from types import SimpleNamespace as NS

from biasvar.report.resolve import to_resolve, unresolved


def _row(value, low, high, n=1000, spec="zgr", seed=0):
    return NS(spec=spec, seed=seed, n=n, b2=NS(value=value, low=low, high=high))


def test_a_positive_estimate_gets_the_range_from_the_1_over_n_and_1_over_sqrt_n_scalings():
    r = to_resolve(_row(2e-6, -2e-6, 6e-6, n=1000))  # lower half 4e-6 = 2 x the estimate
    assert (r.low_n, r.high_n) == (2000, 4000)
    # at the lower of the two n the 1/n-scaled lower end is exactly 0; at the higher, the 1/sqrt(n) one
    f = (2e-6 + 2e-6) / 2e-6
    assert 2e-6 - (2e-6 + 2e-6) / f == 0.0
    assert "2,000 to 4,000 draws per run" in r.line()


def test_an_estimate_at_or_below_zero_gives_an_upper_bound_not_a_draw_count():
    r = to_resolve(_row(-1e-7, -5e-6, 4e-6))
    assert r.low_n is None and "no sign of a bias" in r.line() and "4e-06" in r.line()


def test_resolved_rows_and_the_reference_get_no_line():
    assert to_resolve(_row(5e-6, 1e-6, 9e-6)) is None  # the interval excludes 0
    assert to_resolve(NS(spec="rf(M=4)", seed=0, n=10, b2=None)) is None
    rows = [_row(5e-6, 1e-6, 9e-6), _row(1e-6, -1e-6, 3e-6, spec="st"), _row(0.0, -1e-6, 1e-6, spec="gs")]
    assert [r.spec for r in unresolved(rows)] == ["st", "gs"]
    assert unresolved(rows)[1].low_n is None  # exactly 0 shows no sign of a bias
