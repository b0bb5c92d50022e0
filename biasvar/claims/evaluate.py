"""Deciding claims from analysed rows and paired contrasts: verdicts with the numbers behind them.

The evaluation reads what an analysis produced — report rows (:class:`biasvar.report.RunResult`:
spec, seed, role, b2, V, MSE with intervals, cost) and paired contrasts
(:class:`biasvar.stats.contrast.Contrast`: ``A - B`` in b2 and V, jackknife-t, the shared
reference accounted for) — never run files, so any source of those objects can be judged
(:func:`evaluate`; :func:`evaluate_report` for a :class:`~biasvar.report.Report`). :func:`plan`
says beforehand which contrasts to compute, which runs are missing and how many comparisons the
family holds (so the analysis can be run at the corrected level).

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from biasvar.claims.load import fill, specs_of
from biasvar.claims.model import (
    CONTRADICTED,
    CORRECTIONS,
    NOT_MEASURED,
    SUPPORTED,
    UNDECIDED,
    Check,
    Claim,
    ClaimResult,
    ClaimsError,
    FloorClaim,
    Ledger,
    Margin,
    MonotoneClaim,
    PairClaim,
    RatioClaim,
    SlopeClaim,
)

_SYMBOL = {"b2": "b2", "variance": "V", "mse": "MSE", "variance_x_cost": "Vxcost"}
#: the method of a check that needed a paired contrast the analysis did not give (e.g. a saved report)
NO_CONTRAST = "no paired contrast (needs the runs' block data)"


# ---------------------------------------------------------------------------------------------
# what each claim needs


@dataclass(frozen=True)
class _Item:
    """One comparison of a claim: the runs (spec, quantity) it reads and how many tests it counts."""

    specs: tuple[str, ...]
    needs: tuple[tuple[str, str], ...]
    weight: int = 1
    t: float | None = None


def _items(c: Claim) -> list[_Item]:
    if isinstance(c, PairClaim):
        out = []
        ts = c.t or (None,)
        for t, a, b in zip(ts, specs_of(c.a, c.t), specs_of(c.b, c.t), strict=True):
            out.append(_Item((a, b), ((a, c.quantity), (b, c.quantity)), 1, t))
        return out
    if isinstance(c, FloorClaim):
        of = ((c.margin.of, c.quantity),) if c.margin is not None and c.margin.of else ()
        return [_Item((s,), ((s, c.quantity), *of), 1, t) for t, s in zip(c.t or (None,), specs_of(c.run, c.t),
                                                                           strict=True)]
    if isinstance(c, MonotoneClaim):
        s = specs_of(c.run, c.t)
        return [_Item((s[i + 1], s[i]), ((s[i + 1], c.quantity), (s[i], c.quantity)), 1, c.t[i + 1])
                for i in range(len(s) - 1)]
    if isinstance(c, SlopeClaim):
        s = specs_of(c.run, c.t)
        return [_Item(tuple(s), tuple((x, c.quantity) for x in s), 1)]
    if isinstance(c, RatioClaim):
        return [_Item((s,), ((s, c.numerator), (s, c.denominator)), 2, t)
                for t, s in zip(c.t or (None,), specs_of(c.run, c.t), strict=True)]
    raise ClaimsError(f"claim {c.id!r}: unknown kind {c.kind!r}")


def _available(spec: str, quantity: str, tested: set[str], reference: str | None) -> bool:
    """A tested row has every quantity; the reference run's own row has V (and V x cost) only."""
    return spec in tested or (spec == reference and quantity in ("variance", "variance_x_cost"))


def _missing(c: Claim, tested: set[str], reference: str | None) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for item in _items(c):
        for spec, q in item.needs:
            if not _available(spec, q, tested, reference):
                out.setdefault(f"{spec} (the reference: its {_SYMBOL[q]} is not estimated; add a tested run of it)"
                               if spec == reference else spec, None)
    return tuple(out)


