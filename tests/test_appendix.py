"""``biasvar reproduce b4`` / ``b6`` (App. B.4, B.6) end to end at toy sizes: one training run per model
saved at every stage, a sweep and report per stage, provenance; reuse of the snapshots; the grids."""

from __future__ import annotations

import json

import pytest
from biasvar_cli.main import app
from conftest import synthetic
from typer.testing import CliRunner

import biasvar.data
from biasvar import presets
from biasvar.studies import appendix as A

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data(monkeypatch):
    served = synthetic(40)
    monkeypatch.setattr(biasvar.data, "load", lambda name, split="train", **kw: served)
    return served


def _dirs(tmp_path):
    return {k: tmp_path / k for k in ("runs_dir", "snapshot_dir", "results_dir", "figures_dir")}


def test_b4_measures_every_model_at_every_stage_of_one_training_run(tmp_path, data):
    said: list[str] = []
    res = A.reproduce_appendix("b4", n=12, epochs=(1, 2), config={"categories": 2, "vars": 2},
                               steps_per_epoch=2, estimators=["zgr", "st"], n_resamples=20, device="cpu",
                               say=said.append, **_dirs(tmp_path))
    assert res.tag == "b4-reduced-cpu"
    stages = res.provenance["stages"]
    assert [(s["model"], s["epochs"]) for s in stages] == [("vae", 1), ("vae", 2), ("hvae", 1), ("hvae", 2)]
    assert len({s["snapshot_hash"] for s in stages}) == 4
    for s in stages:
        rep = json.loads((tmp_path / "results_dir" / res.tag / f"{s['model']}-e{s['epochs']}" / "report.json")
                         .read_text())
        assert {r["spec"]: r["n"] for r in rep["rows"]} == {"rf(M=4)": 12, "zgr": 12, "st": 12}
        assert rep["snapshot_hash"] == s["snapshot_hash"]
        assert (tmp_path / "figures_dir" / res.tag / f"{s['model']}-e{s['epochs']}-pareto.png").is_file()
    # one trajectory: the epoch-1 snapshot's loss history is the start of the epoch-2 one's
    from biasvar.snapshot import load_snapshot

    for model in ("vae", "hvae"):
        p1, p2 = (load_snapshot(s["snapshot_path"]).provenance for s in stages if s["model"] == model)
        assert (p1["epochs"], p2["epochs"]) == (1, 2)
        assert p2["loss_history"][:1] == p1["loss_history"]
    assert sum("training" in m for m in said) == 2
    prov = json.loads((tmp_path / "results_dir" / res.tag / "provenance.json").read_text())
    assert prov["reduced"] and prov["epochs"] == [1, 2] and prov["sweep_timing_s"]["draw_s"] > 0
    # a second call reuses the snapshots and the complete runs: no training
    said.clear()
    A.reproduce_appendix("b4", n=12, epochs=(1, 2), config={"categories": 2, "vars": 2}, steps_per_epoch=2,
                         estimators=["zgr", "st"], n_resamples=20, device="cpu", say=said.append, **_dirs(tmp_path))
    assert not any("training" in m for m in said) and sum("reusing" in m for m in said) == 2


def test_b6_trains_the_quantized_net_and_measures_layer_0(tmp_path, data):
    res = A.reproduce_appendix("b6", n=8, reference_n=16, epochs=(1,), steps_per_epoch=2,
                               config={"arch": "2C5-MP2-8FC-10FC", "weights_bits": "T", "acts_bits": "T",
                                       "noise": "triangular"},
                               estimators=["zgr", "st"], n_resamples=20, device="cpu", **_dirs(tmp_path))
    rep = res.report
    assert {r.spec: r.n for r in rep.rows} == {"rf(M=4)": 16, "zgr": 8, "st": 8}
    assert rep.params_glob.startswith("layers.0")
    assert res.provenance["stages"][0]["training"]["estimator"] == "zgr"


