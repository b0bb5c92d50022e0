"""Issue 26: at the machine's limits. A damaged file is never written to (and ``ls``, ``compact``,
``report`` say it is damaged), absurd or impossible requests are refused in one line before any draw,
and no input reaches "internal error"."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import pytest
from biasvar_cli.main import app
from typer.testing import CliRunner

from biasvar import engine, store
from biasvar.problems.toy import ToyCat
from biasvar.snapshot import save_snapshot

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=100)


def one_error_line(r) -> str:
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output and len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert "internal error" not in lines[0], lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    return save_snapshot(tmp_path_factory.mktemp("snap") / "toy.pt", ToyCat(vars=2, categories=3))


def _run(snap, runs: Path, n: int = 200) -> Path:
    return engine.sample_run(snap, "zgr", n=n, seed=0, runs_dir=runs, block_size=20)


def _flip_block_sum(path: Path, row: int = 3) -> None:
    """Flip two bytes inside one stored chunk of ``block_sum`` (its checksum then fails)."""
    with h5py.File(path, "r") as f:
        ds = f["block_sum"]
        info = ds.id.get_chunk_info(row // ds.chunks[0]) if ds.chunks else None
        offset = info.byte_offset if info is not None else ds.id.get_offset()
    data = bytearray(path.read_bytes())
    for k in (5, 9):
        data[offset + k] ^= 0x41
    path.write_bytes(bytes(data))


def _flip_metadata(path: Path) -> None:
    """Flip one bit of the root group's object header (metadata checksum fails), as found by a bit sweep."""
    data = bytearray(path.read_bytes())
    data[128] ^= 0x10
    path.write_bytes(bytes(data))


def test_more_draws_on_a_run_with_damaged_block_sums_is_refused_before_any_write(snap, tmp_path):
    path = _run(snap, tmp_path / "runs")
    _flip_block_sum(path)
    before = digest(path)
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "400", "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 1 and "is damaged" in one_error_line(r)
    assert digest(path) == before  # not a byte written
    with pytest.raises(store.DamagedError):
        engine.sample_run(snap, "zgr", n=400, seed=0, runs_dir=tmp_path / "runs", block_size=20)
    assert digest(path) == before


def test_resuming_a_run_with_a_flipped_metadata_bit_is_one_line(snap, tmp_path):
    path = _run(snap, tmp_path / "runs")
    _flip_metadata(path)
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "400", "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 1 and "is damaged" in one_error_line(r)


def test_ls_compact_and_report_call_a_file_with_damaged_block_sums_damaged(snap, tmp_path):
    runs = tmp_path / "runs"
    good = _run(snap, runs)
    bad = engine.sample_run(snap, "st", n=200, seed=0, runs_dir=runs, block_size=20)
    _flip_block_sum(bad)
    before = digest(bad)
    r = invoke("ls", "--runs-dir", runs, "--verify")
    assert r.exit_code == 0 and "damaged" in r.output and bad.name in r.output.replace("\n", ""), r.output
    assert "not verified" not in r.output
    r = invoke("compact", "--runs-dir", runs, "--compression", "none")
    assert r.exit_code != 0 or "damaged" in r.output, r.output
    assert "damaged" in r.output and digest(bad) == before, r.output
    r = invoke("report", "--runs-dir", runs, "--reference", "exact", "--n-resamples", "0")
    assert r.exit_code == 0, r.output
    assert "left out" in r.output and "damaged" in r.output, r.output
    assert good.exists() and digest(bad) == before


def test_ls_reads_only_what_it_shows_and_says_the_block_data_were_not_verified(snap, tmp_path, monkeypatch):
    """``ls`` without --verify reads the small datasets it shows (a file whose block sums are damaged is
    listed, with a line saying the block data were not verified); it never reads a file in full."""
    from biasvar.store import reader

    runs = tmp_path / "runs"
    _run(snap, runs)
    bad = engine.sample_run(snap, "st", n=200, seed=0, runs_dir=runs, block_size=20)
    _flip_block_sum(bad)

    def no_full_read(*args, **kwargs):
        raise AssertionError("ls read a file in full")

    monkeypatch.setattr(reader, "verify_file", no_full_read)
    r = invoke("ls", "--runs-dir", runs)
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert "block data not verified: `biasvar ls --verify` checks" in flat and "damaged" not in flat, r.output
    _flip_metadata(bad)  # what ls reads is still checked
    r = invoke("ls", "--runs-dir", runs)
    assert r.exit_code == 0 and "damaged" in r.output and bad.name in r.output.replace("\n", ""), r.output


