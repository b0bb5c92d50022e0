"""The board as text: an 80-column terminal table (with new rows beside the committed ones) and the
Markdown of ``results/leaderboard.md``, both made from the board's JSON alone (so the Markdown says
nothing the JSON does not).

Numbers are shown to two significant digits (``1.2e-5``); an estimate is ``value [low, high]`` (95%
interval); a contrast against a baseline is a verdict per quantity: ``<`` (the interval of the
difference lies below 0), ``>`` (above 0) or ``~`` (it holds 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 80
NAME_W = 22
BASE_LABEL = {"zgr": "ZGR", "rf(M=4)": "RF(4)"}


def num(x: float | None, digits: int = 2) -> str:
    """``digits`` significant digits, a short exponent: ``1.2e-5``, ``-3.0e-2``; ``nan`` / ``—`` where missing."""
    if x is None:
        return "—"
    if x != x:  # NaN
        return "nan"
    mant, _, exp = f"{x:.{digits - 1}e}".partition("e")
    return f"{mant}e{int(exp)}"


def est(e: Sequence[float | None] | None, digits: int = 2) -> str:
    """``value [low, high]``, or the value alone without an interval, ``—`` without a value."""
    if e is None:
        return "—"
    v, lo, hi = (num(x, digits) for x in e)
    return v if e[1] is None or e[2] is None else f"{v} [{lo}, {hi}]"


def verdict(e: Sequence[float | None] | None) -> str:
    """``<``, ``>`` or ``~`` for the interval of a difference (``?`` without one)."""
    if e is None or e[1] is None or e[2] is None:
        return "?"
    return "<" if e[2] < 0 else ">" if e[1] > 0 else "~"


def versus(row: Mapping[str, Any], base: str) -> str:
    """``b2< V>``: the row's contrast against a baseline (``-`` for the baseline itself, or none)."""
    c = row.get("vs", {}).get(base)
    if c is None:
        return "-"
    return f"b2{verdict(c['b2'])} V{verdict(c['V'])}"


def _cost(c: float) -> str:
    return f"{c:g}"


def _row_lines(row: Mapping[str, Any], mark: str, baselines: Sequence[str]) -> list[str]:
    name = f"{mark}{row['spec']}" + (", ref" if row["role"] == "reference" else f", s{row['seed']}"
                                      if row["spec"] == "rf(M=4)" else "")
    cells = f"{_cost(row['cost']):>5} {est(row['b2']):<26} {est(row['V'])}"
    lines = [f"{name:<{NAME_W}} {cells}"] if len(name) <= NAME_W else [name, f"{'':<{NAME_W}} {cells}"]
    vs = " ".join(f"{BASE_LABEL.get(b, b)}:{versus(row, b):<6}" for b in baselines)
    lines.append(f"{'':<4}{est(row['MSE']):<24} {est(row['V_x_cost']):<24} {vs}".rstrip())
    return lines


def snapshot_header(s: Mapping[str, Any]) -> list[str]:
    return [f"{s['name']} · {s['snapshot_id']} · {s['size']} · n {s.get('n', '?')} · reference {s['reference']} · "
            f"dim {s['dim']}", f"  {s['title']}"]


LEGEND = [f"{'estimator':<{NAME_W}} {'cost':>5} {'b2 [95%]':<26} V [95%]",
          f"{'':<4}{'MSE [95%]':<24} {'V x cost [95%]':<24} vs baselines (A - B)"]


def text_table(board: Mapping[str, Any], new: Mapping[str, Mapping[str, Any]] | None = None,
               new_spec: str | None = None) -> str:
    """The board (and a new row per snapshot, marked ``>``) in at most :data:`WIDTH` columns."""
    baselines = board.get("baselines", ["zgr", "rf(M=4)"])
    out = [f"leaderboard {board['suite']} ({board['size']}), seed {board['seed']}: n = {board['n']} draws",
           f"per run ({board['slow_n']} over 16 passes per draw); 95% intervals; vs: the paired",
           "contrast A - B lies below 0 (<), above 0 (>), or holds 0 (~)", *LEGEND]
    for s in board["snapshots"]:
        out += ["", *snapshot_header(s)]
        for row in s["rows"]:
            out += _row_lines(row, "  ", baselines)
        got = (new or {}).get(s["name"])
        if got is None:
            continue
        if "skipped" in got:
            out.append(f"> {new_spec}: left out: {got['skipped']}")
            continue
        row = got["row"]
        out += _row_lines(row, "> ", baselines)
        if got.get("local"):
            out.append("    (its contrasts: against ZGR and RF(4) sampled here, not the rows above)")
        for b in baselines:
            c = row["vs"].get(b)
            if c is not None:
                out.append(f"    - {BASE_LABEL.get(b, b)}: b2 {est(c['b2'])}, V {est(c['V'])}")
    return "\n".join(_fit(line) for line in out)


