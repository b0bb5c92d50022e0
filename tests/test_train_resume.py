"""Resumable training (:func:`biasvar.train.train` ``resume=``, ``biasvar train --resume``): a training
stopped after any epoch and resumed ends bit for bit where one that never stopped ends — parameters,
Adam's moments, the noise counter, the generators and the data order mid-pass all restored — and a
state of other settings is refused in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from biasvar_cli.main import app
from conftest import one_line_error, synthetic
from typer.testing import CliRunner

from biasvar.problems.toy import ToyCat
from biasvar.problems.vae import VAE
from biasvar.snapshot import load_snapshot
from biasvar.train import TrainError, epoch_path, train, train_state_path

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


class Stop(Exception):
    pass


def stop_after(epoch: int):
    """A progress callback that stops the training inside epoch ``epoch + 1`` (after its 2nd step)."""
    def cb(p):
        if p.epoch == epoch + 1 and p.step == 2 and not p.done:
            raise Stop
    return cb


def vae():
    return VAE(categories=4, vars=3, hidden=(16,), seed=2)


# 60 images, batch 8: a pass is 8 steps; 5 steps an epoch puts every epoch boundary mid-pass
VAE_KW = dict(estimator="gr-mc(M=3,t=0.5)", epochs=4, steps_per_epoch=5, batch_size=8, lr=1e-2, eval_batch_size=6,
              seed=4)


def same(a, b):
    assert a.hash == b.hash
    for k in a.problem.params:
        assert torch.equal(a.problem.params[k], b.problem.params[k])
    for key in ("loss_history", "eval_history", "epochs"):
        assert a.provenance[key] == b.provenance[key], key


@pytest.mark.parametrize("stopped_after", [1, 3])
def test_a_stopped_vae_training_resumes_to_the_same_bits(tmp_path, stopped_after):
    data = synthetic(60, dynamic=True)  # dynamic binarization: its generator is part of the state
    whole = train(vae(), data=data, out=tmp_path / "whole.pt", **VAE_KW)
    out = tmp_path / "part.pt"
    with pytest.raises(Stop):
        train(vae(), data=data, out=out, progress=stop_after(stopped_after), **VAE_KW)
    assert not out.exists() and train_state_path(out).is_file()
    resumed = train(vae(), data=data, out=out, resume=True, **VAE_KW)
    same(whole, resumed)
    assert resumed.provenance["resumed_after"] == [stopped_after]
    assert len(resumed.provenance["epoch_times_s"]) == VAE_KW["epochs"]
    # without resume the same call starts over (and still ends at the same bits)
    same(whole, train(vae(), data=data, out=out, **VAE_KW))


def test_a_wrong_resume_would_differ():
    """The check above can fail: resuming with a fresh generator or a fresh Adam changes the bits."""
    data = synthetic(60, dynamic=True)
    kw = {**VAE_KW, "epochs": 2}
    whole = train(vae(), data=data, **kw)
    one = train(vae(), data=data, **{**kw, "epochs": 1})
    # "resume" by starting from the 1-epoch weights with fresh optimiser and generators
    restarted = vae()
    restarted.params = {k: v.clone() for k, v in one.problem.params.items()}
    naive = train(restarted, data=data, **{**kw, "epochs": 1})
    assert naive.hash != whole.hash


def test_extend_a_shorter_training(tmp_path):
    kw = dict(estimator="zgr", steps_per_epoch=6, lr=0.05, seed=1)
    whole = train(ToyCat(seed=3), epochs=5, out=tmp_path / "e5.pt", save_at=[2], **kw)
    short = train(ToyCat(seed=3), epochs=2, out=tmp_path / "e2.pt", **kw)
    assert short.hash == load_snapshot(epoch_path(tmp_path / "e5.pt", 2)).hash
    longer = train(ToyCat(seed=3), epochs=5, out=tmp_path / "long.pt", resume=train_state_path(tmp_path / "e2.pt"),
                   **kw)
    same(whole, longer)
    # a state already at the asked epochs trains nothing and gives the same snapshot
    again = train(ToyCat(seed=3), epochs=5, out=tmp_path / "long.pt", resume=True, **kw)
    same(whole, again)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"lr": 0.01}, "lr 0.05 (now 0.01)"),
        ({"seed": 2}, "seed 1 (now 2)"),
        ({"estimator": "st"}, "estimator 'zgr' (now 'st')"),
        ({"steps_per_epoch": 7}, "steps_per_epoch 6 (now 7)"),
        ({"model_seed": 4}, "the model"),
        ({"epochs": 2}, "at epoch 3, past the 2 epochs"),
    ],
)
def test_a_state_of_other_settings_is_refused(tmp_path, change, needle):
    kw = dict(estimator="zgr", steps_per_epoch=6, lr=0.05, seed=1, epochs=3)
    out = tmp_path / "a.pt"
    train(ToyCat(seed=3), out=out, **kw)
    before = train_state_path(out).read_bytes()
    model_seed = change.pop("model_seed", 3)
    with pytest.raises(TrainError, match=needle.replace("(", r"\(").replace(")", r"\)")) as e:
        train(ToyCat(seed=model_seed), out=out, resume=True, **{**kw, **change})
    assert "\n" not in str(e.value)
    assert train_state_path(out).read_bytes() == before  # untouched


def test_damaged_or_missing_state_and_lost_epoch_snapshots(tmp_path):
    kw = dict(estimator="zgr", steps_per_epoch=4, lr=0.05, seed=1)
    out = tmp_path / "a.pt"
    with pytest.raises(TrainError, match="not found"):
        train(ToyCat(), out=out, epochs=2, resume=tmp_path / "nope.pt", **kw)
    with pytest.raises(TrainError, match="needs an output path"):
        train(ToyCat(), epochs=2, resume=True, **kw)
    train(ToyCat(), out=out, epochs=3, save_at=[1], **kw)
    epoch_path(out, 1).unlink()
    with pytest.raises(TrainError, match=r"epoch\(s\) \[1\] is missing"):
        train(ToyCat(), out=out, epochs=4, save_at=[1], resume=True, **kw)
    train_state_path(out).write_bytes(b"not a torch file")
    with pytest.raises(TrainError, match="cannot read the training state"):
        train(ToyCat(), out=out, epochs=4, resume=True, **kw)


def invoke(args):
    return runner.invoke(app, ["train", *map(str, args)], terminal_width=200)


def test_cli_refuses_to_overwrite_a_state_and_resumes(tmp_path):
    out = tmp_path / "t.pt"
    base = ["--model", "toy-cat", "--estimator", "zgr", "--steps-per-epoch", 5, "--lr", 0.05, "--out", out,
            "--device", "cpu"]
    assert invoke([*base, "--epochs", 2]).exit_code == 0
    first = out.read_bytes()
    line = one_line_error(invoke([*base, "--epochs", 3]))
    assert "--resume continues it" in line and out.read_bytes() == first
    assert "one of" in one_line_error(invoke([*base, "--epochs", 3, "--resume", "--restart"]))
    assert "not found" in one_line_error(invoke([*base, "--epochs", 3, "--resume-from", tmp_path / "x.pt"]))
    r = invoke([*base, "--epochs", 3, "--resume"])
    assert r.exit_code == 0, r.output
    assert "epoch 3/3" in r.output and "epoch 1/3" not in r.output  # only the new epoch ran
    whole = train(ToyCat(), estimator="zgr", steps_per_epoch=5, lr=0.05, epochs=3)
    assert load_snapshot(out).hash == whole.hash
    assert invoke([*base, "--epochs", 3, "--restart"]).exit_code == 0
    assert load_snapshot(out).hash == whole.hash


def test_killed_cli_training_resumes_to_the_same_bits(tmp_path):
    """SIGKILL mid-training (a real process), then `--resume`: the snapshot of an uninterrupted run."""
    out = tmp_path / "k.pt"
    args = [sys.executable, "-m", "biasvar_cli.main", "train", "--model", "toy-cat", "--estimator", "st-zgr(alpha=0.5)",
            "--steps-per-epoch", 400, "--epochs", 12, "--lr", 0.02, "--seed", 7, "--out", out, "--device", "cpu"]
    args = [str(a) for a in args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    state = train_state_path(out)
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists() and not out.exists(), "killed before the first epoch ended, or after the last"
    r = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = load_snapshot(out)
    assert resumed.provenance["resumed_after"][0] >= 1
    whole = train(ToyCat(seed=7), estimator="st-zgr(alpha=0.5)", steps_per_epoch=400, epochs=12, lr=0.02, seed=7)
    assert resumed.hash == whole.hash
