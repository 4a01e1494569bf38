"""A cue task: training images (some carrying their label's cue), clean subsets, and test views.

:func:`build_task` turns a :class:`~mmc_sweep.config.DataSpec` into tensors once; everything random
(images, which training images carry the cue, the random cues and images of the views, clean
subsets) is fixed by seeds derived from ``spec.seed``, and drawn on the CPU so that the result does
not depend on the device the task is moved to.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import DataSpec
from .cifar import cifar_num_classes, load_cifar
from .cues import Cue, make_cue
from .imageset import ImageSet
from .shapes import generate_shapes
from .views import make_views


def derive_seed(seed: int, tag: str) -> int:
    """A 63-bit seed for the stream ``tag`` of ``seed``: streams are independent, stable across runs."""
    digest = hashlib.sha256(f"{seed}:{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value; compare fields
class CueTask:
    """Everything a run needs from the data, as tensors on one device."""

    spec: DataSpec
    num_classes: int
    cue: Cue
    train: ImageSet               # training images; the cue_proportion fraction in train_cue_mask is cued
    train_cue_mask: Tensor        # (N_train,) bool: which training images carry their label's cue
    train_clean: ImageSet         # the same training images, no cue at all
    train_cue: ImageSet           # the same training images, all carrying their label's cue
    views: dict[str, ImageSet]    # counterfactual views of the test set, keys = config.VIEWS

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of the model input (dominoes: (3, 2H, W))."""
        return tuple(self.train.x.shape[1:])

    def clean_subset(self, n_clean: int, seed: int) -> ImageSet:
        """``n_clean`` training images without any cue, class-balanced, drawn by ``seed``.

        The pool is every training image in its clean form (``train_clean``), so the clean-set size is
        not capped by ``cue_proportion``. Every class gets ``n_clean // C`` images; the ``n_clean % C``
        extra ones go to classes drawn by ``seed``. Raises ``ValueError`` when the pool cannot supply that.
        """
        c = self.num_classes
        if n_clean < 1:
            raise ValueError(f"finetune.n_clean: expected an integer >= 1, got {n_clean!r}")
        g = torch.Generator().manual_seed(seed)
        y = self.train.y.cpu()
        pool = torch.arange(len(y))
        available = torch.bincount(y[pool], minlength=c)
        quota = torch.full((c,), n_clean // c, dtype=torch.long)
        quota[torch.randperm(c, generator=g)[: n_clean % c]] += 1
        if n_clean > pool.numel() or bool((quota > available).any()):
            smallest = int(available.min())
            raise ValueError(
                f"finetune.n_clean: {n_clean} class-balanced clean images requested, but only {pool.numel()} "
                f"training images are available ({smallest} in the smallest of {c} classes, so at most "
                f"{c * smallest} balanced ones are sure to fit); lower finetune.n_clean or raise data.n_train"
            )
        # shuffle the pool, group it by class (stable sort keeps the shuffle), keep each class's first `quota`
        shuffled = pool[torch.randperm(pool.numel(), generator=g)]
        labels, order = torch.sort(y[shuffled], stable=True)
        grouped = shuffled[order]
        starts = torch.cumsum(available, 0) - available
        rank = torch.arange(grouped.numel()) - starts[labels]
        chosen = grouped[rank < quota[labels]].sort().values
        return self.train_clean.subset(chosen)

    def to(self, device: str | torch.device) -> CueTask:
        return dataclasses.replace(
            self,
            train=self.train.to(device),
            train_cue_mask=self.train_cue_mask.to(device),
            train_clean=self.train_clean.to(device),
            train_cue=self.train_cue.to(device),
            views={name: view.to(device) for name, view in self.views.items()},
        )


def _cue_mask(n: int, proportion: float, seed: int) -> Tensor:
    """(n,) bool with exactly round(proportion * n) True entries at seeded random positions."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(proportion * n)]] = True
    return mask


def _images(spec: DataSpec) -> tuple[int, ImageSet, ImageSet]:
    """Number of classes, clean training images and clean test images of the spec's dataset."""
    if spec.dataset in ("shapes", "dominoes"):
        def draw(n: int, split: str) -> ImageSet:
            return generate_shapes(n, spec.num_classes, spec.image_size, derive_seed(spec.seed, f"{split}_images"))
        return spec.num_classes, draw(spec.n_train, "train"), draw(spec.n_test, "test")
    # cifar: whole splits; n_train, n_test, image_size and num_classes do not apply
    return (cifar_num_classes(spec.dataset), load_cifar(spec.dataset, spec.root, train=True),
            load_cifar(spec.dataset, spec.root, train=False))


def build_task(spec: DataSpec, device: str | torch.device = "cpu") -> CueTask:
    """Build the task of ``spec`` on the CPU, then move it to ``device``."""
    num_classes, train_images, test_images = _images(spec)
    cue = make_cue(spec.effective_cue, num_classes)
    y = train_images.y
    train_clean = ImageSet(cue.canvas(train_images.x), y)
    train_cue = ImageSet(cue.paint(train_clean.x, y), y)
    if spec.effective_cue == "none":   # nothing is painted, so no image carries a cue
        mask = torch.zeros(len(y), dtype=torch.bool)
    else:
        mask = _cue_mask(len(y), spec.cue_proportion, derive_seed(spec.seed, "cue_mask"))
    train = ImageSet(torch.where(mask.view(-1, 1, 1, 1), train_cue.x, train_clean.x), y)
    test_clean = ImageSet(cue.canvas(test_images.x), test_images.y)
    views = make_views(cue, test_clean, num_classes, derive_seed(spec.seed, "views"))
    task = CueTask(spec, num_classes, cue, train, mask, train_clean, train_cue, views)
    return task.to(device)
