"""Issue 25, item 1: the user's own estimator by import path or registered name, through the grammar,
the engine (vmap or a one-line refusal and the loop), run files and the CLI."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from biasvar_cli.main import app
from torch.testing import assert_close
from typer.testing import CliRunner

import biasvar
from biasvar import plugins, store
from biasvar.engine.draws import engine_path, sample_gradients
from biasvar.errors import BiasvarError, SpecError, UnsupportedError
from biasvar.estimators import UserPlugIn, build
from biasvar.problems.enumeration import enumerate_expectation
from biasvar.problems.toy import ToyCat
from biasvar.report.pareto import sort_key
from biasvar.spec import parse_spec, spec_from_flags

pytestmark = pytest.mark.usefixtures("one_thread")
BROKEN = str(Path(__file__).with_name("broken_estimators.py"))
runner = CliRunner()


def draws(problem, spec, n=8, method="loop", chunk=None):
    return torch.cat([c.grads for c in sample_gradients(problem, spec, n=n, seed=1, method=method, chunk=chunk)])


# -- the grammar -----------------------------------------------------------------------------

def test_plugin_specs_are_canonical_with_sorted_keyword_numbers():
    s = parse_spec("mypkg.est:Make( t = 0.50 , M=4.0, a=1e-3)")
    assert str(s) == "mypkg.est:Make(M=4,a=0.001,t=0.5)"  # case kept, keys sorted, numbers normalised
    assert parse_spec(str(s)) == s and s.plugin and s["M"] == 4 and isinstance(s["M"], int)
    assert str(parse_spec("./a/../est.py:make(t=2)")) == "est.py:make(t=2)"
    assert str(parse_spec("est.py:make")) == "est.py:make" == str(parse_spec("est.py:make()"))
    assert str(spec_from_flags("est.py:make", t=0.5, M=None)) == "est.py:make(t=0.5)"
    assert not parse_spec("zgr").plugin and str(parse_spec("gr-mc(0.10, 1e2)")) == "gr-mc(M=100,t=0.1)"


@pytest.mark.parametrize("text, match", [
    ("est.py:make(0.5)", "keyword numbers"),
    ("est.py:make(t=abc)", "not a number"),
    ("est.py:make(t=inf)", "finite"),
    ("est.py:make(t=1,t=2)", "given twice"),
    ("nosuch(t=1)", "module:function"),
])
def test_bad_plugin_specs_are_one_line_errors(text, match):
    with pytest.raises(SpecError, match=match) as e:
        parse_spec(text)
    assert "\n" not in str(e.value)


def test_parsing_a_plugin_spec_imports_nothing():
    s = parse_spec("surely_not_a_module_xyz:make(t=1)")  # a run file's spec reads without its code
    assert sort_key(str(s)) > sort_key("disarm")  # reports order it after the built-ins, unimported
    with pytest.raises(UnsupportedError, match="surely_not_a_module_xyz"):
        build(s)


# -- building, errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("factory, match", [
    ("raises(t=3)", r"failed: ValueError: t=3 is not supported"),
    ("not_an_estimator", "returned int"),
    ("NOT_CALLABLE", "not a callable"),
    ("bad_noise_kind", "kind 'poisson'"),
    ("missing", "has no attribute 'missing'"),
])
def test_a_broken_factory_is_one_line_naming_it(factory, match):
    with pytest.raises(UnsupportedError, match=match) as e:
        build(f"{BROKEN}:{factory}")
    assert "\n" not in str(e.value)


def test_file_module_and_registered_name_build_the_same_estimator(tmp_path, monkeypatch):
    (tmp_path / "my_est_pkg_test.py").write_text(textwrap.dedent("""
        from biasvar.estimators import sample_onehot, st_y
        def make(t=1.0):
            return lambda logits, noise: st_y(logits, sample_onehot(logits, noise["G"]), t=t)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    toy = ToyCat(vars=2, categories=3, loss="quartic")
    by_module = build("my_est_pkg_test:make(t=0.5)")
    assert isinstance(by_module, UserPlugIn) and by_module.cost == 1 and not by_module.unbiased
    import my_est_pkg_test

    biasvar.register_estimator("my-st", my_est_pkg_test.make)
    try:
        assert str(parse_spec("My-ST(t=0.5)")) == "my-st(t=0.5)"
        with pytest.raises(UnsupportedError, match="already registered"):
            biasvar.register_estimator("my-st", lambda: None)
        with pytest.raises(UnsupportedError, match="built in"):
            biasvar.register_estimator("zgr", my_est_pkg_test.make)
        # the same factory by name and by import path: the same draws on the same noise (the spec keys
        # the noise, so each run's draws differ; the per-draw function is the same)
        assert_close(by_module(toy.params["logits"], {"G": torch.zeros(3)}),
                     build("my-st(t=0.5)")(toy.params["logits"], {"G": torch.zeros(3)}))
        J = draws(toy, "my-st(t=0.5)")
        assert torch.isfinite(J).all() and J.shape == (8, toy.params["logits"].numel())
        assert plugins.source_record("my-st")["import"] == "my_est_pkg_test:make"
    finally:
        plugins.unregister("my-st")
    with pytest.raises(SpecError, match="unknown estimator 'my-st'.*register_estimator is known only in the"):
        parse_spec("my-st(t=0.5)")


