"""Where a gr-mc(t=0.1,M=100) draw's time goes on the Fig. 1 VAE, beside a zgr draw, in one process.

    OMP_NUM_THREADS=1 python scripts/noise_components.py results/bench/noise-components-cpu.json

Times (best of 5, two interleaved passes over the estimators so a busy spell hits both): the
engine's noise (``rng.draw_noise``) and vmap gradients per draw, at the engine's CPU chunks
(zgr 10, gr-mc 8; gr-mc was 1 before its noise became kind ``counter``); and for one gr-mc draw's
3200 x 100 x 16 noise numbers: the uniforms (fused and
plain paths, the int64 implementation this one replaced, ``torch.rand`` of the same count), GR-MC's
weights kernel (fused with the power for 1/t = 10 and with exp/log, plain), its C = mean s s^T
product, and the whole counter path of one draw: the native CPU kernel the engine uses
(:mod:`biasvar.estimators.grmc_native`, at t = 0.1, 2 and 0.0376, and per draw of a chunk of 8 in
one call) and the torch path it replaced (uniforms made block by block inside GR-MC's op, compiled
weights, batched C; ``native=False``). Since gr-mc's conditional noise is of kind ``counter``,
``rng.draw_noise`` of a gr-mc draw is only its G noise and the address; the uniforms are in the
gradients' time.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from biasvar import engine, rng
from biasvar.estimators import build, grmc, grmc_native
from biasvar.problems.base import noise_requests
from biasvar.spec import parse_spec
from biasvar.studies import bench

M32 = 0xFFFFFFFF


def _mix64(x):
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def uniforms_int64(key, draws, numel):
    """The implementation before this change (int64 tensor ops, same numbers), for comparison."""
    lo, hi = draws & M32, (draws >> 32) & M32
    h = _mix64(_mix64(_mix64(_mix64(hi ^ 0x9E3779B9) ^ lo) ^ key[0]) ^ key[1])
    he = _mix64((torch.arange(numel, dtype=torch.int64) & M32) ^ 0x85EBCA6B)
    a = _mix64(h[:, None] ^ he[None, :])
    return (((a >> 8).to(torch.float32) + 0.5).mul_(2.0**-24)).clamp_(max=1 - 2.0**-24)


CPU_TIMES: dict[str, float] = {}


def best(f, r=5, name=None):
    """Best wall time in ms; with ``name``, also the best process CPU time (kept in CPU_TIMES)."""
    f()
    b = c = float("inf")
    for _ in range(r):
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        b, c = min(b, time.perf_counter() - t0), min(c, time.process_time() - c0)
    if name:
        CPU_TIMES[name] = min(CPU_TIMES.get(name, float("inf")), c * 1e3)
    return b * 1e3


def main(out_path: str | None) -> dict:
    p = bench.bench_problem("vae-fig1")
    names = list(p.params)
    out: dict = {"threads": torch.get_num_threads(), "load_average_start": list(os.getloadavg())}
    for _ in range(2):
        for spec, m in (("zgr", 10), ("gr-mc(t=0.1,M=100)", 8)):
            est = build(spec)
            req, key = noise_requests(p, est), rng.stream_key(0, str(parse_spec(spec)))
            d = torch.arange(m)
            nz = rng.draw_noise(req, key, d)
            row = out.setdefault(spec, {"chunk": m})
            t_noise = best(lambda req=req, key=key, d=d: rng.draw_noise(req, key, d), name=f"{spec} noise") / m
            t_grad = best(lambda est=est, nz=nz: engine.vmap_gradients(p, est, names, nz), name=f"{spec} grad") / m
            for k, v in (("noise_ms_per_draw", t_noise), ("vmap_gradients_ms_per_draw", t_grad)):
                row[k] = min(row.get(k, float("inf")), v)
    for spec, row in (("zgr", out["zgr"]), ("gr-mc(t=0.1,M=100)", out["gr-mc(t=0.1,M=100)"])):
        row["noise_share"] = row["noise_ms_per_draw"] / (row["noise_ms_per_draw"] + row["vmap_gradients_ms_per_draw"])
        row["cpu_noise_ms_per_draw"] = CPU_TIMES[f"{spec} noise"] / row["chunk"]
        row["cpu_vmap_gradients_ms_per_draw"] = CPU_TIMES[f"{spec} grad"] / row["chunk"]
        row["cpu_noise_share"] = row["cpu_noise_ms_per_draw"] / (row["cpu_noise_ms_per_draw"]
                                                                 + row["cpu_vmap_gradients_ms_per_draw"])
    out["gr-mc / zgr draws per second (wall, CPU time)"] = [
        out["zgr"]["vmap_gradients_ms_per_draw"] / out["gr-mc(t=0.1,M=100)"]["vmap_gradients_ms_per_draw"],
        out["zgr"]["cpu_vmap_gradients_ms_per_draw"] / out["gr-mc(t=0.1,M=100)"]["cpu_vmap_gradients_ms_per_draw"]]
    B, M, K = 3200, 100, 16
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(B, K, generator=g).log_softmax(-1)
    idx = torch.randint(K, (B,), generator=g)
    key, one = (1, 2), torch.arange(1)
    U = rng.uniforms(key, one, B * M * K).reshape(B, M, K)
    coef, power = torch.tensor(-1 / 0.1), grmc.power_of(0.1)
    s = grmc._weights(logp, idx, U, coef, power, True)
    ctr = rng.counter_noise(key, one, 0, B * M * K)
    y1 = torch.nn.functional.one_hot(idx, K).float()[None]
    ctr8 = rng.counter_noise(key, torch.arange(8), 0, B * M * K)  # the engine's chunk: 8 draws in one call
    logp8, y8 = logp.expand(8, B, K), y1.expand(8, B, K)
    fused = {"dynamic": None, "dynamic_dims": {0: (0,), 1: (0,), 2: (0,)}}
    parts = {
        "uniforms_fused": (lambda: rng.uniforms(key, one, B * M * K), 5),
        "uniforms_plain_int32": (lambda: rng.uniforms(key, one, B * M * K, fused=False), 5),
        "uniforms_int64_before": (lambda: uniforms_int64(key, one, B * M * K), 2),
        "torch_rand_same_count": (lambda: torch.rand(B * M * K), 5),
        "weights_fused": (lambda: rng._call_compiled("grmc_weights", grmc._weights, logp, idx, U, coef, power, True,
                                                     **fused), 5),
        "weights_fused_exp_log": (lambda: rng._call_compiled("grmc_weights", grmc._weights, logp, idx, U, coef, 0,
                                                             True, **fused), 5),
        "weights_plain": (lambda: grmc._weights(logp, idx, U, coef, power, True), 5),
        "counter_moments_one_draw": (lambda: grmc.counter_moments(logp[None], y1, ctr, 0.1, M), 5),
        "counter_moments_one_draw_torch_path": (lambda: grmc.counter_moments(logp[None], y1, ctr, 0.1, M,
                                                                             native=False), 5),
        "counter_moments_one_draw_t2": (lambda: grmc.counter_moments(logp[None], y1, ctr, 2.0, M), 5),
        "counter_moments_one_draw_t2_torch_path": (lambda: grmc.counter_moments(logp[None], y1, ctr, 2.0, M,
                                                                                native=False), 5),
        "counter_moments_one_draw_t0.0376": (lambda: grmc.counter_moments(logp[None], y1, ctr, 0.0376, M), 5),
        "counter_moments_chunk8_per_draw": (lambda: grmc.counter_moments(logp8, y8, ctr8, 0.1, M), 3),
        "C_product": (lambda: torch.matmul(s.transpose(-1, -2), s), 5),
    }
    timed = {name: [best(f, r=r, name=name), CPU_TIMES[name]] for name, (f, r) in parts.items()}
    timed["counter_moments_chunk8_per_draw"] = [v / 8 for v in timed["counter_moments_chunk8_per_draw"]]
    out["one gr-mc draw (3200 x 100 x 16 numbers), ms: [wall, CPU]"] = timed
    out["compiled_kernels"] = rng.KERNELS.in_use()
    out["native_kernel"] = {"capability": grmc_native.capability(), "built": grmc_native.kernel() is not None}
    out["load_average_end"] = list(os.getloadavg())
    out["command"] = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} python scripts/noise_components.py " \
        f"{out_path or ''}"
    text = json.dumps(out, indent=1)
    if out_path:
        with open(out_path, "w") as f:
            f.write(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    main(sys.argv[1] if len(sys.argv) > 1 else None)
