"""A CI-sized run of the fault injection of ``biasvar.studies.faults`` (the full run: results/reliability.md).

Writers and readers run in child processes: a hang is a timeout, not a stuck test run."""

from __future__ import annotations

import random

import pytest
from conftest import stop_after

from biasvar import engine, store
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import snapshot_of
from biasvar.studies import faults

pytestmark = pytest.mark.usefixtures("one_thread")


class Stop(Exception):
    pass


def test_kill9_at_random_moments_then_resume_is_bit_identical(tmp_path):
    out = faults.kill9(tmp_path, 1, random.Random(3), max_kills=1)
    assert out["identical"] == 1 and "different" not in out, out
    assert out["kills"] >= 1


def _sources(tmp_path):
    """A complete run file and an interrupted one holding a saved block in progress."""
    snap = snapshot_of(ToyCat(vars=3, categories=4))
    kw = dict(n=20_000, seed=0, block_size=10_000, keep=8, chunk=500)
    done = engine.sample_run(snap, "zgr", runs_dir=tmp_path / "a", **kw)
    with pytest.raises(Stop):
        engine.sample_run(snap, "zgr", runs_dir=tmp_path / "b", progress=stop_after(15_000, Stop), **kw)
    part = store.run_path(tmp_path / "b", snap.id, "zgr", 0)
    assert store.read_run(part).attrs["n_pending"] > 0
    return [("complete", done), ("interrupted", part)]


def test_truncated_or_flipped_files_are_one_line_errors_never_hangs_or_wrong_numbers(tmp_path):
    sources = _sources(tmp_path)
    rng = random.Random(5)
    for how in (faults.truncations, faults.bitflips):
        out = how(tmp_path / how.__name__, 4, rng, sources)
        outcomes = {k: v for k, v in out.items() if k not in ("files", "slowest_read_s")}
        assert out["files"] == 4 and all(faults.acceptable_read(k) for k in outcomes), out
        assert out["slowest_read_s"] < faults.READ_TIMEOUT_S


def test_sigterm_keeps_the_work_and_resumes_bit_identical(tmp_path):
    """`biasvar sample` gets SIGTERM (Ctrl-C is the same path, tested in-process in test_cli_reliability)."""
    import signal

    out = faults.interrupts(tmp_path, 1, random.Random(7), signals=(signal.SIGTERM,))
    assert out["identical"] == 1 and "different" not in out and "tracebacks" not in out, out
    assert "hung after the signal" not in out, out
    assert out.get("SIGTERM: exit 143", 0) + out.get("SIGTERM: finished before the signal", 0) == 1, out


def test_limits_memory_refused_and_damaged_files_not_extended(tmp_path):
    """A CI-sized run of two cases of the ``limits`` experiment (the rest: results/reliability.md)."""
    from biasvar.studies import faults_limits as fl
    from biasvar.studies.faults import _snapshot

    snap, sid = _snapshot(tmp_path)
    from biasvar.snapshot import load_snapshot

    ref = engine.sample_run(load_snapshot(snap), "zgr", n=2 * fl.LIMIT_BLOCK, seed=0, runs_dir=tmp_path / "ref",
                            block_size=fl.LIMIT_BLOCK, chunk=fl.LIMIT_CHUNK, keep=fl.LIMIT_KEEP)
    (tmp_path / "m").mkdir()
    out = fl.memory_refused(tmp_path / "m", 1, random.Random(1))
    assert out["memory refused: one line naming the largest M, nothing written"] == 1, out
    (tmp_path / "d").mkdir()
    out = fl.damaged_not_extended(tmp_path / "d", 2, random.Random(2), snap, sid, ref)
    assert out == {"damaged (block sums) not extended: one line, not a byte written": 1,
                   "damaged (metadata) not extended: one line, not a byte written": 1}, out


def test_a_refusal_counts_as_one_line_only_when_nothing_precedes_it():
    """The limits study's rule: a refusal before any work is the only line printed (issue 26)."""
    import subprocess

    from biasvar.studies.faults_limits import one_line

    def done(out, code=1):
        return subprocess.CompletedProcess([], code, stdout=out, stderr="")

    alone, after = done("error: no space left on the device of /x\n"), done("zgr 0/40\nerror: no space left on /x\n")
    assert one_line(alone, "no space", only=True) and one_line(after, "no space")
    assert not one_line(after, "no space", only=True)
    assert not one_line(done("error: no space\nTraceback\n"), "no space") and not one_line(done("error: x", 2), "x")
