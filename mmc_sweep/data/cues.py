"""Cues: spurious, easy attributes tied to the label, painted onto whole batches at once.

A cue has two operations on image tensors (N, 3, H, W), both batched and device-agnostic:

- ``canvas(x)``: the un-cued input the model sees (box: the image itself; dominoes: a blank top
  half stacked above the image);
- ``paint(canvas, keys)``: a new tensor with the cue named by ``keys`` (LongTensor (N,)) painted on
  every image. Sizes are read from the canvas, so one cue object serves any image size.

A *key* says which cue an image carries. For the cues here it is a label (the cue encodes the class
and nothing else); a cue whose simple image is chosen per image (the paper's Dominoes,
:mod:`.dominoes`) uses other keys. ``own_keys(labels)`` gives each image of a split its own cue and
``random_keys(n, generator)`` draws cues independently of the label, so views are built the same
way for every cue.

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
BOX_POSITIONS = 10   # label % 10: positions 0..8 on a 3x3 grid; 9: none (inset), the tenth position (paper, > 10 classes)
NO_BOX = 9
BOX_LAYOUTS = ("inset", "paper")   # config.BOX_LAYOUTS
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


def make_cue(name: str, num_classes: int, **options) -> Cue:
    """The cue called ``name`` for a task of ``num_classes`` classes; ``options`` go to its class
    (the box cue: ``size``, ``layout``)."""
    if name not in CUES:
        raise ValueError(f"unknown cue {name!r}; valid cues: {', '.join(sorted(CUES))}")
    return CUES[name](num_classes, **options)


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
        """A new tensor: ``canvas`` with the cue of ``labels`` (keys; here labels) on every image."""
        return canvas.clone()

    def own_keys(self, labels: Tensor) -> Tensor:
        """The key of each image's own cue, for the labels of a whole split in order: the label itself."""
        return labels

    def random_keys(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` keys drawn independently of any label, on the CPU: uniformly random classes."""
        return torch.randint(0, self.num_classes, (n,), generator=generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes})"


@register_cue("none")
class NoCue(Cue):
    """No cue: painting changes nothing."""


def box_geometry(height: int, width: int, size: int = 0,
                 layout: str = "inset") -> tuple[int, tuple[int, int, int], tuple[int, int, int]]:
    """Box side (px) and the top rows / left columns of the 3x3 grid of box positions.

    ``size`` 0 picks the layout's automatic side. ``inset`` (mmc-sweep's): 3 px per 16 px of image side,
    1 px per 16 px in from the border. ``paper`` (the reference's): 3 px per 32 px (3 px at 32, where the
    reference draws it), pressed against the border, the middle at ``(side_of_image - box) // 2``.
    """
    if layout not in BOX_LAYOUTS:
        raise ValueError(f"box layout: expected one of {BOX_LAYOUTS}, got {layout!r}")
    short = min(height, width)
    if layout == "inset":
        side = size or max(2, round(3 * short / 16))   # 3 px at 16 px, 6 px at 32 px
        margin = max(1, round(short / 16))             # gap to the border, px
    else:
        side = size or max(1, round(3 * short / 32))   # 3 px at 32 px
        margin = 0
    rows = (margin, (height - side) // 2, height - side - margin)
    cols = (margin, (width - side) // 2, width - side - margin)
    return side, rows, cols


def tenth_box(height: int, width: int, side: int) -> tuple[int, int]:
    """Top row and left column of the paper layout's tenth position (label % 10 == 9 above 10 classes):
    the centre position moved a quarter of the image up and left."""
    return (height - side) // 2 - height // 4, (width - side) // 2 - width // 4


def paper_colour(hue: Tensor) -> Tensor:
    """(N, 3) the reference's box colour for hues in [0, 1] (float64 arithmetic, float32 result).

    HSV (hue, 1, 1) converted to RGB, then its channels taken in the order (B, R, G), as the reference
    code does; the values are painted as they are into mmc-sweep's [0, 1] pixels. Hue 1.0 (the
    reference's colour with 10 classes) and hue 0.0 are both (0, 1, 0): green.
    """
    h6 = hue.double() * 6
    sector = h6.floor()
    f = h6 - sector                  # position inside the sector, [0, 1)
    rise, fall = 1 - (1 - f), 1 - f  # s = v = 1: the rising and falling channel (rise written as HSV does)
    one, zero = torch.ones_like(f), torch.zeros_like(f)
    by_sector = torch.stack([        # (6, 3, N): R, G, B of each sector
        torch.stack([one, rise, zero]), torch.stack([fall, one, zero]), torch.stack([zero, one, rise]),
        torch.stack([zero, fall, one]), torch.stack([rise, zero, one]), torch.stack([one, zero, fall]),
    ])
    index = (sector.long() % 6).view(1, 1, -1).expand(1, 3, -1)
    rgb = by_sector.gather(0, index)[0].T   # (N, 3)
    return rgb[:, [2, 0, 1]].float()


@register_cue("box")
class BoxCue(Cue):
    """A small square whose position is ``label % 10``.

    ``layout`` inset (mmc-sweep's default): a 3x3 grid set in from the border, position 9 draws no box;
    the box is red, or ``PALETTE[label // 10]`` with more than 10 classes. ``layout`` paper (the
    reference's ``syndata.py``): the grid pressed against the border; with more than 10 classes
    position 9 is a tenth box (:func:`tenth_box`) and the colour is :func:`paper_colour` of hue
    ``(label // 10) / 10``; with 10 or fewer, position 9 has no box and the hue is 1.0 (green).
    ``size``: box side, px (0: the layout's automatic side, see :func:`box_geometry`).
    """

    def __init__(self, num_classes: int, size: int = 0, layout: str = "inset") -> None:
        super().__init__(num_classes)
        if layout not in BOX_LAYOUTS:
            raise ValueError(f"box layout: expected one of {BOX_LAYOUTS}, got {layout!r}")
        if size < 0:
            raise ValueError(f"box size: expected 0 (automatic) or a side in px >= 1, got {size!r}")
        self.size, self.layout = size, layout

    def slots(self, height: int, width: int) -> tuple[int, list[int], list[int], list[bool]]:
        """Box side (px) and, for positions 0..9, the top row, the left column and whether a box is drawn."""
        side, rows, cols = box_geometry(height, width, self.size, self.layout)
        tops = [rows[p // 3] for p in range(9)]
        lefts = [cols[p % 3] for p in range(9)]
        if self.layout == "paper" and self.num_classes > BOX_POSITIONS:
            top, left = tenth_box(height, width, side)
            return side, tops + [top], lefts + [left], [True] * 10
        return side, tops + [0], lefts + [0], [True] * 9 + [False]

    def box_mask(self, labels: Tensor, height: int, width: int) -> Tensor:
        """(N, 1, H, W) bool: the box pixels of each label (all False where no box is drawn)."""
        side, tops, lefts, drawn = self.slots(height, width)
        dev = labels.device
        pos = labels % BOX_POSITIONS
        has_box = torch.tensor(drawn, device=dev)[pos]
        top = torch.tensor(tops, device=dev)[pos].view(-1, 1)
        left = torch.tensor(lefts, device=dev)[pos].view(-1, 1)
        r = torch.arange(height, device=dev).view(1, -1)
        c = torch.arange(width, device=dev).view(1, -1)
        in_rows = (r >= top) & (r < top + side) & has_box.view(-1, 1)
        in_cols = (c >= left) & (c < left + side)
        return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)

    def colour(self, labels: Tensor) -> Tensor:
        """(N, 3) box colour of each label."""
        many = self.num_classes > BOX_POSITIONS
        if self.layout == "paper":
            hue = (labels // BOX_POSITIONS).double() / 10 if many else torch.ones(labels.shape, dtype=torch.float64)
            return paper_colour(hue.cpu()).to(labels.device)
        code = labels // BOX_POSITIONS if many else torch.zeros_like(labels)
        return _palette(labels.device)[code % len(PALETTE)]

    def paint(self, canvas: Tensor, labels: Tensor) -> Tensor:
        labels = labels.to(canvas.device)
        mask = self.box_mask(labels, canvas.shape[2], canvas.shape[3])
        return torch.where(mask, self.colour(labels).to(canvas.dtype).view(-1, 3, 1, 1), canvas)

    def __repr__(self) -> str:
        return f"BoxCue(num_classes={self.num_classes}, size={self.size}, layout={self.layout!r})"


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
