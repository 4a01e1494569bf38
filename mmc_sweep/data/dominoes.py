"""The paper's Dominoes: a FashionMNIST image stacked above a CIFAR-10 image (input (3, 64, 32)).

As in the reference (``syndata.py``): CIFAR-10 class ``c`` is paired with FashionMNIST class ``c``
(airplane with T-shirt/top, ..., truck with ankle boot), and within a split the k-th CIFAR image of
class ``c`` always carries the k-th FashionMNIST image of class ``c`` of the same split (train with
train, test with test). An image without the cue has a black top half (zeros, the FashionMNIST
background); a random cue is a uniformly random FashionMNIST image of the split, so of a random class.

The cue keys (see :mod:`.cues`) of this cue are indices into its bank of FashionMNIST images, so one
:class:`FashionDominoesCue` serves one split.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .cues import Cue


def pair_by_class(labels: Tensor, partner_labels: Tensor) -> Tensor:
    """For each item of ``labels`` (a split, in order), the index of its partner in ``partner_labels``:
    the k-th item of class c gets the k-th partner of class c.

    The reference's association; it wraps around (k modulo the partners of class c) only when the
    partners have fewer images of a class than the items, which never happens with the real files
    (FashionMNIST has 6000 / 1000 per class, CIFAR-10 5000 / 1000). ``ValueError`` when an item's class
    has no partner at all.
    """
    labels, partner_labels = labels.cpu(), partner_labels.cpu()
    classes = int(max(labels.max(), partner_labels.max())) + 1 if labels.numel() else 1
    count = torch.bincount(labels, minlength=classes)
    partner_count = torch.bincount(partner_labels, minlength=classes)
    lonely = (count > 0) & (partner_count == 0)
    if bool(lonely.any()):
        raise ValueError(f"no partner image of class(es) {lonely.nonzero().flatten().tolist()} to pair with")
    # rank of each item among the items of its class, in split order (a stable sort keeps that order)
    _, order = torch.sort(labels, stable=True)
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels)) - (torch.cumsum(count, 0) - count)[labels[order]]
    partners_sorted = torch.sort(partner_labels, stable=True).indices   # partner indices grouped by class
    partner_start = torch.cumsum(partner_count, 0) - partner_count
    wrapped = rank % partner_count[labels].clamp(min=1)
    return partners_sorted[partner_start[labels] + wrapped]


class FashionDominoesCue(Cue):
    """The Dominoes cue of one split: canvas (N, 3, 2H, W) with a black top half; ``paint`` puts the
    FashionMNIST image ``bank[key]`` (grey, as RGB) on top.

    ``bank``: (M, H, W) uint8 grey images (see :func:`~mmc_sweep.data.fashion.load_fashion`),
    ``bank_labels``: (M,) their classes. Keys are indices into the bank.
    """

    def __init__(self, num_classes: int, bank: Tensor, bank_labels: Tensor) -> None:
        super().__init__(num_classes)
        if bank.ndim != 3 or bank.dtype != torch.uint8 or bank.shape[0] != bank_labels.shape[0] or bank.shape[0] < 1:
            raise ValueError(f"bank: expected (M, H, W) uint8 images and M labels, got {tuple(bank.shape)} "
                             f"{bank.dtype} and {tuple(bank_labels.shape)}")
        self.bank, self.bank_labels = bank.cpu(), bank_labels.cpu().long()

    def canvas(self, x: Tensor) -> Tensor:
        return torch.cat([torch.zeros_like(x), x], dim=2)

    def simple_image(self, keys: Tensor) -> Tensor:
        """(N, 3, H, W) float in [0, 1]: the bank images ``keys`` with their grey plane in all channels."""
        grey = self.bank[keys.cpu()].float().div_(255.0)   # uint8 -> [0, 1], as ToTensor does
        return grey.unsqueeze(1).expand(-1, 3, -1, -1)

    def paint(self, canvas: Tensor, keys: Tensor) -> Tensor:
        h = canvas.shape[2] // 2
        if canvas.shape[2] != 2 * h or self.bank.shape[1:] != (h, canvas.shape[3]):
            raise ValueError(f"dominoes canvas: expected (N, 3, {2 * self.bank.shape[1]}, {self.bank.shape[2]}), "
                             f"got {tuple(canvas.shape)}")
        top = self.simple_image(keys).to(device=canvas.device, dtype=canvas.dtype)
        return torch.cat([top, canvas[:, :, h:]], dim=2)

    def own_keys(self, labels: Tensor) -> Tensor:
        """The bank image paired with each item of the split (:func:`pair_by_class`)."""
        return pair_by_class(labels, self.bank_labels).to(labels.device)

    def random_keys(self, n: int, generator: torch.Generator) -> Tensor:
        """Uniformly random bank images (so of random classes), drawn on the CPU."""
        return torch.randint(0, self.bank.shape[0], (n,), generator=generator)

    def __repr__(self) -> str:
        return f"FashionDominoesCue(num_classes={self.num_classes}, bank={tuple(self.bank.shape)})"
