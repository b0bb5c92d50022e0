"""``biasvar reproduce`` end to end on toy-sized settings: train, sweep, report, figures, provenance.

The protocol is the real one (train the VAE with rf(M=4) on MNIST-B, sweep the Fig. 1 grid against the
rf(M=4) reference, analyse, draw Fig. 1, Fig. 4, Fig. B.5), shrunk to seconds: a 2 x 4 VAE, two steps of
training on a synthetic MNIST-like set, 2 temperatures plus the marked ones, tens of draws per run.
"""

from __future__ import annotations

import json

import pytest
from conftest import synthetic

import biasvar.data
from biasvar import formats, presets, store
from biasvar.report import analyze_runs
from biasvar.studies.reproduce import fig1_snapshot, reproduce

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n=30, epochs=1, points=2, slow_n=12, quant_n=20, n_resamples=30, seed=0, device="cpu",
            vae={"categories": 4, "vars": 2, "hidden": [8]}, steps_per_epoch=2)


@pytest.fixture
def mnist_b(monkeypatch):
    served = synthetic(60)
    monkeypatch.setattr(biasvar.data, "load", lambda name, split="train", **kw: served)
    return served


def test_tiny_reproduce_end_to_end(tmp_path, mnist_b):
    dirs = {k: tmp_path / k for k in ("runs_dir", "snapshot_dir", "results_dir", "figures_dir")}
    said: list[str] = []
    res = reproduce("fig1", **TINY, **dirs, tag="tiny", command="test", say=said.append)
    specs = presets.protocol_specs("fig1", 2)
    # the report: the reference plus one row per tested spec, each with the draws asked for
    rows = {r.spec: r for r in res.report.rows}
    assert res.report.reference == "rf(M=4)" and rows["rf(M=4)"].role == "reference"
    assert set(rows) == set(specs) | {"rf(M=4)"}
    for spec in specs:
        assert rows[spec].n == (12 if presets.is_slow(spec) else 30) and rows[spec].b2 is not None
        assert rows[spec].b2.low is not None and rows[spec].variance.value > 0
    assert rows["rf(M=4)"].n == 30 and any(r.pareto for r in rows.values())
    # the files: report (Markdown, JSON that reads back), figures, provenance
    out = tmp_path / "results_dir" / "tiny"
    assert formats.report_from_json((out / "report.json").read_text()) == res.report
    assert "rf(M=4) (ref)" in (out / "report.md").read_text()
    figs = tmp_path / "figures_dir" / "tiny"
    for name in ("fig1", "fig4-pareto", "figB5-quant-unit"):
        assert (figs / f"{name}.png").read_bytes()[:4] == b"\x89PNG" and (figs / f"{name}.pdf").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["reduced"] is True and prov["n"] == 30 and prov["slow_n"] == 12 and prov["points"] == 2
    assert prov["vae"] == TINY["vae"] and prov["steps_per_epoch"] == 2 and prov["command"] == "test"
    assert prov["snapshot_id"] == res.snapshot.id and len(prov["runs"]) == len(rows)
    # each step's wall seconds, in order, adding up to (at most) the whole
    steps = prov["steps_s"]
    assert list(steps) == ["snapshot", "sweep", "analysis_and_figures", "quant_study"]
    sweep_t = prov["sweep_timing_s"]
    assert sweep_t["draw_s"] > 0 and sweep_t["write_s"] > 0 and sweep_t["total_s"] <= steps["sweep"] + 0.5
    assert all(v >= 0 for v in steps.values()) and sum(steps.values()) <= prov["wall_s"] + 0.5
    assert any(m.startswith("[") and "s] analysing" in m for m in said)
    assert res.snapshot.provenance["estimator"] == "rf(M=4)" and res.snapshot.provenance["epochs"] == 1
    # the run files: one snapshot folder, a manifest naming the reference
    files = store.list_run_files(tmp_path / "runs_dir")
    assert {f.parent.name for f in files} == {res.snapshot.id} and len(files) == len(rows)
    manifest = json.loads((tmp_path / "runs_dir" / res.snapshot.id / "sweep-fig1.json").read_text())
    assert manifest["reference"]["spec"] == "rf(M=4)" and manifest["reference"]["n"] == 30
    # the report is what `biasvar report` computes from the run files; the snapshot is reused, not retrained
    assert analyze_runs(tmp_path / "runs_dir", snapshot=res.snapshot.id, n_resamples=30, seed=0) == res.report
    snap = fig1_snapshot(epochs=1, seed=0, data_dir=None, device="cpu", snapshot_dir=tmp_path / "snapshot_dir",
                         say=said.append, vae=TINY["vae"], steps_per_epoch=2)
    assert snap.hash == res.snapshot.hash and said[-1].startswith("reusing snapshot")


def test_tiny_reproduce_store_only_equals_the_run_files(tmp_path, mnist_b):
    """``reproduce --store-only`` (what a device call runs): no run file, the same report."""
    import dataclasses

    import numpy as np

    snaps = tmp_path / "snaps"
    out = {}
    for mode in ("files", "only"):
        res = reproduce("fig1", **TINY, runs_dir=tmp_path / mode, snapshot_dir=snaps, results_dir=tmp_path / "res",
                        figures_dir=tmp_path / "fig", tag=mode, command="test", store_only=mode == "only")
        out[mode] = res
    assert not list((tmp_path / "only").rglob("*.h5")) and (tmp_path / "only" / out["only"].snapshot.id /
                                                             "gram-store.hdf5").is_file()
    assert json.loads((tmp_path / "res" / "only" / "provenance.json").read_text())["store_only"] is True

    def numbers(report):
        vals = []
        for r in sorted(report.rows, key=lambda r: (r.spec, r.seed)):
            d = dataclasses.asdict(r)
            for k in ("b2", "variance", "mse"):
                if d[k] is not None:
                    vals += [d[k]["value"], d[k]["low"], d[k]["high"]]
            vals += [d["n"], d["cosine"] or 0.0]
        return vals

    a, b = numbers(out["files"].report), numbers(out["only"].report)
    assert len(a) == len(b) > 20
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-300)
