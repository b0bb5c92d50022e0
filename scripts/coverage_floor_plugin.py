"""What estimating the noise's directions costs at b2 = 0: tests calibrated under the truth, directions from blocks.

The floor (:mod:`biasvar.studies.coverage.floor`) knows the covariance ``C``. A method sees ``y`` and the
run's block deviations, from which ``C^`` has ``df`` degrees of freedom. For the b2 = 0 settings of a
spectrum run of ``scripts/coverage_floor.py`` (Gaussian mean with the model's rf(M=4) spectrum ``s``), this
draws ``y ~ N(0, C)`` and an independent ``C^ ~ Wishart(C, df) / df`` and, at each c of the floor's grid,
measures the chance under b2 = 0 that each test holds c, its threshold set **under the truth** (the best any
calibration from the data could do):

- ``T``: ``||y||^2`` at least the least of every member's 7% quantile (covers the whole family; at
  ``known C`` this is ``floor.threshold_floor``);
- ``T_g``: ``sum_j s^_j^g (u^_j'y)^2`` on ``C^``'s eigenvectors, likewise over every member (g > 0 leans
  on the estimated strong directions);
- ``NP^``: the Neyman-Pearson statistic against the most aligned member, ``sum_j log cosh sqrt(d^_j R^_j)``
  with ``C^``'s eigenvalues and vectors, calibrated on that member alone (so its width is optimistic: other
  members are not checked).

Writes ``plugin.md`` and ``plugin.json`` next to the floor's rows.

    python scripts/coverage_floor_plugin.py --floor results/coverage/floor-mixtures --draws 1500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from biasvar.provenance import git_commit
from biasvar.studies.coverage import multi
from biasvar.studies.coverage.floor import ALIGNMENTS, LEVEL, family, reference_spectrum, setting_variances


def aligned_many(sh: np.ndarray, align: float, steps: int = 200) -> np.ndarray:
    """:func:`~biasvar.studies.coverage.gauss_kind.aligned_weights` of each row of ``sh`` [N, r] at once
    (bisection on the power ``q``); where ``align`` is out of a row's reach, all on its largest eigenvalue."""
    lc = np.log(sh / sh.max(axis=1, keepdims=True))
    scale = (sh * sh).sum(axis=1) / sh.sum(axis=1)

    def weights(q: np.ndarray) -> np.ndarray:
        e = q[:, None] * lc
        e = np.exp(e - e.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    lo, hi = np.full(len(sh), -200.0), np.full(len(sh), 200.0)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = (weights(mid) * sh).sum(axis=1) / scale < align
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out = weights(0.5 * (lo + hi))
    top = sh.max(axis=1) / scale
    out[top <= align] = np.eye(sh.shape[1])[np.argmax(sh[top <= align], axis=1)]
    return out


def one(s: np.ndarray, dim: float, row: dict, df: int, draws: int, gammas: tuple[float, ...], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    r = len(s)
    fam = family(s)
    top_lean = max(a for a in ALIGNMENTS if family(s, (a,)))

    def estimates() -> tuple[np.ndarray, np.ndarray]:
        sh, vec = [], []
        for _ in range(draws):
            dev = rng.standard_normal((df, r)) * np.sqrt(s)
            e, u = np.linalg.eigh(dev.T @ dev / df)
            sh.append(np.maximum(e, e.max() * 1e-10))
            vec.append(u)
        return np.array(sh), np.array(vec)

    sh_p, u_p = estimates()
    sh_q, u_q = estimates()
    w_hat_q, w_hat_p = aligned_many(sh_q, top_lean), aligned_many(sh_p, top_lean)
    y_p = rng.standard_normal((draws, r)) * np.sqrt(s)
    z_q = rng.standard_normal((draws, r)) * np.sqrt(s)
    signs = rng.choice([-1.0, 1.0], (draws, r))
    proj_p = np.einsum("nrk,nr->nk", u_p, y_p) ** 2
    grid = np.array(row["grid"]) * dim
    beta = np.array(row["beta"])
    names = ["T"] + [f"T_{g:g}" for g in gammas] + ["NP^"]
    held = {m: [] for m in names}

    def np_stat(c: float, proj: np.ndarray, sh: np.ndarray, w: np.ndarray) -> np.ndarray:
        t = np.sqrt(c * w / sh * proj / sh)
        return np.sum(t + np.log1p(np.exp(-2.0 * t)) - 0.5 * c * w / sh, axis=1)

    for c in grid:
        if c == 0:
            for m in names:
                held[m].append(1.0)
            continue
        quant = {m: [] for m in names[:-1]}
        for w in fam:
            y = z_q + signs * np.sqrt(c * w)
            quant["T"].append(np.quantile((y * y).sum(axis=1), 1.0 - LEVEL))
            proj = np.einsum("nrk,nr->nk", u_q, y) ** 2
            for g in gammas:
                quant[f"T_{g:g}"].append(np.quantile((sh_q**g * proj).sum(axis=1), 1.0 - LEVEL))
        held["T"].append(float(np.mean((y_p * y_p).sum(axis=1) >= min(quant["T"]))))
        for g in gammas:
            held[f"T_{g:g}"].append(float(np.mean((sh_p**g * proj_p).sum(axis=1) >= min(quant[f"T_{g:g}"]))))
        y_top = z_q + signs * np.sqrt(c * fam[-1])
        t_np = np.quantile(np_stat(c, np.einsum("nrk,nr->nk", u_q, y_top) ** 2, sh_q, w_hat_q), 1.0 - LEVEL)
        held["NP^"].append(float(np.mean(np_stat(c, proj_p, sh_p, w_hat_p) >= t_np)))
    area = float(np.trapezoid(beta, grid))
    return {"model": row["model"], "reference": row["reference"], "n": row["n"], "df": df, "rank": r,
            "top_lean": top_lean, "over_floor": {m: float(np.trapezoid(v, grid)) / area for m, v in held.items()},
            "threshold_known_c": row.get("threshold_floor", float("nan")) / row["floor"],
            "cap_over_floor": multi.WIDTH_LIMIT * row["narrowest_covering"] / row["floor"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--floor", default="results/coverage/floor-mixtures")
    ap.add_argument("--models", default="vae-cat,vae-bin,toy-quartic")
    ap.add_argument("--draws", type=int, default=1500)
    ap.add_argument("--gammas", default="0.25,1")
    args = ap.parse_args(argv)
    t0 = time.time()
    floor = Path(args.floor)
    gammas = tuple(float(g) for g in args.gammas.split(","))
    rows = []
    for model in multi.MODELS:
        if model.name not in args.models.split(","):
            continue
        lam = None  # the model's reference spectrum, drawn once
        for k, st in enumerate(multi.SETTINGS):
            path = floor / "raw" / f"{model.name}-{k}.spec.json"
            if st.spec != multi.REFERENCE or not path.exists():
                continue
            row = json.loads(path.read_text())
            if lam is None:
                tables = model.tables()
                lam, dim = reference_spectrum(model, tables), float(tables.dim)
            s = setting_variances(lam, st.n, st.reference)
            df = st.blocks - 1 if st.reference == "exact" else 2 * (st.blocks - 1)
            rows.append(one(s, dim, row, df, args.draws, gammas, seed=k))
            print(f"{model.name} setting {k}: " + ", ".join(f"{m} {v:.3f}" for m, v in rows[-1]["over_floor"].items()),
                  flush=True)
    if not rows:
        print(f"error: no spectrum rows under {floor}/raw", file=sys.stderr)
        return 2
    command = "python scripts/coverage_floor_plugin.py " + " ".join(argv if argv is not None else sys.argv[1:])
    names = list(rows[0]["over_floor"])
    lines = ["# What estimating the noise's directions costs at b2 = 0", "",
             f"Produced by `{command}` (commit {git_commit()}, one thread, {(time.time() - t0) / 60:.1f} min; "
             f"{args.draws} draws per value and test, seeded by the setting). Mean width clipped at 0 over the "
             "floor of each test, its threshold set under the truth (the script's docstring): `T` and `T_g` cover "
             "every member of the family, `NP^` only the most aligned one (optimistic). `known C`: "
             "`floor.threshold_floor`. `x 1.15`: 1.15x the narrowest covering width over the floor.", "",
             "| model | reference | rank | df | " + " | ".join(names) + " | T, known C | x 1.15 |",
             "|---|---|---|---|" + "---|" * (len(names) + 2)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['reference']} | {r['rank']} | {r['df']} | "
                     + " | ".join(f"{r['over_floor'][m]:.3f}" for m in names)
                     + f" | {r['threshold_known_c']:.3f} | {r['cap_over_floor']:.3f} |")
    (floor / "plugin.md").write_text("\n".join(lines) + "\n")
    (floor / "plugin.json").write_text(json.dumps({"command": command, "commit": git_commit(),
                                                   "wall_s": time.time() - t0, "rows": rows}, indent=1) + "\n")
    print(f"wrote {floor}/plugin.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
