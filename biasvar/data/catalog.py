"""The dataset file table and the dataset variants (see :mod:`biasvar.data`).

:data:`FILES` maps a key (``"mnist/train-images"``) to a :class:`FileSpec`: where the file lives
under the data directory, the checksums accepted, the sources to download it from. :data:`DATASETS`
maps a variant (``mnist-b``) to the files of each split and how they become images. :class:`Dataset`
and :class:`FileStatus` are what :func:`biasvar.data.load` and :func:`biasvar.data.verify` return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

import torch

Progress = Callable[[str, int, "int | None"], None]
"""Download progress callback: ``progress(file_name, bytes_done, bytes_total_or_None)``."""

IMAGE_SIZE = 28 * 28


@dataclass(frozen=True)
class FileSpec:
    """One dataset file: where it lives under the data dir, how it is checked, where to get it."""

    key: str                                   # "mnist/train-images"
    collection: str                            # mnist | fashion-mnist | binarized-mnist | omniglot
    split: str                                 # train | valid | test | train+test
    role: str                                  # images | labels | images (data + testdata)
    relpath: str                               # path under the data dir (POSIX)
    fmt: str                                   # idx-images | idx-labels | amat | chardata
    checksums: tuple[tuple[str, str], ...]     # accepted (hashlib algorithm, hex digest)
    urls: tuple[str, ...]                      # canonical source first, then mirrors
    size: int | None = None                    # bytes of the canonical file, when known
    rows: int | None = None                    # images in the file (checked for .amat)
    aliases: tuple[str, ...] = ()              # other names accepted flat in the data dir

    @property
    def name(self) -> str:
        return PurePosixPath(self.relpath).name


_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_BMNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_OMNIGLOT_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"


def _idx(collection: str, folder: str, urls: tuple[str, ...], split: str, role: str, md5: str,
         size: int | None, rows: int) -> FileSpec:
    stem = "train" if split == "train" else "t10k"
    name = f"{stem}-{role}-{'idx3' if role == 'images' else 'idx1'}-ubyte.gz"
    return FileSpec(key=f"{collection}/{split}-{role}", collection=collection, split=split, role=role,
                    relpath=f"{folder}/{name}", fmt=f"idx-{role}", checksums=(("md5", md5),),
                    urls=tuple(u + name for u in urls), size=size, rows=rows)


def _amat(split: str, sha256: str, rows: int) -> FileSpec:
    name = f"binarized_mnist_{split}.amat"
    # No canonical checksum of Larochelle's ASCII files is published: the SHA256 below is that of the
    # MATLAB copies in ../shared/data (SHA256SUMS); an ASCII .amat is accepted when well formed
    # (`rows` lines of 784 values in {0, 1}).
    return FileSpec(key=f"binarized-mnist/{split}", collection="binarized-mnist", split=split,
                    role="images", relpath=f"binarized_mnist/{name}", fmt="amat",
                    checksums=(("sha256", sha256),), urls=(_BMNIST_URL + name,), rows=rows)


_FILE_LIST = (
    # MNIST: MD5s are the public values (../shared/data/README.md).
    _idx("mnist", "mnist", _MNIST_URLS, "train", "images",
         "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422, 60000),
    _idx("mnist", "mnist", _MNIST_URLS, "train", "labels",
         "d53e105ee54ea40749a09fcbcd1e9432", 28881, 60000),
    _idx("mnist", "mnist", _MNIST_URLS, "test", "images",
         "9fb629c4189551a2d022fa330f9573f3", 1648877, 10000),
    _idx("mnist", "mnist", _MNIST_URLS, "test", "labels",
         "ec29112dd5afa0611ce80d1b7f02629c", 4542, 10000),
    # Fashion-MNIST: MD5s from the Fashion-MNIST README.
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "train", "images",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", None, 60000),
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "train", "labels",
         "25c81989df183df01b3e8a0aad5dffbe", 29515, 60000),
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "test", "images",
         "bef4ecab320f06d8554ea6380940ec79", None, 10000),
    _idx("fashion-mnist", "fashion-mnist", (_FMNIST_URL,), "test", "labels",
         "bb300cfdad3c16e7a12a480ee83cd310", 5148, 10000),
    # Statically binarized MNIST (Larochelle & Murray 2011).
    _amat("train", "79a0312c7389d855cfc97e3812de3998417c5829d8a51543b56a90a91252ae7e", 50000),
    _amat("valid", "7436afc856959075c7787025bb8a4ba2b520b9230ee39667c66aa7dd2819dd68", 10000),
    _amat("test", "5bc30222e1e7896cbccd1e1db6b28540cc1230f4d2d5473841a5f6cc54be8d38", 10000),
    # Burda et al.'s 28x28 Omniglot (IWAE repo); ARM-gradient stores the same blob as omniglot.mat.
    FileSpec(key="omniglot/chardata", collection="omniglot", split="train+test", role="images",
             relpath="omniglot/chardata.mat", fmt="chardata",
             checksums=(("md5", "21ecaf34373511aa7691cf2e0802aa3d"),), urls=(_OMNIGLOT_URL,),
             aliases=("omniglot.mat",)),
)
FILES: Mapping[str, FileSpec] = MappingProxyType({f.key: f for f in _FILE_LIST})


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset variant: which files each split reads and how they become images in [0, 1]."""

    name: str
    summary: str
    split_files: Mapping[str, tuple[str, ...]]   # split -> file keys (images first, then labels)
    reader: str                                  # idx-grey | idx-threshold | chardata | amat
    binary: bool                                 # images exactly 0/1
    dynamic: bool                                # Bernoulli-sampled by the consumer at every use
    labelled: bool

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_files)


