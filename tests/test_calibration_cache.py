"""The engine's calibration (vmap or loop, :mod:`biasvar.engine.calibration`) costs no more than it
can save (issues 23 item 2 and 26 item 6): a sweep times each estimator family once, and a run of a
few chunks is not timed at all; either way the draws are those of the path forced."""

from __future__ import annotations

import numpy as np
import pytest

from biasvar import engine, store
from biasvar.engine import calibration as cal_mod
from biasvar.engine import executors
from biasvar.engine.calibration import Calibration, family
from biasvar.engine.draws import UNTIMED_CHUNKS
from biasvar.estimators import build
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import snapshot_of
from biasvar.spec import parse_spec

GRID = ["gr-mc(t=0.1,M=10)", "gr-mc(t=0.5,M=10)", "gr-mc(t=2,M=10)"]


@pytest.fixture
def measured(monkeypatch):
    """The real measurement, counted per family, answering vmap (so the draws can be compared)."""
    calls: list[str] = []
    real = cal_mod._measure

    def counted(problem, est, names, device, dtype, spec, m, rounds, paths):
        calls.append(spec)
        _, best = real(problem, est, names, device, dtype, spec, m, 1, paths)
        return "vmap", best

    monkeypatch.setattr(cal_mod, "_measure", counted)
    return calls


def _sums(plan):
    return {run.spec: store.read_run(run.path).block_sum for run in plan.runs}


def _sweep(tmp, n, method="auto", cal=None, chunk=8):
    snap = snapshot_of(ToyCat(vars=2, categories=3), provenance={"test": "calibration cache"})
    plan = engine.plan_sweep(snap, GRID, reference="rf(M=4)", n=n, runs_dir=tmp)
    opts = engine.RunOptions(device="cpu", keep=0, chunk=chunk, method=method)
    executors.run_sweep(plan, opts, calibration=cal, gram=False)
    return plan


def test_family_of_a_spec():
    assert family("gr-mc(M=100,t=0.1)") == "gr-mc" == family("gr-mc")
    assert family("path/est.py:make(t=0.5)") == "path/est.py:make"


def test_a_sweep_times_each_family_once_and_draws_as_forced(tmp_path, measured):
    cal = Calibration()
    plan = _sweep(tmp_path / "auto", n=40, cal=cal)
    assert sorted(family(s) for s in measured) == ["gr-mc", "rf"], measured  # not once per gr-mc run
    assert cal.timed == 2
    for run in plan.runs:
        assert store.read_header(run.path)["method"] == "vmap"
    forced = _sweep(tmp_path / "vmap", n=40, method="vmap")
    auto, ref = _sums(plan), _sums(forced)
    assert set(auto) == set(ref) == {"rf(M=4)", *[str(parse_spec(s)) for s in GRID]}
    for spec in auto:  # each run drew its own estimator's noise: the same bits as the forced path
        np.testing.assert_array_equal(auto[spec], ref[spec], err_msg=spec)
    assert not np.array_equal(auto["gr-mc(M=10,t=0.1)"], auto["gr-mc(M=10,t=2)"])


def test_the_measurement_is_reported_for_every_spec_of_the_family(measured):
    cal = Calibration()
    problem = ToyCat(vars=2, categories=3)
    dev = engine.resolve_device("cpu")
    for spec in GRID:
        assert cal.method(problem, build(parse_spec(spec)), ["logits"], dev, chunk=8) == "vmap"
    assert cal.timed == 1 and len(measured) == 1
    info = cal.measurement(problem, "gr-mc(M=10,t=2)", ["logits"], dev)
    assert info is not None and info["choice"] == "vmap" and info["chunk"] == 8


def test_another_chunk_is_timed_again(measured):
    cal = Calibration()
    problem = ToyCat(vars=2, categories=3)
    dev = engine.resolve_device("cpu")
    est = build(parse_spec("zgr"))
    cal.method(problem, est, ["logits"], dev, chunk=8)
    cal.method(problem, est, ["logits"], dev, chunk=16)
    assert cal.timed == 2


def test_a_run_of_few_chunks_is_not_timed(tmp_path, measured):
    """n = 192 draws in chunks of 64 (UNTIMED_CHUNKS = 3): timing would cost as much as the run, so
    nothing is timed and vmap draws the same bits as when forced."""
    assert UNTIMED_CHUNKS == 3
    cal = Calibration()
    plan = _sweep(tmp_path / "auto", n=192, cal=cal, chunk=64)
    assert measured == [] and cal.timed == 0
    for run in plan.runs:
        head = store.read_header(run.path)
        assert (head["method"], head["method_requested"]) == ("vmap", "auto")
    forced = _sums(_sweep(tmp_path / "vmap", n=192, method="vmap", chunk=64))
    for spec, sums in _sums(plan).items():
        np.testing.assert_array_equal(sums, forced[spec], err_msg=spec)


def test_a_run_past_few_chunks_is_still_timed(tmp_path, measured):
    _sweep(tmp_path, n=193, cal=Calibration(), chunk=64)
    assert sorted(family(s) for s in measured) == ["gr-mc", "rf"]


def test_a_resumed_run_continues_on_the_path_its_file_recorded(tmp_path, measured):
    """Runs drawn on the loop, then extended under ``auto`` (whose timing would answer vmap): nothing is timed,
    the new blocks come from the loop too, and the sums equal those of one loop sweep of the full length."""
    _sweep(tmp_path / "runs", n=40, method="loop")
    cal = Calibration()
    plan = _sweep(tmp_path / "runs", n=80, cal=cal)
    assert measured == [] and cal.timed == 0
    whole = _sums(_sweep(tmp_path / "loop", n=80, method="loop"))
    assert {store.read_header(run.path)["method"] for run in plan.runs} == {"loop"}
    for spec, sums in _sums(plan).items():
        np.testing.assert_array_equal(sums, whole[spec], err_msg=spec)