def test_report_reads_each_run_file_once_and_leaves_a_file_damaged_there_out(snap, tmp_path, monkeypatch):
    """``report`` checks the checksums at its analysis read (no separate verifying read): a file whose
    block sums fail there is left out with a note, and the others analysed as they would be without it."""
    from biasvar.report import analyze_runs
    from biasvar.store import reader

    runs = tmp_path / "runs"
    _run(snap, runs)
    engine.sample_run(snap, "rf(M=4)", n=200, seed=0, runs_dir=runs, block_size=20)
    bad = engine.sample_run(snap, "st", n=200, seed=0, runs_dir=runs, block_size=20)
    reads: list[str] = []
    real = store.read_run

    def counted(path, **kwargs):
        reads.append(Path(path).name)
        return real(path, **kwargs)

    monkeypatch.setattr(reader, "verify_file", lambda *a, **k: pytest.fail("a separate verifying read"))
    monkeypatch.setattr(store, "read_run", counted)
    clean = analyze_runs(runs, reference="rf(M=4)", n_resamples=0)
    assert sorted(reads) == sorted(p.name for p in runs.rglob("*.h5")), reads  # one full read per file
    _flip_block_sum(bad)
    report = analyze_runs(runs, reference="rf(M=4)", n_resamples=0)
    assert any(bad.name in note and "damaged" in note and "left out" in note for note in report.notes)
    assert {r.spec for r in report.rows} == {r.spec for r in clean.rows} - {"st"}
    zgr = next(r for r in report.rows if r.spec == "zgr")
    assert zgr.b2 == next(r for r in clean.rows if r.spec == "zgr").b2
    r = invoke("report", "--runs-dir", runs, "--reference", "rf(M=4)", "--n-resamples", "0")
    assert r.exit_code == 0 and "left out" in r.output and "damaged" in r.output, r.output


@pytest.mark.parametrize(("args", "words"), [
    (["-e", "gr-mc(t=0.5,M=99999999999999999999)"], "M=99999999999999999999 is beyond the limit 2147483647"),
    (["-e", "gr-mc", "--t", "0.5", "--M", "99999999999999999999"], "beyond the limit 2147483647"),
    (["-e", "rf(M=3000000000)"], "beyond the limit 2147483647"),
    (["-e", "zgr", "--n", "1000000000000000000000000000000"], "n must be between 1 and 9223372036854775807"),
    (["-e", "zgr", "--keep", "100000000000000000000"], "keep must be between 0 and 9223372036854775807"),
    (["-e", "zgr", "--chunk", "100000000000000000000"], "chunk must be between 1 and 9223372036854775807"),
])
def test_absurd_hyper_parameters_are_refused_at_parse_time_with_the_limit(snap, tmp_path, args, words):
    r = invoke("sample", "--snapshot", snap.path, *args, "--runs-dir", tmp_path / "runs")
    assert r.exit_code in (1, 2) and words in one_error_line(r)
    assert not (tmp_path / "runs").exists()


def test_a_factory_that_calls_sys_exit_is_reported_as_such(snap, tmp_path):
    (tmp_path / "quits.py").write_text("import sys\n\ndef make():\n    sys.exit(3)\n\n\ndef est():\n    sys.exit(4)\n")
    r = invoke("sample", "--problem", f"{tmp_path / 'quits.py'}:make", "-e", "zgr", "--runs-dir", tmp_path / "r")
    assert r.exit_code == 1 and "called sys.exit(3)" in one_error_line(r)
    r = invoke("sample", "--snapshot", snap.path, "-e", f"{tmp_path / 'quits.py'}:est", "--runs-dir", tmp_path / "r")
    assert r.exit_code == 1 and "called sys.exit(4)" in one_error_line(r)
    (tmp_path / "quits_at_import.py").write_text("import sys\nsys.exit(5)\n")
    r = invoke("sample", "--problem", f"{tmp_path / 'quits_at_import.py'}:make", "-e", "zgr",
               "--runs-dir", tmp_path / "r")
    assert r.exit_code == 1 and "SystemExit: 5" in one_error_line(r)


def test_a_gram_matrix_that_cannot_be_decomposed_is_an_analysis_error_not_linalg():
    """``report --reference exact`` on a run with 181 of 200 draws non-finite reached "internal error
    (LinAlgError)": the eigen-decomposition of the deviations' Gram matrix is now an AnalysisError."""
    import numpy as np

    from biasvar.errors import AnalysisError
    from biasvar.stats.intervals import gauss_model, pivot_parts
    from biasvar.studies.coverage import gram_of
    from biasvar.studies.coverage import memory_run as run_of

    x = np.random.default_rng(2).standard_normal((64, 40))
    pg = gram_of(None, run_of(x, 16), np.zeros(40))
    parts = pivot_parts(pg)
    parts.d_tt[0][1, 2] = np.nan
    with pytest.raises(AnalysisError, match="no usable Gram matrix"):
        gauss_model(pg, parts, 0)


