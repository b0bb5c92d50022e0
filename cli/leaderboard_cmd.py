"""``biasvar leaderboard``: the fixed suite of snapshots, the committed board, and a new row for any spec.

* ``snapshots --out DIR``: make every snapshot of the suite (bit for bit on the CPU; checked against
  the recorded hashes);
* ``run SPEC``: measure SPEC (built-in or ``file.py:make(...)``) on the suite and print its row beside
  the committed rows, with its paired contrasts against ZGR and RF(4);
* ``board``: measure every estimator of the suite and write ``results/leaderboard.{json,md}`` and
  the stores the contrasts of later rows need (what the maintainers run).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from . import options as o
from .common import console, lazy, new_app

suite_mod = lazy("biasvar.leaderboard.suite")
board_mod = lazy("biasvar.leaderboard.board")
render = lazy("biasvar.leaderboard.render")

leaderboard_app = new_app(help="The leaderboard: a fixed suite of snapshots, every built-in estimator measured "
                               "on it (results/leaderboard.md), and a row for your own estimator.")


class Size(str, Enum):
    cpu = "cpu"
    full = "full"


SuiteFile = Annotated[Path | None, o.Opt("--suite", metavar="FILE", help="Suite definition (default: "
                                         "benchmarks/suite/suite.json of the repository).")]
SizeOpt = Annotated[Size, o.Opt("--size", help="Which size of the suite: cpu (what a CPU trains) or full.")]
Only = Annotated[list[str] | None, o.Opt("--only", metavar="NAME", help="Only this snapshot of the suite "
                                         "(repeatable).")]
Snapshots = Annotated[Path | None, o.Opt("--snapshots", metavar="DIR", help="Folder of the suite's snapshots "
                                         "(made by `biasvar leaderboard snapshots --out DIR`); committed ones "
                                         "are found without it.")]
BoardFile = Annotated[Path | None, o.Opt("--board", metavar="FILE", help="The committed board (default: "
                                         "results/leaderboard.json of the repository).")]
LbRunsDir = Annotated[Path, o.Opt("--runs-dir", help="Folder of the run files this command makes.")]


def _say(line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True, markup=False)


def _command() -> str:
    return "biasvar " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _threads() -> None:
    import torch

    torch.set_num_threads(1)  # the suite's numbers are one-thread CPU numbers (bit for bit)


@leaderboard_app.command("snapshots")
def snapshots_cmd(
    out: Annotated[Path, o.Opt("--out", metavar="DIR", help="Folder for the snapshots (<name>-<size>.pt).")],
    suite: SuiteFile = None,
    size: SizeOpt = Size.cpu,
    only: Only = None,
    data_dir: o.DataDir = None,
    record: Annotated[bool, o.Opt("--record", help="Write the hashes made into the suite file (maintainers).")
                      ] = False,
) -> None:
    """Make the suite's snapshots on the CPU with one torch thread, each checked against its recorded hash."""
    s = suite_mod.load_suite(suite, size.value)
    done = suite_mod.make_snapshots(s, out, only=tuple(only or ()), data_dir=data_dir, record=record, say=_say)
    for entry, snap, status in done:
        _say(f"{entry.name:<12} {snap.id}  {status:<8} {snap.path}")


