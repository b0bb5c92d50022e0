"""biasvar bench's roofline and noise share, and the engine's calibrated choice of vmap or loop."""

from __future__ import annotations

import time

import pytest
import torch

from biasvar import calibrate, engine
from biasvar.engine import gradients
from biasvar.estimators import build
from biasvar.problems.toy import ToyCat
from biasvar.studies import bench

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gemm_rate_is_a_plausible_flop_rate():
    rate, size = bench.gemm_rate(torch.device("cpu"), size=256, repeats=2)
    assert size == 256 and 1e8 < rate < 1e14


def test_bench_reports_roofline_fraction_noise_share_and_path():
    res = bench.bench(ToyCat(vars=3, categories=4), ["zgr", "gr-mc(t=0.5,M=8)"], name="toy-cat", n=16, n_loop=4,
                      device="cpu", repeats=1)
    assert res.gemm_flops_per_s > 0 and res.gemm_size == bench.GEMM_SIZE["cpu"]
    for row in res.rows:
        assert row.engine_method in ("vmap", "loop")
        # (no upper bound: on a tiny problem under load, noise timed apart can exceed a draw's time)
        assert row.noise_s_per_draw > 0 and 0 < row.noise_share < float("inf")
        assert row.noise_share == pytest.approx(row.noise_s_per_draw * row.engine_draws_per_s)
        if row.flops_per_draw:
            assert row.gemm_fraction == pytest.approx(row.engine_flops_per_s / res.gemm_flops_per_s)
            assert row.gemm_fraction_cpu == pytest.approx(row.flops_per_draw * row.engine_draws_per_cpu_s
                                                          / res.gemm_flops_per_cpu_s)
        assert row.engine_draws_per_cpu_s > 0 and row.loop_draws_per_cpu_s > 0
        assert row.noise_share_cpu == pytest.approx(row.noise_cpu_s_per_draw * row.engine_draws_per_cpu_s)


def _slowed(fn, delay):
    def slow(*a, **k):
        time.sleep(delay)
        return fn(*a, **k)

    return slow


@pytest.mark.parametrize("slow_path, expected", [("vmap", "loop"), ("loop", "vmap")])
def test_calibration_picks_the_faster_path_and_caches_it(monkeypatch, slow_path, expected):
    calibrate.clear()
    problem = ToyCat(vars=3, categories=4)
    est = build("zgr")
    name = f"{slow_path}_gradients"
    monkeypatch.setattr(engine, name, _slowed(getattr(engine, name), 0.05))
    assert calibrate.calibrated_method(problem, est, ["logits"], torch.device("cpu"), chunk=4) == expected
    info = calibrate.calibration(problem, "zgr", ["logits"], torch.device("cpu"))
    assert info["choice"] == expected and info[f"{slow_path}_s"] >= 0.05 / 4  # seconds per draw, 4 per call
    monkeypatch.setattr(engine, name, _slowed(getattr(engine, name), 10.0))  # cached: not timed again
    t0 = time.perf_counter()
    assert calibrate.calibrated_method(problem, est, ["logits"], torch.device("cpu"), chunk=4) == expected
    assert time.perf_counter() - t0 < 1.0
    calibrate.clear()


def test_a_tie_stays_on_vmap(monkeypatch):
    """Equal time per draw (4 draws per call on both paths): vmap, the engine's default."""
    calibrate.clear()
    problem = ToyCat(vars=2, categories=3)
    est = build("st")
    same = _slowed(lambda *a: None, 0.2)  # long enough that a loaded machine's scheduling delays stay within MARGIN
    monkeypatch.setattr(engine, "vmap_gradients", same)
    monkeypatch.setattr(engine, "loop_gradients", same)
    assert calibrate.calibrated_method(problem, est, ["logits"], torch.device("cpu"), chunk=4) == "vmap"
    calibrate.clear()


def test_vmap_is_timed_at_the_engines_chunk_and_the_loop_per_draw(monkeypatch):
    """A tiny problem: vmap over a big chunk beats the loop per draw, though not over 4 draws."""
    calibrate.clear()
    seen = []
    real = engine.vmap_gradients
    monkeypatch.setattr(engine, "vmap_gradients", lambda p, e, n, nz: seen.append(nz["z"]["G"].shape[0])
                        or real(p, e, n, nz))
    assert calibrate.calibrated_method(ToyCat(vars=3, categories=4), build("zgr"), ["logits"], torch.device("cpu"),
                                       chunk=1000) == "vmap"
    assert set(seen) == {1000}
    calibrate.clear()


def test_engine_auto_uses_the_calibration_and_gives_the_same_draws(monkeypatch):
    """A run with auto equals one forced to either path (the choice only changes speed)."""
    calibrate.clear()
    problem = ToyCat(vars=3, categories=4)
    forced = {m: torch.cat([c.grads for c in engine.sample_gradients(problem, "zgr", n=6, seed=0, method=m)])
              for m in ("vmap", "loop")}
    monkeypatch.setattr(engine, "vmap_gradients", _slowed(engine.vmap_gradients, 0.05))
    monkeypatch.setattr(gradients, "METHODS", {"vmap": engine.vmap_gradients, "loop": engine.loop_gradients})
    auto = torch.cat([c.grads for c in engine.sample_gradients(problem, "zgr", n=6, seed=0)])
    assert engine.choose_method(torch.device("cpu"), "auto", problem, build("zgr"), ["logits"], 4) == "loop"
    torch.testing.assert_close(auto, forced["loop"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(auto, forced["vmap"], rtol=1e-6, atol=1e-7)
    calibrate.clear()
