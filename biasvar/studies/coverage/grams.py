"""A pair's Gram matrices and the b2 intervals computed on them by the functions a report calls;
:class:`GramStore` keeps every pair's Gram matrices so that interval methods can be re-evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.studies.coverage.pairs import MemoryRun


def last_layer(pg: Any) -> Any:
    """The all-parameters layer of a :class:`~biasvar.stats.gram.PairGram` alone (K = 1): what the
    study analyses, half the numbers to keep."""
    from biasvar.stats.gram import PairGram

    return PairGram(pg.dims[-1:], pg.ref_count, pg.test_count, pg.ref_m2[:, -1:], pg.test_m2[:, -1:],
                    pg.rr[-1:], pg.rt[-1:], pg.tt[-1:], pg.exact)


def gram_of(ref: MemoryRun | None, test: MemoryRun, exact: np.ndarray | None) -> Any:
    """The pair's Gram matrices (all parameters), as a report forms them."""
    from biasvar.stats.gram import pair_gram

    return last_layer(pair_gram(ref, test, exact=exact)[0])


def intervals_from_gram(pg: Any, methods: Sequence[str], *, n_resamples: int, confidence_level: float,
                        rng: np.random.Generator) -> dict[str, Any]:
    """Eq. 16 (all parameters) with each method's interval, from one pair of Gram matrices, by the
    functions a report calls (:mod:`biasvar.stats.intervals`): ``{"b2", "v_t", "v_r", method: (low, high)}``.

    The reference's share (which a report adds) is not computed: it does not change the interval.
    """
    from biasvar.stats import intervals as iv
    from biasvar.stats.gram import eq16

    nbr, nbt = len(pg.ref_count), len(pg.test_count)
    b2, v_t, v_r = eq16(pg, np.ones(nbr), np.ones(nbt))
    out: dict[str, Any] = {"b2": float(b2[-1]), "v_t": float(v_t[-1]), "v_r": float(v_r[-1])}
    for m in methods:
        res = iv.bootstrap_pair(pg, iv.Bootstrap(n_resamples, m, confidence_level), rng=rng, share=False)
        out[m] = (float(res.b2.low[-1]), float(res.b2.high[-1]))
    return out


def intervals_of(ref: MemoryRun | None, test: MemoryRun, exact: np.ndarray | None, methods: Sequence[str], *,
                 n_resamples: int, confidence_level: float, rng: np.random.Generator) -> dict[str, Any]:
    """:func:`intervals_from_gram` of a pair of runs (or a run and the ``exact`` gradient)."""
    return intervals_from_gram(gram_of(ref, test, exact), methods, n_resamples=n_resamples,
                               confidence_level=confidence_level, rng=rng)


class GramStore:
    """Every pair's Gram matrices, per setting, kept so that interval methods can be re-evaluated on
    the same draws without drawing again (``scripts/coverage_study.py --grams``). One ``.npz`` file,
    about 1 MB per pair at the default settings (never committed)."""

    FIELDS = ("ref_count", "test_count", "ref_m2", "test_m2", "rr", "rt", "tt")

    def __init__(self, arrays: dict[str, np.ndarray] | None = None) -> None:
        self.arrays = arrays if arrays is not None else {}

    def put(self, k: int, i: int, pairs: int, pg: Any) -> None:
        for f in self.FIELDS:
            v = np.asarray(getattr(pg, f))
            key = f"{f}{k}"
            if key not in self.arrays:
                self.arrays[key] = np.full((pairs,) + v.shape, np.nan)
            self.arrays[key][i] = v
        self.arrays[f"dims{k}"] = np.asarray(pg.dims)
        self.arrays[f"exact{k}"] = np.asarray(pg.exact)

    def get(self, k: int, i: int) -> Any:
        from biasvar.stats.gram import PairGram

        a = self.arrays
        return PairGram(a[f"dims{k}"], *(a[f"{f}{k}"][i] for f in self.FIELDS), bool(a[f"exact{k}"]))

    def pairs_done(self) -> int:
        tc = self.arrays["test_count0"]
        return int(np.isfinite(tc).all(axis=tuple(range(1, tc.ndim))).sum())

    def save(self, path: str | Path) -> None:
        from biasvar.atomic import atomic_path

        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self.arrays)

    @classmethod
    def load(cls, path: str | Path) -> GramStore:
        with np.load(path) as z:
            return cls({k: z[k] for k in z.files})