@dataclass(frozen=True)
class Plan:
    """What an analysis must provide for a ledger: the paired contrasts to compute, the runs each
    claim lacks, and the size of the family (hence the level of every interval)."""

    pairs: tuple[tuple[str, str], ...]
    missing: dict[str, tuple[str, ...]]
    n_comparisons: int
    alpha_each: float

    @property
    def level(self) -> float:
        """The two-sided confidence level each single comparison needs: ``1 - alpha_each``."""
        return 1.0 - self.alpha_each


def _canon_reference(reference: str | None) -> str | None:
    if reference is None or reference.strip().lower() == "exact":
        return None
    return fill(reference, None)


def plan(claims: Sequence[Claim], tested: Iterable[str], reference: str | None = None, *, alpha: float = 0.05,
         correction: str = "bonferroni") -> Plan:
    """The contrasts, missing runs and family size of ``claims`` given the specs that have tested
    rows (``tested``, canonical) and the reference (a spec, or ``exact``/None)."""
    _check_alpha(alpha, correction)
    tested, ref = set(tested), _canon_reference(reference)
    pairs: dict[tuple[str, str], None] = {}
    missing, n = {}, 0
    for c in claims:
        miss = _missing(c, tested, ref)
        missing[c.id] = miss
        if miss:
            continue
        for item in _items(c):
            n += item.weight
            if isinstance(c, (PairClaim, MonotoneClaim)) and all(s in tested for s in item.specs):
                a, b = item.specs
                if (b, a) not in pairs:
                    pairs.setdefault((a, b), None)
    each = alpha / max(n, 1) if correction == "bonferroni" else alpha
    return Plan(tuple(pairs), missing, n, each)


def _check_alpha(alpha: float, correction: str) -> None:
    if not 0.0 < alpha < 0.5:
        raise ClaimsError(f"the family-wise error rate (--fwer) must lie in (0, 0.5), got {alpha!r}")
    if correction not in CORRECTIONS:
        raise ClaimsError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")


# ---------------------------------------------------------------------------------------------
# numbers


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


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


