"""Measure what lossless HDF5 filters do to the block sums of real run files; write results/runfile-size/.

    OMP_NUM_THREADS=1 python scripts/runfile_size.py RUN.h5 [RUN.h5 ...] --out results/runfile-size

For each run file given (read only): the structural zeros of its block sums (coordinates that are
exactly 0 in every block, e.g. encoder weights of pixels that are 0 across the evaluation batch),
then, for every filter below, the block sums written block by block the way the run-file writer
appends them (one row per chunk, Fletcher-32, SWMR mode, resize + write + flush per block) to a
scratch file, read back block by block and checked bit for bit: stored bytes over raw bytes, and
write and read seconds per block (wall and this process's CPU time: the machine may be shared,
CPU time leaves out the waits for a core). Then each run is rewritten whole through
``store.RunWriter`` with the writer's default filter and without any, for the full file size.

The filters are HDF5's built-ins that h5py always has (gzip = deflate, lzf), each with and without
the byte-shuffle filter; no extra package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from biasvar import store
from biasvar.provenance import git_commit

FILTERS = [("none", {})]
for _shuffle in (False, True):
    _tag = "+shuffle" if _shuffle else ""
    FILTERS += [(f"gzip-{lvl}{_tag}", {"compression": "gzip", "compression_opts": lvl, "shuffle": _shuffle})
                for lvl in (1, 4, 6, 9)]
    FILTERS.append((f"lzf{_tag}", {"compression": "lzf", "shuffle": _shuffle}))


def structural_zeros(run: store.RunData) -> dict:
    """Coordinates exactly 0 in every block, overall and per parameter group."""
    S = run.block_sum
    always = np.all(S == 0, axis=0)
    groups, off = {}, 0
    for name, size in zip(run.groups, run.group_sizes.tolist(), strict=True):
        z = int(always[off:off + size].sum())
        if z:
            groups[name] = {"zeros": z, "size": size, "fraction": z / size}
        off += size
    return {"always_zero": int(always.sum()), "dim": int(S.shape[1]), "fraction": float(always.mean()),
            "zero_entries_fraction": float(np.mean(S == 0)), "groups": groups}


def measure_filter(S: np.ndarray, kw: dict, scratch: Path) -> dict:
    """Append the rows of S as the writer does, read them back, time both, check the bits."""
    nb, dim = S.shape
    path = scratch / "filter-test.h5"
    if path.exists():
        path.unlink()
    wall_w, cpu_w = [], []
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset("block_sum", (0, dim), maxshape=(None, dim), dtype="f4", chunks=(1, dim),
                              fletcher32=True, **kw)
        f.swmr_mode = True
        for i in range(nb):
            t0, c0 = time.perf_counter(), time.process_time()
            ds.resize(i + 1, axis=0)
            ds[i] = S[i]
            f.flush()
            wall_w.append(time.perf_counter() - t0)
            cpu_w.append(time.process_time() - c0)
        stored = int(ds.id.get_storage_size())
    size = path.stat().st_size
    wall_r, cpu_r = [], []
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        ds = f["block_sum"]
        for i in range(nb):
            t0, c0 = time.perf_counter(), time.process_time()
            row = ds[i]
            wall_r.append(time.perf_counter() - t0)
            cpu_r.append(time.process_time() - c0)
            if row.tobytes() != S[i].tobytes():
                raise AssertionError(f"filter {kw} did not round-trip block {i}")
    path.unlink()
    return {"stored_bytes": stored, "file_bytes": size, "ratio": stored / S.nbytes,
            "write_s_per_block": float(np.median(wall_w)), "write_cpu_s_per_block": float(np.median(cpu_w)),
            "read_s_per_block": float(np.median(wall_r)), "read_cpu_s_per_block": float(np.median(cpu_r))}


def rewrite_run(run: store.RunData, out: Path, compression: str) -> dict:
    """The run's blocks appended through ``store.RunWriter`` (the writer's layout, pending slots
    included) to a fresh file; its size and the block sums' stored bytes."""
    if out.exists():
        out.unlink()
    header = {k: v for k, v in run.attrs.items() if k in store.IDENTITY or k in ("block_size", "layout", "keep")}
    index = run.sample_index if run.sample_index is not None else np.zeros(0, np.int64)
    with store.RunWriter.open(out, header, n_target=run.n, group_sizes=run.group_sizes, sample_index=index,
                              compression=compression) as w:
        start = 0
        for b in range(len(run.block_count)):
            c = int(run.block_count[b])
            samples = run.samples[start:start + c] if run.samples is not None else np.zeros((c, 0), np.float32)
            start += c
            w.append(store.BlockStats(c, int(run.block_nonfinite[b]), run.block_sum[b], run.block_m2[b],
                                      run.block_sumsq[b], samples), wall_s=0.0)
        w.finish()
    back = store.read_run(out)
    if back.block_sum.tobytes() != run.block_sum.tobytes():
        raise AssertionError("the rewritten run's block sums differ")
    info = store.storage_info(out)
    info["file_bytes"] = out.stat().st_size
    out.unlink()
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run files to measure (read only)")
    ap.add_argument("--out", type=Path, default=Path("results/runfile-size"))
    ap.add_argument("--scratch", type=Path, default=None, help="folder for scratch files (default: a temp dir)")
    args = ap.parse_args(argv)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="runfile-size-"))
    scratch.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    files = []
    for p in args.runs:
        run = store.read_run(p)
        S = np.ascontiguousarray(run.block_sum)
        entry = {"file": p.name, "spec": run.spec, "n": run.n, "blocks": int(len(run.block_count)),
                 "block_size": int(run.attrs["block_size"]), "dim": run.dim, "file_bytes": p.stat().st_size,
                 "block_sum_raw_bytes": int(S.nbytes), "structural_zeros": structural_zeros(run), "filters": {}}
        zero = np.all(S == 0, axis=0)
        rest = measure_filter(np.ascontiguousarray(S[:, ~zero]), store.FILTERS[store.COMPRESSION], scratch)
        entry["structural_zeros"]["default_filter_ratio_without_them"] = rest["ratio"]
        for name, kw in FILTERS:
            entry["filters"][name] = measure_filter(S, kw, scratch)
            r = entry["filters"][name]
            print(f"{p.name}  {name:18s} ratio {r['ratio']:.3f}  write {r['write_cpu_s_per_block'] * 1e3:6.1f} ms  "
                  f"read {r['read_cpu_s_per_block'] * 1e3:6.1f} ms (CPU per block)", flush=True)
        entry["store"] = {c: rewrite_run(run, scratch / "rewrite.h5", c) for c in ("none", store.COMPRESSION)}
        for c, info in entry["store"].items():
            print(f"{p.name}  store {c}: {info['file_bytes'] / 1e6:.1f} MB", flush=True)
        files.append(entry)
    doc = {"command": "python scripts/runfile_size.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_commit": git_commit(), "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
           "numpy": np.__version__, "python": platform.python_version(), "default_compression": store.COMPRESSION,
           "load_average": os.getloadavg(), "wall_s": time.time() - t_start, "files": files}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runfile-size.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "runfile-size.md").write_text(to_markdown(doc))
    print(to_markdown(doc))
    return 0


