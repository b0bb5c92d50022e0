"""How many draws would resolve a squared bias from zero, from a run's own numbers (issue 24, item 4).

A row whose b2 interval holds 0 does not say whether the estimator is biased. If the true b2 is the
estimate ``b`` (> 0), the interval's lower end ``low`` clears 0 once its lower half ``b - low`` has shrunk
below ``b``, i.e. by a factor ``f = (b - low) / b``. Near b2 = 0 Eq. 16's error is dominated by the noise's
own square (``2 tr(S^2) / n^2``: the half shrinks like 1/n), and where the bias dominates by its cross
term (``4 m'S m / n``: like 1/sqrt(n)); so the lower end reaches 0 between ``n f`` and ``n f^2`` draws per run
(tested run and reference alike). Reaching 0 *on average* resolves it only about half the time (the estimate at
the new n scatters about its value), and the true b2 may be smaller or larger than this estimate: by simulation
on the synthetic model kind (``scripts/resolve_check.py``, ``results/coverage/resolve.json``: 4 settings, 72-112
unresolved pairs each, the default interval, fresh pairs at the suggested n with the true b2 fixed) the lower end
is above 0 in 53-74% of cases at ``n f``, 68-89% at ``n f^2``, 89-99% at ``2 n f^2`` and 95-100% at
``4 n f^2``; the line says so, with ``2 n f^2`` as the count for about nine in ten. An estimate at or below 0
shows no sign of a bias at this n: its interval's upper end bounds the b2 there is.

This is a planning figure, not a guarantee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resolution:
    """At ``low_n``, ``high_n`` and ``sure_n`` draws per run b2 is resolved from 0 about half the time, four in five
    and nine in ten, if it is ``b2`` (module docstring); None when ``b2 <= 0``."""

    spec: str
    seed: int
    n: int
    b2: float
    high: float
    low_n: int | None
    high_n: int | None
    sure_n: int | None = None

    def line(self) -> str:
        name = self.spec if self.seed == 0 else f"{self.spec} (seed {self.seed})"
        if self.low_n is None:
            return (f"{name}: b2 {self.b2:.3g} is not resolved from 0 at n = {self.n:,}, and shows no sign of a "
                    f"bias: it is below {self.high:.3g} (the interval's upper end)")
        return (f"{name}: b2 {self.b2:.3g} is not resolved from 0 at n = {self.n:,}; if that is its value, "
                f"{self.low_n:,} draws per run (and as many reference draws) resolve it about half the time, "
                f"{self.high_n:,} about four times in five, {self.sure_n:,} about nine in ten")


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
                      math.ceil(n * f * f), 2 * math.ceil(n * f * f))


def unresolved(rows: Any) -> list[Resolution]:
    """Every tested row whose b2 interval holds 0, in the report's order."""
    return [r for r in (to_resolve(row) for row in rows) if r is not None]