def _idx_splits(collection: str) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({s: (f"{collection}/{s}-images", f"{collection}/{s}-labels")
                             for s in ("train", "test")})


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({
    "mnist-b": DatasetInfo("mnist-b", "MNIST thresholded at 0.5 (pixel/255 > 0.5), static",
                           _idx_splits("mnist"), "idx-threshold", binary=True, dynamic=False, labelled=True),
    "mnist": DatasetInfo("mnist", "MNIST grey levels pixel/255 in [0, 1]", _idx_splits("mnist"),
                         "idx-grey", binary=False, dynamic=False, labelled=True),
    "omniglot-d": DatasetInfo("omniglot-d",
                              "Burda's 28x28 Omniglot grey probabilities, re-binarized at every use",
                              MappingProxyType({s: ("omniglot/chardata",) for s in ("train", "test")}),
                              "chardata", binary=False, dynamic=True, labelled=False),
    "fmnist": DatasetInfo("fmnist", "Fashion-MNIST grey levels pixel/255 in [0, 1]",
                          _idx_splits("fashion-mnist"), "idx-grey",
                          binary=False, dynamic=False, labelled=True),
    "binarized-mnist": DatasetInfo("binarized-mnist",
                                   "Larochelle's statically binarized MNIST (train/valid/test)",
                                   MappingProxyType({s: (f"binarized-mnist/{s}",)
                                                     for s in ("train", "valid", "test")}),
                                   "amat", binary=True, dynamic=False, labelled=False),
})


@dataclass(frozen=True, eq=False)
class Dataset:
    """What :func:`load` returns.

    Attributes:
        name: the variant (a key of :data:`DATASETS`).
        split: train, test (or valid for ``binarized-mnist``).
        images: float32 [N, 784] in [0, 1], rows are upright 28x28 images in row-major order;
            exactly 0/1 for the binary variants, grey probabilities for ``omniglot-d``.
        labels: int64 [N] class labels (``mnist``, ``mnist-b``, ``fmnist``), else None.
        dynamic: True for ``omniglot-d``: the consumer Bernoulli-samples ``images`` at every use.
        files: the paths read.
    """

    name: str
    split: str
    images: torch.Tensor = field(repr=False)
    labels: torch.Tensor | None = field(repr=False)
    dynamic: bool
    files: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class FileStatus:
    """One row of :func:`verify`: a known dataset file and what was found."""

    dataset: str            # the collection: mnist, fashion-mnist, binarized-mnist, omniglot
    split: str
    path: Path              # where it was found, or where it should be put
    state: str              # present | missing | corrupt
    detail: str
    role: str = "images"    # images | labels
    used_by: tuple[str, ...] = ()   # variants of DATASETS that read it

