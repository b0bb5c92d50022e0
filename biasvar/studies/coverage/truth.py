"""The coverage study's model (a small categorical VAE, briefly trained on MNIST-B) and the true
per-parameter squared bias of every tested estimator, by enumeration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.studies.coverage.config import StudyConfig


@dataclass(frozen=True)
class Truth:
    """The true per-parameter squared bias of one estimator (against the exact gradient)."""

    spec: str
    b2: float
    b2_se: float  # Monte Carlo error of b2 (0 where E[J] is exact)
    how: str


def make_problem(cfg: StudyConfig, data_dir: str | Path | None) -> Any:
    """The study's VAE: ``cfg.train_steps`` Adam steps of rf(M=4) on MNIST-B from ``data_dir``; its
    evaluation batch (``cfg.eval_batch`` training images chosen by the seed) is the gradient's batch."""
    from biasvar.problems.vae import VAE
    from biasvar.train import load_data, train

    prob = VAE(categories=cfg.categories, vars=cfg.vars, hidden=cfg.hidden, seed=cfg.seed)
    data = load_data("vae", "mnist-b", data_dir=data_dir, download=False)
    snap = train(prob, data=data, estimator="rf(M=4)", epochs=1, batch_size=50, lr=cfg.lr, seed=cfg.seed,
                 eval_batch_size=cfg.eval_batch, steps_per_epoch=cfg.train_steps)
    return snap


def true_b2s(problem: Any, specs: Sequence[str], *, mc: int, seed: int = 0,
             params: str | None = None) -> tuple[np.ndarray, dict[str, Truth]]:
    """``g*`` (float64, flat over the parameters ``params`` selects) and the true b2 of every spec."""
    from biasvar.engine import select_params
    from biasvar.exact import true_squared_bias
    from biasvar.problems.enumeration import enumerate_gradient
    from biasvar.spec import parse_spec

    names = select_params(problem, params)
    params64 = {k: v.double() for k, v in problem.params.items()}
    g = enumerate_gradient(problem, params64, problem.batch.double())
    if g is None:
        raise ValueError("the study's problem is too large to enumerate")
    g_flat = np.concatenate([g[k].reshape(-1).numpy() for k in names])
    out: dict[str, Truth] = {}
    shared: dict[float, Truth] = {}  # gs-st(t) and gr-mc(t, M) have one expectation (Eq. 9)
    for s in specs:
        spec = parse_spec(s)
        if spec.name in ("gs-st", "gr-mc") and float(spec["t"]) in shared:
            out[str(spec)] = Truth(str(spec), *list(asdict(shared[float(spec["t"])]).values())[1:])
            continue
        e = problem.exact_expectation(spec, params=params64, x=problem.batch.double(), mc=mc, seed=seed)
        mean, se = e.flat(names)
        b2, b2_se = true_squared_bias(mean, g_flat, se)
        out[str(spec)] = Truth(str(spec), b2, b2_se, e.how)
        if spec.name in ("gs-st", "gr-mc"):
            shared[float(spec["t"])] = out[str(spec)]
    return g_flat, out

