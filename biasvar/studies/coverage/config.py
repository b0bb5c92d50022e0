"""What the coverage study measures: its configuration and its settings (tested estimator, reference,
block count, the interval methods applied)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_ESTIMATORS = ("rf(M=4)", "zgr", "st", "st(t=2)", "gs-st(t=0.5)", "gr-mc(M=10,t=0.5)")
#: (tested, reference) pairs also analysed at the larger block counts: b2 = 0 and b2 ~ V/n
MORE_BLOCKS = (("rf(M=4)", "rf(M=4)"), ("zgr", "rf(M=4)"), ("zgr", "exact"))


@dataclass(frozen=True)
class StudyConfig:
    """What the study measures; every field is recorded in its JSON output."""

    categories: int = 4
    vars: int = 4
    hidden: tuple[int, ...] = (32, 16)
    eval_batch: int = 8  # data points of the evaluation batch (the gradient's batch)
    params: str = "encoder.*"  # the measured parameters (where the estimators differ; decoder grads are unbiased)
    train_steps: int = 100  # Adam steps of rf(M=4), batch 50 (a briefly trained model)
    lr: float = 1e-4
    seed: int = 0  # model init, training, evaluation batch
    n: int = 192  # draws per run
    blocks: tuple[int, ...] = (32, 96)  # block counts analysed (each must divide n)
    pairs: int = 500
    estimators: tuple[str, ...] = DEFAULT_ESTIMATORS
    reference: str = "rf(M=4)"
    against_reference: tuple[str, ...] = ("rf(M=4)", "zgr", "st(t=2)", "gr-mc(M=10,t=0.5)")
    methods: tuple[str, ...] = ("gauss-eb", "pivot", "jackknife-t", "percentile")
    n_resamples: int = 1000
    confidence_level: float = 0.95
    mc: int = 2_000  # conditional Monte Carlo samples per outcome for gs-st / gr-mc expectations
    first_seed: int = 0  # pair i uses seeds first_seed + i (tested) and first_seed + pairs + i (reference)

    def __post_init__(self) -> None:
        for nb in self.blocks:
            if nb < 2 or self.n % nb:
                raise ValueError(f"block count {nb} must be >= 2 and divide n = {self.n}")



@dataclass(frozen=True)
class Setting:
    """Tested estimator, reference (``exact`` or a spec) and block count; the methods applied."""

    spec: str
    reference: str
    blocks: int
    methods: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.spec} vs {self.reference}, {self.blocks} blocks"


def settings_of(cfg: StudyConfig, more_blocks: Sequence[tuple[str, str]] | None = None) -> list[Setting]:
    """Every estimator against ``exact`` and those of ``cfg.against_reference`` against the reference, at
    the first block count with every method; at the other block counts the (estimator, reference)
    pairs of ``more_blocks`` (default :data:`MORE_BLOCKS`) with the model-based methods only
    (gauss-eb, pivot, jackknife-t)."""
    from biasvar.spec import parse_spec

    def canon(s: str) -> str:
        return s if s == "exact" else str(parse_spec(s))

    ref = canon(cfg.reference)
    against = {canon(s) for s in cfg.against_reference}
    out = []
    bootstrap_only = ("percentile", "basic", "bca")  # known to fail in high dimension: not against rf(M) estimators
    for s in map(canon, cfg.estimators):
        out.append(Setting(s, "exact", cfg.blocks[0], tuple(cfg.methods)))
        if s in against:
            keep = tuple(m for m in cfg.methods if s == ref or m not in bootstrap_only)
            out.append(Setting(s, ref, cfg.blocks[0], keep))
    fine = tuple(m for m in cfg.methods if m in ("gauss-eb", "pivot", "jackknife-t"))
    for nb in cfg.blocks[1:]:
        out += [Setting(canon(s), canon(r), nb, fine) for s, r in (MORE_BLOCKS if more_blocks is None else more_blocks)]
    return out

