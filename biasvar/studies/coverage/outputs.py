"""The coverage study's files: ``coverage.json``, ``README.md`` and ``pairs.npz`` (:func:`write_outputs`),
and the raw results read back from them (:func:`load_raw`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from biasvar.studies.coverage.config import Setting, StudyConfig
from biasvar.studies.coverage.summary import recommend, summarize
from biasvar.studies.coverage.truth import Truth


def _fmt(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x:.3g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def to_json(raw: dict[str, Any], rows: Sequence[dict[str, Any]], verdict: dict[str, Any],
            provenance: dict[str, Any]) -> dict[str, Any]:
    cfg = raw["config"]
    return {
        "schema": 1,
        "what": "coverage of 95% b2 intervals on real VAE gradients against the true b2 (enumeration)",
        "config": {**asdict(cfg), "hidden": list(cfg.hidden), "blocks": list(cfg.blocks)},
        "snapshot_hash": raw["snapshot_hash"],
        "pairs_done": raw["pairs_done"],
        "truths": {k: asdict(v) for k, v in raw["truths"].items()},
        "rows": list(rows),
        "verdict": verdict,
        "seconds": raw["seconds"], "seconds_truth": raw["seconds_truth"],
        "provenance": provenance,
    }


def to_markdown(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    lines = [
        "# Coverage of the b2 intervals on real gradients with known truth",
        "",
        f"Produced by `{doc['provenance'].get('command', 'scripts/coverage_study.py')}` "
        f"(commit {doc['provenance'].get('git_commit', '?')}, {doc['seconds'] / 60:.1f} min on one thread; "
        "numbers in `coverage.json`, per-pair values in `pairs.npz`)."
        + (f" {doc['provenance']['note']}" if doc["provenance"].get("note") else ""),
        "",
        f"Model: categorical VAE, {cfg['vars']} variables x {cfg['categories']} categories, hidden "
        f"{'-'.join(map(str, cfg['hidden']))}, trained {cfg['train_steps']} Adam steps (lr {cfg['lr']}) of rf(M=4) "
        f"on MNIST-B; gradient batch {cfg['eval_batch']} images; parameters `{cfg['params']}`; "
        f"snapshot {doc['snapshot_hash'][:12]}. "
        f"Each run: {cfg['n']} engine draws; {doc['pairs_done']} independent pairs per setting "
        f"{'(PARTIAL: the study is still running) ' if doc['pairs_done'] < cfg['pairs'] else ''}"
        f"(tested seed {cfg.get('first_seed', 0)} + i, reference seed "
        f"{cfg.get('first_seed', 0) + cfg['pairs']} + i). True b2 = ||E[J] - g*||^2 / d by enumeration "
        "(x-only estimators and rf exact; gs-st / gr-mc by conditional Monte Carlo, error below).",
        "",
        "| estimator | true b2 | +- (MC) | how |",
        "|---|---|---|---|",
    ]
    for t in doc["truths"].values():
        lines.append(f"| `{t['spec']}` | {_fmt(t['b2'])} | {_fmt(t['b2_se'])} | {t['how']} |")
    lines += [
        "",
        "Coverage of the 95% interval of b2 (all parameters): covered / pairs, Wilson 95% interval, mean width. "
        "`b2/(V/n)`: the true b2 over `V_T/n + V_R/n` (the noise floor of Eq. 16).",
        "",
        "| tested | reference | blocks | b2/(V/n) | method | coverage | Wilson 95% | mean width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lines.append(f"| `{r['spec']}` | {r['reference']} | {r['blocks']} | {_fmt(r['ratio'])} | {r['method']} | "
                     f"{r['covered']}/{r['pairs']} = {r['coverage']:.3f} | "
                     f"[{r['wilson'][0]:.3f}, {r['wilson'][1]:.3f}] | {_fmt(r['mean_width'])} |")
    v = doc["verdict"]
    lines += ["", f"Methods against the band [{v['band'][0]}, {v['band'][1]}] at every setting:", ""]
    for m, d in v["methods"].items():
        lines.append(f"- `{m}`: coverage {d['coverage_range'][0]:.3f}-{d['coverage_range'][1]:.3f}, "
                     f"{'inside' if d['all_in_band'] else 'NOT inside'} the band; mean width "
                     f"{_fmt(d['width_vs_pivot'])} x the pivot's (geometric mean over settings)")
    lines += ["", f"In the band at every setting: **{v['recommended'] or 'no method'}**. Highest worst-case "
              f"coverage (methods tied within the Wilson interval of their worst setting, then the narrowest): "
              f"**{v['safest']}**.", ""]
    return "\n".join(lines)


def write_outputs(raw: dict[str, Any], out_dir: str | Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """``coverage.json``, ``README.md`` and ``pairs.npz`` in ``out_dir``; returns the JSON document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(raw)
    doc = to_json(raw, rows, recommend(rows), provenance)
    (out / "coverage.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "README.md").write_text(to_markdown(doc))
    np.savez_compressed(out / "pairs.npz", estimate=raw["estimate"], v_t=raw["v_t"], v_r=raw["v_r"],
                        low=raw["low"], high=raw["high"],
                        settings=np.array([f"{s.spec}|{s.reference}|{s.blocks}|{','.join(s.methods)}"
                                           for s in raw["settings"]]))
    return doc


def load_raw(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw results and provenance of a written study (``coverage.json`` + ``pairs.npz``), so that
    its summary can be recomputed without rerunning it."""
    out = Path(out_dir)
    doc = json.loads((out / "coverage.json").read_text())
    arr = np.load(out / "pairs.npz")
    c = dict(doc["config"])
    for k in ("hidden", "blocks", "estimators", "methods", "against_reference"):
        if k in c:
            c[k] = tuple(c[k])
    cfg = StudyConfig(**c)
    settings = []
    for s in arr["settings"]:
        spec, ref, nb, methods = str(s).split("|")
        settings.append(Setting(spec, ref, int(nb), tuple(methods.split(","))))
    raw = {"config": cfg, "settings": settings, "truths": {k: Truth(**v) for k, v in doc["truths"].items()},
           "snapshot_hash": doc["snapshot_hash"], "pairs_done": int(arr["estimate"].shape[1]),
           "seconds": doc["seconds"], "seconds_truth": doc["seconds_truth"],
           **{k: arr[k] for k in ("estimate", "v_t", "v_r", "low", "high")}}
    return raw, doc["provenance"]
