"""Your own model: the public API, ``--problem module:factory`` through the CLI, snapshots of user
problems, and one-line errors for bad factories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from biasvar_cli.main import app
from conftest import one_line_error
from torch import nn
from torch.testing import assert_close
from typer.testing import CliRunner

import biasvar
from biasvar.errors import BiasvarError, ShapeError, SnapshotError
from biasvar.estimators import build
from biasvar.problems.base import draw_loss, noise_requests
from biasvar.problems.registry import make_problem
from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import SLOPE, VAE, bernoulli_nll, bit_codes, kl_uniform
from biasvar.rng import draw_noise, stream_key
from biasvar.snapshot import content_hash, load_snapshot, save_snapshot

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]

USER_MODULE = '''
import math
import torch
import torch.nn.functional as F
from torch import nn
import biasvar


class BinaryVAE(nn.Module):
    def __init__(self, bits, hidden):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, bits))
        self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 6))
        self.register_buffer("scale", torch.tensor(1.5))

    def forward(self, x, sample):
        logits = self.encoder(x).unsqueeze(-1)
        b = sample("z", logits).squeeze(-1)
        px = self.decoder(b) * self.scale
        q = torch.sigmoid(logits)
        kl = (q * F.logsigmoid(logits) + (1 - q) * F.logsigmoid(-logits)).sum((-1, -2)) + b.shape[1] * math.log(2)
        return (F.softplus(px) - x * px).sum(-1) + kl


def make(bits=3, hidden=5, seed=0):
    x = (torch.rand(4, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    return biasvar.problem_from_module(BinaryVAE(bits, hidden), x)


def not_a_problem():
    return 42


def raises(level=1):
    raise ValueError(f"bad level {level}")


class Sneaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, x, sample):
        return torch.bernoulli(torch.sigmoid(self.lin(x))).sum(-1)


def sneaky():
    return biasvar.problem_from_module(Sneaky(), torch.zeros(4, 6))


class Undeclared(Sneaky):
    def forward(self, x, sample):
        return sample("z", self.lin(x).unsqueeze(-1)).sum((-1, -2))


def undeclared():
    return biasvar.problem_from_module(Undeclared(), torch.zeros(4, 6), sites={"z": (3, 1), "w": (2, 4)})


def wrong_shape():
    return biasvar.problem_from_module(Undeclared(), torch.zeros(4, 6), sites={"z": (4, 1)})


class NotPerPoint(Sneaky):
    def forward(self, x, sample):
        return sample("z", self.lin(x).unsqueeze(-1)).sum()


def not_per_point():
    return biasvar.problem_from_module(NotPerPoint(), torch.zeros(4, 6))
'''


def write_module(tmp_path: Path, name: str, text: str = USER_MODULE) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    return name


def invoke(*args, width: int = 200):
    return runner.invoke(app, [str(a) for a in args], terminal_width=width)


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    """A user module in tmp_path (not in the package), importable from the working directory."""
    name = "usermodel_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    write_module(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


# ------------------------------------------------------------------ the CLI end to end
def test_user_module_trained_sampled_reported_and_plotted_through_the_cli(tmp_path, user_module):
    fac = f"{user_module}:make"
    r = invoke("train", "--problem", fac, "-o", "bits=3", "-o", "hidden=5", "--estimator", "zgr", "--epochs", 1,
               "--steps-per-epoch", 5, "--lr", "1e-2", "--out", tmp_path / "my.pt", "--device", "cpu")
    assert r.exit_code == 0, r.output
    snap = load_snapshot(tmp_path / "my.pt")
    assert snap.problem.kind == fac and snap.problem.config == {"bits": 3, "hidden": 5, "seed": 0}
    assert set(snap.problem.buffers) == {"scale"}
    runs = tmp_path / "runs"
    for spec in ("st", "zgr", "rf(M=4)"):
        r = invoke("sample", "--snapshot", tmp_path / "my.pt", "-e", spec, "--n", 400, "--runs-dir", runs,
                   "--device", "cpu")
        assert r.exit_code == 0, r.output
    r = invoke("report", "--runs-dir", runs, "--reference", "exact", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = {row["spec"]: row for row in json.loads(r.stdout)["rows"]}
    assert set(rows) == {"st", "zgr", "rf(M=4)"}
    # rf(M=4) is unbiased: its b2 interval against the enumerated gradient holds 0; ST is biased here
    lo, hi = rows["rf(M=4)"]["b2"]["low"], rows["rf(M=4)"]["b2"]["high"]
    assert lo <= 0 <= hi, rows["rf(M=4)"]["b2"]
    r = invoke("plot", "pareto", "--runs-dir", runs, "--reference", "exact", "--out", tmp_path / "pareto")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pareto.png").stat().st_size > 1000


def test_snapshot_of_given_weights_and_sample_with_problem(tmp_path, user_module):
    fac = f"{user_module}:make"
    prob = make_problem(fac, {"bits": 2})
    state = {k: torch.full_like(v, 0.1) for k, v in prob.params.items()} | {"scale": torch.tensor(0.5)}
    torch.save(state, tmp_path / "w.pt")
    r = invoke("snapshot", "--problem", fac, "-o", "bits=2", "--weights", tmp_path / "w.pt", "--out",
               tmp_path / "s.pt")
    assert r.exit_code == 0, r.output
    snap = load_snapshot(tmp_path / "s.pt")
    assert all(torch.equal(snap.problem.params[k], state[k]) for k in prob.params)
    assert torch.equal(snap.problem.buffers["scale"], torch.tensor(0.5))
    assert snap.provenance["weights"] == str(tmp_path / "w.pt")
    # sample --problem --weights measures the same snapshot (same content hash, same run folder)
    r = invoke("sample", "--problem", fac, "-o", "bits=2", "--weights", tmp_path / "w.pt", "-e", "zgr", "--n", 50,
               "--runs-dir", tmp_path / "runs", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / snap.id / "zgr-s0.h5").is_file()
    r = invoke("sweep", "--problem", fac, "-o", "bits=2", "--weights", tmp_path / "w.pt", "--estimators", "st",
               "--reference", "zgr", "--n", 50, "--runs-dir", tmp_path / "runs", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / snap.id / "st-s0.h5").is_file()  # the zgr reference run was reused


def test_cli_as_a_subprocess_imports_from_the_working_directory(tmp_path):
    """A fresh process, the user's module beside it (not on sys.path): sample --problem works."""
    write_module(tmp_path, "subproc_model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    script = Path(sys.executable).parent / "biasvar"  # the console script: cwd is not on its sys.path
    if not script.is_file():
        pytest.skip("no biasvar console script beside this interpreter")
    cmd = [str(script), "sample", "--problem", "subproc_model:make", "-e", "st", "--n", "20", "--runs-dir", "runs",
           "--device", "cpu"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "runs").glob("*/st-s0.h5"))
    bad = subprocess.run(cmd[:3] + ["subproc_model:not_a_problem"] + cmd[4:], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "not a biasvar Problem" in bad.stderr


# ------------------------------------------------------------------ one-line errors
@pytest.mark.parametrize("factory, needle", [
    ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
    ("{mod}:nope", "has no attribute 'nope'"),
    ("{mod}:not_a_problem", "returned int, not a biasvar Problem"),
    ("{mod}:raises", "failed: ValueError: bad level 1"),
    ("{mod}:sneaky", "drew no discrete value through sample"),
    ("{mod}:undeclared", "site(s) w declared but never drawn through sample"),
    ("{mod}:wrong_shape", "logits of one data point are [3, 1], declared [4, 1]"),
    ("{mod}:not_per_point", "per-data-point losses of shape [2]"),
    ("missing_file.py:make", "cannot import problem file missing_file.py"),
    ("nocolon", "unknown model 'nocolon'"),
])
@pytest.mark.parametrize("command", ["train", "sample", "snapshot"])
def test_bad_factories_are_one_line_errors(tmp_path, user_module, factory, needle, command):
    factory = factory.format(mod=user_module)
    extra = {"train": ["--epochs", 1, "--out", tmp_path / "x.pt"], "sample": ["-e", "zgr", "--n", 10],
             "snapshot": ["--out", tmp_path / "x.pt"]}[command]
    line = one_line_error(invoke(command, "--problem", factory, *extra))
    assert needle in line, line
    assert not (tmp_path / "x.pt").exists()


def test_bad_options_and_weights_are_one_line_errors(tmp_path, user_module):
    fac = f"{user_module}:make"
    assert "does not take option(s) depth" in one_line_error(invoke("snapshot", "--problem", fac, "-o", "depth=2"))
    prob = make_problem(fac, {})
    state = dict(prob.params)
    state.pop("encoder.0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["decoder.2.weight"] = torch.zeros(7, 5)
    torch.save(state, tmp_path / "w.pt")
    line = one_line_error(invoke("snapshot", "--problem", fac, "--weights", tmp_path / "w.pt"))
    assert "missing encoder.0.bias" in line and "not in the model extra.weight" in line
    assert "decoder.2.weight [7, 5] vs [6, 5]" in line
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert "cannot read weights" in one_line_error(invoke("snapshot", "--problem", fac, "--weights",
                                                          tmp_path / "junk.pt"))
    both = one_line_error(invoke("sample", "-e", "zgr", "--problem", fac, "--snapshot", tmp_path / "x.pt"))
    assert "exactly one of --snapshot" in both


def test_snapshot_whose_module_is_gone_or_changed_is_one_line(tmp_path, user_module):
    fac = f"{user_module}:make"
    save_snapshot(tmp_path / "s.pt", make_problem(fac, {"hidden": 5}))
    # the module's model changed: the parameters no longer match
    text = USER_MODULE.replace("nn.Linear(6, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, bits)",
                               "nn.Linear(6, hidden + 1), nn.LeakyReLU(0.2), nn.Linear(hidden + 1, bits)")
    assert text != USER_MODULE
    write_module(tmp_path, user_module, text)
    sys.modules.pop(user_module, None)
    match = r"no longer matches the snapshot: .*encoder\.0\.weight \[5, 6\] vs \[6, 6\]"
    with pytest.raises(SnapshotError, match=match):
        load_snapshot(tmp_path / "s.pt")
    line = one_line_error(invoke("sample", "--snapshot", tmp_path / "s.pt", "-e", "zgr"))
    assert "no longer matches" in line
    # the module is gone
    (tmp_path / f"{user_module}.py").unlink()
    sys.modules.pop(user_module, None)
    line = one_line_error(invoke("sample", "--snapshot", tmp_path / "s.pt", "-e", "zgr"))
    assert f"cannot rebuild its problem {fac}" in line and f"cannot import module '{user_module}'" in line


def test_a_problem_without_a_factory_cannot_be_saved(tmp_path):
    def forward(p, x, sample):
        return sample("b", p["l"].reshape(1, 2, 1).expand(x.shape[0], 2, 1)).sum((-1, -2))

    prob = biasvar.UserProblem({"l": torch.zeros(2)}, torch.zeros(1, 0), forward)
    with pytest.raises(SnapshotError, match="make the problem with a factory"):
        save_snapshot(tmp_path / "s.pt", prob)
    assert not (tmp_path / "s.pt").exists()


def test_runtime_site_errors_are_shape_errors():
    state = {"n": 0}

    def forward(p, x, sample):
        state["n"] += 1
        lg = p["l"].reshape(1, 2, 1).expand(x.shape[0], 2, 1)
        if state["n"] > 1:  # after the construction check: a draw the model did not declare
            sample("other", lg)
        return sample("b", lg).sum((-1, -2))

    prob = biasvar.UserProblem({"l": torch.zeros(2)}, torch.zeros(3, 0), forward)
    est = build("zgr")
    nz = {"b": {"G": torch.zeros(3, 2, 2)}}
    with pytest.raises(ShapeError, match="names no declared site"):
        draw_loss(prob, est, prob.params, nz)


# ------------------------------------------------------------------ the helper vs a built-in problem
class ModuleVAE(nn.Module):
    """The built-in ``vae`` problem written as an ordinary nn.Module with the same parameter names."""

    def __init__(self, categories, vars, hidden):
        super().__init__()
        self.C, self.V = categories, vars
        self.register_buffer("codes", bit_codes(categories))
        bits = vars * self.codes.shape[1]
        self.encoder = nn.Sequential(nn.Linear(784, hidden), nn.LeakyReLU(SLOPE), nn.Linear(hidden, vars * categories))
        self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.LeakyReLU(SLOPE), nn.Linear(hidden, 784))

    def forward(self, x, sample):
        logits = self.encoder(x).reshape(x.shape[0], self.V, self.C)
        y = sample("z", logits)
        z = (y @ self.codes).reshape(x.shape[0], -1)
        return bernoulli_nll(self.decoder(z), x) + kl_uniform(logits)


@pytest.mark.parametrize("spec", ["st", "zgr", "darn", "gs(t=0.5)", "gr-mc(t=0.3,M=5)", "rf(M=3)"])
def test_module_wrapped_by_the_helper_gives_the_builtin_gradients(spec):
    builtin = VAE(categories=4, vars=2, hidden=[8], seed=3)
    builtin.batch = (torch.rand(5, 784, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    mod = biasvar.problem_from_module(ModuleVAE(4, 2, 8), builtin.batch)
    assert list(mod.params) == list(builtin.params)
    biasvar.load_state(mod, builtin.params)
    assert mod.node_shapes(5) == builtin.node_shapes(5)
    est = build(spec)
    nz = draw_noise(noise_requests(builtin, est), stream_key(0, spec), torch.arange(6))

    def grads(prob):
        f = torch.func.grad(lambda p, z: draw_loss(prob, est, p, z))
        return torch.func.vmap(f, in_dims=(None, 0))(prob.params, nz)

    g_builtin, g_mod = grads(builtin), grads(mod)
    for k in builtin.params:
        assert_close(g_mod[k], g_builtin[k], rtol=1e-5, atol=1e-6)
    assert any(g_builtin[k].abs().max() > 0 for k in builtin.params)


def test_module_exact_gradient_equals_the_builtin_one():
    builtin = VAE(categories=4, vars=2, hidden=[8], seed=3)
    builtin.batch = (torch.rand(3, 784, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    mod = biasvar.problem_from_module(ModuleVAE(4, 2, 8), builtin.batch)
    biasvar.load_state(mod, builtin.params)
    a, b = builtin.exact_gradient(), mod.exact_gradient()
    for k in a:
        assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ registration, compatibility
def test_builtins_and_user_factories_take_the_same_path(tmp_path, user_module):
    from biasvar.problems.registry import PROBLEMS, problem_factory

    for name, target in PROBLEMS.items():
        assert problem_factory(name) is problem_factory(target)  # a built-in is its import path
    p = make_problem("biasvar.problems.toy:ToyCat", {"vars": 2})
    assert p.kind == "biasvar.problems.toy:ToyCat" and p.config == {"vars": 2}
    assert load_snapshot(save_snapshot(tmp_path / "t.pt", p).path).problem.kind == p.kind


def test_snapshots_written_before_user_problems_load_with_the_same_hash(tmp_path):
    """Hashes computed by the code before this change (commit 7966dd1); the format is unchanged."""
    toy = ToyCat(vars=2, categories=3, seed=4)
    vae = VAE(categories=4, vars=2, hidden=[8], seed=1)
    assert content_hash(toy) == "9fe7d38ef6b512330762fbea4a36f042eb751e8394acf74ce7eeaa390f84f548"
    assert content_hash(vae) == "27b060dc3eb966f335a2bf040b03ac8b4bb2780bcd00837a61ef20720d020803"
    old = {"magic": "biasvar-snapshot", "format_version": 1, "problem": {"kind": "toy-cat", "config": toy.config},
           "params": dict(toy.params), "batch": toy.batch, "dataset": None, "provenance": {},
           "hash": "9fe7d38ef6b512330762fbea4a36f042eb751e8394acf74ce7eeaa390f84f548"}
    torch.save(old, tmp_path / "old.pt")
    assert load_snapshot(tmp_path / "old.pt").id == "9fe7d38ef6b5"


def test_factory_defaults_are_reproducible(user_module):
    a, b = make_problem(f"{user_module}:make", {}), make_problem(f"{user_module}:make", {})
    assert content_hash(a) == content_hash(b)
    c = make_problem(f"{user_module}:make", {"seed": 1})
    assert content_hash(c) != content_hash(a)


def test_the_readme_example_file_is_a_valid_factory():
    sys.path.insert(0, str(REPO))
    try:
        p = make_problem("examples.my_model:make", {"bits": 4, "hidden": 8})
    finally:
        sys.path.remove(str(REPO))
    assert p.sites["z"].is_binary and p.node_shapes(2) == {"z": (2, 4, 2)}
    assert p.exact_gradient() is not None


def test_bad_config_values_refused():
    with pytest.raises(BiasvarError, match="JSON"):
        make_problem("examples.my_model:make", {"bits": object()})