class _Data:
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
        return tuple(f"paired contrast {a} - {b}" for a, b in (item.specs for item in _items(c))
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
        """``a - b`` in ``quantity`` with its interval at ``level`` (rules: module docstring)."""
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


def _margin_of_pair(m: Margin | None, d: _Data, a: str, b: str, q: str) -> float:
    if m is None:
        return 0.0
    if m.abs is not None:
        return m.abs
    return m.rel * max(abs(d.est(a, q).value), abs(d.est(b, q).value))


def _pair(c: PairClaim, d: _Data, each: float) -> list[Check]:
    out = []
    sym = _SYMBOL[c.quantity]
    for item in _items(c):
        a, b = item.specs
        m = _margin_of_pair(c.margin, d, a, b, c.quantity)
        label = f"{sym}: {a} - {b}"
        if c.kind == "equal":
            n = d.difference(a, b, c.quantity, 1 - 2 * each)
            out.append(_check(label, n, f"within +-{_g(m)} (TOST)", decide_within(n, -m, m)))
        elif c.kind == "less":
            n = d.difference(a, b, c.quantity, 1 - each)
            out.append(_check(label, n, f"< {_g(m)}", decide_less(n, m)))
        else:
            n = d.difference(a, b, c.quantity, 1 - each)
            neg = Num(-n.value, None if n.high is None else -n.high, None if n.low is None else -n.low,
                      n.level, n.method)
            out.append(_check(label, n, f"> {_g(-m) if m else '0'}", decide_less(neg, m)))
    return out


def _check(label: str, n: Num, bound: str, outcome: str) -> Check:
    value = None if n.value is None or not math.isfinite(n.value) else float(n.value)
    return Check(label, value, n.low, n.high, n.level, bound, outcome, n.method)


def _floor(c: FloorClaim, d: _Data, each: float) -> list[Check]:
    out = []
    for item in _items(c):
        (s,) = item.specs
        m = 0.0
        if c.margin is not None:
            m = c.margin.abs if c.margin.abs is not None else c.margin.rel * abs(d.est(c.margin.of, c.quantity).value)
        n = d.est(s, c.quantity)
        if m > 0:
            outcome, bound = decide_within(n, c.value - m, c.value + m), f"within {_g(c.value)} +- {_g(m)}"
        else:
            outcome = CONTRADICTED if decide_within(n, c.value, c.value) == CONTRADICTED else UNDECIDED
            bound = f"= {_g(c.value)} (no margin: only a contradiction can be shown)"
        out.append(_check(f"{_SYMBOL[c.quantity]}: {s}", n, bound, outcome))
    return out


def _monotone(c: MonotoneClaim, d: _Data, each: float) -> list[Check]:
    out = []
    for item in _items(c):
        hi_t, lo_t = item.specs
        n = d.difference(hi_t, lo_t, c.quantity, 1 - each)
        if c.direction == "increasing":
            neg = Num(-n.value, None if n.high is None else -n.high, None if n.low is None else -n.low,
                      n.level, n.method)
            outcome, bound = decide_less(neg, 0.0), "> 0"
        else:
            outcome, bound = decide_less(n, 0.0), "< 0"
        out.append(_check(f"{_SYMBOL[c.quantity]}: {hi_t} - {lo_t}", n, bound, outcome))
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


def _slope(c: SlopeClaim, d: _Data, each: float) -> list[Check]:
    specs = specs_of(c.run, c.t)
    label = f"slope of log {_SYMBOL[c.quantity]} on log t: {c.run} over t = {', '.join(f'{t:g}' for t in c.t)}"
    vals = [d.est(s, c.quantity).value for s in specs]
    ses = [d.se(s, c.quantity) for s in specs]
    bound = f"in [{_g(c.low) if c.low is not None else '-inf'}, {_g(c.high) if c.high is not None else 'inf'}]"
    if any(v is None or not v > 0 for v in vals) or any(s is None or not s > 0 for s in ses):
        n = Num(math.nan, None, None, 1 - 2 * each, "needs positive estimates with standard errors")
        return [_check(label, n, bound, UNDECIDED)]
    slope, se, df = wls_slope(np.log(c.t), np.log(vals), np.asarray(ses) / np.asarray(vals))
    n = t_interval(slope, se, df, 1 - 2 * each, "weighted least squares on log-log" + (
        f" (se inflated by the scatter, t with {df:g} df)" if df is not None else ""))
    return [_check(label, n, bound, decide_within(n, c.low, c.high))]


def _ratio(c: RatioClaim, d: _Data, each: float) -> list[Check]:
    out = []
    for item in _items(c):
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
        out.append(_check(f"{_SYMBOL[c.numerator]}/{_SYMBOL[c.denominator]}: {s}", n, f">= {c.at_least:g}",
                          outcome))
    return out


_DECIDE: dict[type, Callable[[Any, _Data, float], list[Check]]] = {
    PairClaim: _pair, FloorClaim: _floor, MonotoneClaim: _monotone, SlopeClaim: _slope, RatioClaim: _ratio,
}


def _reason(verdict: str, checks: Sequence[Check]) -> str:
    k = len(checks)
    if k == 1:
        return f"{checks[0].label}: {_g(checks[0].value)} [{_g(checks[0].low)}, {_g(checks[0].high)}] " \
               f"vs {checks[0].bound}"
    if verdict == SUPPORTED:
        return f"all {k} checks supported"
    bad = [ch for ch in checks if ch.outcome == CONTRADICTED]
    if bad:
        return f"{len(bad)} of {k} checks contradicted, first {bad[0].label}: {_g(bad[0].value)} " \
               f"[{_g(bad[0].low)}, {_g(bad[0].high)}] vs {bad[0].bound}"
    open_ = [ch for ch in checks if ch.outcome == UNDECIDED]
    return f"{k - len(open_)} of {k} checks supported, {len(open_)} undecided (first {open_[0].label})"


def evaluate(claims: Sequence[Claim], rows: Sequence[Any], contrasts: Sequence[Any] = (), *, alpha: float = 0.05,
             correction: str = "bonferroni", row_level: float = 0.95, reference: str | None = None,
             source: str = "", runs_dir: str | None = None, snapshot: str = "") -> Ledger:
    """Verdicts of ``claims`` from analysed rows and paired contrasts (rules: module docstring).

    Args:
        claims: from :func:`biasvar.claims.load_claims`.
        rows: report rows (tested rows have a b2; the reference run's row has b2 None).
        contrasts: paired contrasts ``A - B`` (either orientation is used); :func:`plan` lists them.
        alpha, correction: the family-wise level and its correction (``bonferroni`` or ``none``).
        row_level: the confidence level of the rows' own intervals.
        reference: the reference's spec (or ``exact``); names it among the missing runs.
        source, runs_dir, snapshot: recorded in the ledger.
    """
    ref = _canon_reference(reference)
    data = _Data(rows, contrasts, row_level)
    p = plan(claims, data.tested, ref, alpha=alpha, correction=correction)
    lacking = {c.id: data.lacking(c) for c in claims if not p.missing[c.id]}
    n = sum(item.weight for c in claims if not p.missing[c.id] and not lacking[c.id] for item in _items(c))
    each = alpha / max(n, 1) if correction == "bonferroni" else alpha
    results = []
    for c in claims:
        if p.missing[c.id] or lacking[c.id]:  # marginal intervals decide nothing about a difference
            miss = p.missing[c.id] or lacking[c.id]
            results.append(ClaimResult(c, NOT_MEASURED, "missing: " + ", ".join(miss), missing=miss))
            continue
        checks = _DECIDE[type(c)](c, data, each)
        verdict = combine([ch.outcome for ch in checks])
        results.append(ClaimResult(c, verdict, _reason(verdict, checks), tuple(checks)))
    notes = []
    if correction == "bonferroni" and row_level < 1 - each - 1e-9 and any(
            isinstance(c, (FloorClaim, RatioClaim)) and not p.missing[c.id] for c in claims):
        notes.append(f"single-run intervals are at level {row_level:.6g}, below the corrected {1 - each:.6g}: "
                     f"floor and ratio verdicts are not family-wise corrected (analyse at the corrected level)")
    return Ledger(tuple(results), alpha=alpha, correction=correction, n_comparisons=n, alpha_each=each,
                  row_level=row_level, reference=reference or "", source=source,
                  runs_dir=runs_dir, snapshot=snapshot, notes=tuple(notes))


def evaluate_report(claims: Sequence[Claim], report: Any, *, alpha: float = 0.05, correction: str = "bonferroni",
                    source: str = "") -> Ledger:
    """:func:`evaluate` on a :class:`biasvar.report.Report` (its rows, contrasts and level)."""
    return evaluate(claims, report.rows, report.contrasts, alpha=alpha, correction=correction,
                    row_level=report.confidence_level, reference=report.reference, source=source,
                    runs_dir=report.runs_dir, snapshot=report.snapshot_hash)


def family_statement(ledger: Ledger) -> str:
    """One sentence: how the family of comparisons was corrected, and the levels used."""
    each = f"{ledger.alpha_each:.3g}"
    if ledger.correction == "bonferroni":
        head = (f"Bonferroni over the {ledger.n_comparisons} comparisons of the measured claims: family-wise "
                f"alpha {ledger.alpha:g}, each comparison at alpha/{ledger.n_comparisons} = {each}")
    else:
        head = f"no family-wise correction: each comparison at alpha {ledger.alpha:g}"
    return (f"{head}; less/greater/monotone use two-sided {1 - ledger.alpha_each:.6g} intervals, equal and slope "
            f"(two one-sided tests) {1 - 2 * ledger.alpha_each:.6g} intervals, floor and ratio the runs' own "
            f"{ledger.row_level:.6g} intervals.")


__all__ = ["NO_CONTRAST", "Num", "Plan", "combine", "decide_less", "decide_within", "evaluate", "evaluate_report",
           "family_statement", "plan", "quantile", "t_interval", "wls_slope"]
