"""The single-unit quantization study of App. B.5 (Fig. B.5), vectorized over the eta grid.

For every test function x noise, every estimator and every input ``eta`` of a grid, draw ``n``
gradient estimates of ``d E[L(x)] / d eta`` for one K-level stochastic quantizer and record
their mean and standard deviation next to the exact gradient (by enumeration of the K levels).

The grid is one problem (:class:`QuantGrid`): the E inputs are E independent "data points",
each with its own quantizer; the batch loss is their mean, so the gradient in ``eta[e]`` is
``1/E`` times unit e's estimate (rf(M) applies its leave-one-out baseline per data point, i.e.
per unit). Noise is the engine's counter-based noise, keyed by (seed, spec).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from biasvar.estimators import build
from biasvar.estimators.quantizer import NOISES
from biasvar.problems.base import draw_loss, noise_requests
from biasvar.problems.quant import LOSSES, QuantUnit, eta_grid
from biasvar.rng import MATERIALIZE, stream_key
from biasvar.spec import parse_spec

#: Estimators of Fig. B.5 (the paper shows GS-ST, GR-MC(M=100), ZGR, RF(M=2) and ST; its caption
#: names no temperature, we use t = 0.5 for the Gumbel family).
DEFAULT_SPECS = ("st", "darn", "zgr", "gs-st(t=0.5)", "gr-mc(t=0.5,M=100)", "rf(M=2)")


class QuantGrid(QuantUnit):
    """E independent quantizers, one per grid point: parameter ``eta`` [E], batch [E, 0]."""

    kind = "quant-grid"

    def __init__(self, etas: Tensor, **unit: object) -> None:
        super().__init__(**unit)
        self.params = {"eta": etas.detach().clone().to(self.batch.dtype)}
        self.batch = torch.zeros(etas.shape[0], 0, dtype=self.batch.dtype, device=etas.device)
        # one transfer for the whole list (``float(v)`` per element reads one number at a time:
        # 61,000 reads, a device sync each on a GPU, for every chunk of the study)
        self.config = {**self.config, "eta": [float(v) for v in etas.detach().cpu().tolist()]}

    def batch_logits(self, eta: Tensor, B: int) -> Tensor:
        """The logits [B, 1, K]: data point b is unit ``b mod E`` (B a multiple of E)."""
        return self.logits(eta).repeat(B // eta.shape[0], 1).unsqueeze(1)


@dataclass(frozen=True)
class UnitCurve:
    """One estimator on one (loss, noise) panel: mean and std of ``n`` draws at each eta."""

    spec: str
    eta: np.ndarray  # [E]
    mean: np.ndarray  # [E]
    std: np.ndarray  # [E]
    exact: np.ndarray  # [E] exact gradient
    n: int


def unit_gradients(problem: QuantGrid, spec: str, *, n: int, seed: int = 0, chunk: int = 1000,
                   device: torch.device | str | None = None) -> Tensor:
    """``n`` estimates [n, E] of every unit's gradient (on ``device``, default the problem's).

    Draws are independent units too, so ``chunk`` draws of the E units are computed as ONE draw of
    a grid of ``chunk * E`` units (one forward and one backward). The noise comes from a CPU torch
    generator seeded by (seed, spec) (cheaper than the engine's counter-based noise, which this
    study does not need) and is moved to ``device``, so the result is a function of (seed, spec,
    n, chunk): the same numbers on every device, to float rounding.
    """
    est = build(spec)
    dev = problem.params["eta"].device if device is None else torch.device(device)
    etas = problem.params["eta"].to(dev)
    E = etas.shape[0]
    key = stream_key(seed, str(parse_spec(spec)))
    gen = torch.Generator(device="cpu").manual_seed((key[0] << 32) | key[1])
    unit = {k: v for k, v in problem.config.items() if k in ("K", "loss", "noise", "sigma")}
    grids: dict[int, tuple[QuantGrid, dict]] = {}  # chunk size -> (grid, noise requests): at most two
    out = []
    for i0 in range(0, n, chunk):
        m = min(chunk, n - i0)
        if m not in grids:
            big = QuantGrid(etas.repeat(m), dtype=etas.dtype, **unit)
            grids[m] = (big, noise_requests(big, est))
        big, requests = grids[m]
        noise = {
            node: {k: MATERIALIZE[kind](torch.rand(shape, generator=gen, dtype=etas.dtype)
                                        .to(dev, non_blocking=True).clamp_(1e-7, 1 - 1e-7))
                   for k, (shape, kind) in d.items()}
            for node, d in requests.items()
        }
        params = {"eta": big.params["eta"].clone().requires_grad_(True)}
        (g,) = torch.autograd.grad(draw_loss(big, est, params, noise), params["eta"])
        out.append(g.reshape(m, E) * (m * E))  # the batch mean divides by the m*E units
    return torch.cat(out)


def quant_unit_study(
    *,
    K: int = 4,
    losses: Sequence[str] = LOSSES,
    noises: Sequence[str] = NOISES,
    specs: Sequence[str] = DEFAULT_SPECS,
    n: int = 10_000,
    points: int = 61,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[tuple[str, str], dict[str, UnitCurve]]:
    """Fig. B.5: ``{(loss, noise): {spec: UnitCurve}}`` over ``points`` inputs eta in [-1, K].

    ``device``: where the estimates are computed (the noise is the same on every device, see
    :func:`unit_gradients`); the exact gradients are computed on the CPU in float64.
    """
    specs = [str(parse_spec(s)) for s in specs]
    etas = eta_grid(K, points, dtype=dtype).to(device)
    total, done = len(losses) * len(noises) * len(specs), 0
    out: dict[tuple[str, str], dict[str, UnitCurve]] = {}
    for loss in losses:
        for noise in noises:
            prob = QuantGrid(etas, K=K, loss=loss, noise=noise, dtype=dtype)
            exact = QuantGrid(etas.double().cpu(), K=K, loss=loss, noise=noise).exact_gradient()["eta"].numpy()
            panel = {}
            for spec in specs:
                J = unit_gradients(prob, spec, n=n, seed=seed).double()
                mean, std = J.mean(0).cpu().numpy(), J.std(0).cpu().numpy()
                panel[spec] = UnitCurve(spec, etas.double().cpu().numpy(), mean, std, exact, n)
                done += 1
                if progress is not None:
                    progress(done, total, f"{loss}/{noise}: {spec}")
            out[(loss, noise)] = panel
    return out
