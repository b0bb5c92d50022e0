"""Every CLI option that more than one command takes, defined once: the same name means the same thing
in every command (README, "CLI options").

* ``--snapshot FILE`` is a snapshot *file* (``sample``, ``sweep``); ``--snapshot-id ID`` is a snapshot
  *id* or hash prefix naming a sub-folder of the runs folder (``report``, ``plot``, ``ls``, ``merge``,
  ``compact``).
* ``--problem MODULE:FUNCTION`` is your own problem factory (``train``, ``snapshot``, ``sample``,
  ``sweep``); ``--model`` a built-in model (``train``); ``--bench`` a bench problem (``bench``).
* ``--seed`` is always the seed of the noise (of the draws, of training); ``--bootstrap-seed`` the
  seed of the bootstrap resampling.
* ``--n`` is always a number of draws per run; ``--quant-n`` the draws per input of the Fig. B.5
  study (``plot quant-unit``, ``reproduce``); ``--n-resamples`` the bootstrap resamples (library:
  ``n_resamples``).
* An option with a fixed set of values lists them (``--dtype``, ``--executor``, ``--preset``, ...):
  the sets come from :mod:`biasvar.names`.

Old spellings whose name means nothing else stay as hidden aliases for one release (:func:`alias`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from biasvar import names
from biasvar.errors import SpecError

Opt = typer.Option
T = TypeVar("T")


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of ``values`` (typer lists an Enum option's values in the help and rejects others)."""
    return Enum(name, {v: v for v in values}, type=str)


DtypeName = choices("DtypeName", names.DTYPES)

# --- snapshots and folders --------------------------------------------------------------------
SnapshotFile = Annotated[Path, Opt("--snapshot", metavar="FILE",
                                   help="Snapshot file (ckpt.pt) made by `biasvar train`.")]
SnapshotId = Annotated[str | None, Opt("--snapshot-id", metavar="ID",
                                       help="Snapshot id (or a prefix of its hash): only the runs in that "
                                            "sub-folder of the runs folder.")]
SnapshotOrProblem = Annotated[Path | None, Opt("--snapshot", metavar="FILE", help="Snapshot file (ckpt.pt) made by "
                              "`biasvar train` or `biasvar snapshot`; or give --problem.")]
Problem = Annotated[str | None, Opt("--problem", metavar="MODULE:FUNCTION",
                                    help="Your own problem instead of --snapshot: a factory module:function (or "
                                         "file.py:function) returning a biasvar Problem, or a built-in name.")]
ProblemOption = Annotated[list[str] | None, Opt("--option", "-o", help="Problem option KEY=VALUE (repeatable; "
                                                "values read as JSON when they parse).")]
Weights = Annotated[Path | None, Opt("--weights", help="State dict file (as torch.save writes a state_dict) whose "
                                     "names and shapes match the problem's parameters.")]
Store = Annotated[Path | None, Opt("--store", metavar="FILE", help="A statistics store (`biasvar gram`; default: "
                                   "gram-store.hdf5 in the snapshot's folder, used when its run files are gone).")]
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
QuantDraws = Annotated[int, Opt("--quant-n", help="Draws per input eta and estimator of the Fig. B.5 "
                                 "study (quant-unit).")]
Seed = Annotated[int, Opt("--seed", help="Seed of the noise; with the spec it keys each run's draws.")]
Params = Annotated[str | None, Opt("--params", help="Glob of parameter names to differentiate, e.g. "
                                   "'encoder.0.*' (comma-separated globs allowed); default: the problem's "
                                   "measured parameters (qnet: layer 0), else all.")]
Keep = Annotated[int, Opt("--keep", help="Keep the raw draws of K fixed coordinates (0: none).")]
Device = Annotated[str, Opt("--device", metavar="|".join((*names.DEVICES, "cuda:N")),
                            help="Where to compute (auto: cuda if there is one, else cpu).")]
Dtype = Annotated[DtypeName | None, Opt("--dtype", help="Floating-point type (default: the snapshot's).")]
Restart = Annotated[bool, Opt("--restart", help="Start over instead of resuming: delete what an earlier call left "
                                               "(sample, sweep: the run file; train: the training state).")]
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

# --- hidden aliases (old spellings that mean nothing else, one release) -----------------------
OldBootstrap = Annotated[int | None, Opt("--bootstrap", hidden=True, help="Old name of --n-resamples.")]


def alias(new: T, old: T | None, *, default: T, new_flag: str, old_flag: str) -> T:
    """The value of an option given under its new or (hidden) old name; both at once is an error."""
    if old is None:
        return new
    if new != default and new != old:
        raise SpecError(f"{old_flag} is the old name of {new_flag}; give only {new_flag}")
    return old


def value(choice: Enum | None) -> str | None:
    """The text of a choice option (None stays None)."""
    return None if choice is None else choice.value


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads of this process (the CLI's own)."""
    if threads is None:
        return
    if threads < 1:
        raise SpecError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


