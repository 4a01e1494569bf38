"""A cue task: training images (some carrying their label's cue), clean subsets, and test views.

:func:`build_task` turns a :class:`~mmc_sweep.config.DataSpec` into tensors once; everything random
(images, which training images carry the cue, the random cues and images of the views, clean
subsets) is fixed by seeds derived from ``spec.seed``, and drawn on the CPU so that the result does
not depend on the device the task is moved to.

Two kinds of training subsets feed fine-tuning: :meth:`CueTask.clean_subset` (no cue at all) and
:meth:`CueTask.mixture_subset` (images as the cue model saw them: the training proportion cued, the
reference's CBFT cue data); ``CueTask.train_cue`` is the all-cued pool.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import DataSpec, derive_seed  # derive_seed: re-exported, the data streams use it
from .cifar import cifar_num_classes, load_cifar
from .cues import Cue, make_cue
from .dominoes import FashionDominoesCue
from .fashion import load_fashion
from .imageset import ImageSet
from .shapes import generate_shapes
from .views import make_views


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value; compare fields
class CueTask:
    """Everything a run needs from the data, as tensors on one device."""

    spec: DataSpec
    num_classes: int
    cue: Cue                      # paints the test views (cifar10_dominoes: its bank is FashionMNIST's test split)
    train: ImageSet               # training images; the cue_proportion fraction in train_cue_mask is cued
    train_cue_mask: Tensor        # (N_train,) bool: which training images carry their label's cue
    train_clean: ImageSet         # the same training images, no cue at all
    train_cue: ImageSet           # the same training images, all carrying their label's cue
    views: dict[str, ImageSet]    # counterfactual views of the test set, keys = config.VIEWS
    views_cue_mask: Tensor        # (N_test,) bool: which images of the cue / rand_cue / rand_img views carry a cue

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of the model input (dominoes: (3, 2H, W))."""
        return tuple(self.train.x.shape[1:])

    @property
    def views_cue(self) -> str:
        """Which convention the cued views follow (``data.views_cue``): ``full`` (every test image of the
        cue, rand_cue and rand_img views carries a cue) or ``train`` (the training proportion does)."""
        return self.spec.views_cue

    @property
    def views_cue_fraction(self) -> float:
        """Fraction of the test images of the cue, rand_cue and rand_img views that carry a cue (exact)."""
        return float(self.views_cue_mask.double().mean()) if self.views_cue_mask.numel() else 1.0

    def path_views(self, views_cue: str) -> dict[str, ImageSet]:
        """The views paths are evaluated on (``paths.views_cue``): ``data`` = :attr:`views` (``data.views_cue``),
        ``full`` (every cue / rand_cue / rand_img image cued: the reference's paths) or ``train`` (the
        training proportion cued). Other conventions are built on the CPU from the same clean test images,
        random cues and derangement as :attr:`views`: only which images carry a cue differs."""
        wanted = self.spec.views_cue if views_cue == "data" else views_cue
        if wanted == self.spec.views_cue:
            return self.views
        device = self.views["clean"].x.device
        clean = self.views["clean"].to("cpu")
        mask = _views_mask(self.spec, len(clean), wanted)
        views = make_views(self.cue, clean, self.num_classes, derive_seed(self.spec.seed, "views"),
                           cued=None if wanted == "full" else mask)
        return {name: view.to(device) for name, view in views.items()}

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

    def mixture_index(self, n: int, seed: int) -> Tensor:
        """Positions (sorted, (n,) long, CPU) of ``n`` training images drawn at the training proportion:
        ``round(share * n)`` of them carry their cue in ``train`` (``train_cue_mask``; ``share`` is the cued
        fraction of the training set, i.e. ``cue_proportion`` to one image), the rest none, each group drawn
        uniformly without replacement by ``seed``; classes as they come.

        The reference feeds CBFT ``n_cue`` images of its training mixture, drawn uniformly (with
        replacement, so the cued share is only about the proportion); here the share is exact and no
        image repeats. ``ValueError`` naming ``finetune.n_cue`` when the training set cannot supply them.
        """
        mask = self.train_cue_mask.cpu()
        cued_pool, plain_pool = mask.nonzero().flatten(), (~mask).nonzero().flatten()
        # the actual share of the training set (not spec.cue_proportion: the clean reference has none)
        share = cued_pool.numel() / max(1, mask.numel())
        n_cued = round(share * n)
        if n < 1 or n_cued > cued_pool.numel() or n - n_cued > plain_pool.numel():
            raise ValueError(
                f"finetune.n_cue: expected an integer in [1, {mask.numel()}] (the training images), got {n!r}")
        g = torch.Generator().manual_seed(seed)
        cued = cued_pool[torch.randperm(cued_pool.numel(), generator=g)[:n_cued]]
        plain = plain_pool[torch.randperm(plain_pool.numel(), generator=g)[:n - n_cued]]
        return torch.cat([cued, plain]).sort().values

    def mixture_subset(self, n: int, seed: int) -> ImageSet:
        """``n`` training images as the cue model saw them (from ``train``: the training proportion cued,
        see :meth:`mixture_index`): CBFT's cue data in the reference. ``train_cue`` is the all-cued pool."""
        return self.train.subset(self.mixture_index(n, seed))

    def to(self, device: str | torch.device) -> CueTask:
        return dataclasses.replace(
            self,
            train=self.train.to(device),
            train_cue_mask=self.train_cue_mask.to(device),
            train_clean=self.train_clean.to(device),
            train_cue=self.train_cue.to(device),
            views={name: view.to(device) for name, view in self.views.items()},
            views_cue_mask=self.views_cue_mask.to(device),
        )


