"""``--dtype tf32`` (issue 23, item 3): a CUDA mode, wired through sample, sweep and bench; refused elsewhere."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from biasvar import device as D
from biasvar.errors import UnsupportedError
from biasvar.names import DTYPES


@pytest.fixture
def restore_flags():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_is_an_option_and_float32_numbers():
    assert "tf32" in DTYPES
    assert D.resolve_dtype("tf32") is torch.float32


def test_tf32_sets_the_cuda_flags_and_float32_clears_them(restore_flags):
    cuda = torch.device("cuda")  # a device object needs no GPU; the flags are process-wide settings
    assert D.matmul_precision("tf32", cuda) == "tf32"
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert D.matmul_precision("float32", cuda) is None
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert D.matmul_precision(None, cuda) is None and not torch.backends.cudnn.allow_tf32


def test_tf32_off_cuda_is_refused():
    with pytest.raises(UnsupportedError, match="needs a CUDA device"):
        D.matmul_precision("tf32", torch.device("cpu"))
    assert D.matmul_precision("float32", torch.device("cpu")) is None


def test_the_run_header_of_a_tf32_run_says_tf32(monkeypatch, tmp_path):
    """The engine records tf32 as the run's dtype (so it neither resumes nor pairs as a float32 run):
    checked by planning a run with the device check pretended (no draw is made)."""
    from biasvar import engine
    from biasvar.engine import plan as P
    from biasvar.problems.toy import ToyCat
    from biasvar.snapshot import snapshot_of

    snap = snapshot_of(ToyCat(), provenance={"test": "tf32"})
    monkeypatch.setattr(P, "matmul_precision", lambda dtype, dev: "tf32" if dtype == "tf32" else None)
    planned = P.plan_run(snap, "zgr", n=4, seed=0, runs_dir=tmp_path,
                         options=engine.RunOptions(device="cpu", dtype="tf32"))
    assert planned.header["dtype"] == "tf32"
    planned32 = P.plan_run(snap, "zgr", n=4, seed=0, runs_dir=tmp_path,
                           options=engine.RunOptions(device="cpu", dtype="float32"))
    assert planned32.header["dtype"] == "float32"


@pytest.mark.parametrize("cmd", [["sample", "--problem", "toy-cat", "--estimator", "zgr", "--n", "4"],
                                 ["bench", "--bench", "toy-cat", "--n", "2", "--n-loop", "1", "--repeats", "1"]])
def test_cli_refuses_tf32_on_cpu_in_one_line(cmd, tmp_path):
    p = subprocess.run([sys.executable, "-m", "biasvar_cli.main", *cmd, "--dtype", "tf32", "--device", "cpu",
                        *(["--runs-dir", str(tmp_path)] if cmd[0] == "sample" else [])],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA device" in lines[0], p.stderr
