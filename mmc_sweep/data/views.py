"""Counterfactual views of a test set: the instruments that tell cue use from shape use.

All views share the labels ``y`` of the clean test set:

- ``clean``: no cue at all;
- ``cue``: every image carries the cue of its own label;
- ``rand_cue``: every image carries the cue of a uniformly random class, drawn independently of
  the label;
- ``rand_img``: the image content comes from another image (a random permutation without fixed
  points) while the cue of the original label is kept.

Which images of ``cue``, ``rand_cue`` and ``rand_img`` carry a cue is ``cued`` (``data.views_cue``):
all of them (``full``), or a fraction equal to the training proportion (``train``, the reference's
test views); an image without one shows its (for ``rand_img``: the other image's) content only.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import VIEWS
from .cues import Cue
from .imageset import ImageSet


def derangement(n: int, generator: torch.Generator) -> Tensor:
    """A random permutation of ``range(n)`` with no fixed points (one random n-cycle), n >= 2."""
    if n < 2:
        raise ValueError(f"a permutation without fixed points needs at least 2 items, got {n}")
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)   # order[k] -> order[k + 1]: a single cycle through all items
    return perm


def view_recipes(y: Tensor, num_classes: int, seed: int, cue: Cue | None = None) -> dict[str, tuple[Tensor, Tensor | None]]:
    """How each view is made from a clean test set with labels ``y``: which image supplies the content
    (``source``, (n,) long) and which cue is painted on it (``cue_labels``, (n,) long: the keys of
    ``cue``, i.e. labels for label-coded cues and when ``cue`` is None; None: no cue). Random choices
    are fixed by ``seed`` and drawn on the CPU."""
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    identity = torch.arange(len(y))
    own = y if cue is None else cue.own_keys(y).cpu()
    rand = torch.randint(0, num_classes, (len(y),), generator=g) if cue is None else cue.random_keys(len(y), g)
    return {
        "clean": (identity, None),
        "cue": (identity, own),
        "rand_cue": (identity, rand),
        "rand_img": (derangement(len(y), g), own),   # the content moves, the original image's cue stays
    }


def make_views(cue: Cue, clean_canvas: ImageSet, num_classes: int, seed: int,
               cued: Tensor | None = None) -> dict[str, ImageSet]:
    """The four views (keys: ``config.VIEWS``) of an un-cued test set, random choices fixed by ``seed``.

    ``cued``: (n,) bool, which images of the cue, rand_cue and rand_img views carry their cue; None:
    every one.
    """
    x, y = clean_canvas.x, clean_canvas.y
    views = {}
    for name, (source, cue_labels) in view_recipes(y, num_classes, seed, cue).items():
        if cue_labels is None:
            views[name] = clean_canvas
            continue
        content = x[source.to(x.device)]
        painted = cue.paint(content, cue_labels.to(y.device))
        if cued is not None:
            painted = torch.where(cued.to(x.device).view(-1, 1, 1, 1), painted, content)
        views[name] = ImageSet(painted, y)
    assert tuple(views) == VIEWS
    return views


def cue_reliance(acc_rand_img: float, num_classes: int) -> float:
    """``(acc_rand_img - 1/C) / (1 - 1/C)``: 0 when the cue is ignored, 1 when it alone decides."""
    chance = 1.0 / num_classes
    return (acc_rand_img - chance) / (1.0 - chance)
