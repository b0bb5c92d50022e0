"""The Fig. B.5 study's estimates (``biasvar.studies.quantstudy``): the same noise and the same numbers
however they are computed (chunk grids built once, any device), and unbiased where theory says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biasvar.estimators import build
from biasvar.problems.base import draw_loss, noise_requests
from biasvar.problems.quant import eta_grid
from biasvar.rng import MATERIALIZE, stream_key
from biasvar.spec import parse_spec
from biasvar.studies.quantstudy import DEFAULT_SPECS, QuantGrid, quant_unit_study, unit_gradients


def _reference(problem: QuantGrid, spec: str, n: int, chunk: int, seed: int = 0) -> torch.Tensor:
    """The study's definition written plainly: per chunk, a fresh grid of chunk x E units and its
    noise from the CPU generator seeded by (seed, spec), in the order of the noise requests."""
    est = build(spec)
    etas = problem.params["eta"]
    E = etas.shape[0]
    key = stream_key(seed, str(parse_spec(spec)))
    gen = torch.Generator().manual_seed((key[0] << 32) | key[1])
    unit = {k: v for k, v in problem.config.items() if k in ("K", "loss", "noise", "sigma")}
    out = []
    for i0 in range(0, n, chunk):
        m = min(chunk, n - i0)
        big = QuantGrid(etas.repeat(m), dtype=etas.dtype, **unit)
        noise = {node: {k: MATERIALIZE[kind](torch.rand(shape, generator=gen, dtype=etas.dtype).clamp_(1e-7, 1 - 1e-7))
                        for k, (shape, kind) in d.items()}
                 for node, d in noise_requests(big, est).items()}
        params = {"eta": big.params["eta"].clone().requires_grad_(True)}
        (g,) = torch.autograd.grad(draw_loss(big, est, params, noise), params["eta"])
        out.append(g.reshape(m, E) * (m * E))
    return torch.cat(out)


@pytest.mark.parametrize("spec", DEFAULT_SPECS)
def test_unit_gradients_are_the_plain_definition_bit_for_bit(spec):
    prob = QuantGrid(eta_grid(4, 7, dtype=torch.float64), K=4, loss="sigmoid", noise="triangular",
                     dtype=torch.float64)
    got = unit_gradients(prob, spec, n=25, chunk=10)  # chunks of 10, 10 and 5: both cached grids
    assert got.shape == (25, 7)
    assert torch.equal(got, _reference(prob, spec, 25, 10))
    assert not torch.equal(got, _reference(prob, spec, 25, 10, seed=1))  # the seed matters


def test_chunk_grid_config_lists_every_input():
    etas = torch.linspace(-1, 4, 5, dtype=torch.float32)
    grid = QuantGrid(etas.repeat(3), K=4, loss="linear", noise="logistic", dtype=torch.float32)
    assert grid.config["eta"] == [float(v) for v in etas.repeat(3)] and grid.batch.shape == (15, 0)


def test_zgr_is_unbiased_for_the_linear_loss():
    study = quant_unit_study(losses=("linear",), noises=("logistic",), specs=("zgr", "st"), n=4000, points=9)
    for spec in ("zgr", "st"):
        c = study[("linear", "logistic")][spec]
        assert c.mean.shape == c.exact.shape == (9,) and c.n == 4000
        np.testing.assert_allclose(c.mean, c.exact, rtol=0, atol=5 * c.std.max() / np.sqrt(4000) + 1e-5)
    assert study[("linear", "logistic")]["st"].std.max() < 1e-5  # ST is exact for a linear loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_numbers_to_rounding():
    prob = QuantGrid(eta_grid(4, 9, dtype=torch.float32), K=4, loss="quadratic", noise="logistic",
                     dtype=torch.float32)
    for spec in ("zgr", "gr-mc(t=0.5,M=100)", "rf(M=2)"):
        cpu = unit_gradients(prob, spec, n=300, chunk=100)
        gpu = unit_gradients(prob, spec, n=300, chunk=100, device="cuda")
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
