"""Deciding one claim of each kind from analysed rows and paired contrasts: the checks and their outcomes.

:class:`Data` looks up what an analysis produced — report rows (:class:`biasvar.report.RunResult`:
spec, seed, role, b2, V, MSE with intervals, cost) and paired contrasts
(:class:`biasvar.stats.contrast.Contrast`: ``A - B`` in b2 and V, jackknife-t, the shared
reference accounted for) — never run files; :data:`DECIDE` maps each claim type to the function
that turns it into :class:`~biasvar.claims.model.Check` s. The ledger is assembled in
:mod:`biasvar.claims.evaluate`; the family size in :mod:`biasvar.claims.planning`.

**Rules** (``a``, ``b`` runs; ``d = a - b`` their paired contrast; ``alpha_each`` below):

* ``less``: ``d < m`` (m the margin, 0 without one). The two-sided ``1 - alpha_each`` interval of
  ``d`` below m: supported; above m: contradicted; holding m: undecided. ``greater`` mirrors it.
* ``equal``: ``|d| < m``, two one-sided tests (TOST) at ``alpha_each``: the ``1 - 2 alpha_each``
  interval inside ``(-m, m)``: supported; entirely outside: contradicted; else undecided.
* ``floor``: one run's interval (the analysis's single-run interval) inside ``value +- m``:
  supported; entirely outside: contradicted (with m = 0: the interval excludes the value).
* ``monotone``: ``less``/``greater`` (m = 0) on every neighbour pair in t.
* ``slope``: weighted least squares of log Q on log t, weights from the runs' standard errors
  (``se(log Q) = se(Q)/Q``; the runs' draws are independent), the standard error inflated by
  ``sqrt(chi2 / (k - 2))`` when the points scatter more than their errors; the ``1 - 2 alpha_each``
  interval against the claimed range as for ``equal``.
* ``ratio`` (``num / den >= r``): conservative ends of the two single-run intervals:
  ``num_low / den_high >= r`` supported (``den_high <= 0``, no detectable denominator, counts as an
  unbounded ratio), ``num_high / den_low < r`` (with ``den_low > 0``) contradicted.

* ``front``: each measured run r outside the named families (other than the unbiased run of the lowest
  V, which may lie on the front; an unbiased run's b2 is 0 by construction) is checked against every
  other run s: *dominated* when ``b2_r - b2_s`` (paired contrast; against an unbiased s, r's own b2,
  normal with the se of its interval) and ``V_r - V_s`` are both decided > 0 (b2 equal when both are
  unbiased); *on the front* when against every s one of the two is decided < 0. Dominated: supported;
  on the front: contradicted (undecided while a run of the claim's ``members`` is not measured: it
  might dominate r); else undecided. The claim takes one slot of the family and splits it
  (Bonferroni) among its ``2 x runs outside x (runs - 1)`` two-sided intervals.

A claim over several t (or neighbour pairs) is supported when every check is, contradicted when
any check is, undecided otherwise. **V of two runs** needs no reference (their draws are
independent), so a V comparison with the reference run uses the two rows' standard errors
(normal); b2 and MSE comparisons need the paired contrast (overlapping marginal intervals decide
nothing). **MSE contrasts** add the b2 and V parts with ``se = se_b2 + se_V`` (an upper bound
whatever their correlation). **Family-wise**: Bonferroni over every comparison of the measured
claims (a ratio counts two intervals), ``alpha_each = alpha / n``; ``correction="none"`` tests each at
``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from biasvar.claims.load import specs_of
from biasvar.claims.model import (
    CONTRADICTED,
    SUPPORTED,
    UNDECIDED,
    Check,
    Claim,
    FloorClaim,
    FrontClaim,
    Margin,
    MonotoneClaim,
    PairClaim,
    RatioClaim,
    SlopeClaim,
)
from biasvar.claims.planning import SYMBOL, family_of, items

#: the method of a check that needed a paired contrast the analysis did not give (e.g. a saved report)
NO_CONTRAST = "no paired contrast (needs the runs' block data)"


@dataclass(frozen=True)
class Num:
    """An estimate with an interval at a stated level (the ends None where none can be formed)."""

    value: float
    low: float | None
    high: float | None
    level: float
    method: str


def quantile(level: float, df: float | None) -> float:
    """The two-sided ``level`` quantile: Student's t with ``df`` degrees of freedom, normal without."""
    p = 0.5 + level / 2
    if df is None or not math.isfinite(df):
        return float(scipy.stats.norm.ppf(p))
    return float(scipy.stats.t.ppf(p, max(df, 1.0)))


