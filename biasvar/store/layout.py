"""The run-file layout as types: what the attributes and the ``state`` row of a run file mean.

* :class:`RunHeader`: the immutable attributes (identity and provenance), written once when the
  file is created; :meth:`RunHeader.from_attrs` reads them from the plain mapping a file's
  attributes give (:func:`attrs_of`), :func:`attr_value` turns one value into what HDF5 stores.
* :class:`StateRow`: the ``state`` dataset, one float64 row rewritten after every commit (the
  names and order are :data:`STATE`); the writer replaces it, never mutates it.
* :class:`RunProgress`: what a reader reports of a run's progress (the state row seen from
  outside: saved draws, status, speed); its :meth:`RunProgress.to_attrs` entries are the
  progress keys of :attr:`biasvar.store.RunData.attrs`.
* :class:`BlockStats`: the statistics of one block of draws, a :class:`Moments` of its finite
  draws plus the count of the others and the raw kept draws (also the saved block in progress,
  :data:`PendingStats`).

Only the store package reads or writes these; no HDF5 here, only the plain values h5py gives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from biasvar.stats.moments import Moments

SCHEMA_VERSION = 1

# Keys whose values must agree between a file and the command that wants to append to it.
IDENTITY = ("schema_version", "spec", "seed", "snapshot_hash", "params_glob", "dim", "dtype")

# The ``state`` dataset: one float64 row (exact for integers below 2^53). ``n_done`` ..
# ``n_nonfinite`` count the whole blocks; ``pending_*`` the saved part of the block in progress,
# whose accumulators are in slot ``pending_slot`` of the ``pending_*`` datasets. Files of the
# first layout have the first 8 entries only (read as no pending block).
STATE = ("blocks", "n_done", "n_finite", "n_nonfinite", "wall_s", "n_target", "complete", "updated",
         "pending_draws", "pending_count", "pending_nonfinite", "pending_slot")
FIRST_LAYOUT_STATE = 8

JSON_ATTRS = ("problem", "layout", "dataset")  # stored as JSON text, read back as dict / list
NONE = "none"  # how an attribute whose value is None is stored
# The keys a reader adds to a file's attributes in :attr:`RunData.attrs` (:meth:`RunProgress.to_attrs`).
PROGRESS_KEYS = ("n_target", "n_done", "n_pending", "n_finite", "n_nonfinite", "blocks", "wall_s", "draws_per_s",
                 "status", "updated")


# ---------------------------------------------------------------------------------------------
# attributes


def py_value(value: Any) -> Any:
    """h5py attribute value -> plain JSON-able Python."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def attr_value(value: Any) -> Any:
    """Plain Python -> what an HDF5 attribute stores (JSON text for containers, ``"none"``)."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return NONE
    if isinstance(value, str):
        return str.__str__(value)  # plain str (torch.__version__ is a str subclass h5py cannot store)
    if isinstance(value, np.generic):
        return value.item()
    return value


def attrs_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A file's attributes (``f.attrs``) as plain Python, JSON attributes decoded."""
    attrs = {k: py_value(v) for k, v in raw.items()}
    for key in JSON_ATTRS:
        if isinstance(attrs.get(key), str):
            attrs[key] = json.loads(attrs[key])
    return attrs


def _opt(value: Any, kind: type) -> Any:
    return None if value is None or value == NONE else kind(value)


# Header keys that may be missing (or stored as "none"), and their types.
_OPTIONAL = {"snapshot_hash": str, "params_glob": str, "dtype": str, "block_size": int, "keep": int,
             "snapshot_id": str, "snapshot_path": str, "cost": float, "method": str, "created": str,
             "command_n": int, "shard_first": int, "shard_end": int, "run_n": int}


