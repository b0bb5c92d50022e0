"""``biasvar train`` and :func:`biasvar.train.train`: short runs on toy-cat and tiny (h)VAEs."""

from __future__ import annotations

import pytest
import torch
from biasvar_cli.main import app
from conftest import one_line_error, synthetic
from typer.testing import CliRunner

import biasvar.data
from biasvar.errors import BiasvarError
from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import VAE
from biasvar.snapshot import load_snapshot
from biasvar.train import TrainError, build_problem, epoch_path, train

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")
PROVENANCE = ("estimator", "epochs", "lr", "seed", "batch_size", "loss_history", "eval_history", "data",
              "wall_time_s", "device", "biasvar_version")


@pytest.fixture
def fake_data(monkeypatch):
    """Make the CLI's dataset loader serve the synthetic set, whatever its name."""
    served = synthetic()
    monkeypatch.setattr(biasvar.data, "load", lambda name, split="train", **kw: served)
    return served


def invoke(args):
    return runner.invoke(app, ["train", *map(str, args)], terminal_width=200)


def test_cli_toy_cat_writes_loadable_snapshots(tmp_path):
    out = tmp_path / "toy.pt"
    r = invoke(["--model", "toy-cat", "--estimator", "zgr", "--epochs", 2, "--steps-per-epoch", 15,
                "--lr", 0.05, "--seed", 3, "--out", out, "--save-at", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    snap = load_snapshot(out)
    assert snap.problem.kind == "toy-cat" and snap.dataset is None
    prov = snap.provenance
    for key in PROVENANCE:
        assert key in prov, key
    assert prov["estimator"] == "zgr" and prov["epochs"] == 2 and prov["seed"] == 3 and prov["lr"] == 0.05
    assert len(prov["loss_history"]) == 2 and len(prov["eval_history"]) == 3
    assert not torch.equal(snap.problem.params["logits"], ToyCat(seed=3).params["logits"])  # it trained
    e1 = load_snapshot(epoch_path(out, 1))
    assert e1.provenance["epochs"] == 1 and len(e1.provenance["loss_history"]) == 1
    assert not torch.equal(e1.problem.params["logits"], snap.problem.params["logits"])
    assert snap.id in r.output


def test_cli_tiny_vae_on_synthetic_data(tmp_path, fake_data):
    out = tmp_path / "vae.pt"
    r = invoke(["--model", "vae", "--data", "mnist-b", "--categories", 4, "--vars", 2, "--hidden", "8",
                "--estimator", "gr-mc", "--t", 0.5, "--M", 3, "--epochs", 2, "--batch-size", 10,
                "--eval-batch-size", 7, "--lr", 1e-3, "--out", out, "--save-at", "1,2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    snap = load_snapshot(out)
    prob = snap.problem
    assert prob.kind == "vae" and prob.config == {"categories": 4, "vars": 2, "hidden": [8], "seed": 0}
    assert snap.provenance["estimator"] == "gr-mc(M=3,t=0.5)"
    assert snap.provenance["data"] == "synthetic" and snap.provenance["steps_per_epoch"] == 6
    ds = snap.dataset
    assert ds["batch_size"] == 7 and ds["seed"] == 0 and len(ds["indices"]) == 7
    assert torch.equal(prob.batch, fake_data.images[torch.tensor(ds["indices"])])
    assert epoch_path(out, 1).is_file() and epoch_path(out, 2).is_file()
    assert load_snapshot(epoch_path(out, 2)).hash == snap.hash


def test_cli_hvae_with_rf(tmp_path, fake_data):
    out = tmp_path / "hvae.pt"
    r = invoke(["--model", "hvae", "--categories", 2, "--vars", 4, "--estimator", "rf(M=2)", "--epochs", 1,
                "--batch-size", 20, "--eval-batch-size", 5, "--out", out, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    snap = load_snapshot(out)
    assert snap.problem.kind == "hvae" and snap.problem.bits == 4
    assert snap.provenance["estimator"] == "rf(M=2)" and len(snap.dataset["indices"]) == 5


def test_cli_real_mnist_b(tmp_path, shared_data):
    if not (shared_data / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("MNIST not in ../shared/data")
    out = tmp_path / "m.pt"
    r = invoke(["--model", "vae", "--categories", 4, "--vars", 2, "--hidden", "8", "--estimator", "zgr",
                "--epochs", 1, "--steps-per-epoch", 3, "--data-dir", shared_data, "--offline", "--out", out,
                "--device", "cpu"])
    assert r.exit_code == 0, r.output
    snap = load_snapshot(out)
    assert snap.provenance["data"] == "mnist-b" and snap.dataset["name"] == "mnist-b"
    assert set(snap.problem.batch.unique().tolist()) <= {0.0, 1.0} and snap.problem.batch.shape == (200, 784)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--problem", "nope"], "unknown model"),
        (["--model", "toy-cat", "--estimator", "gr-mc(t=0)"], "out of range"),
        (["--model", "toy-cat", "--estimator", "zgrr"], "unknown estimator"),
        (["--model", "toy-cat", "--estimator", "zgr", "--t", "0.5"], "does not apply"),
        (["--model", "toy-cat", "--hidden", "8"], "does not take"),
        (["--model", "toy-cat", "-o", "loss=cubic"], "unknown toy loss"),
        (["--model", "toy-cat", "-o", "loss"], "KEY=VALUE"),
        (["--model", "toy-cat", "--data", "mnist-b"], "without data"),
        (["--model", "toy-cat", "--epochs", "2", "--save-at", "5"], "outside 1..2"),
        (["--model", "toy-cat", "--save-at", "x"], "--save-at"),
        (["--model", "vae", "--categories", "3"], "power of 2"),
        (["--model", "vae", "--data", "cifar"], "unknown dataset"),
        (["--model", "toy-cat", "--lr", "-1"], "learning rate"),
        (["--model", "toy-cat", "--device", "tpu"], "device"),
        (["--model", "toy-cat", "--threads", "0"], "--threads"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, args, needle):
    monkeypatch.setenv("BIASVAR_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    line = one_line_error(invoke([*args, "--data-dir", tmp_path / "empty", "--out", tmp_path / "x.pt"]))
    assert needle in line
    assert not (tmp_path / "x.pt").exists()


def test_cli_missing_data_file(tmp_path):
    result = invoke(["--model", "vae", "--data-dir", tmp_path, "--offline", "--out", tmp_path / "x.pt"])
    line = one_line_error(result)
    assert "missing" in line and "train-images" in line


def test_same_seed_same_snapshot_and_seed_matters():
    a = train(ToyCat(seed=1), estimator="st-zgr(alpha=0.5)", epochs=1, steps_per_epoch=10, lr=0.1, seed=5)
    b = train(ToyCat(seed=1), estimator="st-zgr(alpha=0.5)", epochs=1, steps_per_epoch=10, lr=0.1, seed=5)
    c = train(ToyCat(seed=1), estimator="st-zgr(alpha=0.5)", epochs=1, steps_per_epoch=10, lr=0.1, seed=6)
    assert a.hash == b.hash and a.hash != c.hash
    assert a.provenance["loss_history"] == b.provenance["loss_history"]


def test_training_lowers_the_exact_expected_loss():
    """On toy-cat the expected loss is known exactly: zgr training must lower it."""
    from biasvar.exact import enumerate_onehot, outcome_probs

    def expected(prob):
        Y = enumerate_onehot(prob.V, prob.K)
        return float((outcome_probs(prob.params["logits"], Y) * prob.loss_fn()(Y)).sum())

    prob = ToyCat(vars=3, categories=4, seed=2)
    before = expected(prob)
    train(prob, estimator="zgr", epochs=2, steps_per_epoch=100, lr=0.05)
    assert expected(prob) < before - 0.5


def test_vae_training_improves_eval_loss_with_dynamic_data():
    data = synthetic(80, dynamic=True)
    prob = VAE(categories=4, vars=3, hidden=(16,))
    snap = train(prob, data=data, estimator="rf(M=4)", epochs=2, steps_per_epoch=25, batch_size=20, lr=1e-2,
                 eval_batch_size=10)
    ev = [e["loss"] for e in snap.provenance["eval_history"]]
    assert ev[-1] < ev[0] - 50, ev  # from ~543 (784 log 2) down markedly
    assert set(prob.batch.unique().tolist()) <= {0.0, 1.0}  # the dynamic batch was binarized once
    assert snap.path is None and snap.provenance["data"] == "synthetic"


def test_problem_metrics_are_recorded():
    class Scored(ToyCat):
        def evaluate(self, params, x):
            return {"accuracy": torch.tensor(0.25)}  # qnet returns accuracy and loss

    snap = train(Scored(), estimator="st", epochs=2, steps_per_epoch=3, lr=0.01)
    assert [e["metrics"] for e in snap.provenance["eval_history"]] == [{"accuracy": 0.25}] * 3


def test_crash_leaves_no_file(tmp_path):
    out = tmp_path / "c.pt"

    def boom(p):
        if p.step == 3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        train(ToyCat(), estimator="zgr", epochs=1, steps_per_epoch=5, out=out, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_build_problem_errors():
    with pytest.raises(BiasvarError, match="unknown model"):
        build_problem("resnet")
    with pytest.raises(TrainError, match="its options: categories, vars, hidden, seed"):
        build_problem("vae", {"depth": 3})
    assert build_problem("toy-cat", {"vars": 2}, seed=4).config["seed"] == 4
    assert build_problem("toy-cat", {"seed": 1}, seed=4).config["seed"] == 1