def test_y_fn_makes_the_expectation_exact_and_equal_to_the_builtin():
    toy = ToyCat(vars=2, categories=3, loss="quartic")
    mine = enumerate_expectation(toy, f"{BROKEN}:zgr_copy")
    ref = enumerate_expectation(toy, "zgr")
    assert mine.se is None and "exact" in mine.how
    assert_close(mine.mean["logits"], ref.mean["logits"], rtol=1e-12, atol=1e-14)


def test_plugin_draws_equal_the_builtin_on_the_same_noise():
    """The plug-in goes through draw_loss like a built-in: same function and noise, same gradients."""
    from biasvar.problems.base import draw_loss, noise_requests
    from biasvar.rng import draw_noise, stream_key

    toy = ToyCat(vars=2, categories=3, loss="quartic")
    mine, ref = build(f"{BROKEN}:bare(t=0.5)"), build("st(t=0.5)")
    req = noise_requests(toy, mine)
    assert req == noise_requests(toy, ref)
    noise = draw_noise(req, stream_key(0, "x"), torch.arange(4), dtype=torch.float64)
    for i in range(4):
        one = {n: {k: v[i] for k, v in d.items()} for n, d in noise.items()}
        grads = []
        for est in (mine, ref):
            p = {"logits": toy.params["logits"].clone().requires_grad_(True)}
            grads.append(torch.autograd.grad(draw_loss(toy, est, p, one), p["logits"])[0])
        assert_close(grads[0], grads[1], rtol=0, atol=0)


# -- the engine: vmap, or one line and the loop ----------------------------------------------------

def test_a_vmap_safe_plugin_takes_the_vmap_path():
    toy = ToyCat(vars=2, categories=3)
    assert engine_path(toy, f"{BROKEN}:bare", method="vmap")["method"] == "vmap"
    assert_close(draws(toy, f"{BROKEN}:bare", method="vmap"), draws(toy, f"{BROKEN}:bare", method="loop"))


@pytest.mark.parametrize("method", ["auto", "vmap"])
def test_a_plugin_that_is_not_vmap_safe_falls_back_to_the_loop_with_one_line(method, capsys):
    toy = ToyCat(vars=2, categories=3)
    spec = f"{BROKEN}:one_hot_st"
    path = engine_path(toy, spec, method=method)
    assert path["method"] == "loop" and path["method_requested"] == method
    assert "is not vmap-safe" in path["vmap_refused"] and "one_hot_st" in path["vmap_refused"]
    assert "\n" not in path["vmap_refused"]
    J = draws(toy, spec, method=method)
    assert_close(J, draws(toy, spec, method="loop"), rtol=0, atol=0)
    err = capsys.readouterr().err
    assert err.count("\n") <= 1  # printed once per process, one line


# -- run files and the CLI -----------------------------------------------------------------------

def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=80, env={"COLUMNS": "80"})


