"""Eq. 16 of one run against a reference run or the exact gradient, with intervals; run compatibility.

:func:`compare` and :func:`describe_run` turn run files (``store.RunData`` with block sums) into
:class:`Comparison` results, for all parameters and per parameter group. Runs are comparable only
when they come from the same snapshot and select the same parameters (:func:`check_compatible`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.errors import AnalysisError
from biasvar.stats.gram import PairGram, pair_gram, single_gram
from biasvar.stats.intervals import Bootstrap, Estimate, PairIntervals, bootstrap_pair, finite_or_none


@dataclass(frozen=True)
class GroupResult:
    """Eq. 16 restricted to one parameter group (one parameter tensor)."""

    name: str
    dim: int
    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None


@dataclass(frozen=True)
class Comparison:
    """A tested run against a reference (Eq. 16), or one run alone (``b2 is None``)."""

    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None
    ref_share: float | None  # share of b2's bootstrap variance due to resampling the reference
    ref_only_width: float | None  # width of b2's interval when only the reference is resampled
    cosine: float | None  # between the mean gradients of test and reference (or exact)
    groups: tuple[GroupResult, ...]


def comparison(iv: PairIntervals, names: Sequence[str], dims: np.ndarray, *, with_b2: bool,
               cosine: float | None) -> Comparison:
    """A :class:`Comparison` from the per-layer intervals (layers: the groups ``names``, then all)."""
    G = len(names)
    groups = tuple(
        GroupResult(names[k], int(dims[k]), iv.b2.at(k) if with_b2 else None, iv.variance.at(k),
                    iv.mse.at(k) if with_b2 else None)
        for k in range(G)
    )
    return Comparison(
        b2=iv.b2.at(G) if with_b2 else None,
        variance=iv.variance.at(G),
        mse=iv.mse.at(G) if with_b2 else None,
        ref_share=iv.ref_share if with_b2 else None,
        ref_only_width=iv.ref_only_width if with_b2 else None,
        cosine=finite_or_none(cosine),
        groups=groups,
    )


def bootstrap_of(boot: Bootstrap | None, n_resamples: int | None, method: str | None,
                 confidence_level: float | None) -> Bootstrap:
    """``boot``, or a :class:`Bootstrap` of the loose arguments (defaults where None); not both."""
    loose = {k: v for k, v in (("n_resamples", n_resamples), ("method", method),
                               ("confidence_level", confidence_level)) if v is not None}
    if boot is None:
        return Bootstrap(**loose)
    if loose:
        raise AnalysisError(f"give a Bootstrap or its fields ({', '.join(loose)}), not both")
    return boot


def compare(ref: Any | None, test: Any, *, exact: np.ndarray | None = None, boot: Bootstrap | None = None,
            n_resamples: int | None = None, method: str | None = None, confidence_level: float | None = None,
            rng: np.random.Generator | None = None) -> Comparison:
    """Eq. 16 of a tested run against a reference run or the exact gradient, with intervals.

    Args:
        ref: reference ``RunData`` (block sums loaded), or None when ``exact`` is given.
        test: tested ``RunData`` (block sums loaded), independent of ``ref``.
        exact: float64 [dim], the exact gradient.
        boot: how intervals are formed (default ``Bootstrap()``: 1000 resamples of the blocks of R and T
            independently, :data:`DEFAULT_METHOD`, 0.95); or give ``n_resamples``, ``method`` (a name in
            ``biasvar.stats.intervals.METHODS``), ``confidence_level`` instead.
        rng: randomness of the resampling (default: ``default_rng(boot.seed)``).

    Returns:
        :class:`Comparison` for all parameters and per group.
    """
    boot = bootstrap_of(boot, n_resamples, method, confidence_level)
    if (ref is None) == (exact is None):
        raise AnalysisError("compare: give either a reference run or an exact gradient, not both/neither")
    if ref is not None:
        check_compatible([ref, test])
    elif np.shape(exact) != (int(np.sum(test.group_sizes)),):
        raise AnalysisError(f"compare: exact gradient has shape {list(np.shape(exact))}, "
                            f"expected [{int(np.sum(test.group_sizes))}] (the run's dim)")
    pg, cosine = pair_gram(ref, test, exact=exact)
    iv = bootstrap_pair(pg, boot, rng=rng if rng is not None else np.random.default_rng(boot.seed))
    return comparison(iv, list(test.groups), pg.dims, with_b2=True, cosine=cosine)


def describe_run(run: Any, boot: Bootstrap | None = None, *, n_resamples: int | None = None,
                 method: str | None = None, confidence_level: float | None = None,
                 rng: np.random.Generator | None = None, mean: np.ndarray | None = None,
                 pg: PairGram | None = None) -> Comparison:
    """The variance of one run alone (with its interval); ``b2`` is None. Arguments as in :func:`compare`;
    ``pg``: the run's own Gram matrices if already known (a statistics store's)."""
    boot = bootstrap_of(boot, n_resamples, method, confidence_level)
    pg = single_gram(run, mean) if pg is None else pg
    iv = bootstrap_pair(pg, boot, rng=rng if rng is not None else np.random.default_rng(boot.seed), with_b2=False)
    return comparison(iv, list(run.groups), pg.dims, with_b2=False, cosine=None)


# ---------------------------------------------------------------------------------------------
# compatibility of runs


def run_attr(run: Any, key: str, default: Any = None) -> Any:
    """A header attribute of a run (``run.attrs[key]``), or ``default``."""
    return (run.attrs or {}).get(key, default)


def run_name(run: Any) -> str:
    """The run's file name (or ``spec-s<seed>``) for messages."""
    return Path(str(run.path)).name if run.path else f"{run_attr(run, 'spec')}-s{run_attr(run, 'seed')}"


def _layout_key(run: Any) -> Any:
    layout = run_attr(run, "layout")
    if layout is None:
        return [list(run.groups), [int(x) for x in run.group_sizes]]
    return [[str(e[0]), [int(s) for s in e[1]], int(e[2])] for e in layout]


def check_compatible(runs: Sequence[Any]) -> None:
    """Refuse runs of different snapshots or parameter sets (AnalysisError, one line)."""
    first = runs[0]
    for other in runs[1:]:
        for key, what in (("snapshot_hash", "snapshots"), ("params_glob", "parameter sets (params_glob)"),
                          ("dim", "parameter sets (dim)")):
            a, b = run_attr(first, key), run_attr(other, key)
            if key == "dim":
                a = a if a is not None else int(np.sum(first.group_sizes))
                b = b if b is not None else int(np.sum(other.group_sizes))
            if a != b:
                raise AnalysisError(
                    f"cannot compare runs of different {what}: {run_name(first)} has {key}={a!r}, "
                    f"{run_name(other)} has {key}={b!r}; analyse one snapshot and parameter set at a time "
                    f"(pass --snapshot-id ID, or sample both with the same --params)")
        if _layout_key(first) != _layout_key(other) or list(first.groups) != list(other.groups):
            raise AnalysisError(
                f"cannot compare runs of different parameter sets (layout): {run_name(first)} and "
                f"{run_name(other)} select different parameter tensors; sample both with the same --params")


__all__ = ["Comparison", "GroupResult", "bootstrap_of", "check_compatible", "compare", "comparison", "describe_run",
           "run_attr", "run_name"]
