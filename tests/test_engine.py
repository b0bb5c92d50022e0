"""The sampling engine: vectorized draws equal the per-draw loop, chunking changes nothing, noise
streams are independent across specs, parameter subsets, non-finite draws, block statistics."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from biasvar import engine, rng, store
from biasvar.engine import blocks, gradients
from biasvar.errors import SpecError, UnsupportedError
from biasvar.estimators import build
from biasvar.problems.base import noise_requests
from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import VAE
from biasvar.snapshot import snapshot_of
from biasvar.spec import parse_spec
from biasvar.stats.moments import Moments

pytestmark = pytest.mark.usefixtures("one_thread")


SPECS = ["zgr", "st(t=2)", "darn", "gs(t=0.5)", "gs-st(t=0.5)", "gr-mc(t=0.3,M=5)", "st-zgr(alpha=0.5,t=2)",
         "rf(M=3)"]


def small_vae() -> VAE:
    """A tiny float64 VAE (2 variables of 4 categories, one hidden layer of 8) with a random binary batch."""
    p = VAE(categories=4, vars=2, hidden=(8,), seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    p.batch = torch.bernoulli(torch.full((5, 784), 0.3), generator=g).double()
    return p


PROBLEMS = {"toy-cat": lambda: ToyCat(vars=3, categories=4), "vae": small_vae}


def noise_of(problem, spec: str, draws: torch.Tensor, seed: int = 0) -> dict:
    est = build(spec)
    dtype = next(iter(problem.params.values())).dtype
    return rng.draw_noise(noise_requests(problem, est), rng.stream_key(seed, str(parse_spec(spec))), draws,
                          dtype=dtype)


@pytest.mark.parametrize("kind", list(PROBLEMS))
@pytest.mark.parametrize("spec", SPECS)
def test_engine_equals_per_draw_loop(kind, spec):
    """Same noise, same gradients: vmap over draws == one autograd.grad per draw."""
    problem = PROBLEMS[kind]()
    n = 6
    fast = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=n, seed=3, chunk=4)])
    slow = engine.loop_gradients(problem, build(spec), list(problem.params),
                                 noise_of(problem, spec, torch.arange(n), seed=3))
    assert fast.shape == (n, problem.dim)
    assert slow.abs().max() > 0
    assert_close(fast, slow, rtol=1e-9, atol=1e-11)


def test_loop_is_autograd_of_draw_loss():
    """The slow twin itself: the gradient of the first draw equals a hand-written autograd call."""
    from biasvar.problems.base import draw_loss

    problem, spec = ToyCat(vars=2, categories=3), "gr-mc(t=0.5,M=4)"
    noise = noise_of(problem, spec, torch.arange(1))
    logits = problem.params["logits"].clone().requires_grad_(True)
    one = {node: {k: v[0] for k, v in d.items()} for node, d in noise.items()}
    (g,) = torch.autograd.grad(draw_loss(problem, build(spec), {"logits": logits}, one), logits)
    assert_close(engine.loop_gradients(problem, build(spec), ["logits"], noise)[0], g.reshape(-1))


@pytest.mark.parametrize("spec", ["zgr", "gr-mc(t=0.3,M=5)", "rf(M=3)"])
def test_draws_do_not_depend_on_chunking(spec):
    problem = small_vae()
    a = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=9, seed=1, chunk=2)])
    b = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=9, seed=1, chunk=9)])
    c = torch.cat([ch.grads for ch in engine.sample_gradients(problem, spec, n=4, seed=1, start=5, chunk=3)])
    assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert_close(a[5:], c, rtol=1e-10, atol=1e-12)


def test_chunk_size_independence_of_stored_statistics(tmp_path):
    snap = snapshot_of(ToyCat(vars=3, categories=4))
    paths = [engine.sample_run(snap, "gr-mc(t=0.5,M=10)", n=1000, seed=2, runs_dir=tmp_path / f"c{ch}",
                               block_size=64, chunk=ch, keep=5) for ch in (50, 1000)]
    a, b = (store.read_run(p) for p in paths)
    np.testing.assert_array_equal(a.block_count, b.block_count)
    assert a.block_count.tolist() == [64] * 15 + [40]
    np.testing.assert_allclose(a.block_sum, b.block_sum, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.block_m2, b.block_m2, rtol=1e-10)
    np.testing.assert_allclose(a.block_sumsq, b.block_sumsq, rtol=1e-10)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-6, atol=1e-7)


def test_block_statistics_in_row_slices_are_the_same(tmp_path, monkeypatch):
    snap = snapshot_of(ToyCat(vars=3, categories=4))
    a = store.read_run(engine.sample_run(snap, "zgr", n=300, seed=0, runs_dir=tmp_path / "a", block_size=100))
    monkeypatch.setattr(blocks, "STATS_ELEMENTS", 25)  # two draws of the 12 logits per step
    b = store.read_run(engine.sample_run(snap, "zgr", n=300, seed=0, runs_dir=tmp_path / "b", block_size=100))
    np.testing.assert_allclose(a.block_sum, b.block_sum, rtol=1e-6)
    np.testing.assert_allclose(a.block_m2, b.block_m2, rtol=1e-10)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_stored_statistics_match_the_draws(tmp_path):
    """Block sums, per-group centred M2 and sums of squares, kept samples: from the raw draws."""
    problem = small_vae()
    snap = snapshot_of(problem)
    path = engine.sample_run(snap, "zgr", n=40, seed=0, runs_dir=tmp_path, block_size=16, keep=7, chunk=5)
    run = store.read_run(path)
    x = torch.cat([c.grads for c in engine.sample_gradients(problem, "zgr", n=40, seed=0, chunk=40)]).numpy()
    assert run.block_count.tolist() == [16, 16, 8]
    assert run.groups == list(problem.params) and run.group_sizes.sum() == problem.dim == run.dim
    edges = np.concatenate([[0], np.cumsum(run.group_sizes)])
    for b, (lo, hi) in enumerate([(0, 16), (16, 32), (32, 40)]):
        xb = x[lo:hi]
        np.testing.assert_allclose(run.block_sum[b], xb.sum(0), rtol=1e-5, atol=1e-6)
        dev = xb - xb.mean(0)
        for g in range(len(run.groups)):
            cols = slice(edges[g], edges[g + 1])
            np.testing.assert_allclose(run.block_m2[b, g], (dev[:, cols] ** 2).sum(), rtol=1e-9, atol=1e-14)
            np.testing.assert_allclose(run.block_sumsq[b, g], (xb[:, cols] ** 2).sum(), rtol=1e-9)
    np.testing.assert_allclose(run.samples, x[:, run.sample_index], rtol=1e-6)
    assert len(run.sample_index) == 7


def test_moments_merge_equals_one_shot():
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.1, 2, 9, dtype=torch.float64)
    x = 3 + torch.randn(50, 9, generator=g, dtype=torch.float64) * scale
    bounds = [(0, 2), (2, 4), (6, 3)]
    sizes = [s for _, s in bounds]
    one = Moments.of(x, sizes)
    merged = Moments.of(x[:7], sizes)
    for lo, hi in [(7, 8), (8, 30), (30, 50)]:
        merged = merged.update(x[lo:hi])
    assert merged.count == one.count == 50
    for field in ("sum", "m2", "sumsq"):
        assert_close(getattr(merged, field), getattr(one, field), rtol=1e-12, atol=1e-12)
    ref_m2 = [((x[:, o:o + s] - x[:, o:o + s].mean(0)) ** 2).sum() for o, s in bounds]
    assert_close(one.m2, torch.stack(ref_m2))
    # one state type: the same moments from numpy draws (the analysis) as from tensors (the engine)
    arr = Moments.of(x.numpy(), sizes).update(np.zeros((0, 9)))
    assert arr.count == one.count and isinstance(arr.sum, np.ndarray)
    for field in ("sum", "m2", "sumsq"):
        np.testing.assert_allclose(getattr(arr, field), getattr(one, field).numpy(), rtol=1e-12)
    from biasvar.stats import variance

    assert variance(arr) == pytest.approx(float(one.m2.sum()) / (49 * 9), rel=1e-12)


def test_zgr_run_is_unbiased_against_exact_enumeration(tmp_path):
    """End to end: the stored mean of zgr on a quadratic toy loss is within 5 SE of the exact gradient
    (Theorem 2), per coordinate; the run file carries that exact gradient."""
    problem = ToyCat(vars=3, categories=4, loss="quadratic")
    run = store.read_run(engine.sample_run(snapshot_of(problem), "zgr", n=4000, seed=0, runs_dir=tmp_path))
    exact = problem.exact_gradient()["logits"].reshape(-1).numpy()
    np.testing.assert_allclose(run.exact, exact)
    n = run.n
    mean = run.block_sum.astype(np.float64).sum(0) / n
    # per-coordinate variance from the kept samples (all 12 coordinates are kept)
    assert run.samples.shape == (n, 12)
    se = run.samples.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-12)


def test_two_specs_with_the_same_seed_are_uncorrelated():
    """Eq. 16 needs the reference's and the tested draws independent: different specs, same seed."""
    problem, n = ToyCat(vars=3, categories=4), 4000

    def draws(spec: str, seed: int = 0) -> np.ndarray:
        chunks = engine.sample_gradients(problem, spec, n=n, seed=seed, chunk=n)
        return torch.cat([c.grads for c in chunks]).numpy()

    def max_corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(0), b - b.mean(0)
        return float(np.max(np.abs((a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0)))))

    zgr, st = draws("zgr"), draws("st")
    assert max_corr(zgr, st) < 5 / math.sqrt(n)
    assert max_corr(zgr, draws("zgr", seed=1)) < 5 / math.sqrt(n)
    # the check has power: the same noise given to both estimators makes them strongly correlated
    zgr_noise = noise_of(problem, "zgr", torch.arange(400))
    same = engine.loop_gradients(problem, build("st"), ["logits"], zgr_noise)
    assert max_corr(zgr[:400], same.numpy()) > 0.5