def test_noise_that_cannot_fit_the_memory_budget_is_refused_before_any_draw_naming_the_largest_m(tmp_path):
    r = invoke("sample", "--problem", "toy-cat", "-e", "gr-mc(t=0.5,M=100000000)", "--n", "100",
               "--runs-dir", tmp_path / "runs")
    line = one_error_line(r)
    assert r.exit_code == 1 and "over the memory budget 512 MiB" in line and "the largest M that fits is" in line
    largest = int(line.split("the largest M that fits is ")[1].split()[0])
    assert not (tmp_path / "runs").exists()  # refused before any draw: nothing written
    r = invoke("sample", "--problem", "toy-cat", "-e", "gr-mc(t=0.5,M=100000000)", "--n", "100",
               "--max-memory", "1GB", "--runs-dir", tmp_path / "runs")
    assert "budget 1.00 GiB (--max-memory)" in one_error_line(r)
    assert int(one_error_line(r).split("the largest M that fits is ")[1].split()[0]) > largest
    # the largest M is what the check lets through, and one more is refused
    from biasvar import engine
    from biasvar.engine.chunks import check_noise_fits
    from biasvar.errors import UnsupportedError
    from biasvar.estimators import build
    from biasvar.spec import parse_spec

    problem = ToyCat()
    for m, ok in ((largest, True), (largest + 1, False)):
        spec = parse_spec(f"gr-mc(t=0.5,M={m})")
        if ok:
            check_noise_fits(problem, spec, build(spec), engine.resolve_device("cpu"), None)
        else:
            with pytest.raises(UnsupportedError, match="largest M"):
                check_noise_fits(problem, spec, build(spec), engine.resolve_device("cpu"), None)


def test_a_ray_address_where_nothing_listens_is_one_line_in_seconds(snap, tmp_path):
    import time

    pytest.importorskip("ray")
    start = time.monotonic()
    r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--reference", "rf", "--n", "40",
               "--executor", "ray", "--address", "127.0.0.1:1", "--connect-timeout", "2", "--runs-dir", tmp_path / "r")
    assert r.exit_code == 1 and "no Ray cluster at 127.0.0.1:1" in one_error_line(r)
    assert time.monotonic() - start < 20 and not (tmp_path / "r").exists()
    r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--executor", "ray", "--address",
               "127.0.0.1:1", "--connect-timeout", "0", "--runs-dir", tmp_path / "r")
    assert r.exit_code == 1 and "--connect-timeout must be a positive number" in one_error_line(r)


def test_an_address_where_something_else_listens_is_one_line_in_seconds(snap, tmp_path):
    """A port that accepts connections but is not Ray (a silent service; this sandbox's network accepts
    any address): one line within the connect timeout, nothing written. Before, Ray retried for ~27 s
    with 22 log lines after the sweep's manifest was written."""
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        start = time.monotonic()
        r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--n", "40", "--executor", "ray",
                   "--address", f"127.0.0.1:{port}", "--connect-timeout", "1", "--runs-dir", tmp_path / "r")
        assert r.exit_code == 1 and "not a Ray cluster" in one_error_line(r)
        assert time.monotonic() - start < 15 and not (tmp_path / "r").exists()


class _FakeHttp2:
    """A listener that answers HTTP/2's connection preface with a SETTINGS frame, as gRPC (and Ray's GCS)
    does, and then nothing a Ray client understands: what this sandbox's proxy does on any address."""

    def __init__(self):
        import socket
        import threading

        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading

        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    @staticmethod
    def _talk(conn):
        with conn:
            try:
                conn.recv(24)
                conn.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # an empty SETTINGS frame
                while conn.recv(4096):  # read whatever comes, answer nothing
                    pass
            except OSError:
                pass

    def close(self):
        self.srv.close()


