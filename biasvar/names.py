"""The names the library defines and the CLI shows, in one light module (no torch, scipy, matplotlib,
h5py): the CLI imports them for its help and option choices without loading the heavy modules, and
the library modules that define the objects behind the names import them from here.

A module that holds a table of the objects (problems, interval methods, bench problems) keys it by
these names, which ``tests/test_cli_names.py`` checks; ``biasvar.store`` still keeps its own copies of
the filter names, checked there too until it imports them from here.
"""

from __future__ import annotations

#: Built-in problem kinds (:data:`biasvar.problems.registry.PROBLEMS`): ``train --model``.
MODELS: tuple[str, ...] = ("toy-cat", "vae", "hvae", "quant-unit", "qnet")

#: Dataset each problem kind trains on by default (None: the problem has no data).
DEFAULT_DATA: dict[str, str | None] = {"vae": "mnist-b", "hvae": "mnist-b", "qnet": "fmnist", "toy-cat": None,
                                       "quant-unit": None}

#: Bench problems and default estimators (:mod:`biasvar.studies.bench`): ``bench --bench``.
BENCH_PROBLEMS: tuple[str, ...] = ("vae-fig1", "hvae", "toy-cat")
BENCH_ESTIMATORS: tuple[str, ...] = ("zgr", "gr-mc(t=0.1,M=100)", "rf(M=4)")

#: Where a sweep's runs are computed (:data:`biasvar.engine.executors.EXECUTORS`).
EXECUTORS: tuple[str, ...] = ("local", "ray")

#: Lossless filters of the block sums (:data:`biasvar.store.FILTERS`), the default and its variable.
FILTER_NAMES: tuple[str, ...] = ("none", "gzip", "lzf")
DEFAULT_FILTER = "gzip"
FILTER_ENV = "BIASVAR_RUN_COMPRESSION"

#: Interval methods (:data:`biasvar.stats.intervals.METHODS`) and the default.
METHODS: tuple[str, ...] = ("gauss-eb", "gauss-fit", "pivot", "jackknife-t", "percentile", "basic", "bca")
DEFAULT_METHOD = "gauss-eb"

#: Report formats (:mod:`biasvar.formats`; ``table`` is the CLI's rich table).
REPORT_FORMATS: tuple[str, ...] = ("table", "md", "json", "csv")

#: Floating-point types a run can be computed in (:func:`biasvar.device.resolve_dtype`).
#: ``tf32``: float32 numbers with TF32 tensor-core matmuls (CUDA only; :func:`biasvar.device.matmul_precision`).
DTYPES: tuple[str, ...] = ("float32", "float64", "tf32")

#: Devices (:func:`biasvar.device.resolve_device`): these, or ``cuda:N``.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: Figures of ``biasvar plot`` and what ``biasvar reproduce`` makes (:data:`biasvar.presets.FIGURES`).
PLOT_FIGURES: tuple[str, ...] = ("fig1", "pareto", "quant-unit")
REPRODUCE_FIGURES: tuple[str, ...] = ("fig1", "fig4", "all")
#: The appendix studies of ``biasvar reproduce`` (:mod:`biasvar.studies.appendix`): App. B.4 and B.6.
REPRODUCE_APPENDIX: tuple[str, ...] = ("b4", "b6")

#: Length of a snapshot id: the first characters of the snapshot's content hash.
SNAPSHOT_ID_LENGTH = 12