def test_parameter_subset(tmp_path):
    problem = small_vae()
    names = engine.select_params(problem, "decoder.*")
    assert names == [k for k in problem.params if k.startswith("decoder.")]
    assert engine.select_params(problem, "encoder.0.weight, decoder.2.*") == [
        "encoder.0.weight", "decoder.2.weight", "decoder.2.bias"]
    full = torch.cat([c.grads for c in engine.sample_gradients(problem, "zgr", n=5, seed=0)])
    chunks = engine.sample_gradients(problem, "zgr", n=5, seed=0, params="decoder.*")
    part = torch.cat([c.grads for c in chunks])
    offsets = {k: off for k, _, off in problem.layout()}
    first = offsets[names[0]]
    assert part.shape == (5, sum(problem.params[k].numel() for k in names))
    assert_close(part, full[:, first:first + part.shape[1]], rtol=1e-9, atol=1e-12)
    run = store.read_run(engine.sample_run(snapshot_of(problem), "zgr", n=5, seed=0, runs_dir=tmp_path,
                                           params="decoder.*"))
    assert run.groups == names and run.dim == part.shape[1]
    assert run.attrs["params_glob"] == "decoder.*"
    assert [entry[2] for entry in run.attrs["layout"]] == list(np.cumsum([0, *run.group_sizes[:-1]]))
    with pytest.raises(SpecError, match="no parameter matches"):
        engine.select_params(problem, "nothing.*")


