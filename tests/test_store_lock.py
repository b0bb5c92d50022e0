"""The writer lock of a run file (``biasvar.store.lock``): at no moment do two processes hold it,
also while holders remove the lock file on release and waiters queue on the removed one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from biasvar import store
from biasvar.errors import WriterBusy

# Each writer takes the lock of one run `rounds` times; while holding it, it logs "enter"/"exit"
# with its pid (one O_APPEND write a line, so lines never tear) with a pause between them.
WORKER = textwrap.dedent("""
    import os, random, sys, time
    from biasvar import store
    from biasvar.errors import WriterBusy
    path, log, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pid, done = os.getpid(), 0
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while done < rounds:
        try:
            fd = store.lock.acquire(path)
        except WriterBusy:
            continue
        os.write(out, f"enter {pid}\\n".encode())
        time.sleep(0.002)
        os.write(out, f"exit {pid}\\n".encode())
        store.lock.release(path, fd)
        done += 1
        time.sleep(random.random() * 0.02)  # let the others in too
""")


def _race(script: str, path, writers: int, rounds: int) -> list[list[str]]:
    """Run ``writers`` processes of ``script`` at once on the run ``path``; the lines they logged."""
    log = path.parent.parent / "log"
    path.parent.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(log), str(rounds)], env=env,
                              stderr=subprocess.PIPE) for _ in range(writers)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
    return [line.split() for line in log.read_text().splitlines()]


def test_racing_writers_never_hold_the_lock_together(tmp_path):
    path, writers, rounds = tmp_path / "snap" / "zgr-s0.h5", 4, 25
    lines = _race(WORKER, path, writers, rounds)
    assert len(lines) == 2 * writers * rounds
    for i in range(0, len(lines), 2):  # enter X, exit X, enter Y, exit Y, ...: never interleaved
        enter, exit_ = lines[i], lines[i + 1]
        assert enter[0] == "enter" and exit_ == ["exit", enter[1]], f"two holders at once: {lines[i:i + 4]}"
    assert len({line[1] for line in lines}) == writers
    assert not store.lock_path(path).exists()  # the last holder removed it


def test_a_held_lock_refuses_a_writer_and_shows_it_alive(tmp_path):
    path = tmp_path / "s" / "x-s0.h5"
    path.parent.mkdir()
    assert not store.writer_alive(path)
    with store.lock.held(path):
        assert store.writer_alive(path)
        with pytest.raises(WriterBusy, match="being written by another process"):
            store.lock.acquire(path)
        header = {"schema_version": store.SCHEMA_VERSION, "spec": "x", "seed": 0, "snapshot_hash": "h",
                  "params_glob": "*", "dim": 3, "dtype": "float64", "block_size": 2, "layout": [["w", [3], 0]]}
        with pytest.raises(WriterBusy):
            store.RunWriter.open(path, header, n_target=4, group_sizes=np.array([3]), sample_index=np.array([0]))
    assert not store.writer_alive(path) and not store.lock_path(path).exists() and not path.exists()


def test_a_lock_file_removed_by_hand_is_not_removed_from_its_new_holder(tmp_path):
    """Whoever removes a held lock file by hand lets a second writer in (nothing can stop that),
    but the first one's release then leaves the second one's lock file alone."""
    path = tmp_path / "x-s0.h5"
    first = store.lock.acquire(path)
    store.lock_path(path).unlink()
    second = store.lock.acquire(path)
    store.lock.release(path, first)
    assert store.lock_path(path).exists() and store.writer_alive(path)
    store.lock.release(path, second)
    assert not store.lock_path(path).exists()


WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from biasvar import store
    from biasvar.errors import WriterBusy
    path, log, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    header = {"schema_version": 1, "spec": "x", "seed": 0, "snapshot_hash": "h", "params_glob": "*", "dim": 3,
              "dtype": "float64", "block_size": 1, "layout": [["w", [3], 0]]}
    pid, done = os.getpid(), 0
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    while done < rounds:
        try:
            w = store.RunWriter.open(path, header, n_target=1000, group_sizes=np.array([3]),
                                     sample_index=np.array([0]))
        except WriterBusy:
            continue
        with w:
            os.write(out, f"enter {pid} {w.n_blocks}\\n".encode())
            w.append(store.BlockStats(1, 0, np.full(3, w.n_blocks, np.float32), np.zeros(1), np.ones(1),
                                      np.ones((1, 1), np.float32)), wall_s=0.0)
            os.write(out, f"exit {pid} {w.n_blocks}\\n".encode())
        done += 1
        time.sleep(0.01)
""")


def test_racing_run_writers_take_turns_and_lose_no_block(tmp_path):
    """The same through :meth:`RunWriter.open`: each writer appends one block per turn to the file
    the others left; every block is there once, in turn order."""
    path, writers, rounds = tmp_path / "snap" / "x-s0.h5", 3, 6
    lines = _race(WRITER, path, writers, rounds)
    assert len(lines) == 2 * writers * rounds
    for turn in range(writers * rounds):
        enter, exit_ = lines[2 * turn], lines[2 * turn + 1]
        assert enter == ["enter", enter[1], str(turn)] and exit_ == ["exit", enter[1], str(turn + 1)], lines
    run = store.read_run(path)
    assert run.progress.blocks == writers * rounds and run.status == "interrupted"
    np.testing.assert_array_equal(run.block_sum[:, 0], np.arange(writers * rounds))
    assert not store.lock_path(path).exists()
