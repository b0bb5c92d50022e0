"""The ``jackknife-t`` interval: the textbook two-sample delete-one-block jackknife of Eq. 16 with
Student-t quantiles (Welch-Satterthwaite degrees of freedom): analytic from the Gram matrices, no
resampling, symmetric. The delete-one pieces (:func:`loo_weights`, :func:`jack_var`) also serve the
paired contrasts of :mod:`biasvar.stats.contrast`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

from biasvar.stats.gram import PairGram, eq16
from biasvar.stats.intervals.base import Bootstrap, LayerEstimates, PairIntervals, finite_or_none, wants_share
from biasvar.stats.intervals.welch import welch_t


def loo_weights(nb: int) -> np.ndarray:
    """Block weights [nb, nb] deleting one block at a time: row i has block i left out."""
    return np.ones((nb, nb)) - np.eye(nb)


def jack_var(reps: np.ndarray) -> np.ndarray:
    """Jackknife variance ``(nb - 1)/nb sum_j (theta_(-j) - mean)^2`` of replicates [nb, ...] -> [...]."""
    nb = reps.shape[0]
    return (nb - 1) / nb * np.square(reps - reps.mean(0)).sum(0)


def jackknife_intervals(pg: PairGram, b2: np.ndarray, v_t: np.ndarray, boot: Bootstrap,
                        rng: np.random.Generator | None = None, *, with_b2: bool = True,
                        share: bool = True) -> PairIntervals:
    """The ``jackknife-t`` method (:class:`~biasvar.stats.intervals.base.IntervalMethod`; no rng used):
    delete one block of each run, Student-t quantiles.

    Eq. 16 is recomputed with each block of T deleted (R whole) and with each block of R deleted
    (T whole), from the same Gram matrices (weights 1, and 0 for the deleted block): ``nb_T + nb_R``
    quadratic forms, no resampling. The two-sample jackknife variance of the estimate is
    ``s2 = s2_T + s2_R`` with ``s2_X = (nb_X - 1)/nb_X sum_j (theta_(-j) - mean_j)^2``; the interval is
    ``b2 +- t_{1-alpha}(nu) s`` with the Welch-Satterthwaite degrees of freedom
    ``nu = s2^2 / (s2_T^2/(nb_T - 1) + s2_R^2/(nb_R - 1))`` (``nb_T - 1`` against an exact gradient).
    Eq. 16 is exactly unbiased, so the interval is centred on it (no jackknife bias correction).
    ``V_T`` uses T's deletions alone; ``MSE = b2 + V_T`` both. Symmetric by construction.

    The reference's share is R's part of b2's jackknife variance, and its width the t interval
    R's part alone gives.
    """
    del rng  # analytic
    nbr, nbt, alpha = len(pg.ref_count), len(pg.test_count), boot.alpha
    ones_r, ones_t = np.ones(nbr), np.ones(nbt)
    w_r = None if pg.exact else np.broadcast_to(ones_r, (nbt, nbr))
    bt, vt, _ = eq16(pg, w_r, loo_weights(nbt))  # [nbT, K] each
    s2_t, sv_t, sm_t = jack_var(bt), jack_var(vt), jack_var(bt + vt)
    s2_r = sm_r = np.zeros_like(s2_t)
    if not pg.exact:
        br = eq16(pg, loo_weights(nbr), np.broadcast_to(ones_t, (nbr, nbt)))[0]
        s2_r = sm_r = jack_var(br)
    q_b = welch_t([(s2_t, nbt), (s2_r, nbr)], 1 - alpha)[0]
    q_v = scipy.stats.t.ppf(1 - alpha, max(nbt - 1, 1))
    q_m = welch_t([(sm_t, nbt), (sm_r, nbr)], 1 - alpha)[0]
    se_b, se_v, se_m = np.sqrt(s2_t + s2_r), np.sqrt(sv_t), np.sqrt(sm_t + sm_r)
    mse = b2 + v_t
    ref_share = width = None
    if wants_share(pg, with_b2=with_b2, share=share):
        tot = float(s2_t[-1] + s2_r[-1])
        ref_share = finite_or_none(float(s2_r[-1]) / tot) if tot > 0 else None
        width = 2 * float(scipy.stats.t.ppf(1 - alpha, max(nbr - 1, 1))) * math.sqrt(float(s2_r[-1]))
    return PairIntervals(
        b2=LayerEstimates(b2, b2 - q_b * se_b if with_b2 else None, b2 + q_b * se_b if with_b2 else None, se_b),
        variance=LayerEstimates(v_t, v_t - q_v * se_v, v_t + q_v * se_v, se_v),
        mse=LayerEstimates(mse, mse - q_m * se_m if with_b2 else None, mse + q_m * se_m if with_b2 else None, se_m),
        ref_share=ref_share, ref_only_width=width,
    )


__all__ = ["jack_var", "jackknife_intervals", "loo_weights"]