def t_interval(value: float, se: float | None, df: float | None, level: float, method: str) -> Num:
    """``value +- q se`` (q from :func:`quantile`); no interval without a finite se."""
    if se is None or not math.isfinite(se):
        return Num(value, None, None, level, method)
    q = quantile(level, df)
    return Num(value, value - q * se, value + q * se, level, method)


def _negated(n: Num) -> Num:
    """``-x`` with its interval mirrored."""
    return Num(-n.value, None if n.high is None else -n.high, None if n.low is None else -n.low, n.level, n.method)


def decide_less(n: Num, bound: float) -> str:
    """``x < bound``: the interval below it supports, above it contradicts."""
    if n.low is None or n.high is None:
        return UNDECIDED
    return SUPPORTED if n.high < bound else CONTRADICTED if n.low > bound else UNDECIDED


def decide_within(n: Num, low: float | None, high: float | None) -> str:
    """``low < x < high`` (either end None: open): interval inside supports, entirely outside contradicts."""
    if n.low is None or n.high is None:
        return UNDECIDED
    lo, hi = -math.inf if low is None else low, math.inf if high is None else high
    if n.high < lo or n.low > hi:
        return CONTRADICTED
    return SUPPORTED if lo < n.low and n.high < hi else UNDECIDED


def combine(outcomes: Sequence[str]) -> str:
    """A claim over several checks: contradicted if any is, supported if all are, else undecided."""
    if any(o == CONTRADICTED for o in outcomes):
        return CONTRADICTED
    return SUPPORTED if outcomes and all(o == SUPPORTED for o in outcomes) else UNDECIDED



def fmt(x: float | None) -> str:
    """A number in a check's message: 3 significant digits, or an em dash."""
    return "—" if x is None else f"{x:.3g}"