def to_markdown(doc: dict) -> str:
    lines = ["# Run-file size: lossless filters on real block sums", "",
             f"Produced by `{doc['command']}` (commit {doc['git_commit']}, h5py {doc['h5py']}, HDF5 {doc['hdf5']}).",
             "Ratio: stored bytes of the block sums over raw float32 bytes. Times: median per block "
             "(one float32 row of d entries), this process's CPU time; wall-clock in the JSON.", ""]
    for e in doc["files"]:
        z = e["structural_zeros"]
        lines += [f"## `{e['file']}`: {e['spec']}, n = {e['n']}, {e['blocks']} blocks, d = {e['dim']:,}", "",
                  f"File {e['file_bytes'] / 1e6:.1f} MB, block sums {e['block_sum_raw_bytes'] / 1e6:.1f} MB raw. "
                  f"Structural zeros: {z['always_zero']:,} coordinates ({z['fraction']:.1%}) are 0 in every block"
                  + ("" if not z["groups"] else " (" + ", ".join(
                      f"{g}: {v['fraction']:.1%}" for g, v in z["groups"].items()) + ")") + ". "
                  f"The default filter ({doc['default_compression']}) on the other coordinates alone: ratio "
                  f"{z['default_filter_ratio_without_them']:.3f}.", "",
                  "| filter | ratio | MB | write ms/block | read ms/block |", "|---|---|---|---|---|"]
        for name, r in e["filters"].items():
            lines.append(f"| {name} | {r['ratio']:.3f} | {r['stored_bytes'] / 1e6:.1f} | "
                         f"{r['write_cpu_s_per_block'] * 1e3:.0f} | {r['read_cpu_s_per_block'] * 1e3:.0f} |")
        lines += ["", "Whole file rewritten through `store.RunWriter`: " + ", ".join(
            f"{c}: {i['file_bytes'] / 1e6:.1f} MB" for c, i in e["store"].items()) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
