"""How many draws would resolve a squared bias from zero, from a run's own numbers (issue 24, item 4).

A row whose b2 interval holds 0 does not say whether the estimator is biased. If the true b2 is the
estimate ``b`` (> 0), the interval's lower end ``low`` clears 0 once its lower half ``b - low`` has shrunk
below ``b``, i.e. by a factor ``f = (b - low) / b``. Near b2 = 0 Eq. 16's error is dominated by the noise's
own square (``2 tr(S^2) / n^2``: the half shrinks like 1/n), and where the bias dominates by its cross
term (``4 m'S m / n``: like 1/sqrt(n)); so between ``n f`` and ``n f^2`` draws per run (tested run and
reference alike) would resolve it. An estimate at or below 0 shows no sign of a bias at this n: its
interval's upper end bounds the b2 there is.

This is a planning figure, not a guarantee: the true b2 may be smaller than its estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resolution:
    """``low_n``..``high_n`` draws per run would resolve b2 from 0 if it is ``b2``; None when ``b2 <= 0``."""

    spec: str
    seed: int
    n: int
    b2: float
    high: float
    low_n: int | None
    high_n: int | None

    def line(self) -> str:
        name = self.spec if self.seed == 0 else f"{self.spec} (seed {self.seed})"
        if self.low_n is None:
            return (f"{name}: b2 {self.b2:.3g} is not resolved from 0 at n = {self.n:,}, and shows no sign of a "
                    f"bias: it is below {self.high:.3g} (the interval's upper end)")
        return (f"{name}: b2 {self.b2:.3g} is not resolved from 0 at n = {self.n:,}; if that is its value, "
                f"about {self.low_n:,} to {self.high_n:,} draws per run (and as many reference draws) would "
                "resolve it")


def to_resolve(row: Any) -> Resolution | None:
    """The :class:`Resolution` of a tested report row whose b2 interval holds 0, else None."""
    b = getattr(row, "b2", None)
    if b is None or b.low is None or b.high is None or not (b.low <= 0.0 <= b.high):
        return None
    n = int(row.n)
    if not b.value > 0.0:
        return Resolution(row.spec, int(row.seed), n, float(b.value), float(b.high), None, None)
    f = (b.value - b.low) / b.value
    return Resolution(row.spec, int(row.seed), n, float(b.value), float(b.high), math.ceil(n * f),
                      math.ceil(n * f * f))


def unresolved(rows: Any) -> list[Resolution]:
    """Every tested row whose b2 interval holds 0, in the report's order."""
    return [r for r in (to_resolve(row) for row in rows) if r is not None]