class Data:
    """Rows and contrasts of one analysis, looked up by canonical spec."""

    def __init__(self, rows: Sequence[Any], contrasts: Sequence[Any], row_level: float) -> None:
        self.row_level = row_level
        self.tested: dict[str, Any] = {}
        self.ref_rows: dict[str, Any] = {}
        for r in sorted(rows, key=lambda r: int(getattr(r, "seed", 0))):
            if getattr(r, "b2", None) is not None:
                self.tested.setdefault(str(r.spec), r)
            else:
                self.ref_rows.setdefault(str(r.spec), r)
        self.contrasts = {(str(c.a), str(c.b)): c for c in contrasts}

    def lacking(self, c: Claim) -> tuple[str, ...]:
        """The paired contrasts a b2 or MSE comparison of ``c`` needs and this analysis lacks."""
        if not isinstance(c, (PairClaim, MonotoneClaim)) or c.quantity not in ("b2", "mse"):
            return ()
        return tuple(f"paired contrast {a} - {b}" for a, b in (item.specs for item in items(c))
                     if (a, b) not in self.contrasts and (b, a) not in self.contrasts)

    def row(self, spec: str, quantity: str) -> Any:
        if spec in self.tested:
            return self.tested[spec]
        return self.ref_rows[spec] if quantity in ("variance", "variance_x_cost") else None

    def est(self, spec: str, quantity: str) -> Num:
        """A row's quantity with the row's own interval (level ``row_level``)."""
        r = self.row(spec, quantity)
        e = r.variance if quantity == "variance_x_cost" else getattr(r, quantity)
        if e is None:
            return Num(math.nan, None, None, self.row_level, "no estimate")
        k = float(r.cost) if quantity == "variance_x_cost" else 1.0
        low = None if e.low is None else e.low * k
        high = None if e.high is None else e.high * k
        return Num(e.value * k, low, high, self.row_level, f"single run ({self.row_level:.6g} interval)")

    def se(self, spec: str, quantity: str) -> float | None:
        """A row's standard error: its own, else from its interval's half-width."""
        r = self.row(spec, quantity)
        e = r.variance if quantity == "variance_x_cost" else getattr(r, quantity)
        k = float(r.cost) if quantity == "variance_x_cost" else 1.0
        if e is None:
            return None
        if e.se is not None and math.isfinite(e.se):
            return float(e.se) * k
        if e.low is None or e.high is None:
            return None
        return (e.high - e.low) / (2 * quantile(self.row_level, None)) * k

    def difference(self, a: str, b: str, quantity: str, level: float) -> Num:
        """``a - b`` in ``quantity`` with its interval at ``level`` (rules: this module's docstring)."""
        c, sign = self.contrasts.get((a, b)), 1.0
        if c is None and (b, a) in self.contrasts:
            c, sign = self.contrasts[(b, a)], -1.0
        ra, rb = self.row(a, quantity), self.row(b, quantity)
        same_cost = ra is not None and rb is not None and float(ra.cost) == float(rb.cost)
        if c is not None and (quantity != "variance_x_cost" or same_cost):
            how = f"paired contrast, {getattr(c, 'method', 'jackknife-t')}"
            if quantity == "b2":
                return t_interval(sign * c.b2.value, c.b2.se, c.df_b2, level, how)
            if quantity in ("variance", "variance_x_cost"):
                k = float(ra.cost) if quantity == "variance_x_cost" else 1.0
                se = None if c.variance.se is None else k * c.variance.se
                return t_interval(sign * k * c.variance.value, se, c.df_variance, level, how)
            se = None if c.b2.se is None or c.variance.se is None else c.b2.se + c.variance.se
            dfs = [d for d in (c.df_b2, c.df_variance) if d is not None]
            return t_interval(sign * (c.b2.value + c.variance.value), se, min(dfs) if dfs else None, level,
                              how + " (MSE: se_b2 + se_V)")
        if quantity in ("variance", "variance_x_cost"):
            ea, eb = self.est(a, quantity), self.est(b, quantity)
            sa, sb = self.se(a, quantity), self.se(b, quantity)
            se = None if sa is None or sb is None else math.hypot(sa, sb)
            return t_interval(ea.value - eb.value, se, None, level, "independent runs (V needs no reference)")
        ea, eb = self.est(a, quantity), self.est(b, quantity)
        return Num(ea.value - eb.value, None, None, level, NO_CONTRAST)


# ---------------------------------------------------------------------------------------------
# deciding one claim


def _margin_of_pair(m: Margin | None, d: Data, a: str, b: str, q: str) -> float:
    if m is None:
        return 0.0
    if m.abs is not None:
        return m.abs
    return m.rel * max(abs(d.est(a, q).value), abs(d.est(b, q).value))


def _pair(c: PairClaim, d: Data, each: float) -> list[Check]:
    out = []
    sym = SYMBOL[c.quantity]
    for item in items(c):
        a, b = item.specs
        m = _margin_of_pair(c.margin, d, a, b, c.quantity)
        label = f"{sym}: {a} - {b}"
        if c.kind == "equal":
            n = d.difference(a, b, c.quantity, 1 - 2 * each)
            out.append(_check(label, n, f"within +-{fmt(m)} (TOST)", decide_within(n, -m, m)))
        elif c.kind == "less":
            n = d.difference(a, b, c.quantity, 1 - each)
            out.append(_check(label, n, f"< {fmt(m)}", decide_less(n, m)))
        else:
            n = d.difference(a, b, c.quantity, 1 - each)
            neg = _negated(n)
            out.append(_check(label, n, f"> {fmt(-m) if m else '0'}", decide_less(neg, m)))
    return out


def _check(label: str, n: Num, bound: str, outcome: str) -> Check:
    value = None if n.value is None or not math.isfinite(n.value) else float(n.value)
    return Check(label, value, n.low, n.high, n.level, bound, outcome, n.method)


