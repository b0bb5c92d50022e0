"""The claims ledger's data: claim types (one frozen dataclass per kind of test), margins, and the
verdicts an evaluation gives (:class:`Check`, :class:`ClaimResult`, :class:`Ledger`).

A claim names runs by estimator spec; a spec may hold ``{t}``, filled in from the claim's ``t``
list (one comparison per temperature, or the family a trend is measured over). Nothing here
computes: :mod:`biasvar.claims.load` builds claims from a file, :mod:`biasvar.claims.evaluate`
decides them, :mod:`biasvar.claims.write` writes ``claims.json`` / ``claims.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from biasvar.errors import BiasvarError

#: what a claim can be about: a row's b2, V, MSE = b2 + V, or V times the cost per draw
QUANTITIES = ("b2", "variance", "mse", "variance_x_cost")
#: the kinds of test (``kind`` in a claims file)
KINDS = ("less", "greater", "equal", "floor", "monotone", "slope", "ratio", "front")
#: verdicts; "not measured" names the runs that are missing
SUPPORTED, CONTRADICTED, UNDECIDED, NOT_MEASURED = "supported", "contradicted", "undecided", "not measured"
VERDICTS = (SUPPORTED, CONTRADICTED, UNDECIDED, NOT_MEASURED)
#: family-wise corrections (``--correction``)
CORRECTIONS = ("bonferroni", "none")


class ClaimsError(BiasvarError, ValueError):
    """A claims file that cannot be read or does not follow the format (one line: entry and field)."""


@dataclass(frozen=True)
class Margin:
    """How far apart two values may be and still count as "equal" (or how far below/above for a
    margin on ``less``/``greater``): ``abs`` in the quantity's units, or ``rel`` times a scale.

    The scale of ``rel``: for two runs, the larger of their two point estimates (absolute values);
    for one run (``floor``), the point estimate of the run ``of`` names.
    """

    abs: float | None = None
    rel: float | None = None
    of: str | None = None

    def describe(self) -> str:
        if self.abs is not None:
            return f"margin {self.abs:g}"
        scale = f"|{self.of}|" if self.of else "the larger estimate"
        return f"margin {self.rel:g} x {scale}"


@dataclass(frozen=True)
class Claim:
    """What every claim has: an id, the words it checks, where they stand, and a note on how the
    words were turned into a test."""

    id: str
    kind: str
    words: str
    where: str = ""
    note: str = ""


@dataclass(frozen=True)
class PairClaim(Claim):
    """``less`` / ``greater`` / ``equal``: ``quantity`` of run ``a`` against run ``b`` (a paired
    contrast ``a - b``), for each ``t`` when the specs hold ``{t}``.

    ``less`` reads ``a - b < m`` (m = the margin, 0 without one: "a is below b"; with one it is a
    non-inferiority claim, "a is not above b by more than m"); ``greater`` reads ``a - b > -m``;
    ``equal`` reads ``|a - b| < m`` and needs a margin.
    """

    quantity: str = "b2"
    a: str = ""
    b: str = ""
    t: tuple[float, ...] = ()
    margin: Margin | None = None


@dataclass(frozen=True)
class FloorClaim(Claim):
    """``floor``: one run's quantity (default b2) equals ``value`` (default 0: "unbiased") within
    the margin, for each ``t``."""

    quantity: str = "b2"
    run: str = ""
    t: tuple[float, ...] = ()
    value: float = 0.0
    margin: Margin | None = None


@dataclass(frozen=True)
class MonotoneClaim(Claim):
    """``monotone``: the quantity of ``run`` (holding ``{t}``) rises (``increasing``) or falls
    (``decreasing``) with t over the ``t`` values: every neighbour pair's contrast in that direction."""

    quantity: str = "b2"
    run: str = ""
    t: tuple[float, ...] = ()
    direction: str = "increasing"


@dataclass(frozen=True)
class SlopeClaim(Claim):
    """``slope``: the weighted least-squares slope of log(quantity) against log t over ``t`` lies in
    ``[low, high]`` (either may be None: one-sided)."""

    quantity: str = "variance"
    run: str = ""
    t: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class RatioClaim(Claim):
    """``ratio``: ``numerator / denominator`` of one run is at least ``at_least`` (each ``t``)."""

    numerator: str = "variance"
    denominator: str = "b2"
    run: str = ""
    t: tuple[float, ...] = ()
    at_least: float = 1.0


@dataclass(frozen=True)
class FrontClaim(Claim):
    """``front``: every measured run that is not of the named ``families`` (estimator names, e.g. ``st``,
    ``st-zgr``, ``zgr``) is dominated in (b2, V) by some other measured run; with ``unbiased`` the
    unbiased run of the lowest V (b2 = 0 by construction) may lie on the front too. The paper's
    "the Pareto frontier is represented by families of ... estimators". ``members``: the families' runs
    the claim is about (canonical specs, e.g. a figure's grid); a run that no measured run dominates
    contradicts the claim only when every member is measured (an unmeasured one might dominate it).
    Rules: :mod:`biasvar.claims.kinds`."""

    families: tuple[str, ...] = ()
    unbiased: bool = True
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """One comparison that went into a verdict, with the numbers that decided it.

    Attributes:
        label: what was compared, e.g. ``b2: zgr - st`` or ``slope of log V, gs(t=...)``.
        value, low, high: the estimate and its interval (None where none could be formed).
        level: the interval's confidence level.
        bound: what the interval was held against (``< 0``, ``within +-1.2e-6``, ``>= 100``).
        outcome: supported / contradicted / undecided.
        method: how the interval was formed (``paired contrast, jackknife-t``, ...).
    """

    label: str
    value: float | None
    low: float | None
    high: float | None
    level: float
    bound: str
    outcome: str
    method: str


@dataclass(frozen=True)
class ClaimResult:
    """The verdict of one claim, its checks, and what is missing when it was not measured."""

    claim: Claim
    verdict: str
    reason: str
    checks: tuple[Check, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ledger:
    """Every claim's verdict, and how the family was corrected.

    Attributes:
        results: one per claim, in the file's order.
        alpha: the family-wise error level asked for.
        correction: ``bonferroni`` (over ``n_comparisons``) or ``none``.
        n_comparisons: the comparisons of the measured claims (the Bonferroni count).
        alpha_each: the level each comparison is tested at.
        row_level: the confidence level of the single-run intervals that were read (floor, ratio).
        reference, source, runs_dir, snapshot, store: where the numbers came from (``store``: a
            statistics store, None when from run files).
        notes: anything a reader must know (e.g. single-run intervals at another level).
    """

    results: tuple[ClaimResult, ...]
    alpha: float
    correction: str
    n_comparisons: int
    alpha_each: float
    row_level: float
    reference: str = ""
    source: str = ""
    runs_dir: str | None = None
    snapshot: str = ""
    notes: tuple[str, ...] = field(default=())
    store: str | None = None

    def counts(self) -> dict[str, int]:
        """How many claims got each verdict."""
        return {v: sum(r.verdict == v for r in self.results) for v in VERDICTS}

    def result(self, claim_id: str) -> ClaimResult:
        for r in self.results:
            if r.claim.id == claim_id:
                return r
        raise KeyError(claim_id)


__all__ = ["CONTRADICTED", "CORRECTIONS", "KINDS", "NOT_MEASURED", "QUANTITIES", "SUPPORTED", "UNDECIDED",
           "VERDICTS", "Check", "Claim", "ClaimResult", "ClaimsError", "FloorClaim", "FrontClaim", "Ledger",
           "Margin",
           "MonotoneClaim", "PairClaim", "RatioClaim", "SlopeClaim"]
