import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from biasvar.errors import SpecError
from biasvar.spec import FAMILIES, parse_spec, spec_from_flags


@pytest.mark.parametrize(
    "text,canonical",
    [
        ("zgr", "zgr"),
        ("ST", "st"),
        ("st(t=1)", "st"),
        ("st(2.0)", "st(t=2)"),
        ("gr-mc(t=0.10,M=100)", "gr-mc(M=100,t=0.1)"),
        ("gr-mc(0.1, 1e2)", "gr-mc(M=100,t=0.1)"),
        ("gr-mc(t=0.1)", "gr-mc(M=100,t=0.1)"),
        ("st-zgr(0.5)", "st-zgr(alpha=0.5)"),
        ("st-zgr(alpha=0.5, t=2)", "st-zgr(alpha=0.5,t=2)"),
        ("rf", "rf(M=4)"),
        ("rf(M=2)", "rf(M=2)"),
        ("gs(t=1e-2)", "gs(t=0.01)"),
        (" gs-st ( t = 0.5 ) ", "gs-st(t=0.5)"),
    ],
)
def test_canonical(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("gsst", "expected one of: st, darn, zgr"),
        ("gs", "missing required parameter 't'"),
        ("gs(t=0)", "t > 0"),
        ("gs(t=-1)", "out of range"),
        ("gr-mc(t=0.1,M=0)", "M >= 1"),
        ("gr-mc(t=0.1,M=2.5)", "integer"),
        ("rf(M=1)", "M >= 2"),
        ("st-zgr(alpha=1.5)", "<= 1"),
        ("zgr(t=1)", "valid parameters: none"),
        ("gs(q=1)", "valid parameters: t"),
        ("gs(t=nan)", "finite"),
        ("gs(1, 2)", "too many values"),
        ("gs(t=1,t=2)", "given twice"),
        ("g(", "cannot parse"),
    ],
)
def test_errors_list_what_is_valid(text, fragment):
    with pytest.raises(SpecError, match=re.escape(fragment)):
        parse_spec(text)


def test_flag_form():
    assert str(spec_from_flags("gr-mc", t=0.1, M=100, alpha=None)) == "gr-mc(M=100,t=0.1)"
    assert str(spec_from_flags("gr-mc(t=0.1)", M=10)) == "gr-mc(M=10,t=0.1)"
    assert str(spec_from_flags("st-zgr", alpha=0.25, t=2)) == "st-zgr(alpha=0.25,t=2)"
    with pytest.raises(SpecError, match="does not apply"):
        spec_from_flags("zgr", t=0.5)
    with pytest.raises(SpecError, match="given twice"):
        spec_from_flags("gs(t=0.5)", t=0.7)


def test_cost():
    assert parse_spec("rf(M=4)").cost == 4
    assert parse_spec("gr-mc(t=0.1,M=100)").cost == 1
    assert parse_spec("zgr").cost == 1


_pos = st.floats(min_value=1e-4, max_value=1e4, allow_nan=False, allow_infinity=False)


@given(
    name=st.sampled_from(sorted(FAMILIES)),
    t=_pos,
    M=st.integers(min_value=2, max_value=10_000),
    alpha=st.floats(min_value=0, max_value=1),
)
def test_round_trip(name, t, M, alpha):
    values = {"t": t, "M": M, "alpha": alpha}
    keys = [p.key for p in FAMILIES[name].params]
    text = f"{name}(" + ",".join(f"{k}={values[k]!r}" for k in keys) + ")" if keys else name
    spec = parse_spec(text)
    again = parse_spec(str(spec))
    assert again == spec or str(again) == str(spec)
    assert str(parse_spec(str(again))) == str(again)