def test_sample_records_the_import_path_and_the_source_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = Path(BROKEN).read_text()
    (tmp_path / "est.py").write_text(src)
    r = invoke("sample", "--problem", "toy-cat", "-e", "est.py:bare(t=0.5)", "--n", "200", "--runs-dir", "runs")
    assert r.exit_code == 0, r.output
    (path,) = store.list_run_files(tmp_path / "runs")
    header = store.read_header(path)
    assert header["spec"] == "est.py:bare(t=0.5)"
    source = header["estimator_source"]
    source = json.loads(source) if isinstance(source, str) else source
    import hashlib

    assert source["import"] == "est.py:bare" and source["file"] == str((tmp_path / "est.py").resolve())
    assert source["sha256"] == hashlib.sha256(src.encode()).hexdigest()
    r = invoke("sample", "--problem", "toy-cat", "-e", "zgr", "--n", "200", "--runs-dir", "runs")
    zgr = [p for p in store.list_run_files(tmp_path / "runs") if p.name.startswith("zgr")][0]
    assert "estimator_source" not in store.read_header(zgr)  # built-in run files are unchanged
    r = invoke("report", "--runs-dir", "runs", "--reference", "exact", "--contrast", "est.py:bare(t=0.5),zgr")
    assert r.exit_code == 0 and "est.py:bare(t=0.5)" in r.output, r.output
    (tmp_path / "est.py").unlink()  # reading the runs needs no code; drawing more does, and says so
    r = invoke("report", "--runs-dir", "runs", "--reference", "exact")
    assert r.exit_code == 0, r.output
    r = invoke("sample", "--problem", "toy-cat", "-e", "est.py:bare(t=0.5)", "--n", "400", "--runs-dir", "runs")
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert r.exit_code == 1 and lines == ["error: cannot import estimator file est.py: no such file"], r.output


def test_missing_module_is_one_line_in_a_subprocess(tmp_path):
    import subprocess

    cli = [sys.executable, "-m", "biasvar_cli.main"]
    out = subprocess.run([*cli, "sample", "--problem", "toy-cat", "-e", "no_such_mod_abc:make(t=1)", "--n", "10",
                          "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    err = [x for x in out.stderr.splitlines() if x.strip() and "draws/s" not in x]
    assert out.returncode == 1 and len(err) == 1 and "no_such_mod_abc" in err[0], out.stderr


def test_a_biasvar_error_in_the_factory_is_wrapped():
    with pytest.raises(BiasvarError, match="estimator factory"):
        plugins.make(f"{BROKEN}:raises", {"t": 2})


def test_sweep_train_and_bench_take_a_plugin(tmp_path, monkeypatch):
    """Wherever a spec goes: a tested spec and the reference of a sweep, train's estimator, bench."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "est.py").write_text(Path(BROKEN).read_text())
    r = invoke("sweep", "--problem", "toy-cat", "--estimators", "est.py:bare(t=0.5),zgr",
               "--reference", "est.py:zgr_copy", "--n", "100", "--runs-dir", "runs")
    assert r.exit_code == 0, r.output
    specs = sorted(store.read_header(p)["spec"] for p in store.list_run_files(tmp_path / "runs"))
    assert specs == ["est.py:bare(t=0.5)", "est.py:zgr_copy", "zgr"]  # the reference first
    r = invoke("train", "--model", "toy-cat", "--estimator", "est.py:bare", "--t", "0.5", "--epochs", "1",
               "--out", "t.pt")
    assert r.exit_code == 0 and "est.py:bare(t=0.5)" in r.output, r.output
    from biasvar.snapshot import load_snapshot

    prov = load_snapshot(tmp_path / "t.pt").provenance
    assert prov["estimator"] == "est.py:bare(t=0.5)" and prov["estimator_source"]["import"] == "est.py:bare"
    r = invoke("bench", "--bench", "toy-cat", "--estimators", "est.py:bare(t=0.5)", "--n", "64", "--n-loop", "8",
               "--repeats", "1")
    assert r.exit_code == 0 and "est.py:bare(t=0.5)" in r.output, r.output
