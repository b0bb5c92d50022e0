"""Which run files and which draws a command works on: the snapshot-id prefix filter of a runs folder
(``ls``, ``compact``, ``merge``) and the draw range of one shard of a run (``sample --shard``).

Light at import (no torch, h5py): the shard range is computed by :mod:`biasvar.engine.shards`,
imported where it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from biasvar.errors import SpecError
from biasvar.names import SNAPSHOT_ID_LENGTH

T = TypeVar("T")


def snapshot_prefix(snapshot_id: str | None) -> str:
    """The folder-name prefix a snapshot id (or hash prefix, any case) selects; ``""`` selects every
    snapshot. A full hash is cut to the id length: the folders are named by the id."""
    return (snapshot_id or "").strip().lower()[:SNAPSHOT_ID_LENGTH]


def of_snapshot(path: str | Path, snapshot_id: str | None) -> bool:
    """Whether the run file ``path`` (``<runs>/<snapshot id>/<run>``) lies in a folder that
    ``snapshot_id`` selects (:func:`snapshot_prefix`)."""
    return Path(path).parent.name.lower().startswith(snapshot_prefix(snapshot_id))


def select_snapshot(items: Iterable[T], snapshot_id: str | None,
                    path: Callable[[T], str | Path] = lambda item: item) -> list[T]:
    """The items (run files, or records with a ``path``) in folders that ``snapshot_id`` selects."""
    return [item for item in items if of_snapshot(path(item), snapshot_id)]


def shard_range(shard: str, n: int, block_size: int) -> tuple[int, int, int, int]:
    """``"i/N"`` -> ``(i, N, first, end)``: shard ``i`` of ``N`` of a run of ``n`` draws in blocks of
    ``block_size`` covers draws ``[first, end)``.

    Raises:
        SpecError: ``shard`` is not ``i/N`` with ``0 <= i < N``, or the run has fewer blocks than
            ``N`` (a shard would have no draws).
    """
    from biasvar.engine import shards as sh

    i, count = sh.parse_shard(shard)
    ranges = sh.shard_ranges(n, block_size, count)
    if count > len(ranges):
        raise SpecError(f"shard {shard}: the run has only {len(ranges)} blocks of {block_size} draws, so at "
                        f"most {len(ranges)} shards; use fewer draws or a smaller block size")
    first, end = ranges[i]
    return i, count, first, end