class NanToy(ToyCat):
    """A toy loss that is NaN whenever variable 0 takes category 0: sqrt(1 - 2 y[0, 0])."""

    def forward(self, params, x, sample):
        B = x.shape[0]
        y = sample("z", params["logits"].unsqueeze(0).expand(B, self.V, self.K))
        base = (y.flatten(-2) @ self.coef["b"])
        return base + torch.sqrt(1 - 2 * y[..., 0, 0])


def test_nonfinite_draws_are_counted_and_excluded(tmp_path):
    problem = NanToy(vars=2, categories=3, loss="linear")
    n, spec = 300, "zgr"
    path = engine.sample_run(snapshot_of(problem), spec, n=n, seed=0, runs_dir=tmp_path, block_size=50)
    run = store.read_run(path)
    # which draws sample category 0 for variable 0: from the same counter-based noise
    G = noise_of(problem, spec, torch.arange(n))["z"]["G"][:, 0, 0]  # [n, K]
    bad = (problem.params["logits"][0].log_softmax(-1) + G).argmax(-1) == 0
    assert 0 < int(bad.sum()) < n
    assert int(run.block_nonfinite.sum()) == int(bad.sum()) == run.attrs["n_nonfinite"]
    assert run.n == n - int(bad.sum()) == run.samples.shape[0]
    assert run.attrs["n_done"] == n
    assert np.isfinite(run.block_sum).all() and np.isfinite(run.block_m2).all()
    x = torch.cat([c.grads for c in engine.sample_gradients(problem, spec, n=n, seed=0)])
    assert torch.isnan(x[bad]).any(1).all() and torch.isfinite(x[~bad]).all()
    np.testing.assert_allclose(run.block_sum.sum(0), x[~bad].sum(0).numpy(), rtol=1e-5, atol=1e-6)


