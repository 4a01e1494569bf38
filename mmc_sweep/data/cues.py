"""Cues: spurious, easy attributes tied to the label, painted onto whole batches at once.

A cue has two operations on image tensors (N, 3, H, W), both batched and device-agnostic:

- ``canvas(x)``: the un-cued input the model sees (box: the image itself; dominoes: a blank top
  half stacked above the image);
- ``paint(canvas, labels)``: a new tensor with the cue of ``labels`` (LongTensor (N,)) painted on
  every image. Sizes are read from the canvas, so one cue object serves any image size.

Registry: :data:`CUES` (name -> class), filled by :func:`register_cue`; :func:`make_cue` builds one.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

# Ten colours that are far apart (RGB in [0, 1]); index = colour code of a class.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),  # red (the box colour when colour does not encode the label)
    (0.0, 1.0, 0.0),  # green
    (0.0, 0.0, 1.0),  # blue
    (1.0, 1.0, 0.0),  # yellow
    (1.0, 0.0, 1.0),  # magenta
    (0.0, 1.0, 1.0),  # cyan
    (1.0, 1.0, 1.0),  # white
    (0.0, 0.0, 0.0),  # black
    (1.0, 0.5, 0.0),  # orange
    (0.5, 0.0, 1.0),  # violet
)
BOX_POSITIONS = 10   # label % 10: positions 0..8 on a 3x3 grid, 9 = no box
NO_BOX = 9
DOMINO_BLANK = 0.5   # grey of an un-cued dominoes top half

CUES: dict[str, type[Cue]] = {}


def register_cue(name: str) -> Callable[[type[Cue]], type[Cue]]:
    """Class decorator: add a cue class to :data:`CUES` under ``name``."""
    def add(cls: type[Cue]) -> type[Cue]:
        if name in CUES:
            raise ValueError(f"cue {name!r} registered twice")
        cls.name = name
        CUES[name] = cls
        return cls
    return add


def make_cue(name: str, num_classes: int) -> Cue:
    """The cue called ``name`` for a task of ``num_classes`` classes."""
    if name not in CUES:
        raise ValueError(f"unknown cue {name!r}; valid cues: {', '.join(sorted(CUES))}")
    return CUES[name](num_classes)


def _palette(device: torch.device) -> Tensor:
    return torch.tensor(PALETTE, dtype=torch.float32, device=device)   # (10, 3)


class Cue:
    """Base class: no cue. Subclasses override :meth:`canvas` and :meth:`paint`."""

    name = "base"

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def canvas(self, x: Tensor) -> Tensor:
        """The un-cued input built from images ``x`` (N, 3, H, W)."""
        return x

    def paint(self, canvas: Tensor, labels: Tensor) -> Tensor:
        """A new tensor: ``canvas`` with the cue of ``labels`` on every image."""
        return canvas.clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes})"


@register_cue("none")
class NoCue(Cue):
    """No cue: painting changes nothing."""


def box_geometry(height: int, width: int) -> tuple[int, tuple[int, int, int], tuple[int, int, int]]:
    """Box side (px) and the top rows / left columns of the 3x3 grid of box positions."""
    side = max(2, round(3 * min(height, width) / 16))   # 3 px at 16 px, 6 px at 32 px
    margin = max(1, round(min(height, width) / 16))     # gap to the border, px
    rows = (margin, (height - side) // 2, height - side - margin)
    cols = (margin, (width - side) // 2, width - side - margin)
    return side, rows, cols


@register_cue("box")
class BoxCue(Cue):
    """A small square whose grid position is ``label % 10`` (9: no box).

    With more than 10 classes its colour is ``PALETTE[label // 10]``; otherwise it is always red.
    """

    def box_mask(self, labels: Tensor, height: int, width: int) -> Tensor:
        """(N, 1, H, W) bool: the box pixels of each label (all False for position 9)."""
        side, rows, cols = box_geometry(height, width)
        dev = labels.device
        pos = labels % BOX_POSITIONS
        has_box = pos != NO_BOX
        grid = pos.clamp(max=8)
        top = torch.tensor(rows, device=dev)[grid // 3].view(-1, 1)
        left = torch.tensor(cols, device=dev)[grid % 3].view(-1, 1)
        r = torch.arange(height, device=dev).view(1, -1)
        c = torch.arange(width, device=dev).view(1, -1)
        in_rows = (r >= top) & (r < top + side) & has_box.view(-1, 1)
        in_cols = (c >= left) & (c < left + side)
        return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)

    def colour(self, labels: Tensor) -> Tensor:
        """(N, 3) box colour of each label."""
        code = labels // BOX_POSITIONS if self.num_classes > BOX_POSITIONS else torch.zeros_like(labels)
        return _palette(labels.device)[code % len(PALETTE)]

    def paint(self, canvas: Tensor, labels: Tensor) -> Tensor:
        labels = labels.to(canvas.device)
        mask = self.box_mask(labels, canvas.shape[2], canvas.shape[3])
        return torch.where(mask, self.colour(labels).to(canvas.dtype).view(-1, 3, 1, 1), canvas)


@register_cue("dominoes")
class DominoesCue(Cue):
    """A simple image stacked above the complex one: canvas (N, 3, 2H, W), top half grey when un-cued.

    The cue fills the top half with the flat colour ``PALETTE[label % 10]`` and a vertical bar at one
    of 10 horizontal slots: slot ``label % 10`` with <= 10 classes, ``label // 10`` with more, so
    every class of up to 100 has its own simple image. The bar is black on light colours, white on
    dark ones.
    """

    def canvas(self, x: Tensor) -> Tensor:
        return torch.cat([torch.full_like(x, DOMINO_BLANK), x], dim=2)

    def simple_image(self, labels: Tensor, height: int, width: int) -> Tensor:
        """(N, 3, height, width): the simple image of each label."""
        dev = labels.device
        pal = _palette(dev)
        luminance = pal @ torch.tensor([0.299, 0.587, 0.114], device=dev)
        bar_colour = (luminance <= 0.5).float().view(-1, 1).expand(-1, 3)   # white on dark, black on light
        code = labels % len(PALETTE)
        slot = labels % 10 if self.num_classes <= 10 else (labels // 10) % 10
        bar_w = max(1, round(width / 8))
        left = torch.round(slot.float() * (width - bar_w) / 9).long().view(-1, 1)
        c = torch.arange(width, device=dev).view(1, -1)
        on_bar = ((c >= left) & (c < left + bar_w)).view(-1, 1, 1, width)
        flat = pal[code].view(-1, 3, 1, 1).expand(-1, 3, height, width)
        return torch.where(on_bar, bar_colour[code].view(-1, 3, 1, 1), flat)

    def paint(self, canvas: Tensor, labels: Tensor) -> Tensor:
        total_h, width = canvas.shape[2], canvas.shape[3]
        if total_h % 2:
            raise ValueError(f"dominoes canvas must have an even height (2H), got {total_h}")
        h = total_h // 2
        top = self.simple_image(labels.to(canvas.device), h, width).to(canvas.dtype)
        return torch.cat([top, canvas[:, :, h:]], dim=2)
