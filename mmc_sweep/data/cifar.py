"""CIFAR-10 / CIFAR-100 from a local folder in torchvision's on-disk format. Nothing is downloaded.

The files are the pickled batches of the "python version" archives, extracted under ``root``:
``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch}`` and
``<root>/cifar-100-python/{train, test}``. They are read here directly, in the same way as
``torchvision.datasets.CIFAR10/100`` reads them, because torchvision insists on the md5 sums of the
full archives, which would also reject the tiny files that tests write.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from ..errors import InputError
from .imageset import ImageSet

_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"
# name -> (folder, archive, training files, test files, label key, classes)
_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels", 10),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ("train",), ("test",), "fine_labels", 100),
}
_PIXELS = 3 * 32 * 32


def cifar_num_classes(name: str) -> int:
    """10 for cifar10, 100 for cifar100."""
    return _layout(name)[5]


def _layout(name: str) -> tuple:
    if name not in _LAYOUT:
        raise ValueError(f"unknown cifar set {name!r}; valid: {', '.join(_LAYOUT)}")
    return _LAYOUT[name]


def load_cifar(name: str, root: str, train: bool) -> ImageSet:
    """The whole training or test split as float32 (N, 3, 32, 32) in [0, 1] on the CPU."""
    folder, archive, train_files, test_files, label_key, num_classes = _layout(name)
    base = os.path.join(root, folder)
    data, labels = [], []
    for file_name in train_files if train else test_files:
        path = os.path.join(base, file_name)
        if not os.path.isfile(path):
            missing = f"folder {base}{os.sep}" if not os.path.isdir(base) else f"file {path}"
            raise InputError(
                f"{name}: {missing} not found; extract the python-version archive {archive} ({_SOURCE}) "
                f"into data.root={root!r} so that it holds {folder}{os.sep} (nothing is downloaded)"
            )
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            batch = np.asarray(entry["data"], dtype=np.uint8)
            batch_labels = np.asarray(entry[label_key], dtype=np.int64)
        except Exception as err:  # unreadable pickle, missing key: the file is not what we expect
            raise InputError(f"{name}: {path} is not a CIFAR python-version batch ({type(err).__name__}: {err})") from err
        if batch.ndim != 2 or batch.shape[1] != _PIXELS or batch.shape[0] != batch_labels.shape[0]:
            raise InputError(f"{name}: {path} holds data of shape {batch.shape} and {batch_labels.shape[0]} labels; "
                             f"expected (N, {_PIXELS}) and N labels")
        data.append(batch)
        labels.append(batch_labels)
    y = torch.from_numpy(np.concatenate(labels))
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(f"{name}: labels under {base} fall outside [0, {num_classes})")
    # rows are stored channel-major (R plane, G plane, B plane), i.e. already (3, 32, 32)
    x = torch.from_numpy(np.concatenate(data)).view(-1, 3, 32, 32).float().div_(255.0)
    return ImageSet(x, y)
