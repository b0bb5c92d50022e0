"""Paired contrasts: the difference in b2 and in V between two tested runs against one reference.

"A is less biased than B" is a statement about ``b2_A - b2_B``, and both estimates use the **same**
reference run R. With every mean centred at R's (or at the exact gradient), Eq. 16 gives

    ``b2_A - b2_B = (||mu_A - mu_R||^2 - ||mu_B - mu_R||^2) / d - V_A/n_A + V_B/n_B``

so the reference-only terms (``||mu_R||^2`` and ``V_R/n_R``) cancel exactly, and R's noise enters
only through ``-2 e_R . (mu_A - mu_B) / d``. Treating the two b2 intervals as independent gets
this wrong either way: when A and B are biased alike, R's noise moves both estimates together and
cancels in the difference (independent intervals are far too wide); when their biases point in
different directions it adds up (they are too narrow). Both cases are in ``tests/test_contrast.py``.

**Interval: delete-one-block jackknife with Student t (``jackknife-t``).** The statistic is
evaluated from the block Gram matrices of the two pairs (:func:`biasvar.stats.gram.eq16`, the
two :class:`~biasvar.stats.gram.PairGram` share R's blocks and centre) with one block of one run
left out at a time: a left-out block of R changes **both** b2 estimates in the same replicate,
which is what accounts for the shared reference. The variance is the sum over the three
independent runs of ``(nb - 1)/nb * sum_i (theta_(i) - theta_(.))^2``; the interval is
``theta +- t_nu * se`` with Welch-Satterthwaite degrees of freedom ``nu`` from the three parts.
Cheap: ``nb_R + nb_A + nb_B`` quadratic forms in O(nb^2) numbers. ``V_A - V_B`` (independent runs)
gets the same treatment. Coverage on Gaussian blocks with known truth: ``tests/test_contrast.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from biasvar.errors import AnalysisError
from biasvar.stats.gram import PairGram, eq16
from biasvar.stats.intervals import Estimate
from biasvar.stats.intervals.jackknife import jack_var, loo_weights
from biasvar.stats.intervals.welch import welch_t

CONTRAST_METHOD = "jackknife-t"


@dataclass(frozen=True)
class Contrast:
    """``A - B`` in b2 and in V (all parameters), against one reference, with jackknife-t intervals.

    Attributes:
        a, b: canonical specs of the two tested runs; ``a_seed``, ``b_seed`` their seeds.
        reference: the reference's spec (or ``exact``).
        b2: ``b2_A - b2_B`` with its interval (shared reference accounted for).
        variance: ``V_A - V_B`` with its interval.
        b2_se_independent: the standard error of ``b2_A - b2_B`` one would get by treating the two
            b2 estimates as independent (each with R's part of its own jackknife): a diagnostic of
            how much sharing the reference matters (``b2.se`` is the right one).
        df_b2, df_variance: the Welch-Satterthwaite degrees of freedom of the t quantiles.
        method, confidence_level: how the intervals were formed.
    """

    a: str
    a_seed: int
    b: str
    b_seed: int
    reference: str
    b2: Estimate
    variance: Estimate
    b2_se_independent: float | None
    df_b2: float | None
    df_variance: float | None
    method: str = CONTRAST_METHOD
    confidence_level: float = 0.95

    @property
    def label(self) -> str:
        return f"{self.a} - {self.b}"


def verdict(e: Estimate, names: tuple[str, str] = ("A", "B")) -> str:
    """``A < B``, ``A > B`` (the interval of ``A - B`` excludes 0) or ``A ~ B`` (it holds 0, or none)."""
    a, b = names
    if e.low is None or e.high is None:
        return f"{a} ~ {b}"
    if e.high < 0:
        return f"{a} < {b}"
    if e.low > 0:
        return f"{a} > {b}"
    return f"{a} ~ {b}"


def total_layer(pg: PairGram) -> PairGram:
    """The all-parameters layer of a :class:`PairGram` only (what contrasts and Pareto marks use)."""
    return replace(pg, dims=pg.dims[-1:], ref_m2=pg.ref_m2[:, -1:], test_m2=pg.test_m2[:, -1:],
                   rr=pg.rr[-1:], rt=pg.rt[-1:], tt=pg.tt[-1:])


def _t_interval(value: float, parts: list[tuple[float, int]], level: float) -> tuple[Estimate, float | None]:
    """``value +- t_nu se`` from independent variance parts ``(var, n_blocks)``; nu by Welch-Satterthwaite."""
    parts = [(v, n) for v, n in parts if n > 1 and np.isfinite(v)]
    var = sum(v for v, _ in parts)
    if not parts or not np.isfinite(var):
        return Estimate(value), None
    se = math.sqrt(max(var, 0.0))
    q, nu = welch_t(parts, 0.5 + level / 2)
    return (Estimate(float(value), float(value - q * se), float(value + q * se), float(se)),
            float(nu) if np.isfinite(nu) else None)


def _check_pair(pa: PairGram, pb: PairGram) -> None:
    if pa.exact != pb.exact:
        raise AnalysisError("contrast: both runs must be compared with the same reference (run or exact)")
    if not pa.exact and (len(pa.ref_count) != len(pb.ref_count) or not np.array_equal(pa.ref_count, pb.ref_count)
                         or not np.allclose(pa.rr[-1], pb.rr[-1], rtol=1e-9, atol=0.0)):
        raise AnalysisError("contrast: the two pairs do not share the same reference blocks and centre")
    if int(pa.dims[-1]) != int(pb.dims[-1]):
        raise AnalysisError(f"contrast: the runs have different dims ({int(pa.dims[-1])}, {int(pb.dims[-1])})")


def contrast_parts(pa: PairGram, pb: PairGram, level: float = 0.95) -> dict[str, object]:
    """The numbers of :class:`Contrast` from the two pairs' Gram matrices (all-parameters layer).

    Args:
        pa, pb: :class:`PairGram` of (R, A) and (R, B) with the **same** reference blocks and centre
            (``pair_gram(ref, A, ref_mean=m)``, ``pair_gram(ref, B, ref_mean=m)``), or both exact.
        level: confidence level.

    Returns:
        ``dict(b2=Estimate, variance=Estimate, b2_se_independent=float | None, df_b2, df_variance)``.
    """
    _check_pair(pa, pb)
    pa, pb = total_layer(pa), total_layer(pb)
    nr, na, nb = len(pa.ref_count), len(pa.test_count), len(pb.test_count)
    one_r = None if pa.exact else np.ones(nr)
    ba, va, _ = (x[0] for x in eq16(pa, one_r, np.ones(na)))
    bb, vb, _ = (x[0] for x in eq16(pb, one_r, np.ones(nb)))
    d_b2, d_v = float(ba - bb), float(va - vb)
    if na < 2 or nb < 2 or (not pa.exact and nr < 2):
        return dict(b2=Estimate(d_b2), variance=Estimate(d_v), b2_se_independent=None, df_b2=None,
                    df_variance=None)
    # leave one block of A out (B, R whole), then one of B, then one of R (both pairs at once)
    b_a, v_a, _ = eq16(pa, None if pa.exact else np.ones((na, nr)), loo_weights(na))
    b_b, v_b, _ = eq16(pb, None if pb.exact else np.ones((nb, nr)), loo_weights(nb))
    parts_b2 = [(jack_var(b_a[:, 0] - bb), na), (jack_var(ba - b_b[:, 0]), nb)]
    parts_v = [(jack_var(v_a[:, 0]), na), (jack_var(v_b[:, 0]), nb)]
    indep = jack_var(b_a[:, 0]) + jack_var(b_b[:, 0])
    if not pa.exact:
        r_a = eq16(pa, loo_weights(nr), np.ones((nr, na)))[0][:, 0]
        r_b = eq16(pb, loo_weights(nr), np.ones((nr, nb)))[0][:, 0]
        parts_b2.append((jack_var(r_a - r_b), nr))
        indep += jack_var(r_a) + jack_var(r_b)
    e_b2, df_b2 = _t_interval(d_b2, parts_b2, level)
    e_v, df_v = _t_interval(d_v, parts_v, level)
    return dict(b2=e_b2, variance=e_v, b2_se_independent=math.sqrt(indep) if np.isfinite(indep) else None,
                df_b2=df_b2, df_variance=df_v)


def contrast(pa: PairGram, pb: PairGram, *, a: str, b: str, a_seed: int = 0, b_seed: int = 0,
             reference: str = "", confidence_level: float = 0.95) -> Contrast:
    """:class:`Contrast` ``A - B`` from the pairs (R, A) and (R, B) (see :func:`contrast_parts`)."""
    if not 0.0 < confidence_level < 1.0:
        raise AnalysisError(f"confidence_level must lie in (0, 1), got {confidence_level!r}")
    return Contrast(a=a, a_seed=int(a_seed), b=b, b_seed=int(b_seed), reference=reference,
                    confidence_level=float(confidence_level), **contrast_parts(pa, pb, confidence_level))


def split_pair(text: str) -> tuple[str, str]:
    """``"A,B"`` -> ``(A, B)``, splitting at the one comma outside parentheses.

    >>> split_pair("gr-mc(M=100,t=0.01),zgr")
    ('gr-mc(M=100,t=0.01)', 'zgr')
    """
    depth, cuts = 0, []
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            cuts.append(i)
    if len(cuts) != 1:
        raise AnalysisError(f"--contrast {text!r}: expected two estimator specs separated by one comma, "
                            f"e.g. 'zgr,gr-mc(M=100,t=0.01)'")
    a, b = text[:cuts[0]].strip(), text[cuts[0] + 1:].strip()
    if not a or not b:
        raise AnalysisError(f"--contrast {text!r}: expected two estimator specs, e.g. 'zgr,st'")
    return a, b


__all__ = ["CONTRAST_METHOD", "Contrast", "contrast", "contrast_parts", "split_pair", "total_layer", "verdict"]
