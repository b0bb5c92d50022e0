"""What a ledger needs before anything is evaluated: the runs each claim reads, the paired contrasts
to compute, the runs missing, and the size of the family of comparisons (:func:`plan`).

A claim breaks into comparisons (:func:`items`): one per t of a pair, floor or ratio claim, one per
neighbour pair of a monotone claim, one for a slope. Each counts one test toward the Bonferroni
family (a ratio two: it reads two intervals), so ``alpha_each = alpha / n`` (``correction="none"``:
``alpha``). The rules that decide each comparison are in :mod:`biasvar.claims.kinds`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from biasvar.claims.load import fill, specs_of
from biasvar.claims.model import (
    CORRECTIONS,
    Claim,
    ClaimsError,
    FloorClaim,
    FrontClaim,
    MonotoneClaim,
    PairClaim,
    RatioClaim,
    SlopeClaim,
)

SYMBOL = {"b2": "b2", "variance": "V", "mse": "MSE", "variance_x_cost": "Vxcost"}
"""A quantity's symbol in labels and messages."""


@dataclass(frozen=True)
class Item:
    """One comparison of a claim: the runs (spec, quantity) it reads and how many tests it counts."""

    specs: tuple[str, ...]
    needs: tuple[tuple[str, str], ...]
    weight: int = 1
    t: float | None = None


def items(c: Claim) -> list[Item]:
    if isinstance(c, PairClaim):
        out = []
        ts = c.t or (None,)
        for t, a, b in zip(ts, specs_of(c.a, c.t), specs_of(c.b, c.t), strict=True):
            out.append(Item((a, b), ((a, c.quantity), (b, c.quantity)), 1, t))
        return out
    if isinstance(c, FloorClaim):
        of = ((c.margin.of, c.quantity),) if c.margin is not None and c.margin.of else ()
        return [Item((s,), ((s, c.quantity), *of), 1, t) for t, s in zip(c.t or (None,), specs_of(c.run, c.t),
                                                                           strict=True)]
    if isinstance(c, MonotoneClaim):
        s = specs_of(c.run, c.t)
        return [Item((s[i + 1], s[i]), ((s[i + 1], c.quantity), (s[i], c.quantity)), 1, c.t[i + 1])
                for i in range(len(s) - 1)]
    if isinstance(c, SlopeClaim):
        s = specs_of(c.run, c.t)
        return [Item(tuple(s), tuple((x, c.quantity) for x in s), 1)]
    if isinstance(c, RatioClaim):
        return [Item((s,), ((s, c.numerator), (s, c.denominator)), 2, t)
                for t, s in zip(c.t or (None,), specs_of(c.run, c.t), strict=True)]
    if isinstance(c, FrontClaim):  # one slot of the family, split inside among its comparisons
        return [Item((), (), 1)]
    raise ClaimsError(f"claim {c.id!r}: unknown kind {c.kind!r}")


def family_of(spec: str) -> str:
    """The estimator name of a canonical spec (``st-zgr(alpha=0.5,t=1)`` -> ``st-zgr``)."""
    return spec.split("(", 1)[0]


def _available(spec: str, quantity: str, tested: set[str], reference: str | None) -> bool:
    """A tested row has every quantity; the reference run's own row has V (and V x cost) only."""
    return spec in tested or (spec == reference and quantity in ("variance", "variance_x_cost"))


def _missing(c: Claim, tested: set[str], reference: str | None) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for item in items(c):
        for spec, q in item.needs:
            if not _available(spec, q, tested, reference):
                out.setdefault(f"{spec} (the reference: its {SYMBOL[q]} is not estimated; add a tested run of it)"
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


def canon_reference(reference: str | None) -> str | None:
    if reference is None or reference.strip().lower() == "exact":
        return None
    return fill(reference, None)


def plan(claims: Sequence[Claim], tested: Iterable[str], reference: str | None = None, *, alpha: float = 0.05,
         correction: str = "bonferroni") -> Plan:
    """The contrasts, missing runs and family size of ``claims`` given the specs that have tested
    rows (``tested``, canonical) and the reference (a spec, or ``exact``/None)."""
    _check_alpha(alpha, correction)
    tested, ref = set(tested), canon_reference(reference)
    pairs: dict[tuple[str, str], None] = {}
    missing, n = {}, 0
    for c in claims:
        miss = _missing(c, tested, ref)
        missing[c.id] = miss
        if miss:
            continue
        if isinstance(c, FrontClaim):
            for a in sorted(tested):
                if family_of(a) not in c.families:
                    for b in sorted(tested - {a}):
                        if (b, a) not in pairs:
                            pairs.setdefault((a, b), None)
        for item in items(c):
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

