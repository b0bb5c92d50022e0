"""Every CLI option that more than one command takes, defined once: the same name means the same thing
in every command (README, "CLI options").

* ``--snapshot FILE`` is a snapshot *file* (``sample``, ``sweep``); ``--snapshot-id ID`` is a snapshot
  *id* or hash prefix naming a sub-folder of the runs folder (``report``, ``plot``, ``ls``).
* ``--seed`` is always the seed of the noise (of the draws, of training); ``--bootstrap-seed`` the
  seed of the bootstrap resampling.
* ``--n`` is always a number of draws; ``--n-resamples`` the bootstrap resamples (library:
  ``n_resamples``).

Old spellings stay as hidden aliases for one release (:func:`alias`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer

from biasvar.errors import SpecError

Opt = typer.Option
T = TypeVar("T")

# --- snapshots and folders --------------------------------------------------------------------
SnapshotFile = Annotated[Path, Opt("--snapshot", metavar="FILE",
                                   help="Snapshot file (ckpt.pt) made by `biasvar train`.")]
SnapshotId = Annotated[str | None, Opt("--snapshot-id", metavar="ID",
                                       help="Snapshot id (or hash prefix): which sub-folder of the runs "
                                            "folder; needed when it holds runs of several snapshots.")]
SnapshotOrProblem = Annotated[Path | None, Opt("--snapshot", metavar="FILE", help="Snapshot file (ckpt.pt) made by "
                              "`biasvar train` or `biasvar snapshot`; or give --problem.")]
Problem = Annotated[str | None, Opt("--problem", metavar="MODULE:FUNCTION",
                                    help="Your own problem instead of --snapshot: a factory module:function (or "
                                         "file.py:function) returning a biasvar Problem, or a built-in name.")]
ProblemOption = Annotated[list[str] | None, Opt("--option", "-o", help="Problem option KEY=VALUE (repeatable; "
                                                "values read as JSON when they parse).")]
Weights = Annotated[Path | None, Opt("--weights", help="State dict file (torch.save(model.state_dict())) whose "
                                     "names and shapes match the problem's parameters.")]
RunsDir = Annotated[Path, Opt("--runs-dir", help="Folder of run files (one sub-folder per snapshot).")]
DataDir = Annotated[Path | None, Opt("--data-dir", help="Dataset folder (default: $BIASVAR_DATA, else "
                                     "~/.cache/biasvar).")]

# --- sampling ----------------------------------------------------------------------------------
Estimator = Annotated[str, Opt("--estimator", "-e", help="Estimator name or spec: zgr, 'gr-mc(t=0.1,M=100)'.")]
EstimatorList = Annotated[str | None, Opt("--estimators", help="Comma-separated specs, e.g. "
                                          "'zgr,gr-mc(t=0.1,M=100)'.")]
TFlag = Annotated[float | None, Opt("--t", help="Temperature (flag form of the spec).")]
MFlag = Annotated[int | None, Opt("--M", help="Samples M (flag form of the spec).")]
AlphaFlag = Annotated[float | None, Opt("--alpha", help="st-zgr alpha (flag form of the spec).")]
Draws = Annotated[int, Opt("--n", help="Draws (gradient samples) per run.")]
Seed = Annotated[int, Opt("--seed", help="Seed of the noise; with the spec it keys each run's draws.")]
Params = Annotated[str | None, Opt("--params", help="Glob of parameter names to differentiate, e.g. "
                                   "'encoder.0.*' (comma-separated globs allowed); default: the problem's "
                                   "measured parameters (qnet: layer 0), else all.")]
Keep = Annotated[int, Opt("--keep", help="Keep the raw draws of K fixed coordinates (0: none).")]
Device = Annotated[str, Opt("--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[str | None, Opt("--dtype", help="float32 or float64 (default: the snapshot's).")]
Restart = Annotated[bool, Opt("--restart", help="Delete an existing run file and start over.")]
BlockSize = Annotated[int | None, Opt("--block-size", help="Draws per stored block (default: from n and the "
                                      "parameter count).")]
MaxMemory = Annotated[str | None, Opt("--max-memory", help="Memory budget, e.g. 4GB (CUDA default: 70% of "
                                      "free memory; CPU: 512MB).")]
Chunk = Annotated[int | None, Opt("--chunk", help="Fixed draws per vectorized call (default: from memory).")]
Threads = Annotated[int | None, Opt("--threads", help="CPU threads for torch (default: torch's choice; 1 is "
                                    "often fastest on a busy machine).")]

# --- analysis ----------------------------------------------------------------------------------
Reference = Annotated[str, Opt("--reference", help="Reference estimator spec (its run with the lowest seed), "
                               "or 'exact' for the enumerated gradient (toy, quantizer problems).")]
NResamples = Annotated[int, Opt("--n-resamples", help="Bootstrap resamples of the blocks (0: no intervals).")]
BootstrapSeed = Annotated[int, Opt("--bootstrap-seed", help="Seed of the bootstrap resampling.")]

# --- hidden aliases (old spellings, one release) ----------------------------------------------
OldBootstrap = Annotated[int | None, Opt("--bootstrap", hidden=True, help="Old name of --n-resamples.")]
OldSeedBootstrap = Annotated[int | None, Opt("--seed", hidden=True, help="Old name of --bootstrap-seed.")]
OldSnapshotId = Annotated[str | None, Opt("--snapshot", hidden=True, help="Old name of --snapshot-id (a "
                                          "snapshot file is accepted too).")]


def alias(new: T, old: T | None, *, default: T, new_flag: str, old_flag: str) -> T:
    """The value of an option given under its new or (hidden) old name; both at once is an error."""
    if old is None:
        return new
    if new != default and new != old:
        raise SpecError(f"{old_flag} is the old name of {new_flag}; give only {new_flag}")
    return old


def snapshot_id(new: str | None, old: str | None) -> str | None:
    """``--snapshot-id``, or the old ``--snapshot`` of ``report``/``plot``: an id, or now also a file."""
    if old is None:
        return new
    if new is not None:
        raise SpecError("--snapshot is the old name of --snapshot-id; give only --snapshot-id")
    if Path(old).is_file():
        from biasvar.snapshot import load_snapshot

        return load_snapshot(old).id
    return old


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads of this process (the CLI's own)."""
    if threads is None:
        return
    if threads < 1:
        raise SpecError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


