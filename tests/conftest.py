"""Shared fixtures and helpers of the test suite.

Synthetic runs (``run_from_draws``, ``gaussian_run``, ``fig_runs``) carry the block statistics the
engine stores, computed the slow, obviously correct way from Gaussian draws with a known mean;
``write_run`` writes one with the store API. ``draw_moments`` is the mean and standard error of a
problem's gradient draws; ``one_line_error`` checks the CLI's one-line refusals; ``stop_after`` is
a progress callback that interrupts a run; ``heavy_imports`` lists the heavy libraries an import
loads. Test modules import them with ``from conftest import``.
"""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from biasvar import store
from biasvar.data import Dataset
from biasvar.spec import parse_spec

os.environ["BIASVAR_OFFLINE"] = "1"  # tests never download

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool stalls on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# synthetic runs

SNAP = "5eed" * 16


def _layout(group_sizes) -> list:
    offs = np.concatenate([[0], np.cumsum(group_sizes)[:-1]])
    return [[f"p{i}", [int(g)], int(o)] for i, (g, o) in enumerate(zip(group_sizes, offs, strict=True))]


def _attrs(spec: str, seed: int, dim: int, group_sizes, **extra) -> dict:
    a = dict(schema_version=1, spec=str(parse_spec(spec)), seed=seed, snapshot_hash=SNAP, params_glob="*",
             dim=dim, layout=_layout(group_sizes), status="complete", problem={"kind": "synthetic"},
             draws_per_s=1000.0, biasvar_version="test", torch_version="x", git_commit="abc", device="cpu",
             dtype="float32")
    a.update(extra)
    return a


