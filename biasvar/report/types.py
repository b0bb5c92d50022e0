"""A report's types: one row per run (:class:`RunResult`) and the report (:class:`Report`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import biasvar
from biasvar.errors import AnalysisError
from biasvar.spec import parse_spec
from biasvar.stats.compare import (
    GroupResult,
)
from biasvar.stats.contrast import Contrast
from biasvar.stats.intervals import Estimate

REPORT_SCHEMA = 1


@dataclass(frozen=True)
class RunResult:
    """One row of a report: a run, its Eq. 16 numbers against the reference, and its provenance."""

    spec: str
    family: str
    hyper: dict[str, float]  # the spec's hyper-parameters
    seed: int
    role: str  # "test" or "reference" (the reference run itself: b2 is None)
    status: str
    n: int
    n_blocks: int
    dim: int
    b2: Estimate | None
    variance: Estimate
    mse: Estimate | None
    ref_share: float | None
    ref_only_width: float | None
    cost: float  # forward passes per draw
    draws_per_s: float | None
    variance_x_cost: float
    cosine: float | None
    nonfinite: int
    pareto: bool
    snapshot_hash: str
    path: str
    versions: dict[str, Any]
    groups: tuple[GroupResult, ...] = ()
    pareto_mark: str = ""  # "*" front, "~" near-tie (dominated only within the intervals), "" dominated


@dataclass(frozen=True)
class Report:
    """The analysis of one snapshot's runs against one reference; rows sorted by family, hyper-parameter."""

    snapshot_hash: str
    reference: str  # canonical spec of the reference, or "exact"
    reference_path: str | None
    reference_seed: int | None
    method: str
    n_resamples: int
    confidence_level: float
    seed: int  # the bootstrap seed
    dim: int
    params_glob: str | None
    problem: dict[str, Any]
    rows: tuple[RunResult, ...]
    notes: tuple[str, ...] = ()
    runs_dir: str | None = None
    biasvar_version: str = biasvar.__version__
    schema: int = REPORT_SCHEMA
    contrasts: tuple[Contrast, ...] = ()
    store: str | None = None  # the statistics store the numbers came from (None: the run files)

    def row(self, spec: str, seed: int | None = None) -> RunResult:
        """The row of ``spec`` (canonical or not), the lowest seed unless ``seed`` is given."""
        canon = str(parse_spec(spec))
        for r in self.rows:
            if r.spec == canon and (seed is None or r.seed == seed):
                return r
        raise AnalysisError(f"no row for {canon}" + (f" seed {seed}" if seed is not None else "")
                            + f" in the report; rows: {', '.join(sorted({r.spec for r in self.rows}))}")
