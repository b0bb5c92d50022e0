"""Bias profiles of a given **lean** on a noise spectrum (the measure the coverage studies report).

A bias with squared coordinates ``w`` on the eigenvectors of a noise covariance with eigenvalues ``c`` has
the alignment ``(w'c / sum w) / (tr C^2 / tr C)``: 1 when it is shaped like the noise, above 1 when it sits on
the strong directions, where Eq. 16's error has its largest linear term ``4 m'Cm / d^2``. The studies span
alignments 0.1 to 2.5 (the real-gradient VAE's ZGR bias is at 1.5-1.6); :mod:`~biasvar.studies.coverage.floor`
and the lean-robust candidates (:mod:`~biasvar.stats.intervals.lean_robust`) take the profiles ``∝ c^q`` at
those alignments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the leans the coverage studies span, and the floor's family (the real VAE's ZGR bias is at 1.5-1.6)
ALIGNMENTS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5)


def alignment_of(weights: np.ndarray, c: np.ndarray) -> float:
    """The alignment of a bias with squared coordinates ``weights`` on a noise of eigenvalues ``c``."""
    return float((weights @ c) / weights.sum() / (np.sum(c * c) / c.sum()))


def aligned_weights(c: np.ndarray, align: float) -> np.ndarray:
    """Squared coordinates ``∝ c^q`` (sum 1) whose alignment on ``c`` is ``align`` (bisection on ``q``);
    ValueError where it is out of reach (above ``c_max tr C / tr C^2``, or below ``c_min`` of it)."""
    top, bottom = alignment_of(np.eye(len(c))[np.argmax(c)], c), alignment_of(np.eye(len(c))[np.argmin(c)], c)
    if not bottom < align < top:
        raise ValueError(f"alignment {align} out of reach ({bottom:.3g}, {top:.3g}) for this spectrum")
    lc = np.log(c / c.max())

    def w(q: float) -> np.ndarray:
        e = np.exp(q * lc - np.max(q * lc))
        return e / e.sum()

    lo, hi = -200.0, 200.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if alignment_of(w(mid), c) < align:
            lo = mid
        else:
            hi = mid
    return w(0.5 * (lo + hi))


def reachable_profiles(c: np.ndarray, alignments: Sequence[float] = ALIGNMENTS) -> list[np.ndarray]:
    """Squared bias profiles (sum 1) ``∝ c^q`` at each alignment of ``alignments`` reachable on ``c``."""
    out = []
    for a in alignments:
        try:
            out.append(aligned_weights(c, a))
        except ValueError:
            continue
    return out


__all__ = ["ALIGNMENTS", "aligned_weights", "alignment_of", "reachable_profiles"]