def _floor(c: FloorClaim, d: Data, each: float) -> list[Check]:
    out = []
    for item in items(c):
        (s,) = item.specs
        m = 0.0
        if c.margin is not None:
            m = c.margin.abs if c.margin.abs is not None else c.margin.rel * abs(d.est(c.margin.of, c.quantity).value)
        n = d.est(s, c.quantity)
        if m > 0:
            outcome, bound = decide_within(n, c.value - m, c.value + m), f"within {fmt(c.value)} +- {fmt(m)}"
        else:
            outcome = CONTRADICTED if decide_within(n, c.value, c.value) == CONTRADICTED else UNDECIDED
            bound = f"= {fmt(c.value)} (no margin: only a contradiction can be shown)"
        out.append(_check(f"{SYMBOL[c.quantity]}: {s}", n, bound, outcome))
    return out


def _monotone(c: MonotoneClaim, d: Data, each: float) -> list[Check]:
    out = []
    for item in items(c):
        hi_t, lo_t = item.specs
        n = d.difference(hi_t, lo_t, c.quantity, 1 - each)
        if c.direction == "increasing":
            neg = _negated(n)
            outcome, bound = decide_less(neg, 0.0), "> 0"
        else:
            outcome, bound = decide_less(n, 0.0), "< 0"
        out.append(_check(f"{SYMBOL[c.quantity]}: {hi_t} - {lo_t}", n, bound, outcome))
    return out


def wls_slope(x: Sequence[float], y: Sequence[float], sy: Sequence[float]) -> tuple[float, float, float | None]:
    """Weighted least-squares slope of y on x with known errors ``sy``: ``(slope, se, df)``; the se
    is inflated by ``sqrt(chi2/(k-2))`` when that exceeds 1 (df = k - 2 then, else None: normal)."""
    x, y, w = np.asarray(x, float), np.asarray(y, float), 1.0 / np.square(np.asarray(sy, float))
    xm, ym = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
    sxx = float(np.sum(w * (x - xm) ** 2))
    slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
    se, df = 1.0 / math.sqrt(sxx), None
    k = len(x)
    if k > 2:
        chi2 = float(np.sum(w * (y - ym - slope * (x - xm)) ** 2))
        if chi2 / (k - 2) > 1.0:
            se, df = se * math.sqrt(chi2 / (k - 2)), float(k - 2)
    return slope, se, df


def _slope(c: SlopeClaim, d: Data, each: float) -> list[Check]:
    specs = specs_of(c.run, c.t)
    label = f"slope of log {SYMBOL[c.quantity]} on log t: {c.run} over t = {', '.join(f'{t:g}' for t in c.t)}"
    vals = [d.est(s, c.quantity).value for s in specs]
    ses = [d.se(s, c.quantity) for s in specs]
    bound = f"in [{fmt(c.low) if c.low is not None else '-inf'}, {fmt(c.high) if c.high is not None else 'inf'}]"
    if any(v is None or not v > 0 for v in vals) or any(s is None or not s > 0 for s in ses):
        n = Num(math.nan, None, None, 1 - 2 * each, "needs positive estimates with standard errors")
        return [_check(label, n, bound, UNDECIDED)]
    slope, se, df = wls_slope(np.log(c.t), np.log(vals), np.asarray(ses) / np.asarray(vals))
    n = t_interval(slope, se, df, 1 - 2 * each, "weighted least squares on log-log" + (
        f" (se inflated by the scatter, t with {df:g} df)" if df is not None else ""))
    return [_check(label, n, bound, decide_within(n, c.low, c.high))]


def _ratio(c: RatioClaim, d: Data, each: float) -> list[Check]:
    out = []
    for item in items(c):
        (s,) = item.specs
        num, den = d.est(s, c.numerator), d.est(s, c.denominator)
        value = num.value / den.value if den.value > 0 else None  # b2 <= 0: no detectable denominator
        low = high = None
        if None not in (num.low, num.high, den.low, den.high):
            low = math.inf if den.high <= 0 and num.low > 0 else (num.low / den.high if den.high > 0 else None)
            high = num.high / den.low if den.low > 0 else math.inf
        if low is not None and low >= c.at_least:
            outcome = SUPPORTED
        elif high is not None and high < c.at_least:
            outcome = CONTRADICTED
        else:
            outcome = UNDECIDED
        n = Num(value, low, high, d.row_level, "conservative ends of the two single-run intervals")
        out.append(_check(f"{SYMBOL[c.numerator]}/{SYMBOL[c.denominator]}: {s}", n, f">= {c.at_least:g}",
                          outcome))
    return out