def test_block_size_rule_keeps_a_fig1_run_under_200_mb():
    dim, n = 1_149_456, 10_000
    bs = engine.choose_block_size(n, dim)
    blocks = math.ceil(n / bs)
    assert blocks >= 32
    size = blocks * dim * 4 + n * 256 * 4 + blocks * 12 * 16  # sums + kept samples + group moments
    assert size < 200e6
    assert engine.choose_block_size(10_000, 12) == 100  # small problems: 100 blocks
    assert engine.choose_block_size(10, 12) == 1


def test_settings_are_validated():
    assert engine.parse_memory("4GB") == 4 << 30 and engine.parse_memory("512mb") == 512 << 20
    assert engine.parse_memory(123) == 123
    with pytest.raises(SpecError, match="memory size"):
        engine.parse_memory("four gigs")
    with pytest.raises(SpecError, match="dtype"):
        engine.resolve_dtype("float16x")
    assert engine.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedError, match="CUDA is not available"):
            engine.resolve_device("cuda")
    with pytest.raises(SpecError, match="at least 1"):
        engine.sample_run(snapshot_of(ToyCat()), "zgr", n=0)


def test_oom_halves_the_chunk_and_retries(monkeypatch):
    """An out-of-memory error on a chunk is retried with half the draws; the draws are unchanged."""
    problem, calls = ToyCat(), []
    real = engine.vmap_gradients

    def flaky(prob, est, names, noise):
        m = gradients._draws_in(noise)
        calls.append(m)
        if m > 3:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real(prob, est, names, noise)

    monkeypatch.setitem(engine.METHODS, "vmap", flaky)  # the vmap path (no calibration: it would time flaky)
    got = torch.cat([c.grads for c in engine.sample_gradients(problem, "zgr", n=10, seed=0, chunk=16,
                                                              method="vmap")])
    monkeypatch.setitem(engine.METHODS, "vmap", real)
    want = torch.cat([c.grads for c in engine.sample_gradients(problem, "zgr", n=10, seed=0, chunk=10)])
    assert calls[:3] == [10, 5, 2] and max(calls[2:]) <= 2
    assert_close(got, want)


class FakeMemory:
    """Allocator stand-in: ``base`` bytes held, each draw of a chunk needs ``per_draw`` at its peak."""

    def __init__(self, base: int, per_draw: int) -> None:
        self.base, self.per_draw, self.m = base, per_draw, 0

    def allocated(self) -> int:
        return self.base

    def reset_peak(self) -> None:
        pass

    def peak(self) -> int:
        return self.base + self.per_draw * self.m


def test_cuda_chunk_sizer_follows_the_budget():
    """The CUDA sizing rule, with a fake allocator: probe one draw, grow at most 4x a chunk up to
    0.8 x budget, halve on OOM and never exceed the size that failed again."""
    mem = FakeMemory(base=1000, per_draw=100)
    sizer = engine.ChunkSizer(1, 100_000, False, 8192, mem, "cuda:0")
    sizes = []
    for _ in range(6):
        sizer.start()
        mem.m = sizer.size
        sizes.append(sizer.size)
        sizer.observed(sizer.size)
    assert sizes == [1, 4, 16, 64, 256, 790]  # (0.8 * 100000 - 1000) // 100 = 790
    sizer.failed(790)
    assert sizer.size == 395
    sizer.start()
    mem.m = 395
    sizer.observed(395)
    assert sizer.size == 395  # capped by the size that failed
    with pytest.raises(UnsupportedError, match="one draw does not fit"):
        sizer.failed(1)
    fixed = engine.ChunkSizer(32, 1, True, 32, mem, "cuda:0")
    fixed.observed(32)
    assert fixed.size == 32


def test_sweep_plan_gives_the_tested_reference_another_seed(tmp_path):
    plan = engine.plan_sweep(SimpleNamespace(id="abc"), ["zgr", "rf(M=4)", "rf(4)", "gr-mc(0.1, 10)"],
                             reference="rf(M=4)", n=100, reference_n=300, seed=5, runs_dir=tmp_path)
    assert [(r.spec, r.seed, r.n, r.role) for r in plan] == [
        ("rf(M=4)", 5, 300, "reference"), ("zgr", 5, 100, "tested"), ("rf(M=4)", 6, 100, "tested"),
        ("gr-mc(M=10,t=0.1)", 5, 100, "tested")]
    assert len({r.path for r in plan}) == len(plan)


