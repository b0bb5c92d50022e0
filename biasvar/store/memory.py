"""A run kept in memory instead of a file: what a sweep that writes only the statistics store
(``sweep --store-only``) draws into.

:class:`MemoryWriter` has the part of :class:`~biasvar.store.RunWriter`'s interface that
:func:`biasvar.engine.fill` uses: blocks are appended in draw order, and :meth:`MemoryWriter.run`
returns them as a :class:`~biasvar.store.RunData` whose attributes are those the same run file would
have (header, then the progress keys), so the statistics store computes the same numbers from it.

Differences from a run file, by design:

* the block sums can stay on a device (``device="cuda"``: a torch tensor), where the store's
  products are computed;
* the kept raw draws (``samples``) are not kept: the store does not use them;
* there is no block in progress to save: an interrupted run is lost whole (a store-only sweep is
  resumable per completed run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from biasvar.store.layout import BlockStats, RunHeader, RunProgress, StateRow, attr_value, attrs_of
from biasvar.store.reader import RunData


class MemoryWriter:
    """Blocks of one run, appended in memory (see the module docstring).

    Args:
        header: the run's header (as :func:`biasvar.engine.plan.run_header` makes it; needs
            ``block_size``).
        n_target: draws wanted.
        group_sizes: int64 [G].
        sample_index: int64 [K] (the coordinates a run file would keep; here only passed on to the
            block builder).
        exact: float64 [dim] exact gradient, or None.
        device: where the block sums are kept (None or ``cpu``: a numpy array; else a torch device).
        label: the run's name in the store (the file name it would have had).
    """

    def __init__(self, header: Mapping[str, Any], *, n_target: int, group_sizes: np.ndarray,
                 sample_index: np.ndarray, exact: np.ndarray | None = None, device: Any = None,
                 label: str = "") -> None:
        self.header = dict(header)
        parsed = RunHeader.from_attrs(attrs_of({k: attr_value(v) for k, v in self.header.items()}))
        if parsed.block_size is None:
            raise ValueError("a run header needs 'block_size'")
        self.block_size = int(parsed.block_size)
        self.stats_step = parsed.stats_step
        self.sample_index = np.asarray(sample_index, dtype=np.int64)
        self.group_sizes = np.asarray(group_sizes, dtype=np.int64)
        self.exact = None if exact is None else np.asarray(exact, dtype=np.float64)
        self.device = None if device is None or str(device) == "cpu" else device
        self.label = label
        self._row = StateRow(n_target=int(n_target))
        self._sums: list[Any] = []
        self._count: list[int] = []
        self._nonfinite: list[int] = []
        self._m2: list[np.ndarray] = []
        self._sumsq: list[np.ndarray] = []

    in_memory = True  # nothing is saved until the run is complete

    @property
    def path(self) -> str:
        return self.label

    # the writer interface fill() reads
    @property
    def n_done(self) -> int:
        return self._row.n_done

    @property
    def n_nonfinite(self) -> int:
        return self._row.n_nonfinite

    pending_draws = 0

    def pending(self) -> None:
        return None

    def save_pending(self, part: BlockStats, *, wall_s: float) -> None:
        """Nothing to save: a store-only run keeps no block in progress (only its time counts)."""
        self._row = replace(self._row, wall_s=self._row.wall_s + wall_s)

    def append(self, block: BlockStats, *, wall_s: float) -> None:
        """One whole block, in draw order (its float32 sum, as a run file stores it)."""
        s = np.asarray(block.sum, dtype=np.float32)
        if self.device is not None:
            import torch

            s = torch.as_tensor(s, device=self.device)
        self._sums.append(s)
        self._count.append(int(block.count))
        self._nonfinite.append(int(block.nonfinite))
        self._m2.append(np.asarray(block.m2, dtype=np.float64))
        self._sumsq.append(np.asarray(block.sumsq, dtype=np.float64))
        self._row = self._row.committed(block, wall_s)

    def finish(self) -> None:
        self._row = replace(self._row, complete=True)

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self) -> RunData:
        """The blocks so far as a run (``block_sum`` float32 [nb, dim]: numpy, or a tensor on the device)."""
        dim = int(self.group_sizes.sum())
        G = len(self.group_sizes)
        if self._sums and self.device is not None:
            import torch

            sums: Any = torch.stack(self._sums)
        elif self._sums:
            sums = np.stack(self._sums)
        else:
            sums = np.zeros((0, dim), np.float32)
        attrs = attrs_of({k: attr_value(v) for k, v in self.header.items()})
        attrs.update(RunProgress.of(self._row, live=False).to_attrs())
        header = RunHeader.from_attrs(attrs)
        return RunData(
            path=self.label, attrs=attrs, groups=header.groups, group_sizes=self.group_sizes,
            block_count=np.asarray(self._count, dtype=np.int64), block_nonfinite=np.asarray(self._nonfinite, np.int64),
            block_sum=sums, block_m2=np.stack(self._m2) if self._m2 else np.zeros((0, G)),
            block_sumsq=np.stack(self._sumsq) if self._sumsq else np.zeros((0, G)), samples=None,
            sample_index=self.sample_index, exact=self.exact)


__all__ = ["MemoryWriter"]