def test_an_http2_service_that_is_not_ray_is_one_quiet_line_within_the_timeout(snap, tmp_path):
    """The preface probe passes (it speaks HTTP/2), so the join itself is tried: in a child process,
    killed at the connect timeout, its output kept back. Before, Ray's join retried for ~25 s and printed
    ~20 warnings after the sweep's header."""
    import time

    from biasvar.engine import executors
    from biasvar.errors import BiasvarError

    pytest.importorskip("ray")
    fake = _FakeHttp2()
    try:
        executors.probe(f"127.0.0.1:{fake.port}", 2)  # passes: the probe alone cannot tell
        start = time.monotonic()
        r = invoke("sweep", "--snapshot", snap.path, "--estimators", "zgr", "--n", "40", "--executor", "ray",
                   "--address", f"127.0.0.1:{fake.port}", "--connect-timeout", "2", "--runs-dir", tmp_path / "r")
        took = time.monotonic() - start
        line = one_error_line(r)  # nothing of Ray's, no header before it
        assert r.exit_code == 1 and f"something answers at 127.0.0.1:{fake.port}" in line, line
        assert "no Ray cluster joined within 2 s (--connect-timeout)" in line, line
        assert took < 40 and not (tmp_path / "r").exists(), took
        assert fake.connections >= 2  # the probe's, and the child's join
        with pytest.raises(BiasvarError, match="no Ray cluster joined within 1 s"):
            executors.trial_join(f"127.0.0.1:{fake.port}", 1)
    finally:
        fake.close()


def test_a_join_that_fails_names_the_error(monkeypatch):
    from biasvar.engine import executors
    from biasvar.errors import BiasvarError

    monkeypatch.setattr(executors, "_TRIAL_JOIN", "import sys\nprint('imported', flush=True)\n"
                        "sys.stderr.write('noise\\nConnectionError: the GCS said no\\nmore noise\\n')\nsys.exit(1)\n")
    with pytest.raises(BiasvarError, match="Ray cluster at h:1: ConnectionError: the GCS said no"):
        executors.trial_join("h:1", 5)
    monkeypatch.setattr(executors, "_TRIAL_JOIN", "print('imported', flush=True)\n")
    executors.trial_join("h:1", 5)  # joined: nothing to say


def test_an_address_that_does_not_answer_in_time_is_refused_naming_the_timeout(monkeypatch):
    from biasvar.engine import executors
    from biasvar.errors import BiasvarError

    def never(target, timeout):
        assert target == ("127.0.0.1", 6379) and timeout == 1.5
        raise TimeoutError()

    monkeypatch.setattr(executors.socket, "create_connection", never)
    with pytest.raises(BiasvarError, match=r"no Ray cluster answers at ray://127.0.0.1:6379 within 1.5 s"):
        executors.probe("ray://127.0.0.1:6379", 1.5)
    executors.probe("auto", 1.5)  # left to Ray (it answers in seconds)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only); skipped where mounting is not allowed."""
    import subprocess

    where = tmp_path / "disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip() or r.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


_WITHOUT_ESTIMATE = ("import runpy, sys\nimport biasvar.engine.runs as r\nr.check_run_room = lambda plan: None\n"
                     "sys.argv[0] = 'biasvar'\nrunpy.run_module('biasvar_cli.main', run_name='__main__')\n")


def test_a_run_the_disk_has_no_room_for_is_refused_before_any_draw_naming_the_folder_and_the_space(
        small_disk, tmp_path):
    import subprocess
    import sys

    args = ["sample", "--problem", "toy-cat", "-e", "zgr", "--n", "60000", "--block-size", "20"]
    r = subprocess.run([sys.executable, "-m", "biasvar_cli.main", *args, "--runs-dir", str(small_disk / "runs")],
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in (r.stderr + r.stdout).splitlines() if line.strip()]
    assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr[-2000:])
    assert f"not enough space in {small_disk / 'runs'}" in errors[0] and "needs ~4.1 MiB" in errors[0], errors
    assert not list(small_disk.rglob("*.h5"))  # nothing drawn, nothing written
    r = subprocess.run([sys.executable, "-m", "biasvar_cli.main", *args[:-4], "--n", "2000", "--block-size", "20",
                        "--runs-dir", str(small_disk / "runs")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]  # a run that fits is not refused


def test_the_size_estimate_before_a_run_refuses_what_does_not_fit_and_passes_what_does(snap, tmp_path, monkeypatch):
    """The estimate against a monkeypatched free space (runs everywhere), and against the real file sizes."""
    from biasvar.store import writer

    runs = tmp_path / "runs"
    path = _run(snap, runs, n=400)
    size = path.stat().st_size
    estimate = store.run_file_bytes(dim=6, groups=1, block_size=20, n=400, keep=6)
    assert size <= estimate <= 1.2 * size + (64 << 10), (size, estimate)
    monkeypatch.setattr(writer, "free_bytes", lambda folder: 1 << 20)  # 1 MiB free: under the margin alone
    r = invoke("sample", "--snapshot", snap.path, "-e", "st", "--n", "400", "--block-size", "20", "--runs-dir", runs)
    line = one_error_line(r)
    assert r.exit_code == 1 and f"not enough space in {runs / snap.id}" in line.replace("\n", ""), line
    assert "st-s0.h5 (400 draws: 20 blocks of 6 sums" in line and "1.0 MiB free" in line, line
    assert not (runs / snap.id / "st-s0.h5").exists()
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "400", "--block-size", "20", "--runs-dir", runs)
    assert r.exit_code == 0, r.output  # complete already: nothing to write, nothing refused
    monkeypatch.setattr(writer, "free_bytes", lambda folder: (1 << 20) + estimate - size + 1)
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "800", "--block-size", "20", "--runs-dir", runs)
    assert r.exit_code == 1 and "not enough space" in one_error_line(r)  # 800 draws need more than 400 did
    monkeypatch.setattr(writer, "free_bytes", lambda folder: 100 << 20)
    r = invoke("sample", "--snapshot", snap.path, "-e", "zgr", "--n", "800", "--block-size", "20", "--runs-dir", runs)
    assert r.exit_code == 0, r.output