def _is_unbiased(spec: str) -> bool:
    from biasvar.spec import parse_spec

    try:
        return bool(parse_spec(spec).family.unbiased)
    except Exception:  # noqa: BLE001 - a plug-in that does not say: not known to be unbiased
        return False


def _front(c: FrontClaim, d: Data, each: float) -> list[Check]:
    """Every run outside ``c.families`` (and but the lowest-V unbiased run) dominated by another run."""
    unb = {s for s in [*d.tested, *d.ref_rows] if _is_unbiased(s)}
    runs = sorted(set(d.tested) | unb, key=lambda s: d.est(s, "variance").value)  # b2 known: tested, or 0
    best = next((s for s in runs if s in unb), None) if c.unbiased else None
    outside = [r for r in runs if family_of(r) not in c.families and r != best]
    if not outside:
        n = Num(math.nan, None, None, 1 - each, "no run outside the families")
        return [_check("front: every measured run is of the families", n, "nothing to decide", UNDECIDED)]
    level = 1 - each / (2 * len(outside) * (len(runs) - 1))  # Bonferroni inside the claim's slot
    unmeasured = [m for m in c.members if m not in runs]

    def b2_diff(r: str, s: str) -> Num:
        if r in unb and s in unb:
            return Num(0.0, 0.0, 0.0, level, "both unbiased: b2 = 0")
        if s in unb:  # r - 0: r's own b2 (normal, se from its interval)
            e = d.est(r, "b2")
            return t_interval(e.value, d.se(r, "b2"), None, level, f"{r}'s b2 against b2 = 0 ({s} unbiased)")
        if r in unb:
            e = d.est(s, "b2")
            return _negated(t_interval(e.value, d.se(s, "b2"), None, level,
                                       f"b2 = 0 ({r} unbiased) against {s}'s b2"))
        return d.difference(r, s, "b2", level)

    out = []
    for r in outside:
        above, below, open_ = [], 0, []
        for s in runs:
            if s == r:
                continue
            b, v = b2_diff(r, s), d.difference(r, s, "variance", level)
            b_ge = b.low is not None and (b.low > 0 or (b.low == 0 == b.high))
            if b_ge and v.low is not None and v.low > 0:
                above.append((s, b, v))
            elif (b.high is not None and b.high < 0) or (v.high is not None and v.high < 0):
                below += 1
            else:
                open_.append(s)
        if above:
            s, b, v = above[0]
            out.append(Check(f"front: {r} dominated by {s} (b2 difference)", b.value, b.low, b.high, level,
                             f">= 0, and V: {fmt(v.value)} [{fmt(v.low)}, {fmt(v.high)}] > 0", SUPPORTED,
                             f"{b.method}; V: {v.method}"))
        elif not open_ and unmeasured:
            out.append(Check(f"front: {r} dominated by none of the {below} other runs", None, None, None, level,
                             f"each is decidedly below it in b2 or in V; {len(unmeasured)} of the claim's runs not "
                             f"measured (e.g. {unmeasured[0]}) might dominate it", UNDECIDED, "paired contrasts"))
        elif not open_:
            out.append(Check(f"front: {r} dominated by none of the {below} other runs", None, None, None, level,
                             "each is decidedly below it in b2 or in V", CONTRADICTED, "paired contrasts"))
        else:
            out.append(Check(f"front: {r}", None, None, None, level,
                             f"not decided against {', '.join(open_[:2])}" + (", ..." if len(open_) > 2 else ""),
                             UNDECIDED, "paired contrasts"))
    return out


DECIDE: dict[type, Callable[[Any, Data, float], list[Check]]] = {
    PairClaim: _pair, FloorClaim: _floor, MonotoneClaim: _monotone, SlopeClaim: _slope, RatioClaim: _ratio,
    FrontClaim: _front,
}
