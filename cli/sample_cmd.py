"""``biasvar sample``, ``sweep``, ``ls``, ``bench``: draw gradient samples into run files and list them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from biasvar import names, presets
from biasvar.selection import select_snapshot, shard_range, snapshot_prefix
from biasvar.spec import spec_from_flags

from . import options as o
from . import shards_cmd
from .common import console, err_console, first_fitting, lazy, progress_bar
from .snapshot_cmd import resolve_snapshot

store = lazy("biasvar.store")  # h5py, numpy: loaded by the commands that read run files

Opt = typer.Option
PresetName = o.choices("PresetName", tuple(presets.PRESETS))
BenchName = o.choices("BenchName", names.BENCH_PROBLEMS)


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
    shard: shards_cmd.Shard = None,
) -> None:
    """Draw N gradient samples of one estimator at a snapshot into a run file (resumes a partial run)."""
    from biasvar import engine

    spec = spec_from_flags(estimator, t=t, M=M, alpha=alpha)
    dtype = o.value(dtype)
    engine.check_run_args(n=n, seed=seed, keep=keep, block_size=block_size, chunk=chunk)
    snap = resolve_snapshot(snapshot, problem, option, weights)
    if shard is not None:
        options = engine.RunOptions(params=params, keep=keep, device=device, dtype=dtype, block_size=block_size,
                                    max_memory=max_memory, chunk=chunk)
        _sample_shard(snap, spec, shard, n=n, seed=seed, runs_dir=runs_dir, options=options, restart=restart)
        return
    path = store.run_path(runs_dir, snap.id, str(spec), seed)
    with _progress() as bar:
        task = bar.add_task(str(spec), total=n, rate=0.0, bad=0)

        def report(done: int, total: int, nonfinite: int, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=rate, bad=nonfinite)

        try:
            path = engine.sample_run(snap, spec, n=n, seed=seed, runs_dir=runs_dir, params=params, keep=keep,
                                     device=device, dtype=dtype, restart=restart, block_size=block_size,
                                     max_memory=max_memory, chunk=chunk, progress=report)
        except KeyboardInterrupt:
            bar.stop()
            _say_saved(path)
            raise
        data = store.read_run(path, load_sums=False)
        bar.update(task, completed=data.attrs["n_done"], total=data.attrs["n_target"],
                   rate=data.attrs["draws_per_s"], bad=data.attrs["n_nonfinite"])
    a = data.attrs
    console.print(f"{a['status']}: {a['n_done']} draws ({a['n_nonfinite']} non-finite, excluded) of {spec} "
                  f"in {a['blocks']} blocks, {a['draws_per_s']:.1f} draws/s -> {path}", highlight=False)


def _say_saved(path: Path) -> None:
    """After Ctrl-C / SIGTERM: what the run file keeps (one line on stderr)."""
    try:
        a = store.read_run(path, load_sums=False).attrs
    except store.StoreError:
        err_console.print(f"interrupted: nothing saved yet ({path} not written)", highlight=False)
        return
    err_console.print(f"interrupted: {a['n_done']} of {a['n_target']} draws saved ({a['n_pending']} in the "
                      f"block in progress) in {path}; the same command resumes it", highlight=False)


def _sample_shard(snap, spec, shard: str, *, n: int, seed: int, runs_dir: Path, options, restart: bool) -> None:
    """``sample --shard i/N``: one shard into its shard file, then merge what is ready."""
    from biasvar import engine
    from biasvar.engine import shards as sh

    plan = engine.plan_run(snap, spec, n=n, seed=seed, runs_dir=runs_dir, options=options, sharded=True)
    i, count, first, end = shard_range(shard, n, plan.block_size)
    with _progress() as bar:
        task = bar.add_task(f"{spec} shard {i}/{count}", total=end - first, rate=0.0, bad=0)

        def report(done: int, total: int, nonfinite: int, rate: float) -> None:
            bar.update(task, completed=done, total=total, rate=rate, bad=nonfinite)

        path = engine.sample(sh.plan_shard(plan, first, end, restart=restart), progress=report)
        bar.update(task, completed=end - first)
    if path == plan.run_path:
        console.print(f"draws [{first}, {end}) of {spec} are already in the run file {path}", highlight=False)
        return
    console.print(f"shard {i}/{count} complete: draws [{first}, {end}) of {spec} -> {path}", highlight=False)
    merged = sh.merge_when_free(plan.run_path)
    if merged is not None:
        console.print(shards_cmd.shard_line(merged), highlight=False)


def sweep(
    snapshot: o.SnapshotOrProblem = None,
    problem: o.Problem = None,
    option: o.ProblemOption = None,
    weights: o.Weights = None,
    preset: Annotated[PresetName | None, Opt("--preset", metavar="NAME", help="A named sweep, one of: "
                                             f"{', '.join(presets.PRESETS)} (README).")] = None,
    estimators: o.EstimatorList = None,
    reference: Annotated[str | None, Opt("--reference", help="Reference spec (default: the preset's, "
                                         f"{presets.REFERENCE}).")] = None,
    n: Annotated[int | None, Opt("--n", help="Draws per tested run (default: the preset's, or "
                                 f"{presets.DEFAULT_N}).")] = None,
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
    executor: shards_cmd.Executor = shards_cmd.ExecutorName("local"),
    address: shards_cmd.Address = None,
    shards: shards_cmd.Shards = None,
    gpus_per_task: shards_cmd.GpusPerTask = 0,
    cpus_per_task: shards_cmd.CpusPerTask = 1,
    max_retries: shards_cmd.MaxRetries = 3,
    connect_timeout: shards_cmd.ConnectTimeout = 30.0,
    no_gram: Annotated[bool, Opt("--no-gram", help="Do not update the snapshot's statistics store at the "
                                 "end (`biasvar gram` does it later).")] = False,
    store_only: Annotated[bool, Opt("--store-only", help="Write no run files: keep each run's block sums in "
                                    "memory and add it to the statistics store when it completes (for device "
                                    "calls and disposable runs; resumable per completed run; README, \"Run "
                                    "files and the store\").")] = False,
) -> None:
    """Run a reference and a grid of estimators (a preset of the paper's figures, or a list), here or on a
    Ray cluster (--executor ray)."""
    shards_cmd.check_executor(shards)
    preset, dtype, executor = o.value(preset), o.value(dtype), executor.value
    from biasvar import engine
    from biasvar.engine import executors

    if executor == "ray":
        executors.import_ray()  # the one-line install hint before any work

    sw = presets.resolve_sweep(preset, estimators, reference=reference, n=n, reference_n=reference_n)
    engine.check_run_args(n=sw.n, seed=seed, keep=keep, block_size=block_size, chunk=chunk)
    snap = resolve_snapshot(snapshot, problem, option, weights)
    run_with = executors.make_executor(executor, shards=shards, address=address, cpus_per_task=cpus_per_task,
                                       gpus_per_task=gpus_per_task, max_retries=max_retries,
                                       connect_timeout=connect_timeout)
    run_with.check()  # a Ray address where nothing listens: one line before any planning or writing
    if hasattr(run_with, "connect"):  # and one where no cluster joins (a proxy): one line before the header
        run_with.connect()
    if store_only:
        executors.check_store_only(run_with, not no_gram)
    plan = engine.plan_sweep(snap, sw.specs, reference=sw.reference, n=sw.n, reference_n=sw.reference_n,
                             seed=seed, runs_dir=runs_dir, name=sw.name)
    options = engine.RunOptions(params=params, keep=keep, device=device, dtype=dtype, block_size=block_size,
                                max_memory=max_memory, chunk=chunk)
    if not store_only:  # the disk's room for the run files, before any draw
        engine.check_sweep_room(snap, plan.runs, options, restart=restart)
    console.print(f"sweep {sw.name}: reference {sw.reference} + {len(plan) - 1} estimators, {sw.n} draws each "
                  f"({sw.reference_n} for the reference) -> {runs_dir / snap.id}", highlight=False)
    with shards_cmd.sweep_progress(plan) as report:
        result = executors.run_sweep(plan, options, executor=run_with, progress=report, restart=restart,
                                     gram=not no_gram, store_only=store_only)
    roles = {r.path.name: r.role for r in plan}
    if store_only:
        _print_stored(result.store, plan)
        console.print(result.overheads(), highlight=False)
        return
    _print_runs([store.read_run(r.path, load_sums=False) for r in plan], roles=roles)
    if result.store is not None:
        console.print(f"statistics store {result.store.path}: {result.store.runs} runs "
                      f"({len(result.store.added) + len(result.store.recomputed)} new or changed)", highlight=False)
    if executor == "local":
        console.print(result.overheads(), highlight=False)


def _print_stored(res, plan) -> None:
    """After a store-only sweep: its runs as the store holds them (no run files)."""
    from biasvar import gramstore

    state = gramstore.read_store(res.path)
    keys = {(r.spec, r.seed): r.role for r in plan}
    table = Table(title=f"statistics store {res.path}: {res.runs} runs (no run files)", title_justify="left")
    for col in ("spec", "seed", "n", "non-finite", "draws/s", "role"):
        table.add_column(col, style="bold" if col == "spec" else None, no_wrap=True,
                         justify="left" if col in ("spec", "role") else "right")
    for r in state.gram.runs:
        if r.key in keys:
            a = r.attrs
            table.add_row(r.key[0], str(r.key[1]), str(a.get("n_done")), str(a.get("n_nonfinite")),
                          f"{float(a.get('draws_per_s', 0.0)):.1f}", keys[r.key])
    console.print(table)
    console.print(f"statistics store {res.path}: {res.runs} runs ({len(res.added)} new), no run files "
                  "written", highlight=False)
    for note in res.notes:
        err_console.print(f"note: {note}", highlight=False)


_STATUS = {"complete": "green", "running": "yellow", "interrupted": "magenta"}
RUN_COLUMNS = ("spec", "seed", "n done/target", "non-finite", "status", "draws/s", "engine", "size", "role")


def _runs_table(snap_id: str, group: list[store.RunData], roles: dict[str, str] | None, cols: tuple[str, ...]):
    folder = Path(group[0].path).parent
    hidden = [c for c in RUN_COLUMNS if c not in cols and (c != "role" or roles)]
    table = Table(title=f"snapshot {snap_id}: {len(group)} runs in {folder}", title_justify="left",
                  caption=f"hidden at this width: {', '.join(hidden)}" if hidden else None, caption_justify="left")
    heads = {"n done/target": "done/target", "non-finite": "non-\nfinite"}
    for col in cols:
        if col == "role" and not roles:
            continue
        table.add_column(heads.get(col, col), style="bold" if col == "spec" else None, no_wrap=True,
                         justify="left" if col in ("spec", "status", "role") else "right")
    for r in group:
        a = r.attrs
        cells = {"spec": r.spec, "seed": str(r.seed), "n done/target": f"{a['n_done']}/{a['n_target']}",
                 "non-finite": str(a["n_nonfinite"]),
                 "status": f"[{_STATUS.get(a['status'], 'red')}]{a['status']}[/]",
                 "draws/s": f"{a['draws_per_s']:.1f}", "engine": _engine(a), "size": _size(store.file_size(r.path)),
                 "role": (roles or {}).get(Path(r.path).name, "")}
        table.add_row(*(cells[c] for c in cols if c != "role" or roles))
    return table


def _engine(attrs: dict) -> str:
    """The engine path a run file records: ``vmap/8`` (path/chunk); ``auto`` where the file is older
    than the record (``biasvar report`` gives the same in full)."""
    method = str(attrs.get("method", "-"))
    chunk = attrs.get("chunk")
    return method if method == "auto" or chunk in (None, "none") else f"{method}/{chunk}"


def _print_runs(runs: list[store.RunData], roles: dict[str, str] | None = None) -> None:
    """One rich table per snapshot id, as wide as the console allows without cutting a number."""
    by_snapshot: dict[str, list[store.RunData]] = {}
    for r in runs:
        by_snapshot.setdefault(str(r.attrs.get("snapshot_id") or Path(r.path).parent.name), []).append(r)
    layouts = (RUN_COLUMNS, ("spec", "seed", "n done/target", "non-finite", "status", "role"),
               ("spec", "seed", "n done/target", "status"))
    for snap_id, group in by_snapshot.items():
        builds = [lambda c=c, i=snap_id, g=group: _runs_table(i, g, roles, c) for c in layouts]
        console.print(first_fitting(builds))


def ls(
    runs_dir: o.RunsDir = Path("runs"),
    snapshot_id: o.SnapshotId = None,
    verify: Annotated[bool, Opt("--verify", help="Read every saved row of every file too, so a file whose "
                                "data fail their checksums is listed as damaged (reads each file in full).")]
    = False,
) -> None:
    """List run files: spec, seed, draws done / target, status (running, interrupted, complete),
    draws/s, size; then the files that are damaged or misplaced, with the reason (works during a sweep).
    Without --verify only the small datasets it shows are read (and checked): the block data are not."""
    from biasvar.errors import StoreError

    if runs_dir.exists() and not runs_dir.is_dir():
        raise StoreError(f"--runs-dir {runs_dir} is a file, not a folder of run files")
    prefix = snapshot_prefix(snapshot_id)
    runs, bad = store.scan_runs(runs_dir, verify=verify)
    runs = select_snapshot(runs, prefix, lambda r: r.path)
    bad = select_snapshot(bad, prefix, lambda b: b.path)
    if not runs and not bad:
        if not shards_cmd.print_shards(runs_dir, prefix):
            console.print(f"no run files under {runs_dir}", highlight=False)
        _print_stores(runs_dir, prefix)
        return
    _print_runs(runs)
    _print_stores(runs_dir, prefix)
    shards_cmd.print_shards(runs_dir, prefix)
    for b in bad:
        console.print(f"[red]{b.problem}[/] {b.path}: {b.reason}", highlight=False, soft_wrap=False)
    if runs and not verify:
        console.print("[dim]block data not verified: `biasvar ls --verify` checks every file's checksums "
                      "(report, compact and sample check them as they read)[/]", highlight=False)


def _print_stores(runs_dir: Path, prefix: str | None) -> None:
    """A line per statistics store in the runs folder: its runs, and how many have no run file here."""
    from biasvar.errors import AnalysisError
    from biasvar.gramstore.file import FILE_NAME, store_runs

    for path in sorted(runs_dir.glob(f"*/{FILE_NAME}")) if runs_dir.is_dir() else []:
        if prefix and not path.parent.name.lower().startswith(prefix.lower()):
            continue
        try:
            held = store_runs(path)
        except AnalysisError as e:
            console.print(f"[red]damaged[/] {e}", highlight=False)
            continue
        gone = sum(not (path.parent / r["path"]).is_file() for r in held)
        console.print(f"statistics store {path}: {len(held)} runs"
                      + (f", {gone} without a run file (analysed from the store)" if gone else ""), highlight=False)


def bench(
    bench_name: Annotated[BenchName, Opt("--bench", help="Bench problem: the Fig. 1 VAE at its "
                                         "initialisation, the default hvae, or the toy problem.")]
    = BenchName("vae-fig1"),
    estimators: Annotated[str, Opt("--estimators", help="Comma-separated specs.")]
    = ",".join(names.BENCH_ESTIMATORS),
    device: o.Device = "auto",
    dtype: Annotated[o.DtypeName | None, Opt("--dtype", help="Floating-point type (default: the "
                                             "problem's).")] = None,
    n: Annotated[int, Opt("--n", help="Engine draws timed per round.")] = 64,
    n_loop: Annotated[int, Opt("--n-loop", help="Loop draws timed per round.")] = 16,
    repeats: Annotated[int, Opt("--repeats", help="Interleaved rounds (best of).")] = 3,
    chunk: o.Chunk = None,
    max_memory: o.MaxMemory = None,
    out: Annotated[Path | None, Opt("--out", help="JSON file (default: in results/bench/, named "
                                    "<bench>-<device>.json).")]
    = None,
) -> None:
    """Draws/s of the vectorized engine vs a per-draw autograd.grad loop on the same problem and noise."""
    from biasvar.studies import bench as benchmod

    problem, dtype = bench_name.value, o.value(dtype)
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