def test_a_sweep_the_disk_has_no_room_for_is_refused_before_any_draw(snap, tmp_path, monkeypatch):
    from biasvar.store import writer

    runs = tmp_path / "runs"
    one = store.run_file_bytes(dim=6, groups=1, block_size=20, n=400, keep=6)
    monkeypatch.setattr(writer, "free_bytes", lambda folder: (1 << 20) + 2 * one)  # room for 2 of the 3 runs
    args = ["sweep", "--snapshot", snap.path, "--estimators", "zgr,st", "--reference", "rf(M=4)", "--n", "400",
            "--block-size", "20", "--runs-dir", runs, "--no-gram"]
    r = invoke(*args)
    line = one_error_line(r)
    assert r.exit_code == 1 and "the 3 run files of this sweep (1,200 draws of 6 sums)" in line, line
    assert not list(tmp_path.rglob("*.h5"))
    monkeypatch.setattr(writer, "free_bytes", lambda folder: (1 << 20) + 3 * one)
    assert invoke(*args).exit_code == 0


def test_a_full_disk_is_one_line_keeps_the_saved_blocks_and_resumes_exactly(small_disk, tmp_path):
    import subprocess
    import sys

    import numpy as np

    args = ["sample", "--problem", "toy-cat", "-e", "zgr", "--n", "60000", "--block-size", "20"]
    # the disk fills during the run (the size estimate before it is skipped: the space is taken by others)
    r = subprocess.run([sys.executable, "-c", _WITHOUT_ESTIMATE, *args, "--runs-dir", str(small_disk / "runs")],
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout, (r.returncode, r.stderr[-2000:])
    assert len(errors) == 1 and "no space left on the device of" in errors[0] and str(small_disk) in errors[0]
    path = next((small_disk / "runs").rglob("*.h5"))
    saved = store.read_run(path)
    assert saved.attrs["status"] == "interrupted" and saved.attrs["n_done"] > 0
    subprocess.run(["mount", "-o", "remount,size=64m", "tmpfs", str(small_disk)], check=True)
    r = subprocess.run([sys.executable, "-m", "biasvar_cli.main", *args, "--runs-dir", str(small_disk / "runs")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = store.read_run(path)
    r = subprocess.run([sys.executable, "-m", "biasvar_cli.main", *args, "--runs-dir", str(tmp_path / "whole")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    whole = store.read_run(next((tmp_path / "whole").rglob("*.h5")))
    assert resumed.attrs["status"] == "complete" and resumed.attrs["n_done"] == whole.attrs["n_done"] == 60000
    np.testing.assert_array_equal(resumed.block_sum, whole.block_sum)


def test_ls_counts_the_shards_of_a_run_including_those_never_started(snap, tmp_path):
    """Issue 26: a run cut into 4 shards of which one never started was listed as "shards done 3/3"."""
    runs = tmp_path / "runs"
    common = ["--snapshot", snap.path, "-e", "zgr", "--n", "400", "--block-size", "20", "--runs-dir", runs]
    for i in (0, 2, 3):
        r = invoke("sample", *common, "--shard", f"{i}/4")
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ls", "--runs-dir", str(runs)], terminal_width=200)
    flat = "".join(r.output.split())  # the ranges cell wraps
    assert r.exit_code == 0 and "│3/4│" in flat and "100-200(not" in flat and "started)" in flat, r.output
    r = invoke("merge", "--runs-dir", runs)  # shard 0 merges; the rest wait for the missing one
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ls", "--runs-dir", str(runs)], terminal_width=200)
    flat = "".join(r.output.split())  # the ranges cell wraps
    assert "│2/3│" in flat and "100-200(not" in flat and "started)" in flat, r.output


CATNET = ("from biasvar.problems.toy import ToyCat\n\n\n"
          "def make(seed=0):\n    return ToyCat(vars=2, categories=3, seed=seed)\n")


@pytest.fixture
def catnet(tmp_path, monkeypatch):
    """A user module ``catnet.py`` in ``tmp_path/model`` (the working directory), forgotten afterwards."""
    import sys

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "catnet.py").write_text(CATNET)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI adds the working directory
    monkeypatch.delitem(sys.modules, "catnet", raising=False)
    yield folder
    sys.modules.pop("catnet", None)


def test_one_snapshot_id_per_model_however_its_factory_is_named(catnet, tmp_path):
    """Issue 26: ``--problem catnet:make`` and ``--problem path/catnet.py:make`` gave two snapshot ids."""
    from biasvar.snapshot import identity_kind, load_snapshot

    ids = set()
    for i, name in enumerate(("catnet:make", "catnet.py:make", "./catnet.py:make", f"{catnet / 'catnet.py'}:make")):
        r = invoke("snapshot", "--problem", name, "--out", tmp_path / f"s{i}.pt")
        assert r.exit_code == 0, r.output
        ids.add(load_snapshot(tmp_path / f"s{i}.pt").id)
    assert len(ids) == 1, ids
    assert identity_kind(f"{catnet / 'catnet.py'}:make") == "catnet:make"
    # a factory named by its module keeps the hash it had (so do built-ins: tests/test_user_problem.py)
    assert identity_kind("catnet:make") == "catnet:make"
    assert identity_kind("examples.my_model:make") == "examples.my_model:make"
    sub = catnet / "nets"
    sub.mkdir()
    assert identity_kind("nets/catnet.py:make") == "nets.catnet:make"


def test_a_snapshot_saved_with_the_hash_of_its_file_name_still_loads_with_its_id(catnet, tmp_path):
    """Snapshots saved before identity_kind hashed the kind as written: they load, keeping their id."""
    import torch

    from biasvar.problems.registry import make_problem
    from biasvar.snapshot import content_hash, load_snapshot

    kind = f"{catnet / 'catnet.py'}:make"
    p = make_problem(kind)
    old_hash = content_hash(p, kind=kind)
    assert old_hash != content_hash(p)
    payload = {"magic": "biasvar-snapshot", "format_version": 1, "problem": {"kind": kind, "config": p.config},
               "params": dict(p.params), "batch": p.batch, "dataset": None, "provenance": {}, "hash": old_hash}
    torch.save(payload, tmp_path / "old.pt")
    assert load_snapshot(tmp_path / "old.pt").hash == old_hash
    payload["params"] = {k: v + 1 for k, v in p.params.items()}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(Exception, match="content hash mismatch"):
        load_snapshot(tmp_path / "bad.pt")


def test_a_snapshot_whose_factory_cannot_be_imported_says_where_it_was_imported_from(catnet, tmp_path, monkeypatch):
    import sys

    r = invoke("snapshot", "--problem", "catnet:make", "--out", tmp_path / "snap.pt")
    assert r.exit_code == 0, r.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sys.modules.pop("catnet", None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(catnet))])
    r = invoke("sample", "--snapshot", tmp_path / "snap.pt", "-e", "zgr", "--n", "20", "--runs-dir", tmp_path / "r")
    line = one_error_line(r)
    assert r.exit_code == 1 and "cannot import module 'catnet'" in line, line
    flat = line.replace(" ", "")
    assert "PYTHONPATH" in line and str(catnet / "catnet.py").replace(" ", "") in flat, line


# ------------------------------------------------------------------ a full disk in every writer


def _error_line(r) -> str:
    """The one ``error:`` line of a command that may print progress before it (train's epochs)."""
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert "Traceback" not in r.output and len(errors) == 1 and r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return errors[0]


@pytest.fixture(scope="module")
def wide_runs(tmp_path_factory):
    """Runs of a model with rows over 64 KiB (their block sums are filtered: ``compact`` rewrites them)."""
    from biasvar.problems.vae import VAE

    root = tmp_path_factory.mktemp("wide")
    wide = save_snapshot(root / "vae.pt", VAE(vars=2, categories=4, hidden=(16,)))
    for spec in ("st", "zgr"):
        engine.sample_run(wide, spec, n=40, seed=0, runs_dir=root / "runs", block_size=10)
    return root / "runs"


def _writers(snap, runs: Path, wide: Path, out: Path) -> dict[str, list]:
    """Every command that writes a file other than a run file, writing into ``out``."""
    return {
        "snapshot": ["snapshot", "--problem", "toy-cat", "--out", out / "s.pt"],
        "train": ["train", "--model", "toy-cat", "--epochs", "1", "--out", out / "t.pt"],
        "report": ["report", "--runs-dir", runs, "--reference", "exact", "--n-resamples", "0", "--out", out / "r.md"],
        "plot": ["plot", "pareto", "--runs-dir", runs, "--reference", "exact", "--out", out / "p.png"],
        "compact": ["compact", "--runs-dir", wide, "--compression", "none"],
        "gram": ["gram", "--runs-dir", wide],
    }


def _old_files(snap, wide_runs: Path, tmp_path: Path, disk: Path) -> tuple[Path, Path, Path]:
    """Runs to report on (in ``tmp_path``), wide runs to compact and an old version of every output file
    (on ``disk``): ``(runs, wide, out)``."""
    import shutil

    runs = tmp_path / "runs"
    _run(snap, runs)
    wide = disk / "wide"
    shutil.copytree(wide_runs, wide)
    out = disk / "out"
    out.mkdir()
    for name in ("s.pt", "t.pt", "r.md", "p.png", "p.pdf"):
        (out / name).write_text(f"the old {name}\n")
    return runs, wide, out


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_writer_on_a_full_disk_is_one_line_and_leaves_the_old_file(snap, wide_runs, tmp_path, monkeypatch):
    """Monkeypatched (runs everywhere): the device has no room (the writes fail as on a full disk, and
    the free space reads 0), so each writer says so in one line, exit 1, and the old files are unchanged."""
    import errno

    from biasvar import atomic

    runs, wide, out = _old_files(snap, wide_runs, tmp_path, tmp_path)
    before = {**_tree(out), **_tree(wide)}
    real_replace = atomic.os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 0)
    monkeypatch.setattr(atomic.os, "replace", full)
    for name, args in _writers(snap, runs, wide, out).items():
        r = invoke(*args)
        line = one_error_line(r)  # train too: the refusal comes before any epoch line
        assert "no space left on the device of" in line, (name, line)
        assert {**_tree(out), **_tree(wide)} == before, name  # nothing changed, no temporary file left
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    # a library that does not say why (torch.save: "basic_ios::clear: iostream error") on a device with no room
    import torch

    def iostream(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", iostream)
    line = _error_line(invoke("snapshot", "--problem", "toy-cat", "--out", out / "s.pt"))
    assert f"no space left on the device of {out}" in line and "s.pt was not written" in line, line
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 100 << 20)  # room: the same error is not a full disk
    line = _error_line(invoke("snapshot", "--problem", "toy-cat", "--out", out / "s.pt"))
    assert "no space" not in line and "iostream error" in line, line
    assert _tree(out) == {k: v for k, v in before.items() if k in _tree(out)}


def test_every_writer_on_a_full_tmpfs_is_one_line_and_leaves_the_old_file(snap, wide_runs, small_disk, tmp_path):
    """The same on a real full device (a 2 MB tmpfs filled up), then each writer works once there is room."""
    import subprocess

    runs, wide, out = _old_files(snap, wide_runs, tmp_path, small_disk)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    before = {**_tree(out), **_tree(wide)}
    for name, args in _writers(snap, runs, wide, out).items():
        line = one_error_line(invoke(*args))
        assert f"no space left on the device of {small_disk}" in line, (name, line)
        assert {**_tree(out), **_tree(wide)} == before, name
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=16m", "tmpfs", str(small_disk)], check=True)
    for name, args in _writers(snap, runs, wide, out).items():
        r = invoke(*args)
        assert r.exit_code == 0, (name, r.output)
    assert not any((out / name).read_bytes().startswith(b"the old") for name in ("s.pt", "t.pt", "r.md", "p.png"))


def test_train_on_a_full_disk_refuses_before_its_first_step(tmp_path, monkeypatch):
    """The room for the snapshot (and the --save-at ones) is checked first: the refusal is the only line."""
    import importlib

    from biasvar import atomic

    train = importlib.import_module("biasvar.train")

    steps = []
    real = train._Loop.epoch
    monkeypatch.setattr(train._Loop, "epoch", lambda self, *a: steps.append(1) or real(self, *a))
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 0)
    r = invoke("train", "--model", "toy-cat", "--epochs", "3", "--save-at", "1,2", "--out", tmp_path / "t.pt")
    line = one_error_line(r)
    assert r.exit_code == 1 and f"no space left on the device of {tmp_path} for t.pt" in line, line
    assert steps == [] and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 100 << 20)
    r = invoke("train", "--model", "toy-cat", "--epochs", "2", "--out", tmp_path / "t.pt")
    assert r.exit_code == 0 and steps == [1, 1], r.output


