"""Eq. 16's Gram matrices of any pair of runs from one anchored Gram matrix of all their blocks.

Every analysis of a snapshot's runs (Eq. 16 against a run or the exact gradient, V, MSE, cosine,
every interval method, paired contrasts) is a function of inner products between block sums
(:mod:`biasvar.stats.gram`). This module holds them for all the runs of a snapshot at once:

* the rows are the blocks of every run, **anchored** at one fixed vector ``c0`` (a float32 vector
  close to the runs' common mean, stored with the Gram matrix): ``A_b = S_b - n_b c0``;
* two special rows: ``c0`` itself (row :data:`ANCHOR`) and ``E = g* - c0`` for the exact gradient
  ``g*`` (row :data:`EXACT`, NaN where the problem has none);
* one matrix per parameter group and one for all parameters (the sum of the groups), ``Q_k``.

A pair's :class:`~biasvar.stats.gram.PairGram` is centred at the reference's mean ``c`` (or ``g*``):
with ``delta = c - c0`` a combination of rows (``sum_r A_r / N_R``, or ``E``),
``C_b = S_b - n_b c = A_b - n_b delta``, so ``C_b . C_b' = Q_bb' - n_b' A_b.delta - n_b A_b'.delta +
n_b n_b' delta.delta``: all entries of Q. Anchoring near the mean keeps the cancellation small
(the direct computation centres raw, uncentred products instead).

A product that was not computed (a run file gone before a new run was added; a per-group product
of two runs of which neither is unbiased) is NaN; a pair that needs one is refused in one line
(:class:`~biasvar.errors.AnalysisError`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from biasvar.errors import AnalysisError
from biasvar.stats.gram import PairGram, with_total

ANCHOR = 0  # row of c0
EXACT = 1  # row of g* - c0 (NaN without an exact gradient)
SPECIAL = 2  # rows before the first block


@dataclass(frozen=True)
class RunRows:
    """One run's rows in an :class:`AnchoredGram`.

    Attributes:
        key: ``(spec, seed)``, canonical spec.
        attrs: the run file's header and progress attributes (as ``RunData.attrs``).
        path: the run file (it may no longer exist).
        rows: int64 [nb], the rows of its blocks (all blocks, empty ones too).
        count: float64 [nb], finite draws per block.
        nonfinite: int64 [nb], non-finite draws per block.
        m2: float64 [nb, G], within-block centred sums of squares per group.
        sumsq: float64 [nb, G], within-block sums of squares per group.
        exact_sha: the SHA-256 of its stored exact gradient (float64 bytes), or "".
        file_sha: the SHA-256 of the run file when its rows were computed.
    """

    key: tuple[str, int]
    attrs: dict[str, Any]
    path: str
    rows: np.ndarray
    count: np.ndarray
    nonfinite: np.ndarray
    m2: np.ndarray
    sumsq: np.ndarray
    exact_sha: str
    file_sha: str

    @property
    def kept(self) -> np.ndarray:
        """Positions (within this run) of the blocks with at least one finite draw."""
        return np.flatnonzero(self.count > 0)


@dataclass(frozen=True)
class AnchoredGram:
    """Inner products of the anchored blocks of a snapshot's runs.

    Attributes:
        groups: parameter group names; ``group_sizes`` int64 [G] their sizes.
        q: float64 [G + 1, M, M], per group and (last) for all parameters; NaN: not computed.
        runs: the runs, in row order.
        has_exact: whether row :data:`EXACT` holds an exact gradient.
    """

    groups: tuple[str, ...]
    group_sizes: np.ndarray
    q: np.ndarray
    runs: tuple[RunRows, ...]
    has_exact: bool

    @property
    def dims(self) -> np.ndarray:
        """Entries per layer, the groups then all parameters."""
        return with_total(np.asarray(self.group_sizes, dtype=np.int64), 0)

    def run(self, spec: str, seed: int) -> RunRows:
        for r in self.runs:
            if r.key == (spec, int(seed)):
                return r
        raise AnalysisError(f"the store has no run {spec} seed {seed}")


def _sub(q: np.ndarray, rows: np.ndarray, what: str, layers: slice) -> np.ndarray:
    out = q[layers][:, rows][:, :, rows]
    if np.isnan(out).any():
        raise AnalysisError(f"the store lacks products that {what} needs (a run file was gone when they were "
                            f"to be computed, or per-group products of two runs neither of which is unbiased); "
                            f"rebuild the store with `biasvar gram` while the run files are present, or use "
                            f"an unbiased --reference")
    return out


def _centred(q: np.ndarray, m: int, count: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Gram [K, m, m] of ``A_b - n_b delta`` from the Gram [K, m + s, m + s] of ``[A; extra rows]``,
    where ``delta`` [m + s] combines the rows."""
    a = q[:, :m, :] @ delta  # A_b . delta  [K, m]
    dd = np.einsum("kij,i,j->k", q, delta, delta)  # delta . delta  [K]
    return (q[:, :m, :m] - a[:, :, None] * count[None, None, :] - count[None, :, None] * a[:, None, :]
            + dd[:, None, None] * np.outer(count, count)[None])