def run_from_draws(x: np.ndarray, sizes, group_sizes, *, spec: str = "zgr", seed: int = 0,
                   nonfinite=None, exact=None, path: str | None = None, **extra) -> store.RunData:
    """The block statistics the engine stores, computed from draws ``x`` [n, dim] split into
    blocks of the given sizes (the slow, obviously correct way)."""
    x = np.asarray(x, dtype=np.float64)
    gs = np.asarray(group_sizes, dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(gs)])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    sums, m2, sq = [], [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        blk = x[a:b]
        dev = blk - blk.mean(0) if len(blk) else blk
        sums.append(blk.sum(0))
        m2.append([np.square(dev[:, lo:hi]).sum() for lo, hi in zip(off[:-1], off[1:], strict=True)])
        sq.append([np.square(blk[:, lo:hi]).sum() for lo, hi in zip(off[:-1], off[1:], strict=True)])
    nb = len(sizes)
    dim = x.shape[1]
    return store.RunData(
        path=path or f"{parse_spec(spec)}-s{seed}.h5", attrs=_attrs(spec, seed, dim, gs, **extra),
        groups=[f"p{i}" for i in range(len(gs))], group_sizes=gs,
        block_count=np.asarray(sizes, dtype=np.int64),
        block_nonfinite=np.zeros(nb, np.int64) if nonfinite is None else np.asarray(nonfinite, np.int64),
        block_sum=np.asarray(sums, dtype=np.float32),
        block_m2=np.asarray(m2, dtype=np.float64).reshape(nb, -1),
        block_sumsq=np.asarray(sq, dtype=np.float64).reshape(nb, -1), samples=None, sample_index=None,
        exact=None if exact is None else np.asarray(exact, dtype=np.float64),
    )


def gaussian_run(rng: np.random.Generator, mean: np.ndarray, sigma: float, *, nb: int, bs: int,
                 group_sizes=None, spec: str = "zgr", seed: int = 0, exact=None, **extra) -> store.RunData:
    """A run of nb blocks of bs draws x ~ N(mean, sigma^2 I), from the draws themselves."""
    dim = len(mean)
    gs = [dim // 2, dim - dim // 2] if group_sizes is None else group_sizes
    x = mean + sigma * rng.standard_normal((nb * bs, dim))
    return run_from_draws(x, [bs] * nb, gs, spec=spec, seed=seed, exact=exact, **extra)


def write_run(runs_dir: Path, run: store.RunData) -> Path:
    """Write a RunData to a real run file with the store API (as the engine does)."""
    a = run.attrs
    header = {k: a[k] for k in ("schema_version", "spec", "seed", "snapshot_hash", "params_glob", "dim",
                                "dtype", "layout", "problem")}
    header.update(block_size=int(run.block_count.max()), cost=a.get("cost", parse_spec(a["spec"]).cost),
                  biasvar_version="test", git_commit="abc", device="cpu", torch_version="x")
    path = store.run_path(runs_dir, a["snapshot_hash"][:12], a["spec"], a["seed"])
    w = store.RunWriter.open(path, header, n_target=int(run.block_count.sum() + run.block_nonfinite.sum()),
                             group_sizes=run.group_sizes, sample_index=np.zeros(0, np.int64), exact=run.exact)
    with w:
        for b in range(len(run.block_count)):
            w.append(store.BlockStats(int(run.block_count[b]), int(run.block_nonfinite[b]), run.block_sum[b],
                                      run.block_m2[b], run.block_sumsq[b], np.zeros((0, 0), np.float32)),
                     wall_s=0.01)
        if a.get("status", "complete") == "complete":
            w.finish()
    return path


def _toy_curve(spec: str) -> tuple[float, float]:
    """(true b2, sigma) of a synthetic estimator: bias grows with t, variance falls with t."""
    s = parse_spec(spec)
    t = float(s.get("t", 1.0) or 1.0)
    table = {
        "gs": (0.02 * t, 1.0 / math.sqrt(t)),
        "gs-st": (0.01 * t, 0.8 / t**0.25),
        "gr-mc": (0.01 * t * (1 + 5 / float(s.get("M", 10))), 0.6 / t**0.2),
        "st": (0.02 * (1 + 0.1 * t), 0.3 / math.sqrt(t)),
        "st-zgr": (0.02 * (1 - float(s.get("alpha", 0))), 0.3 + 0.3 * float(s.get("alpha", 0))),
        "zgr": (0.004, 0.6),
        "darn": (0.01, 0.9),
        "rf": (0.0, 2.0 / math.sqrt(float(s.get("M", 4)))),
    }
    return table[s.name]


def fig_runs(specs, *, dim: int = 16, nb: int = 8, bs: int = 10, seed: int = 0, exact: bool = False):
    """Synthetic runs (one per spec; the reference rf(M=4) as seed 0 and, if listed twice, seed 1)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(dim)
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    runs, seen = [], {}
    for spec in specs:
        canon = str(parse_spec(spec))
        s_idx = seen.get(canon, -1) + 1
        seen[canon] = s_idx
        b2, sigma = _toy_curve(canon)
        mean = base + direction * math.sqrt(b2 * dim)
        runs.append(gaussian_run(rng, mean, sigma, nb=nb, bs=bs, spec=canon, seed=s_idx,
                                 exact=base if exact else None))
    return runs


def synthetic(n=60, *, dynamic=False, seed=0):
    """Tiny MNIST-like dataset: two prototype images plus pixel noise (binary unless dynamic)."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(2, 784, generator=g) < 0.3).float()
    labels = torch.randint(0, 2, (n,), generator=g)
    probs = (0.9 * protos[labels] + 0.05).clamp(0, 1)
    images = probs if dynamic else torch.bernoulli(probs, generator=g)
    return Dataset(name="synthetic", split="train", images=images, labels=labels, dynamic=dynamic, files=())


def enum_logits(seed: int, V: int, K: int, scale: float = 2.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random logits [V, K] for the enumeration tests of the estimators."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(V, K, generator=g, dtype=dtype)


def enum_loss(kind: str, V: int, K: int, seed: int):
    """A toy loss of one-hot samples [V, K] (``biasvar.problems.toy``: quadratic, linear, ...)."""
    from biasvar.problems.toy import apply_loss, make_loss

    coef = make_loss(kind, V * K, seed=seed)
    return lambda y: apply_loss(kind, coef, y)


def sigkill_after_blocks(proc, path, *, blocks: int = 2, timeout: float = 60.0):
    """Wait until the run file at ``path`` (written by ``proc``) holds ``blocks`` whole blocks, read
    while the writer is active (SWMR), then SIGKILL the writer; returns that reading (None if never seen)."""
    import os
    import signal
    import time

    from biasvar import store
    from biasvar.errors import StoreError

    seen = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                try:
                    run = store.read_run(path)
                except StoreError:
                    run = None
                if run is not None and len(run.block_count) >= blocks:
                    seen = run
                    break
            time.sleep(0.02)
        assert proc.poll() is None, f"writer ended early: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return seen


def draw_moments(problem, spec: str, n: int, *, seed: int = 0, chunk: int = 500) -> dict:
    """Mean and standard error of ``n`` gradient draws of ``spec`` on ``problem`` (``draw_loss`` under
    vmap, the engine's counter-based float64 noise keyed by ``seed``): ``{name: (mean, se)}``."""
    from biasvar.estimators import build
    from biasvar.problems.base import draw_loss, noise_requests
    from biasvar.rng import draw_noise, stream_key

    est = build(spec)
    req, key = noise_requests(problem, est), stream_key(seed, spec)
    fn = torch.func.vmap(torch.func.grad(lambda p, z: draw_loss(problem, est, p, z)), in_dims=(None, 0))
    s = {k: 0.0 for k in problem.params}
    s2 = {k: 0.0 for k in problem.params}
    for start in range(0, n, chunk):
        g = fn(problem.params, draw_noise(req, key, torch.arange(start, min(n, start + chunk)), dtype=torch.float64))
        for k, v in g.items():
            s[k] = s[k] + v.sum(0)
            s2[k] = s2[k] + (v**2).sum(0)
    return {k: (s[k] / n, ((s2[k] / n - (s[k] / n) ** 2).clamp_min(0) / (n - 1)).sqrt()) for k in problem.params}


def one_line_error(result) -> str:
    """The CLI refused with exit code 1 and one line ``error: ...`` on stderr, no traceback: that line."""
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def script_refused(script, argv: list[str], capsys) -> str:
    """A script's ``main(argv)`` refused with exit code 2 and one line ``error: ...`` on stderr: that line."""
    assert script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def stop_after(draws: int, exc: type[BaseException] = KeyboardInterrupt, *, seen: list | None = None):
    """A ``progress`` callback for the engine that raises ``exc`` once ``draws`` draws are done (a run cut
    short, as by Ctrl-C); ``seen`` collects the draw counts it was called with."""

    def progress(done, total, nonfinite, rate):
        if seen is not None:
            seen.append(done)
        if done >= draws:
            raise exc

    return progress


def heavy_imports(statement: str, modules: tuple[str, ...] = ("torch", "matplotlib", "scipy", "h5py", "numpy")):
    """Which of ``modules`` running ``statement`` imports, in a fresh interpreter (sorted)."""
    import subprocess
    import sys

    code = f"import sys\n{statement}\nprint(sorted(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def script_module(name: str):
    """``scripts/NAME.py`` loaded as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
