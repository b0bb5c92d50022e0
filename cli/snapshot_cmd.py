"""``biasvar snapshot``: a snapshot of given weights (your own model through ``--problem module:factory``),
and :func:`resolve_snapshot` for the ``--problem`` / ``--option`` / ``--weights`` triple that ``sample``
and ``sweep`` accept instead of ``--snapshot``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from biasvar.errors import SnapshotError

if TYPE_CHECKING:
    from biasvar.snapshot import Snapshot

from . import options as o
from .common import console
from .parsing import option_pairs

Opt = typer.Option


def resolve_snapshot(snapshot: Path | None, problem: str | None = None, option: list[str] | None = None,
                     weights: Path | None = None) -> Snapshot:
    """The snapshot a measuring command works on: ``--snapshot FILE``, or ``--problem`` built now
    (at ``--weights``, else the factory's own weights) and identified by its content hash."""
    if (snapshot is None) == (problem is None):
        raise SnapshotError("give exactly one of --snapshot FILE or --problem module:factory")
    if snapshot is not None:
        if option or weights is not None:
            raise SnapshotError("--option and --weights go with --problem, not --snapshot")
        from biasvar.snapshot import load_snapshot  # torch: loaded by the commands that need a snapshot

        return load_snapshot(snapshot)
    from biasvar.train import build_problem, snapshot_weights

    prob = build_problem(problem, option_pairs(option), seed=0)  # as `biasvar snapshot` with its default seed
    return snapshot_weights(prob, weights=weights)


def snapshot_command(
    problem: Annotated[str, Opt("--problem", help="Factory module:function (or file.py:function), or a "
                                "built-in name.")],
    option: o.ProblemOption = None,
    weights: o.Weights = None,
    out: Annotated[Path, Opt("--out", help="Snapshot file to write.")] = Path("snapshot.pt"),
    data: Annotated[str | None, Opt(help="Dataset whose training points form the evaluation batch "
                                    "(default: the factory's batch).")] = None,
    data_dir: o.DataDir = None,
    offline: Annotated[bool, Opt("--offline", help="Never download missing dataset files.")] = False,
    eval_batch_size: Annotated[int, Opt(help="Size of the evaluation batch drawn from --data.")] = 200,
    seed: Annotated[int, Opt("--seed", help="Seeds the factory (if it takes a seed) and the evaluation "
                             "batch.")] = 0,
) -> None:
    """Save a snapshot of a problem at given weights, without training (a model trained elsewhere)."""
    from biasvar.train import build_problem, load_data, snapshot_weights

    prob = build_problem(problem, option_pairs(option), seed=seed)
    dataset = load_data(problem, data, data_dir=data_dir, download=False if offline else None) if data else None
    snap = snapshot_weights(prob, weights=weights, data=dataset, eval_batch_size=eval_batch_size, seed=seed,
                            out=out)
    table = Table(title=f"snapshot {snap.id}", show_header=False)
    table.add_row("file", str(snap.path))
    table.add_row("problem", f"{prob.kind} {json.dumps(prob.config)} ({prob.dim:,} parameters)")
    sites = getattr(prob, "sites", None)
    if sites:
        table.add_row("sites", ", ".join(f"{k}: {s.describe()}" for k, s in sites.items()))
    table.add_row("weights", str(weights) if weights is not None else "the factory's own")
    source = snap.dataset["name"] if snap.dataset else "the factory's"
    table.add_row("evaluation batch", f"{tuple(prob.batch.shape)} ({source})")
    table.add_row("loss", f"{snap.provenance['eval_history'][0]['loss']:.4g} (plain draws, evaluation batch)")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Adds ``snapshot``."""
    app.command("snapshot")(snapshot_command)