def _cue_mask(n: int, proportion: float, seed: int) -> Tensor:
    """(n,) bool with exactly round(proportion * n) True entries at seeded random positions."""
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: round(proportion * n)]] = True
    return mask


def _views_mask(spec: DataSpec, n_test: int, views_cue: str) -> Tensor:
    """(n_test,) bool: which test images of the cued views carry a cue under ``views_cue`` (full | train)."""
    if views_cue == "train":   # the reference's test views: the training proportion carries the cue
        return _cue_mask(n_test, spec.cue_proportion, derive_seed(spec.seed, "views_cue_mask"))
    return torch.ones(n_test, dtype=torch.bool)


def _images(spec: DataSpec) -> tuple[int, ImageSet, ImageSet]:
    """Number of classes, clean training images and clean test images of the spec's dataset."""
    if spec.embedded:
        def draw(n: int, split: str) -> ImageSet:
            return generate_shapes(n, spec.num_classes, spec.image_size, derive_seed(spec.seed, f"{split}_images"))
        return spec.num_classes, draw(spec.n_train, "train"), draw(spec.n_test, "test")
    # cifar: whole splits (or max_files_* of them); n_train, n_test, image_size and num_classes do not apply
    name = "cifar10" if spec.dataset == "cifar10_dominoes" else spec.dataset
    train = load_cifar(name, spec.root, train=True).random_subset(spec.max_files_train, derive_seed(spec.seed, "train_subset"))
    test = load_cifar(name, spec.root, train=False).random_subset(spec.max_files_test, derive_seed(spec.seed, "test_subset"))
    return cifar_num_classes(name), train, test


def _cues(spec: DataSpec, num_classes: int) -> tuple[Cue, Cue]:
    """The cue painting the training images and the one painting the test views (the same object,
    except for the paper's Dominoes, whose FashionMNIST images come from the split being painted)."""
    if spec.dataset == "cifar10_dominoes" and spec.effective_cue == "dominoes":
        # CIFAR-10 class c is paired with FashionMNIST class c: both have 10
        train_bank, test_bank = (load_fashion(spec.root, train=split) for split in (True, False))
        return FashionDominoesCue(num_classes, *train_bank), FashionDominoesCue(num_classes, *test_bank)
    options = {"size": spec.box_size, "layout": spec.box_layout} if spec.effective_cue == "box" else {}
    cue = make_cue(spec.effective_cue, num_classes, **options)
    return cue, cue


def build_task(spec: DataSpec, device: str | torch.device = "cpu") -> CueTask:
    """Build the task of ``spec`` on the CPU, then move it to ``device``."""
    num_classes, train_images, test_images = _images(spec)
    train_painter, cue = _cues(spec, num_classes)
    y = train_images.y
    train_clean = ImageSet(train_painter.canvas(train_images.x), y)
    train_cue = ImageSet(train_painter.paint(train_clean.x, train_painter.own_keys(y)), y)
    if spec.effective_cue == "none":   # nothing is painted, so no image carries a cue
        mask = torch.zeros(len(y), dtype=torch.bool)
    else:
        mask = _cue_mask(len(y), spec.cue_proportion, derive_seed(spec.seed, "cue_mask"))
    train = ImageSet(torch.where(mask.view(-1, 1, 1, 1), train_cue.x, train_clean.x), y)
    test_clean = ImageSet(cue.canvas(test_images.x), test_images.y)
    views_mask = _views_mask(spec, len(test_clean), spec.views_cue)
    views = make_views(cue, test_clean, num_classes, derive_seed(spec.seed, "views"),
                       cued=None if spec.views_cue == "full" else views_mask)
    task = CueTask(spec, num_classes, cue, train, mask, train_clean, train_cue, views, views_mask)
    return task.to(device)