def pair_gram(ag: AnchoredGram, ref: RunRows | None, test: RunRows, *,
              total_only: bool = False) -> tuple[PairGram, float]:
    """The :class:`PairGram` of ``test`` against the reference run ``ref`` (None: the exact
    gradient), centred at the reference's mean, and the cosine between the two means.

    ``total_only``: only the all-parameters layer (what contrasts use; its products exist for every
    pair of runs whose files were present together)."""
    G = len(ag.group_sizes)
    t_kept = test.kept
    t_rows, t_count = test.rows[t_kept], test.count[t_kept]
    t_m2 = with_total(test.m2[t_kept], axis=1)
    if ref is None:
        if not ag.has_exact:
            raise AnalysisError("the store's runs have no exact gradient; use --reference SPEC")
        r_rows, r_count, r_m2 = np.zeros(0, np.int64), np.zeros(0), np.zeros((0, G + 1))
    else:
        r_kept = ref.kept
        r_rows, r_count, r_m2 = ref.rows[r_kept], ref.count[r_kept], with_total(ref.m2[r_kept], axis=1)
    nbr, m = len(r_rows), len(r_rows) + len(t_rows)
    extra = [ANCHOR] if ref is not None else [ANCHOR, EXACT]
    rows = np.concatenate([r_rows, t_rows, extra]).astype(np.int64)
    layers = slice(G, G + 1) if total_only else slice(None)
    what = f"{test.key[0]} against {ref.key[0] if ref is not None else 'exact'}"
    sub = _sub(ag.q, rows, what, layers)
    counts = np.concatenate([r_count, t_count])
    delta = np.zeros(len(rows))
    if ref is None:
        delta[m + 1] = 1.0  # c - c0 = E
    else:
        delta[:nbr] = 1.0 / r_count.sum()  # c - c0 = sum_r A_r / N_R
    cg = _centred(sub, m, counts, delta)
    # cosine between mu_T and c, from the all-parameters layer (uncentred products)
    tot = sub[-1]
    n_t = t_count.sum()
    wt = np.zeros(len(rows))
    wt[nbr:m] = 1.0
    c0c0 = tot[m, m]
    a_t_delta = wt @ tot @ delta  # sum_t A_t . delta
    a_t_c0 = wt @ tot[:, m]  # sum_t A_t . c0
    d_c0 = delta @ tot[:, m]  # delta . c0
    dot = (a_t_delta + a_t_c0 + n_t * d_c0 + n_t * c0c0) / n_t  # mu_T . c
    sum_s2 = wt @ tot @ wt + 2.0 * n_t * a_t_c0 + n_t**2 * c0c0  # ||sum_t S_t||^2
    c2 = delta @ tot @ delta + 2.0 * d_c0 + c0c0  # ||c||^2
    denom = math.sqrt(max(sum_s2 / n_t**2, 0.0) * max(c2, 0.0))
    cosine = dot / denom if denom > 0 else float("nan")
    dims = ag.dims[layers]
    pg = PairGram(dims, r_count, t_count, r_m2[:, layers], t_m2[:, layers], cg[:, :nbr, :nbr],
                  cg[:, :nbr, nbr:], cg[:, nbr:, nbr:], ref is None)
    return pg, float(cosine)


def single_gram(ag: AnchoredGram, run: RunRows) -> PairGram:
    """The :class:`PairGram` of one run alone, centred at its own mean (its variance and interval)."""
    kept = run.kept
    rows, count = run.rows[kept], run.count[kept]
    m = len(rows)
    sub = _sub(ag.q, np.concatenate([rows, [ANCHOR]]).astype(np.int64), f"{run.key[0]} alone", slice(None))
    delta = np.zeros(m + 1)
    delta[:m] = 1.0 / count.sum()
    gram = _centred(sub, m, count, delta)
    K = len(ag.group_sizes) + 1
    return PairGram(ag.dims, np.zeros(0), count, np.zeros((0, K)), with_total(run.m2[kept], axis=1),
                    np.zeros((K, 0, 0)), np.zeros((K, 0, m)), gram, True)


__all__ = ["ANCHOR", "EXACT", "SPECIAL", "AnchoredGram", "RunRows", "pair_gram", "single_gram"]