@dataclass(frozen=True)
class RunHeader:
    """The immutable attributes of a run file. ``schema_version``, ``spec``, ``seed`` and ``dim`` are
    required (a reader needs them); the others are ``None`` (or empty) in files or headers that
    lack them (a stored ``"none"`` reads as ``None``). ``extra`` keeps every other attribute (the
    provenance: versions, device, host, git commit, ...), as stored."""

    schema_version: int
    spec: str
    seed: int
    dim: int
    snapshot_hash: str | None = None
    params_glob: str | None = None
    dtype: str | None = None
    block_size: int | None = None
    stats_step: int | None = None  # files made before it: None
    keep: int | None = None
    snapshot_id: str | None = None
    snapshot_path: str | None = None
    problem: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    layout: list[Any] = field(default_factory=list)  # [[name, shape, offset], ...] in group order
    cost: float | None = None
    method: str | None = None
    created: str | None = None
    command_n: int | None = None
    shard_first: int | None = None  # shards of a run only (biasvar.engine.shards)
    shard_end: int | None = None
    run_n: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> RunHeader:
        """From a file's attributes (:func:`attrs_of`), a header mapping, or :attr:`RunData.attrs`
        (its progress keys, :data:`PROGRESS_KEYS`, are left out).

        Raises:
            ValueError: a required key is missing.
        """
        a = dict(attrs)
        known = {f.name for f in fields(cls)} - {"extra"} | set(PROGRESS_KEYS)
        try:
            ident = dict(schema_version=int(a["schema_version"]), spec=str(a["spec"]), seed=int(a["seed"]),
                         dim=int(a["dim"]))
        except KeyError as e:
            raise ValueError(f"run header without {e.args[0]!r}") from None
        optional = {k: _opt(a.get(k), kind) for k, kind in _OPTIONAL.items()}
        return cls(**ident, **optional, stats_step=_opt(a.get("stats_step"), int) or None,  # 0: not recorded
                   problem=dict(a.get("problem") or {}), dataset=dict(a.get("dataset") or {}),
                   layout=list(a.get("layout") or []), extra={k: v for k, v in a.items() if k not in known})

    def to_attrs(self) -> dict[str, Any]:
        """The header as a mapping (``None`` entries other than the identity left out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None or k in IDENTITY}
        return {**out, **self.extra}

    @property
    def groups(self) -> list[str]:
        """Parameter group names, in layout order."""
        return [str(entry[0]) for entry in self.layout]


def identity_mismatch(have: Mapping[str, Any], want: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first :data:`IDENTITY` key whose value differs, as ``(key, file's, command's)``, or None.
    A ``None`` the command has matches the ``"none"`` a file stores."""
    for key in IDENTITY:
        got, wanted = have.get(key), want.get(key)
        if wanted is None and got == NONE:
            continue
        if got != wanted:
            return key, got, wanted
    return None


# ---------------------------------------------------------------------------------------------
# the state row


@dataclass(frozen=True)
class StateRow:
    """The ``state`` dataset, entry for entry (see :data:`STATE`). Counts are ints here, floats in
    the file; ``n_done``, ``n_finite`` and ``n_nonfinite`` count the whole blocks only."""

    blocks: int = 0
    n_done: int = 0
    n_finite: int = 0
    n_nonfinite: int = 0
    wall_s: float = 0.0
    n_target: int = 0
    complete: bool = False
    updated: float = 0.0
    pending_draws: int = 0
    pending_count: int = 0
    pending_nonfinite: int = 0
    pending_slot: int = 0

    @classmethod
    def from_row(cls, row: Any) -> StateRow:
        """From the stored row; a row of the first layout (8 entries) has no block in progress.

        Raises:
            ValueError: fewer than 8 entries, a negative or non-finite entry, a non-integer count.
        """
        values = np.asarray(row, dtype=np.float64).reshape(-1)
        if len(values) < FIRST_LAYOUT_STATE:
            raise ValueError(f"state row of {len(values)} entries")
        full = np.zeros(len(STATE))
        full[:min(len(values), len(STATE))] = values[:len(STATE)]
        if not np.all(np.isfinite(full)) or np.any(full < 0):
            raise ValueError("state row holds negative or non-finite values")
        named = dict(zip(STATE, (float(v) for v in full), strict=True))
        if any(v != int(v) for k, v in named.items() if k not in ("wall_s", "updated")):
            raise ValueError("state row holds non-integer counts")
        return cls(**{k: v if k in ("wall_s", "updated") else bool(v) if k == "complete" else int(v)
                      for k, v in named.items()})

    def to_row(self) -> np.ndarray:
        """The float64 row the file stores."""
        return np.array([float(getattr(self, k)) for k in STATE], dtype=np.float64)

    @property
    def saved(self) -> int:
        """Draws saved: those of the whole blocks and of the saved block in progress."""
        return self.n_done + self.pending_draws

    def committed(self, block: BlockStats, wall_s: float) -> StateRow:
        """The row after one more whole block (the block in progress, if any, is in it); ``wall_s``
        seconds more."""
        return replace(self, blocks=self.blocks + 1, n_done=self.n_done + block.draws,
                       n_finite=self.n_finite + block.count, n_nonfinite=self.n_nonfinite + block.nonfinite,
                       wall_s=self.wall_s + wall_s, pending_draws=0, pending_count=0, pending_nonfinite=0)


