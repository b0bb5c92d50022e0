"""Errors biasvar raises on purpose.

Every message says what was expected, what was received, and how to fix it. The CLI catches
:class:`BiasvarError` in one place and prints its message as one line (no traceback).
"""

from __future__ import annotations


class BiasvarError(Exception):
    """Base of every error biasvar raises on purpose."""


class SpecError(BiasvarError, ValueError):
    """An estimator spec that cannot be parsed or is out of range."""


class ShapeError(BiasvarError, ValueError):
    """Tensors whose shapes do not fit together."""


class DataError(BiasvarError):
    """A dataset file that is missing, corrupt or unreadable."""


class SnapshotError(BiasvarError):
    """A snapshot file that is missing, truncated, foreign or of a newer format."""


class StoreError(BiasvarError):
    """A run file that is missing, or whose attributes differ from the command."""


class WriterBusy(StoreError):
    """A run file that another live process is writing (it holds the run's lock)."""


class DiskFullError(BiasvarError, OSError):
    """A file that could not be written because the device of its folder is full (the old file, if any,
    is left as it was: every write is atomic, :mod:`biasvar.atomic`)."""


class OutOfMemory(BiasvarError):
    """Memory ran out during a run (a CPU ``MemoryError`` or allocation failure, a CUDA out-of-memory):
    what was drawn is saved, and the same command resumes it."""


class AnalysisError(BiasvarError, ValueError):
    """Runs that cannot be compared (different snapshots or parameter sets, too few blocks)."""


class UnsupportedError(BiasvarError, NotImplementedError):
    """An estimator x problem pair (or a feature) that is not implemented."""