def test_cpu_chunk_sizer_divides_the_budget_by_the_bytes_per_draw():
    """On the CPU the chunk is budget // estimate_bytes_per_draw, capped at CPU_MAX_CHUNK, and fixed."""
    from biasvar.engine import chunks

    cpu = torch.device("cpu")
    vae = small_vae()
    for spec in ("zgr", "rf(M=4)", "gr-mc(t=0.1,M=50)"):
        est = build(spec)
        names = list(vae.params)
        per_draw = chunks.estimate_bytes_per_draw(vae, est, names)
        assert per_draw > sum(p.numel() for p in vae.params.values()) * 8  # at least the gradient and stats
        for budget in (per_draw * 3 + 1, per_draw * 37, 10 * per_draw * chunks.CPU_MAX_CHUNK):
            sizer = chunks.make_sizer(cpu, vae, est, names, None, budget)
            assert sizer.size == min(budget // per_draw, chunks.CPU_MAX_CHUNK) and sizer.fixed
            sizer.observed(sizer.size)  # no probe on the CPU: the size stays
            assert sizer.size == min(budget // per_draw, chunks.CPU_MAX_CHUNK)
        assert chunks.make_sizer(cpu, vae, est, names, None, 1).size == 1  # one draw always runs
        assert chunks.make_sizer(cpu, vae, est, names, 7, 1).size == 7  # --chunk wins
    # more forward passes (rf(M=4)), more noise (gr-mc(M=50)) and more parameters need more bytes per draw
    est = {s: build(s) for s in ("zgr", "rf(M=4)", "gr-mc(t=0.1,M=50)")}
    names = list(vae.params)
    size = {s: chunks.estimate_bytes_per_draw(vae, e, names) for s, e in est.items()}
    assert size["zgr"] < size["rf(M=4)"] and size["zgr"] < size["gr-mc(t=0.1,M=50)"]
    assert chunks.estimate_bytes_per_draw(vae, est["zgr"], names[:1]) < size["zgr"]
    # the default budget, and the chunks sample_gradients really yields
    sizer = chunks.make_sizer(cpu, vae, est["zgr"], names, None, None)
    assert sizer.budget == chunks.CPU_DEFAULT_MEMORY
    budget = 5 * chunks.estimate_bytes_per_draw(vae, est["zgr"], names)
    got = [c.grads.shape[0] for c in engine.sample_gradients(vae, "zgr", n=12, seed=0, max_memory=budget)]
    assert got == [5, 5, 2]


class MeasuredToy(ToyCat):
    """A toy problem that names the parameters its study measures (as qnet names layer 0)."""

    measure_params = "w*"

    def __init__(self) -> None:
        super().__init__(vars=2, categories=4)
        self.params = {"w_extra": torch.zeros(3, dtype=torch.float64), **self.params}

    def exact_gradient(self):  # the loss does not depend on w_extra
        return {"w_extra": torch.zeros(3, dtype=torch.float64), **super().exact_gradient()}


def test_sample_run_measures_the_problems_measure_params_by_default(tmp_path):
    """``params=None`` takes ``problem.measure_params``; an explicit glob (``--params``) overrides it."""
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    from biasvar.snapshot import save_snapshot

    prob = MeasuredToy()
    snap = snapshot_of(prob)
    run = store.read_run(engine.sample_run(snap, "zgr", n=20, runs_dir=tmp_path / "a"))
    assert run.attrs["params_glob"] == "w*" and run.groups == ["w_extra"] and run.dim == 3
    run = store.read_run(engine.sample_run(snap, "zgr", n=20, runs_dir=tmp_path / "b", params="*"))
    assert run.attrs["params_glob"] == "*" and run.groups == ["w_extra", "logits"] and run.dim == 3 + 8
    plain = store.read_run(engine.sample_run(snapshot_of(ToyCat(vars=2, categories=4)), "zgr", n=20,
                                             runs_dir=tmp_path / "c"))
    assert plain.attrs["params_glob"] == "*" and plain.groups == ["logits"]
    # the CLI, on a registered problem with measure_params (qnet: layer 0): default, then --params
    from biasvar.problems.qnet import QNet

    net = QNet(arch="4C5-MP4-16FC-10FC", placeholder_rows=6)
    path = save_snapshot(tmp_path / "q.pt", net).path
    runner = CliRunner()
    layer0 = [k for k in net.params if k.startswith("layers.0.")]
    for args, glob, groups in (([], "layers.0.*", layer0), (["--params", "*"], "*", list(net.params))):
        runs = tmp_path / ("cli-all" if args else "cli-default")
        r = runner.invoke(app, ["sample", "--snapshot", str(path), "-e", "zgr", "--n", "4", "--keep", "0",
                                "--runs-dir", str(runs), *args])
        assert r.exit_code == 0, r.output
        (f,) = store.list_run_files(runs)
        run = store.read_run(f)
        assert run.attrs["params_glob"] == glob and run.groups == groups


# ---------------------------------------------------------------- the path a run records
def test_run_files_record_the_engine_path_taken_and_old_files_still_read(tmp_path, monkeypatch):
    """A new run file says which path ``auto`` resolved to (vmap or loop) and its chunk, keeping
    ``auto`` as the request; a file written before that (method "auto", no chunk) still reads, and
    reports and ``biasvar ls`` show both."""
    from biasvar import report
    from biasvar.engine.draws import DrawPath

    snap = snapshot_of(ToyCat(vars=2, categories=3))
    runs_dir = tmp_path / "runs"
    a = store.read_run(engine.sample_run(snap, "zgr", n=40, seed=0, runs_dir=runs_dir, block_size=20))
    want = engine.engine_path(snap.problem, "zgr")
    assert a.attrs["method"] == want["method"] and a.attrs["method"] in ("vmap", "loop")
    assert a.attrs["method_requested"] == "auto" and a.attrs["chunk"] == want["chunk"] >= 1
    b = store.read_run(engine.sample_run(snap, "darn", n=40, seed=0, runs_dir=runs_dir, block_size=20,
                                         method="loop", chunk=3))
    assert (b.attrs["method"], b.attrs["chunk"], b.attrs["method_requested"]) == ("loop", 3, "loop")
    monkeypatch.setattr(DrawPath, "record", lambda self: {})  # the header of earlier versions
    c = store.read_run(engine.sample_run(snap, "st", n=40, seed=0, runs_dir=runs_dir, block_size=20))
    assert c.attrs["method"] == "auto" and "chunk" not in c.attrs
    engine.sample_run(snap, "rf(M=4)", n=40, seed=0, runs_dir=runs_dir, block_size=20, method="vmap", chunk=5)
    rows = {r.spec: r for r in report.analyze_runs(runs_dir, n_resamples=20).rows}
    assert rows["zgr"].versions["engine"] == f"{want['method']}, chunk {want['chunk']} (auto)"
    assert rows["darn"].versions["engine"] == "loop, chunk 3"
    assert rows["st"].versions["engine"] == "auto (path not recorded)"
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    monkeypatch.setenv("COLUMNS", "200")  # the widest layout, with the engine column
    out = CliRunner().invoke(app, ["ls", "--runs-dir", str(runs_dir)], terminal_width=200).output
    assert "engine" in out and f"{want['method']}/{want['chunk']}" in out and "loop/3" in out and "auto" in out


# ---------------------------------------------------------------- one plan per run
def _count(monkeypatch, owner, name, calls):
    real = getattr(owner, name)

    def counted(*a, **k):
        calls[name] = calls.get(name, 0) + 1
        return real(*a, **k)

    monkeypatch.setattr(owner, name, counted)


def test_a_run_is_planned_once(tmp_path, monkeypatch):
    """A run parses its spec, prepares its problem (one copy on the device), sizes its chunks and
    calibrates vmap against the loop once, however many shards compute it in this process."""
    from biasvar import spec as spec_mod
    from biasvar.engine import calibration, draws, executors
    from biasvar.problems.base import Problem

    snap = snapshot_of(ToyCat(vars=3, categories=4))
    calls: dict[str, int] = {}
    for owner, name in ((spec_mod, "_split"), (Problem, "to"), (draws, "make_sizer"), (calibration, "_measure")):
        _count(monkeypatch, owner, name, calls)
    engine.sample_run(snap, "gr-mc(t=0.5,M=3)", n=40, seed=0, runs_dir=tmp_path / "a", block_size=10, chunk=8,
                      calibration=engine.Calibration())  # 5 chunks: timed (a run of 3 or fewer is not)
    assert calls == {"_split": 1, "to": 1, "make_sizer": 1, "_measure": 1}
    calls.clear()  # a complete run: planned, found complete, neither sized nor calibrated
    engine.sample_run(snap, "gr-mc(t=0.5,M=3)", n=40, seed=0, runs_dir=tmp_path / "a", block_size=10, chunk=8,
                      calibration=engine.Calibration())
    assert calls == {"_split": 1, "to": 1}
    calls.clear()  # a sweep of two runs in 4 shards each: once per run, not per shard
    plan = engine.plan_sweep(snap, ["zgr"], reference="rf(M=2)", n=40, runs_dir=tmp_path / "b")
    calls.clear()
    result = executors.run_sweep(plan, engine.RunOptions(block_size=10, chunk=3), executor=executors.Local(4),
                                 gram=False)  # the statistics store reads the runs again: not planning
    assert len(result.computed) == 8
    assert calls == {"_split": 2, "to": 2, "make_sizer": 2}  # once per run (sharded runs take vmap: no timing)


def test_a_planned_run_equals_the_same_run_cut_in_shards_and_merged(tmp_path):
    """``sample(plan_run(...))`` writes, dataset by dataset, the file that three shards computed
    apart (each its own plan, as Ray tasks do) and merged make: the draw range of :func:`fill` and
    the chunk grid of the run give every draw the same bits."""
    from test_shards import assert_same_run

    from biasvar.engine import shards as sh

    snap = snapshot_of(ToyCat(vars=3, categories=4))
    options = engine.RunOptions(block_size=10, chunk=7, keep=5, method="vmap")
    for spec in ("zgr", "gr-mc(t=0.5,M=10)"):
        plan = engine.plan_run(snap, spec, n=130, seed=2, runs_dir=tmp_path / "whole", options=options)
        assert not plan.complete and plan.draws is not None and plan.header["method"] == "vmap"
        whole = engine.sample(plan)
        assert engine.plan_run(snap, spec, n=130, seed=2, runs_dir=tmp_path / "whole", options=options).complete
        for first, end in sh.shard_ranges(130, 10, 3):
            sh.sample_shard(snap, spec, n=130, first=first, end=end, seed=2, runs_dir=tmp_path / "cut",
                            options=options)
        merged = sh.merge_run(store.run_path(tmp_path / "cut", snap.id, str(plan.spec), 2))
        assert merged.complete and merged.merged == 3
        assert_same_run(whole, merged.run_path)


def test_fill_draws_an_explicit_range_into_a_writer(tmp_path):
    """:func:`fill` over ``[first, end)`` of a run writes the blocks a run file has there."""
    from biasvar.engine import shards as sh

    snap = snapshot_of(ToyCat(vars=2, categories=3))
    options = engine.RunOptions(block_size=10, chunk=4, keep=3)
    whole = store.read_run(engine.sample(engine.plan_run(snap, "zgr", n=50, runs_dir=tmp_path / "a",
                                                         options=options)))
    plan = sh.plan_shard(engine.plan_run(snap, "zgr", n=50, runs_dir=tmp_path / "b", options=options,
                                         sharded=True), 20, 40)
    seen = []
    with store.RunWriter.open(plan.path, dict(plan.header), n_target=20, group_sizes=np.array([6]),
                              sample_index=engine.keep_index(6, 3), exact=None) as writer:
        engine.fill(plan, writer, 20, 40, progress=lambda done, total, bad, rate: seen.append((done, total)))
        writer.finish()
    part = store.read_run(plan.path)
    assert seen[-1] == (20, 20) and part.n == 20
    assert np.array_equal(part.block_sum, whole.block_sum[2:4]) and np.array_equal(part.samples, whole.samples[20:40])


def test_the_engine_never_imports_calibrate():
    """Imports go one way: ``biasvar.calibrate`` uses the engine, the engine (even calibrating an
    ``auto`` run) never imports it; its calibration lives in a :class:`Calibration` object."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from biasvar import engine\n"
            "from biasvar.problems.toy import ToyCat\n"
            "list(engine.sample_gradients(ToyCat(), 'zgr', n=4, seed=0, method='auto'))\n"
            "assert engine.calibration.PROCESS.measurement(ToyCat(), 'zgr', ['logits'], torch.device('cpu'))\n"
            "sys.exit(1 if 'biasvar.calibrate' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0