def test_the_b6_grid_is_the_papers_and_thins():
    assert A.b6_specs() == list(presets.get_preset("fig4-quant").specs)
    thin = A.b6_specs(2)
    assert {"zgr", "rf(M=2)", "rf(M=4)", "st(t=0.5)", "st(t=8)", "gs(t=0.1)", "gs-st(t=2)"} <= set(thin)
    assert len(thin) < len(A.b6_specs())


@pytest.mark.parametrize("args,words", [
    (["b4", "--models", "vae,qnet"], "b4 measures vae and hvae"),
    (["b6", "--models", "vae"], "b6 the ternary qnet only"),
    (["fig1", "--stages", "1,10"], "are for b4 and b6"),
    (["b4", "--stages", "1,x"], "--stages"),
])
def test_cli_refuses_bad_appendix_options_in_one_line(args, words, tmp_path):
    r = CliRunner().invoke(app, ["reproduce", *args, "--runs-dir", str(tmp_path / "r")], terminal_width=200)
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code != 0 and len(lines) == 1 and words in lines[0], r.output
    assert not (tmp_path / "r").exists()


def test_cli_passes_n_only_when_given(monkeypatch, tmp_path):
    """``--n`` of b4/b6 defaults to the paper's draws (not fig1's 10^4); given, it is passed on; --epochs is refused."""
    seen = {}

    def fake(what, **kw):
        seen.update(kw, what=what)
        raise SystemExit(0)

    monkeypatch.setattr(A, "reproduce_appendix", fake)
    r = CliRunner().invoke(app, ["reproduce", "b6", "--runs-dir", str(tmp_path)])
    assert r.exit_code == 0 and seen["what"] == "b6" and seen["n"] is None
    r = CliRunner().invoke(app, ["reproduce", "b4", "--n", "50", "--stages", "1,3", "--runs-dir", str(tmp_path)])
    assert r.exit_code == 0 and seen["n"] == 50 and seen["epochs"] == (1, 3)
    r = CliRunner().invoke(app, ["reproduce", "b4", "--epochs", "3"], terminal_width=200)
    assert r.exit_code != 0 and "take --stages" in r.output


def test_b4_training_stopped_mid_way_resumes_to_the_same_snapshots(tmp_path, data):
    """A B.4 training (the long part: 200 epochs at the paper's size) killed after an epoch continues from
    its training state: the same snapshots at every stage as a training that never stopped."""
    from biasvar.train import train_state_path

    kw = dict(kind="vae", config={"categories": 2, "vars": 2}, epochs=(1, 3), seed=0, data_dir=None, device="cpu",
              training=A.B4_TRAIN, steps_per_epoch=2)
    whole = A.trained_snapshots(**kw, snapshot_dir=tmp_path / "whole", say=lambda s: None)

    def stop(p):
        if p.epoch == 3 and p.step == 1 and not p.done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        A.trained_snapshots(**kw, snapshot_dir=tmp_path / "part", say=lambda s: None, train_progress=stop)
    assert len(list((tmp_path / "part").glob("*.train-state.pt"))) == 1
    said: list[str] = []
    part = A.trained_snapshots(**kw, snapshot_dir=tmp_path / "part", say=said.append)
    assert {e: s.hash for e, s in part.items()} == {e: s.hash for e, s in whole.items()}
    assert part[3].provenance["resumed_after"] == [2]
    # a damaged state is not resumed: the training starts over (and still gives the same bits)
    state = next((tmp_path / "part").glob("*.train-state.pt"))
    for p in (tmp_path / "part").glob("*.pt"):
        if p != state:
            p.unlink()
    state.write_bytes(b"damaged")
    said.clear()
    again = A.trained_snapshots(**kw, snapshot_dir=tmp_path / "part", say=said.append)
    assert any("not resuming" in m for m in said)
    assert {e: s.hash for e, s in again.items()} == {e: s.hash for e, s in whole.items()}
    assert train_state_path(next(iter(again.values())).path).name  # the state path is derived from the snapshot
