"""FashionMNIST from a local folder, for the paper's Dominoes. Nothing is downloaded.

The four idx files of the FashionMNIST release, un-gzipped, under ``<root>/FashionMNIST/raw/`` (the
layout torchvision uses) are read with ``torchvision.datasets.FashionMNIST(root, download=False)``.
Images are turned into what the reference feeds its Dominoes: grey replicated to RGB and resized from
28 to the CIFAR side (32 px) with PIL's bilinear filter. They are kept as one grey uint8 plane, the
exact values the reference produces before ``ToTensor`` (a 60000-image bank is 61 MB instead of 737 MB
of float RGB); :class:`~mmc_sweep.data.dominoes.FashionDominoesCue` expands them when it paints.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

from ..errors import InputError

FOLDER = os.path.join("FashionMNIST", "raw")   # under data.root, as torchvision expects
FILES = {  # split -> (images, labels)
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_CLASSES = 10
_SOURCE = "https://github.com/zalandoresearch/fashion-mnist"


class DataRootError(InputError, ValueError):
    """A file under ``data.root`` is missing or unreadable: bad input (exit 2, one line) and a
    ``ValueError`` (what the study's pre-flight check turns into its one-line error)."""


def fashion_files(root: str) -> list[str]:
    """The four paths torchvision reads, both splits (it insists on all four whichever split is read)."""
    return [os.path.join(root, FOLDER, name) for pair in FILES.values() for name in pair]


def check_fashion_files(root: str) -> None:
    """``DataRootError`` naming ``data.root`` and every missing file, in one line, unless all four exist."""
    missing = [p for p in fashion_files(root) if not os.path.isfile(p)]
    if not missing:
        return
    names = ", ".join(os.path.basename(p) for p in missing)
    zipped = [p for p in missing if os.path.isfile(p + ".gz")]
    hint = (f"gunzip the .gz files already in {os.path.join(root, FOLDER)}" if zipped else
            f"put the four files of the FashionMNIST release ({_SOURCE}), un-gzipped, there")
    raise DataRootError(
        f"data.root: cifar10_dominoes expects the FashionMNIST idx files in {os.path.join(root, FOLDER)}{os.sep} "
        f"(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte); "
        f"missing: {names}; {hint} (nothing is downloaded)")


def read_fashion(root: str, train: bool) -> tuple[Tensor, Tensor]:
    """Raw images (N, 28, 28) uint8 and labels (N,) int64 of one split, through torchvision's reader."""
    check_fashion_files(root)
    from torchvision.datasets import FashionMNIST   # imported here: only the Dominoes need torchvision

    try:
        split = FashionMNIST(root, train=train, download=False)
        images, labels = split.data, split.targets.long()
    except Exception as err:   # truncated or foreign file: torchvision's parser fails in many ways
        first = (str(err).splitlines() or [""])[0]
        raise DataRootError(f"data.root: {os.path.join(root, FOLDER, FILES[train][0])} (or its labels file) is not "
                            f"a FashionMNIST idx file ({type(err).__name__}: {first})") from err
    if images.ndim != 3 or images.shape[0] != labels.shape[0] or images.dtype != torch.uint8:
        raise DataRootError(f"data.root: {os.path.join(root, FOLDER, FILES[train][0])} holds {tuple(images.shape)} "
                            f"{images.dtype} images for {labels.shape[0]} labels; expected (N, 28, 28) uint8 and N labels")
    if labels.numel() and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataRootError(f"data.root: labels in {os.path.join(root, FOLDER, FILES[train][1])} fall outside [0, {NUM_CLASSES})")
    return images, labels


def load_fashion(root: str, train: bool, side: int = 32) -> tuple[Tensor, Tensor]:
    """One split as the reference feeds it: (N, side, side) uint8 grey and labels (N,) int64, CPU.

    The resize is torchvision's bilinear resize of uint8 images with antialiasing, which gives the
    same bytes as PIL's bilinear ``Resize`` the reference applies to its RGB-converted images (the
    three channels of those are equal, so one plane is kept).
    """
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import resize

    images, labels = read_fashion(root, train)
    if images.shape[1:] != (side, side):
        images = resize(images.unsqueeze(1), [side, side], interpolation=InterpolationMode.BILINEAR, antialias=True)[:, 0]
    return images.contiguous(), labels
