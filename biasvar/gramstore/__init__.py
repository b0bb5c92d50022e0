"""The statistics store: measure once, analyse forever.

Every analysis of a snapshot's runs — Eq. 16 against any reference, V, MSE, cosine, every interval
method, paired contrasts, Pareto marks, per-group rows — is a function of the inner products
between the runs' block sums and a few numbers per block. The store keeps exactly those for all the
runs of one snapshot in one small HDF5 file (``<runs>/<snapshot>/gram-store.hdf5``), so the run
files (about 160 MB each on the Fig. 1 VAE) can be deleted, or left on a lent machine, and every
analysis still runs.

* :mod:`~biasvar.gramstore.anchored` — the anchored Gram matrix and the pair Gram matrices of any
  pair of runs derived from it;
* :mod:`~biasvar.gramstore.build` — computing it from run files, panel by panel, in bounded memory;
* :mod:`~biasvar.gramstore.file` — the file format (versioned, checksummed, written atomically);
* :mod:`~biasvar.gramstore.update` — building or updating a snapshot's store from a runs folder;
* :mod:`~biasvar.gramstore.runs` — a stored run as the analysis reads it (header, block statistics);
* :mod:`~biasvar.gramstore.maintenance` — deleting the run files a store holds whole.
"""

from biasvar.gramstore.anchored import AnchoredGram, RunRows, pair_gram, single_gram
from biasvar.gramstore.build import GramState
from biasvar.gramstore.file import FILE_NAME, read_store, store_path, write_store
from biasvar.gramstore.runs import StoredRun, stored_runs
from biasvar.gramstore.update import UpdateResult, update_store

__all__ = ["FILE_NAME", "AnchoredGram", "GramState", "RunRows", "StoredRun", "UpdateResult", "pair_gram", "read_store",
           "single_gram", "store_path", "stored_runs", "update_store", "write_store"]
