"""A sweep accounts for its time (issue 23): drawing, set-up (planning, calibration), run-file writes
and the statistics store, each measured where it is spent; the CLI prints one line of it."""

from __future__ import annotations

import time

import pytest

from biasvar import engine, store
from biasvar.engine import executors
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import snapshot_of

OPTS = engine.RunOptions(device="cpu", keep=0)


def _plan(tmp, n=200):
    snap = snapshot_of(ToyCat(), provenance={"test": "timing"})
    return engine.plan_sweep(snap, ["zgr", "st"], reference="rf(M=4)", n=n, runs_dir=tmp)


def test_every_step_is_accounted(tmp_path):
    res = executors.run_sweep(_plan(tmp_path), OPTS)
    t = res.timing
    assert set(t) == {"setup_s", "draw_s", "write_s", "store_s", "total_s"}
    assert all(v >= 0 for v in t.values())
    assert t["draw_s"] > 0 and t["write_s"] > 0 and t["setup_s"] > 0
    assert t["setup_s"] + t["draw_s"] + t["write_s"] + t["store_s"] <= t["total_s"] * 1.001 + 1e-3
    line = res.overheads()
    assert line.startswith("time ") and "overheads" in line and len(line) <= 120


def test_write_time_is_measured_where_it_is_spent(tmp_path, monkeypatch):
    """Slow appends land in ``write_s``, not in ``draw_s``."""
    real = store.RunWriter.append
    calls = []

    def slow(self, block, *, wall_s):
        calls.append(1)
        time.sleep(0.05)
        return real(self, block, wall_s=wall_s)

    fast = executors.run_sweep(_plan(tmp_path / "fast"), OPTS).timing
    monkeypatch.setattr(store.RunWriter, "append", slow)
    slowed = executors.run_sweep(_plan(tmp_path / "slow"), OPTS).timing
    assert len(calls) > 10
    assert slowed["write_s"] >= 0.05 * len(calls)
    assert slowed["draw_s"] < fast["draw_s"] + 0.05 * len(calls) / 2, "the writes were counted as drawing"


def test_store_only_has_no_writes(tmp_path):
    res = executors.run_sweep(_plan(tmp_path), OPTS, store_only=True)
    t = res.timing
    assert t.get("write_s", 0.0) == 0.0 and t["store_s"] > 0 and t["draw_s"] > 0
    assert t["setup_s"] + t["draw_s"] + t["store_s"] <= t["total_s"] * 1.001 + 1e-3


@pytest.mark.parametrize("store_only", [False, True])
def test_cli_prints_the_time_line(tmp_path, store_only):
    from biasvar_cli.main import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["sweep", "--problem", "toy-cat", "--estimators", "zgr", "--n", "100",
                                   "--runs-dir", str(tmp_path), "--device", "cpu", "--keep", "0"]
                             + (["--store-only"] if store_only else []))
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("time "))
    assert "drawing" in line and "set-up" in line and "store" in line