def _fit(line: str) -> str:
    """A line longer than :data:`WIDTH` (a long spec name) is cut at the width with an ellipsis."""
    return line if len(line) <= WIDTH else line[:WIDTH - 1] + "…"


def _md_est(e: Sequence[float | None] | None) -> str:
    return est(e, 3)


def _training(s: Mapping[str, Any]) -> str:
    t = s["train"]
    steps = f"{t['steps_per_epoch']} steps" if t.get("steps_per_epoch") else "full passes"
    return (f"{s['model']} {_opts(s['options'])}, trained {t['epochs']} epoch(s) ({steps}) of {t['estimator']} on "
            f"{t['data'] or 'its own batch'}, batch {t['batch_size']}, lr {t['lr']}, seed {t['seed']}")


def _opts(options: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"


def markdown(board: Mapping[str, Any]) -> str:
    """``results/leaderboard.md``: the board's tables and provenance, from its JSON only."""
    baselines = board.get("baselines", ["zgr", "rf(M=4)"])
    lines = [
        "# Leaderboard: gradient estimators on a fixed suite of snapshots",
        "",
        "Generated from `leaderboard.json` by `biasvar leaderboard board` (do not edit: "
        "`tests/test_leaderboard.py` checks that this file is the rendering of the JSON).",
        "",
        f"- suite: `{board['suite']}` ({board['suite_file']}), size **{board['size']}** (the training of each "
        "snapshot below; the suite file holds the full-size definitions too)",
        f"- draws per run (unless a snapshot says otherwise): n = {board['n']}; estimators of more than 16 "
        f"forward passes per draw: {board['slow_n']}; left out above {board['max_cost']} passes",
        f"- noise seed {board['seed']} (reference {board['reference_spec']} at seed {board['seed']}, the tested "
        f"RF(4) at seed {board['seed'] + 1}); bootstrap resamples {board['n_resamples']}",
        f"- device {board['device']}, {board['torch_threads']} torch thread(s), torch {board['torch_version']}, "
        f"commit {board['commit']}, wall time of the command {board['wall_s']} s, finished {board['finished']}",
        f"- command: `{board['command']}`",
        "",
        "b2: Eq. 16's squared bias per parameter against the reference; V: variance per parameter; "
        "MSE = b2 + V; cost: forward passes per draw; intervals 95%. vs ZGR / vs RF(4): the paired "
        "contrast A - B (shared reference accounted for, jackknife-t): `<` its interval lies below 0, "
        "`>` above, `~` it holds 0; `-` none (the baseline itself, or its second run). Numbers to 3 "
        "significant digits (all digits in the JSON).",
    ]
    for s in board["snapshots"]:
        lines += ["", f"## {s['name']}: {s['title']}", "",
                  f"Snapshot `{s['snapshot_id']}` (hash `{s['snapshot_hash']}`), size {s['size']}: "
                  f"{_training(s)}; "
                  f"n = {s.get('n', board['n'])} draws per run ({s.get('slow_n', board['slow_n'])} over 16 passes "
                  f"per draw, left out over {s.get('max_cost', board['max_cost'])}); "
                  f"reference {s['reference']}, {s['dim']} parameters measured"
                  + (f" (`{s['params']}`)" if s.get("params") else "") + f", intervals {s['method']}; "
                  f"store `{s['store']}`; sampling time {s.get('sampling_s')} s (n / draws per s, summed over "
                  f"its runs), this command's time on it {s['wall_s']} s (complete runs are reused).", ""]
        head = ["estimator", "n", "cost", "b2", "V", "MSE", "V x cost"] + [f"vs {BASE_LABEL.get(b, b)}"
                                                                          for b in baselines]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in s["rows"]:
            name = f"{r['spec']}" + (", reference" if r["role"] == "reference" else f", seed {r['seed']}"
                                     if r["spec"] == board["reference_spec"] else "")
            cells = [name, str(r["n"]), _cost(r["cost"]), _md_est(r["b2"]), _md_est(r["V"]), _md_est(r["MSE"]),
                     _md_est(r["V_x_cost"])] + [versus(r, b) for b in baselines]
            lines.append("| " + " | ".join(cells) + " |")
        if s["skipped"]:
            lines += ["", "Left out: " + "; ".join(f"`{k}`: {v}" for k, v in s["skipped"].items()) + "."]
        for note in s.get("notes", []):
            lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


__all__ = ["WIDTH", "est", "markdown", "num", "text_table", "verdict", "versus"]