@dataclass(frozen=True)
class RunProgress:
    """A run's progress as a reader reports it. ``n_done`` counts every saved draw (those of a
    saved block in progress too, ``n_pending`` of them), ``n_nonfinite`` likewise; ``n_finite``
    and ``blocks`` the whole blocks only."""

    n_target: int
    n_done: int
    n_pending: int
    n_finite: int
    n_nonfinite: int
    blocks: int
    wall_s: float
    status: str  # "complete", "running" (a live writer holds the run) or "interrupted"
    updated: float

    @classmethod
    def of(cls, row: StateRow, live: bool) -> RunProgress:
        status = "complete" if row.complete else "running" if live else "interrupted"
        return cls(n_target=row.n_target, n_done=row.saved, n_pending=row.pending_draws, n_finite=row.n_finite,
                   n_nonfinite=row.n_nonfinite + row.pending_nonfinite, blocks=row.blocks, wall_s=row.wall_s,
                   status=status, updated=row.updated)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> RunProgress:
        """From the progress keys of :attr:`RunData.attrs`."""
        return cls(**{f.name: attrs[f.name] for f in fields(cls)})

    @property
    def draws_per_s(self) -> float:
        return self.n_done / self.wall_s if self.wall_s > 0 else 0.0

    def to_attrs(self) -> dict[str, Any]:
        """The progress keys of :attr:`RunData.attrs`, in their order."""
        return dict(n_target=self.n_target, n_done=self.n_done, n_pending=self.n_pending, n_finite=self.n_finite,
                    n_nonfinite=self.n_nonfinite, blocks=self.blocks, wall_s=self.wall_s,
                    draws_per_s=self.draws_per_s, status=self.status, updated=self.updated)


# ---------------------------------------------------------------------------------------------
# block statistics


@dataclass(frozen=True, init=False)
class BlockStats(Moments):
    """Statistics of one block of draws: the :class:`Moments` of its ``count`` finite draws, the
    ``nonfinite`` draws left out (one of their entries was not finite), and ``samples``, the
    kept draws [count, K] (float32) at the coordinates the run keeps.

    ``sum`` is float32 [dim] for a whole block (:meth:`RunWriter.append`) and float64 for the
    saved block in progress (:meth:`RunWriter.save_pending`, resumed exactly). ``group_sizes``
    is empty where the caller does not give it: the store does not need it.
    """

    nonfinite: int
    samples: Any

    def __init__(self, count: int, nonfinite: int, sum: Any, m2: Any, sumsq: Any, samples: Any,  # noqa: A002
                 group_sizes: Sequence[int] = ()) -> None:
        for name, value in (("count", int(count)), ("sum", sum), ("m2", m2), ("sumsq", sumsq),
                            ("group_sizes", tuple(int(s) for s in group_sizes)), ("nonfinite", int(nonfinite)),
                            ("samples", samples)):
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, moments: Moments, nonfinite: int, samples: Any) -> BlockStats:
        return cls(moments.count, nonfinite, moments.sum, moments.m2, moments.sumsq, samples, moments.group_sizes)

    @property
    def draws(self) -> int:
        """Draws consumed: ``count + nonfinite``."""
        return self.count + self.nonfinite


PendingStats = BlockStats  # the saved part of the block in progress: the same statistics, float64 sums


__all__ = ["FIRST_LAYOUT_STATE", "IDENTITY", "JSON_ATTRS", "NONE", "PROGRESS_KEYS", "SCHEMA_VERSION", "STATE",
           "BlockStats", "PendingStats", "RunHeader", "RunProgress", "StateRow", "attr_value", "attrs_of",
           "identity_mismatch", "py_value"]
