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

from ..config import DataSpec
from ..errors import InputError
from .fashion import read_fashion
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


def _read_batch(path: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Data (N, 3072) uint8 and labels (N,) of one pickled batch; ``ValueError`` saying what is wrong."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        batch = np.asarray(entry["data"], dtype=np.uint8)
        batch_labels = np.asarray(entry[label_key], dtype=np.int64)
    except Exception as err:  # unreadable pickle, missing key: the file is not what we expect
        first = (str(err).splitlines() or [""])[0]
        raise ValueError(f"{path} is not a CIFAR python-version batch ({type(err).__name__}: {first})") from err
    if batch.ndim != 2 or batch.shape[1] != _PIXELS or batch_labels.ndim != 1 or batch.shape[0] != batch_labels.size:
        raise ValueError(f"{path} holds data of shape {batch.shape} and {batch_labels.size} labels; "
                         f"expected (N, {_PIXELS}) and N labels")
    return batch, batch_labels


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
            batch, batch_labels = _read_batch(path, label_key)
        except ValueError as err:
            raise InputError(f"{name}: {err}") from err
        data.append(batch)
        labels.append(batch_labels)
    y = torch.from_numpy(np.concatenate(labels))
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(f"{name}: labels under {base} fall outside [0, {num_classes})")
    # rows are stored channel-major (R plane, G plane, B plane), i.e. already (3, 32, 32)
    x = torch.from_numpy(np.concatenate(data)).view(-1, 3, 32, 32).float().div_(255.0)
    return ImageSet(x, y)


def check_data_root(spec: DataSpec) -> np.ndarray:
    """Check, without building a task, that ``spec.root`` holds the CIFAR set of ``spec.dataset``: the
    folder, every batch file, each a CIFAR batch with labels in range; for ``cifar10_dominoes`` also the
    FashionMNIST files, with every class of each CIFAR-10 split present in the same FashionMNIST split.
    Returns the training images per class (their count bounds ``n_clean``). ``ValueError`` naming
    ``data.root`` otherwise.

    Every file is read once (about a second for the real sets), so that a study fails here, before
    Ray starts, rather than in every trial.
    """
    name = "cifar10" if spec.dataset == "cifar10_dominoes" else spec.dataset
    counts = _check_cifar_root(spec.root, name)
    if spec.dataset == "cifar10_dominoes" and spec.effective_cue == "dominoes":
        _check_fashion_partners(spec.root)
    return counts


def _check_fashion_partners(root: str) -> None:
    """Every class of each CIFAR-10 split has FashionMNIST images in the same split to pair with."""
    folder, _, train_files, test_files, label_key, num_classes = _layout("cifar10")
    for train, files in ((True, train_files), (False, test_files)):
        _, fashion_labels = read_fashion(root, train)
        cifar = np.concatenate([_read_batch(os.path.join(root, folder, f), label_key)[1] for f in files])
        lonely = sorted(set(cifar.tolist()) - set(fashion_labels.tolist()))
        if lonely:
            split = "train" if train else "t10k"
            raise ValueError(f"data.root: the FashionMNIST {split} files hold no image of class(es) {lonely}, "
                             f"which the CIFAR-10 {'training' if train else 'test'} images need as partners")


def _check_cifar_root(root: str, name: str) -> np.ndarray:
    """:func:`check_data_root` for one CIFAR set: its training images per class."""
    folder, archive, train_files, test_files, label_key, num_classes = _layout(name)
    base = os.path.join(root, folder)
    expected = f"a folder holding {folder}{os.sep} (extract {archive} from {_SOURCE} into it; nothing is downloaded)"
    if not os.path.isdir(root):
        raise ValueError(f"data.root: expected {expected}, got {root!r} ({'a file' if os.path.exists(root) else 'no such folder'})")
    if not os.path.isdir(base):
        raise ValueError(f"data.root: expected {expected}, got {root!r} (no {folder}{os.sep} in it)")
    counts = np.zeros(num_classes, dtype=np.int64)
    for file_name in train_files + test_files:
        path = os.path.join(base, file_name)
        if not os.path.isfile(path):
            raise ValueError(f"data.root: expected the file {path} (from {archive}), got {'a folder' if os.path.isdir(path) else 'none'}")
        try:
            _, labels = _read_batch(path, label_key)
        except ValueError as err:
            raise ValueError(f"data.root: {err}") from None
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"data.root: expected labels in [0, {num_classes}) in {path}, got [{labels.min()}, {labels.max()}]")
        if file_name in train_files:
            counts += np.bincount(labels, minlength=num_classes)
    return counts
