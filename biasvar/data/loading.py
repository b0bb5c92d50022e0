"""Loading one split of a dataset variant: its files obtained, decoded, and turned into images in [0, 1].

Binarizing happens here: ``mnist-b`` thresholds ``pixel/255 > 0.5``, ``mnist`` and ``fmnist`` scale
grey levels to [0, 1], binarized MNIST is 0/1 already, and ``omniglot-d`` stays grey (its consumer
Bernoulli-samples it at every use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from biasvar.data import catalog
from biasvar.data.catalog import DATASETS, Dataset, DatasetInfo, Progress
from biasvar.data.decode import decode
from biasvar.data.download import obtain
from biasvar.data.locate import checked_root
from biasvar.errors import DataError


def _info(name: str, split: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; expected one of: {', '.join(DATASETS)}")
    info = DATASETS[name]
    if split not in info.split_files:
        raise DataError(f"dataset '{name}' has no split '{split}'; expected one of: {', '.join(info.splits)}")
    return info


def load(name: str, split: str = "train", *, data_dir: str | Path | None = None, download: bool | None = None,
         progress: Progress | None = None) -> Dataset:
    """Load one split of a dataset variant as float32 images [N, 784] in [0, 1].

    Args:
        name: a key of :data:`DATASETS`: mnist-b, mnist, omniglot-d, fmnist, binarized-mnist.
        split: train or test (binarized-mnist: train, valid or test).
        data_dir: the data directory (see :func:`data_dir`).
        download: fetch missing files from their canonical source: True = yes, False = never,
            None = yes unless ``$BIASVAR_OFFLINE`` is set.
        progress: called as ``progress(file_name, bytes_done, bytes_total_or_None)`` while downloading.

    Returns:
        A :class:`Dataset`; ``images`` rows are upright 28x28 images flattened row-major.

    Raises:
        DataError: unknown name or split, a missing file that could not be downloaded (the message
            names the full path to put it at and where to get it), or a corrupt file (the message
            names the file and the expected checksum).
    """
    info = _info(name, split)
    root = checked_root(data_dir, must_exist=False)
    paths = [obtain(catalog.FILES[key], root, download, progress) for key in info.split_files[split]]
    specs = [catalog.FILES[key] for key in info.split_files[split]]

    if info.reader == "chardata":
        var = "data" if split == "train" else "testdata"
        images = torch.from_numpy(np.array(decode(paths[0], "chardata", var)))    # float32 [N, 784]
    else:
        raw = decode(paths[0], specs[0].fmt)                                  # uint8 [N, 784]
        if info.reader == "idx-threshold":
            # pixel/255 > 0.5 <=> pixel >= 128
            images = torch.from_numpy((raw > 127).astype(np.float32))
        elif info.reader == "idx-grey":
            images = torch.from_numpy(raw.astype(np.float32)).div_(255.0)
        else:                                                                  # amat: already 0/1
            images = torch.from_numpy(raw.astype(np.float32))

    labels = None
    if info.labelled:
        lab = decode(paths[1], specs[1].fmt)
        if lab.shape[0] != images.shape[0]:
            raise DataError(f"{paths[1]} holds {lab.shape[0]} labels but {paths[0]} holds "
                            f"{images.shape[0]} images; the two files must be of the same split")
        if lab.size and lab.max() > 9:
            raise DataError(f"{paths[1]}: label {int(lab.max())} out of range, expected 0..9")
        labels = torch.from_numpy(lab.astype(np.int64))
    return Dataset(name=name, split=split, images=images, labels=labels, dynamic=info.dynamic,
                   files=tuple(str(p) for p in paths))