@leaderboard_app.command("run")
def run_cmd(
    spec: Annotated[str, typer.Argument(help="Estimator spec: zgr, st(t=2), or your own, e.g. "
                                             "'my_est.py:make(t=0.5)'.")],
    suite: SuiteFile = None,
    board: BoardFile = None,
    snapshots: Snapshots = None,
    runs_dir: LbRunsDir = Path("runs-leaderboard"),
    n: Annotated[int | None, o.Opt("--n", min=2, help="Draws of SPEC per snapshot (default: the board's n).")
                 ] = None,
    only: Only = None,
    rerun_baselines: Annotated[bool, o.Opt("--rerun-baselines", help="Where the reference made here differs "
                                           "from the board's (another CPU or torch), sample ZGR and RF(4) here "
                                           "for the contrasts instead of failing.")] = False,
) -> None:
    """Measure SPEC on every snapshot of the suite and print its row beside the board's, with its paired
    contrasts against ZGR and RF(4) (the board's runs are not rerun: their statistics are committed)."""
    from biasvar.estimators import build
    from biasvar.spec import parse_spec

    canon = str(parse_spec(spec))  # a bad spec: one line, before anything is loaded
    build(parse_spec(canon))
    b = board_mod.load_board(board or board_mod.BOARD_FILE)
    s = suite_mod.load_suite(suite, b["size"])
    board_dir = Path(board or board_mod.BOARD_FILE).parent
    _threads()
    rows = board_mod.measure_row(canon, s, b, board_dir, snapshots=snapshots, runs_dir=runs_dir, n=n,
                                 only=tuple(only or ()), rerun_baselines=rerun_baselines, say=_say)
    if only:
        b = {**b, "snapshots": [x for x in b["snapshots"] if x["name"] in only]}
    typer.echo(render.text_table(b, rows, canon))
    stores = [r["store"] for r in rows.values() if "store" in r]
    if stores:
        typer.echo(f"\nstores with the new row (biasvar report --store FILE --contrast '{canon},zgr'):")
        for path in stores:
            typer.echo(f"  {path}")


@leaderboard_app.command("board")
def board_cmd(
    suite: SuiteFile = None,
    size: SizeOpt = Size.cpu,
    snapshots: Snapshots = None,
    runs_dir: LbRunsDir = Path("runs-leaderboard"),
    out: Annotated[Path | None, o.Opt("--out", metavar="FILE", help="The board's JSON (default: "
                                      "results/leaderboard.json); the Markdown beside it, the stores in "
                                      "the folder leaderboard/ next to it.")] = None,
    estimators: Annotated[str | None, o.Opt("--estimators", metavar="LIST", help="Comma-separated specs "
                                            "(default: the suite's).")] = None,
    only: Only = None,
    n: Annotated[int | None, o.Opt("--n", min=2, help="Draws per run (default: the suite's n).")] = None,
    slow_n: Annotated[int | None, o.Opt("--slow-n", min=2, help="Draws per run of the estimators of more than "
                                        "16 passes per draw (default: the suite's slow_n).")] = None,
    max_cost: Annotated[int | None, o.Opt("--max-cost", min=1, help="Leave out estimators of more forward passes "
                                          "per draw (default: the suite's max_cost).")] = None,
    device: Annotated[str, o.Opt("--device", help="Where the runs are computed: cpu (the committed board), "
                                 "or cuda for the full-size board; a new row uses the board's.")] = "cpu",
) -> None:
    """Measure every estimator of the suite on every snapshot; write the board (JSON, Markdown, stores)."""
    import json

    from biasvar.atomic import write_atomic
    from biasvar.presets import split_specs

    from biasvar.device import resolve_device

    resolve_device(device)  # a bad --device is one line before any work
    s = suite_mod.load_suite(suite, size.value)
    s = replace(s, n=n or s.n, slow_n=slow_n or s.slow_n, max_cost=max_cost or s.max_cost)
    specs = split_specs(estimators) if estimators else None
    target = Path(out or board_mod.BOARD_FILE)
    _threads()
    b = board_mod.measure_board(s, snapshots=snapshots, runs_dir=runs_dir, out_dir=target.parent / "leaderboard",
                                specs=specs, only=tuple(only or ()), command=_command(), device=device,
                                say=_say)
    write_atomic(target, json.dumps(b, indent=1) + "\n")
    write_atomic(target.with_suffix(".md"), render.markdown(b))
    typer.echo(render.text_table(b))
    typer.echo(f"\nwrote {target} and {target.with_suffix('.md')}")


def register(app: typer.Typer) -> None:
    app.add_typer(leaderboard_app, name="leaderboard")
