"""``biasvar sample``, ``sweep``, ``ls``, ``bench``: draw gradient samples into run files and list them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from biasvar import bench as benchmod
from biasvar import engine, presets, store
from biasvar.errors import StoreError
from biasvar.spec import spec_from_flags

from . import options as o
from .common import console, progress_bar
from .snapshot_cmd import resolve_snapshot

Opt = typer.Option


def _progress():
    return progress_bar("{task.fields[rate]:.1f} draws/s", "non-finite {task.fields[bad]}", transient=False)


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GB"


def sample(
    estimator: o.Estimator,
    snapshot: o.SnapshotOrProblem = None,
    problem: o.Problem = None,
    option: o.ProblemOption = None,
    weights: o.Weights = None,
    t: o.TFlag = None,
    M: o.MFlag = None,
    alpha: o.AlphaFlag = None,
    n: o.Draws = 10_000,
    seed: o.Seed = 0,
    params: o.Params = None,
    keep: o.Keep = 256,
    device: o.Device = "auto",
    dtype: o.Dtype = None,
    runs_dir: o.RunsDir = Path("runs"),
    restart: o.Restart = False,
    block_size: o.BlockSize = None,
    max_memory: o.MaxMemory = None,
    chunk: o.Chunk = None,
) -> None:
    """Draw N gradient samples of one estimator at a snapshot into a run file (resumes a partial run)."""
    spec = spec_from_flags(estimator, t=t, M=M, alpha=alpha)
    snap = resolve_snapshot(snapshot, problem, option, weights)
    with _progress() as bar:
        task = bar.add_task(str(spec), total=n, rate=0.0, bad=0)

        def report(done: int, total: int, nonfinite: int, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=rate, bad=nonfinite)

        path = engine.sample_run(snap, spec, n=n, seed=seed, runs_dir=runs_dir, params=params, keep=keep,
                                 device=device, dtype=dtype, restart=restart, block_size=block_size,
                                 max_memory=max_memory, chunk=chunk, progress=report)
        data = store.read_run(path, load_sums=False)
        bar.update(task, completed=data.attrs["n_done"], total=data.attrs["n_target"],
                   rate=data.attrs["draws_per_s"], bad=data.attrs["n_nonfinite"])
    a = data.attrs
    console.print(f"{a['status']}: {a['n_done']} draws ({a['n_nonfinite']} non-finite, excluded) of {spec} "
                  f"in {a['blocks']} blocks, {a['draws_per_s']:.1f} draws/s -> {path}", highlight=False)


def sweep(
    snapshot: o.SnapshotOrProblem = None,
    problem: o.Problem = None,
    option: o.ProblemOption = None,
    weights: o.Weights = None,
    preset: Annotated[str | None, Opt("--preset", help=f"One of: {', '.join(presets.PRESETS)}.")] = None,
    estimators: o.EstimatorList = None,
    reference: Annotated[str | None, Opt("--reference", help="Reference spec (default: the preset's, "
                                         "rf(M=4)).")] = None,
    n: Annotated[int | None, Opt("--n", help="Draws per tested run (default: the preset's, or 10000).")] = None,
    reference_n: Annotated[int | None, Opt("--reference-n", help="Draws of the reference run "
                                           "(default: the preset's, or --n).")] = None,
    seed: Annotated[int, Opt("--seed", help="Seed of the noise of every run (the reference spec, tested "
                             "again, gets seed+1).")] = 0,
    params: o.Params = None,
    keep: o.Keep = 256,
    device: o.Device = "auto",
    dtype: o.Dtype = None,
    runs_dir: o.RunsDir = Path("runs"),
    restart: o.Restart = False,
    block_size: o.BlockSize = None,
    max_memory: o.MaxMemory = None,
    chunk: o.Chunk = None,
) -> None:
    """Run a reference and a grid of estimators (a preset of the paper's figures, or a list)."""
    sw = presets.resolve_sweep(preset, estimators, reference=reference, n=n, reference_n=reference_n)
    snap = resolve_snapshot(snapshot, problem, option, weights)
    plan = engine.plan_sweep(snap.id, sw.specs, reference=sw.reference, n=sw.n, reference_n=sw.reference_n,
                             seed=seed, runs_dir=runs_dir)
    console.print(f"sweep {sw.name}: reference {sw.reference} + {len(plan) - 1} estimators, {sw.n} draws each "
                  f"({sw.reference_n} for the reference) -> {runs_dir / snap.id}", highlight=False)
    with _progress() as bar:
        task = bar.add_task("sweep", total=sum(r.n for r in plan), rate=0.0, bad=0)

        def report(done: int, total: int, nonfinite: int, rate: float, label: str) -> None:
            bar.update(task, completed=done, total=total, rate=rate, bad=nonfinite, description=label)

        engine.sweep_runs(snap, sw.specs, reference=sw.reference, n=sw.n, reference_n=sw.reference_n, seed=seed,
                          runs_dir=runs_dir, name=sw.name, progress=report, params=params, keep=keep,
                          device=device, dtype=dtype, restart=restart, block_size=block_size,
                          max_memory=max_memory, chunk=chunk)
        bar.update(task, description="sweep done")
    roles = {r.path.name: r.role for r in plan}
    _print_runs([store.read_run(r.path, load_sums=False) for r in plan], roles=roles)


def _print_runs(runs: list[store.RunData], roles: dict[str, str] | None = None) -> None:
    """One rich table per snapshot id."""
    by_snapshot: dict[str, list[store.RunData]] = {}
    for r in runs:
        by_snapshot.setdefault(str(r.attrs.get("snapshot_id") or Path(r.path).parent.name), []).append(r)
    for snap_id, group in by_snapshot.items():
        folder = Path(group[0].path).parent
        table = Table(title=f"snapshot {snap_id}: {len(group)} runs in {folder}", title_justify="left")
        table.add_column("spec", style="bold", no_wrap=True)
        table.add_column("seed", justify="right")
        table.add_column("n done/target", justify="right", no_wrap=True)
        table.add_column("non-finite", justify="right")
        table.add_column("status", no_wrap=True)
        table.add_column("draws/s", justify="right", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        if roles:
            table.add_column("role", no_wrap=True)
        for r in group:
            a = r.attrs
            status = "[green]complete[/]" if a["status"] == "complete" else "[yellow]running[/]"
            row = [r.spec, str(r.seed), f"{a['n_done']}/{a['n_target']}", str(a["n_nonfinite"]), status,
                   f"{a['draws_per_s']:.1f}", _size(store.file_size(r.path))]
            if roles:
                row.append(roles.get(Path(r.path).name, ""))
            table.add_row(*row)
        console.print(table)


def ls(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
) -> None:
    """List run files: spec, seed, draws done / target, status, draws/s, size (works during a sweep)."""
    prefix = (snapshot_id or "").strip().lower()[:12]  # an id is a hash's first 12 characters
    files = [p for p in store.list_run_files(runs_dir) if p.parent.name.lower().startswith(prefix)]
    if not files:
        console.print(f"no run files under {runs_dir}")
        return
    runs, bad = [], []
    for path in files:
        try:
            runs.append(store.read_run(path, load_sums=False))
        except StoreError as e:
            bad.append(f"{path}: {e}")
    _print_runs(runs)
    for line in bad:
        console.print(f"[red]unreadable[/] {line}", highlight=False)


def bench(
    problem: Annotated[str, Opt("--problem", help=f"One of: {', '.join(benchmod.PROBLEMS)}.")] = "vae-fig1",
    estimators: Annotated[str, Opt("--estimators", help="Comma-separated specs.")]
    = ",".join(benchmod.DEFAULT_ESTIMATORS),
    device: o.Device = "auto",
    dtype: o.Dtype = None,
    n: Annotated[int, Opt("--n", help="Engine draws timed per round.")] = 64,
    n_loop: Annotated[int, Opt("--n-loop", help="Loop draws timed per round.")] = 16,
    repeats: Annotated[int, Opt("--repeats", help="Interleaved rounds (best of).")] = 3,
    chunk: o.Chunk = None,
    max_memory: o.MaxMemory = None,
    out: Annotated[Path | None, Opt("--out", help="JSON file (default "
                                    "results/bench/<problem>-<device>.json).")]
    = None,
) -> None:
    """Draws/s of the vectorized engine vs a per-draw autograd.grad loop on the same problem and noise."""
    specs = presets.split_specs(estimators)
    prob = benchmod.bench_problem(problem)
    command = "biasvar " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "biasvar bench"
    with console.status("bench") as status:
        result = benchmod.bench(prob, specs, name=problem, n=n, n_loop=n_loop, device=device, dtype=dtype,
                                chunk=chunk, max_memory=max_memory, repeats=repeats, command=command,
                                progress=lambda msg: status.update(f"bench {problem}: {msg}"))
    env = result.environment
    gemm = f", GEMM {result.gemm_flops_per_s / 1e9:,.0f} GFLOP/s" if result.gemm_flops_per_s else ""
    table = Table(title=f"bench {problem} (dim {result.dim:,}, {result.dtype}), {env['device_name']} "
                        f"({result.device}){gemm}", title_justify="left",
                  box=None, padding=(0, 1), pad_edge=False, collapse_padding=True)
    table.add_column("estimator", no_wrap=True, style="bold")
    for col in ("draws/s", "loop/s", "ratio", "path", "GFLOP/s", "GEMM", "noise", "mem"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in result.rows:
        gflops = f"{r.engine_flops_per_s / 1e9:.1f}" if r.engine_flops_per_s else "-"
        frac = f"{r.gemm_fraction:.0%}" if r.gemm_fraction is not None else "-"
        share = f"{r.noise_share:.0%}" if r.noise_share is not None else "-"
        peak = f"{r.peak_memory_bytes / 2**20:,.0f}M" if r.peak_memory_bytes else "-"
        table.add_row(r.spec, f"{r.engine_draws_per_s:,.1f}", f"{r.loop_draws_per_s:,.1f}", f"{r.speedup:.2f}x",
                      f"{r.engine_method}/{r.engine_chunk}", gflops, frac, share, peak)
    console.print(table)
    if result.gemm_flops_per_cpu_s:
        cpu = Table(title=f"per CPU second of this process (GEMM {result.gemm_flops_per_cpu_s / 1e9:,.0f} GFLOP/s): "
                          "the work without the waits for a busy core", title_justify="left", box=None,
                    padding=(0, 1), pad_edge=False, collapse_padding=True)
        cpu.add_column("estimator", no_wrap=True, style="bold")
        for col in ("draws/s", "loop/s", "ratio", "GEMM", "noise"):
            cpu.add_column(col, justify="right", no_wrap=True)
        for r in result.rows:
            cpu.add_row(r.spec, f"{r.engine_draws_per_cpu_s:,.1f}", f"{r.loop_draws_per_cpu_s:,.1f}",
                        f"{r.engine_draws_per_cpu_s / r.loop_draws_per_cpu_s:.2f}x",
                        f"{r.gemm_fraction_cpu:.0%}" if r.gemm_fraction_cpu is not None else "-",
                        f"{r.noise_share_cpu:.0%}")
        console.print(cpu)
    worst = max(r.max_abs_diff / max(r.max_abs_grad, 1e-300) for r in result.rows)
    console.print("ratio: engine/loop; path: the engine's path/largest chunk; GEMM: matmul FLOP/s over the "
                  "fp32 GEMM rate; noise: noise generation's share of a draw's time; the two paths' "
                  f"gradients agree to {worst:.0e} (relative)", highlight=False)
    path = benchmod.write_bench(result, out or benchmod.default_bench_path(result))
    console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("sample")(sample)
    app.command("sweep")(sweep)
    app.command("ls")(ls)
    app.command("bench")(bench)
