"""Dataset files: locate, verify checksums, decode, binarize (App. B.3; docs/estimators.md, "Datasets").

Five variants are served by :func:`load` (see :data:`DATASETS`):

==================  =====================================================  ===================
name                images [N, 784] float32                                 splits
==================  =====================================================  ===================
``mnist``           MNIST grey levels ``pixel / 255`` in [0, 1], labels      train, test
``mnist-b``         MNIST-B: ``pixel / 255 > 0.5`` (static), labels          train, test
``fmnist``          Fashion-MNIST grey levels in [0, 1], labels              train, test
``omniglot-d``      Burda's 28x28 Omniglot grey probabilities, ``dynamic``   train, test
``binarized-mnist`` Larochelle's statically binarized MNIST (exactly 0/1)    train, valid, test
==================  =====================================================  ===================

``omniglot-d`` is dynamically binarized: the *consumer* Bernoulli-samples the grey images at every
use with its own seeded generator (``Problem.make_batch`` does ``torch.bernoulli(x, generator=g)``).

Files live under a data directory (:func:`data_dir`: ``--data-dir``, else ``$BIASVAR_DATA``, else
``$XDG_CACHE_HOME/biasvar`` or ``~/.cache/biasvar``), laid out as ``../shared/data`` is::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    binarized_mnist/binarized_mnist_{train,valid,test}.amat
    omniglot/chardata.mat

Files placed flat in the data directory are accepted too (MNIST and Fashion-MNIST share file names;
a flat file counts for the collection whose checksum it matches).

Every file is verified before it is decoded: MD5 for MNIST, Fashion-MNIST and Omniglot (public
values), SHA256 of the MATLAB copies for binarized MNIST, or, for the real ASCII ``.amat``, a check of
its shape and values. A missing file is downloaded from its canonical source when ``download`` allows
(into a temporary file, verified, then renamed); set ``BIASVAR_OFFLINE=1`` to make ``download=None``
mean "never". Digests and decoded arrays are cached in-process, keyed by (path, size, mtime, ctime,
inode), so repeated loads neither re-hash nor re-decode; :func:`clear_cache` empties the caches.

One job per module:

* :mod:`biasvar.data.catalog` — the file table (names, checksums, sources) and the dataset variants
  (:data:`DATASETS`), with the types :func:`load` and :func:`verify` return;
* :mod:`biasvar.data.locate` — the data directory and where a file is found in it;
* :mod:`biasvar.data.decode` — IDX, MATLAB and ASCII ``.amat`` readers, cached per file identity;
* :mod:`biasvar.data.checksums` — digests and the verification of one file;
* :mod:`biasvar.data.download` — obtaining a file: found and verified, or downloaded;
* :mod:`biasvar.data.loading` — :func:`load`: one split of a variant as images in [0, 1] (binarizing);
* :mod:`biasvar.data.inventory` — :func:`verify`: the state of every known file.
"""

from biasvar.data.catalog import DATASETS, Dataset, DatasetInfo, FileSpec, FileStatus, Progress
from biasvar.data.checksums import clear_cache
from biasvar.data.inventory import verify
from biasvar.data.loading import load
from biasvar.data.locate import data_dir

__all__ = [
    "DATASETS", "Dataset", "DatasetInfo", "FileSpec", "FileStatus", "Progress",
    "clear_cache", "data_dir", "load", "verify",
]