def test_the_snapshot_size_estimate_covers_the_file(tmp_path):
    from biasvar.problems.toy import ToyCat
    from biasvar.problems.vae import VAE
    from biasvar.train import snapshot_bytes, train

    toy = ToyCat()
    snap = train(toy, epochs=5, steps_per_epoch=2, out=tmp_path / "toy.pt")
    assert Path(snap.path).stat().st_size <= snapshot_bytes(toy, 5)
    vae = VAE(vars=4, categories=8, hidden=(64,))
    size = save_snapshot(tmp_path / "vae.pt", vae).path
    assert Path(size).stat().st_size <= snapshot_bytes(vae) <= 2 * Path(size).stat().st_size + 64 * 1024


# ------------------------------------------------------------------ memory that runs out during a run


@pytest.mark.parametrize("failure", ["MemoryError", "cpu", "cuda"])
def test_memory_running_out_during_a_run_saves_what_was_drawn_and_is_one_line(snap, tmp_path, monkeypatch, failure):
    """An allocation failure after some blocks: one line saying so, the blocks drawn are saved (the run
    left interrupted), and the same command resumes it to the bits of a run never interrupted."""
    import numpy as np
    import torch

    from biasvar.engine.draws import DrawPath

    errors = {"MemoryError": MemoryError(),
              "cpu": RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
              "cuda": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")}
    real = DrawPath.draws

    def fails_after_100(self, seed, start, end, **kwargs):
        for chunk in real(self, seed, start, end, **kwargs):
            if chunk.start >= 100:
                raise errors[failure]
            yield chunk

    runs = tmp_path / "runs"
    args = ["sample", "--snapshot", snap.path, "-e", "zgr", "--n", "400", "--block-size", "20", "--chunk", "10",
            "--runs-dir", runs]
    monkeypatch.setattr(DrawPath, "draws", fails_after_100)
    r = invoke(*args)
    line = _error_line(r)  # after the progress of the draws made
    path = store.run_path(runs, snap.id, "zgr", 0)
    assert r.exit_code == 1 and "out of memory on cpu while drawing zgr" in line, line
    assert "the 100 draws drawn so far are saved in" in line and "rerun the same command to resume" in line, line
    saved = store.read_run(path)
    assert saved.status == "interrupted" and saved.attrs["n_done"] == 100
    monkeypatch.setattr(DrawPath, "draws", real)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    whole = engine.sample_run(snap, "zgr", n=400, seed=0, runs_dir=tmp_path / "whole", block_size=20, chunk=10)
    resumed, once = store.read_run(path), store.read_run(whole)
    assert resumed.status == "complete" and resumed.attrs["n_done"] == 400
    np.testing.assert_array_equal(resumed.block_sum, once.block_sum)
    np.testing.assert_array_equal(resumed.samples, once.samples)


def test_an_error_that_is_not_memory_is_not_called_out_of_memory():
    from biasvar.engine.runs import out_of_memory

    assert not out_of_memory(RuntimeError("shape mismatch")) and not out_of_memory(KeyboardInterrupt())
    assert out_of_memory(MemoryError()) and out_of_memory(RuntimeError("HIP out of memory"))


def test_a_cluster_that_fails_to_join_leaves_nothing_written(snap, tmp_path, monkeypatch):
    """Where the address answers but Ray cannot join (an HTTP/2 service that is not Ray), the sweep
    fails before its manifest or any run file is written."""
    from biasvar import engine
    from biasvar.engine import executors
    from biasvar.errors import BiasvarError

    pytest.importorskip("ray")

    def fail(ray, address, timeout=0):
        raise BiasvarError(f"cannot connect to the Ray cluster at {address}: test")

    monkeypatch.setattr(executors, "_connect", fail)
    monkeypatch.setattr(executors, "probe", lambda address, timeout: None)
    plan = engine.plan_sweep(snap, ["zgr"], n=40, runs_dir=tmp_path / "r", name="custom")
    with pytest.raises(BiasvarError, match="cannot connect"):
        executors.run_sweep(plan, engine.RunOptions(keep=0), executor=executors.Ray(address="10.0.0.1:6379"))
    assert not (tmp_path / "r").exists()
