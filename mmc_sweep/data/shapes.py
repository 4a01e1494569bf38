"""The embedded ``shapes`` dataset: one procedural object per image, its class is its shape.

Every image shows one object drawn from a signed-distance description of its class's shape, at a
random position, scale and small rotation, in a random foreground colour on a random background
colour, plus Gaussian pixel noise. Colours, position and scale are drawn independently of the
class, so only the object's structure tells the classes apart. Images are rendered in batches from
per-image parameters drawn up front with one seeded ``torch.Generator`` (no files, no downloads).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .imageset import ImageSet

# ---- difficulty knobs (all class-independent) ------------------------------------------------
# Half-extent of the object as a fraction of the image side: at 16 px the object spans about
# 6..13 px. A 2.2x range of scale (about 5x in area) makes the areas of the classes overlap, so
# the object's size says little about its class.
SCALE_MIN = 0.18
SCALE_MAX = 0.40
# Rotation jitter, degrees either way. Kept small so that plus/X, square/diamond and the two
# bars stay distinct classes (they are 45 / 90 degree rotations of each other).
ROTATION_MAX_DEG = 15.0
# Per-channel colour difference between object and background, drawn in [CONTRAST_MIN, max room]:
# the object always differs from its background by at least CONTRAST_MIN in every channel.
CONTRAST_MIN = 0.15
# Standard deviation of the additive Gaussian pixel noise (pixel values in [0, 1], then clipped).
# CONTRAST_MIN and NOISE_STD are the main difficulty knobs: lower contrast / more noise = harder.
NOISE_STD = 0.15
# Images rendered per chunk: bounds peak memory at large image sizes (it is part of the noise
# stream, so changing it changes the images of a seed).
_CHUNK = 4096

SHAPE_NAMES = ("disc", "square", "triangle", "plus", "ring", "hbar", "vbar", "diamond", "x", "ell")

_SQRT2 = math.sqrt(2.0)
_TRI_NORM = math.hypot(1.8, 1.0)


def _box(u: Tensor, v: Tensor, half_u: float, half_v: float) -> Tensor:
    """Signed distance (Chebyshev approximation) to an axis-aligned rectangle centred at 0."""
    return torch.maximum(u.abs() - half_u, v.abs() - half_v)


def _disc(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v) - 1.0


def _square(u: Tensor, v: Tensor) -> Tensor:
    return _box(u, v, 0.8, 0.8)


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    # apex at (0, -1) (image y points down, so it points up), base on v = 0.8, half-width 1
    return torch.maximum(v - 0.8, (1.8 * u.abs() - (v + 1.0)) / _TRI_NORM)


def _plus(u: Tensor, v: Tensor) -> Tensor:
    return torch.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))


def _ring(u: Tensor, v: Tensor) -> Tensor:
    return (torch.sqrt(u * u + v * v) - 0.72).abs() - 0.28


def _hbar(u: Tensor, v: Tensor) -> Tensor:
    return _box(u, v, 1.0, 0.35)


def _vbar(u: Tensor, v: Tensor) -> Tensor:
    return _box(u, v, 0.35, 1.0)


def _diamond(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() + v.abs() - 1.1) / _SQRT2


def _x(u: Tensor, v: Tensor) -> Tensor:
    return _plus((u + v) / _SQRT2, (u - v) / _SQRT2)


def _ell(u: Tensor, v: Tensor) -> Tensor:
    # vertical stroke on the left, horizontal stroke at the bottom
    return torch.minimum(_box(u + 0.7, v, 0.3, 1.0), _box(u, v - 0.7, 1.0, 0.3))


_SDF: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    _disc, _square, _triangle, _plus, _ring, _hbar, _vbar, _diamond, _x, _ell,
)


def generate_shapes(n: int, num_classes: int, image_size: int, seed: int) -> ImageSet:
    """``n`` images (n, 3, image_size, image_size) on the CPU, labels balanced over ``num_classes``."""
    if not 1 <= num_classes <= len(_SDF):
        raise ValueError(f"num_classes: expected an integer in [1, {len(_SDF)}], got {num_classes!r}")
    if n < 1 or image_size < 4:
        raise ValueError(f"generate_shapes: expected n >= 1 and image_size >= 4, got {n!r}, {image_size!r}")
    g = torch.Generator().manual_seed(seed)
    s = float(image_size)
    # per-image parameters, all drawn before any pixel so that chunking cannot change them
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    radius = s * (SCALE_MIN + (SCALE_MAX - SCALE_MIN) * torch.rand(n, generator=g))   # px
    cx = radius + (s - 2 * radius) * torch.rand(n, generator=g)                       # px
    cy = radius + (s - 2 * radius) * torch.rand(n, generator=g)                       # px
    angle = math.radians(ROTATION_MAX_DEG) * (2 * torch.rand(n, generator=g) - 1)
    bg = torch.rand(n, 3, generator=g)
    room = torch.maximum(bg, 1 - bg)  # largest step that stays in [0, 1], >= 0.5
    step = CONTRAST_MIN + (room - CONTRAST_MIN) * torch.rand(n, 3, generator=g)
    fg = torch.where(bg < 0.5, bg + step, bg - step)

    centres = torch.arange(image_size, dtype=torch.float32) + 0.5   # pixel centres, px
    out = torch.empty(n, 3, image_size, image_size)
    # render class by class (no per-pixel class masks), in chunks of at most _CHUNK images
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        for start in range(0, members.numel(), _CHUNK):
            idx = members[start:start + _CHUNK]
            r = radius[idx].view(-1, 1, 1)
            dx = (centres.view(1, 1, -1) - cx[idx].view(-1, 1, 1)) / r
            dy = (centres.view(1, -1, 1) - cy[idx].view(-1, 1, 1)) / r
            cos, sin = angle[idx].cos().view(-1, 1, 1), angle[idx].sin().view(-1, 1, 1)
            u = cos * dx + sin * dy
            v = cos * dy - sin * dx
            dist = _SDF[c](u, v)   # signed distance, in units of the radius
            # one-pixel-wide anti-aliased edge: coverage 1 inside, 0 outside
            cover = dist.mul_(r).neg_().add_(0.5).clamp_(0.0, 1.0).unsqueeze(1)
            b, f = bg[idx].view(-1, 3, 1, 1), fg[idx].view(-1, 3, 1, 1)
            out[idx] = cover * (f - b) + b
    # pixel noise, drawn in image order (after all parameters) so the result is fixed by the seed
    for start in range(0, n, _CHUNK):
        chunk = out[start:start + _CHUNK]
        chunk.add_(torch.empty_like(chunk).normal_(0.0, NOISE_STD, generator=g)).clamp_(0.0, 1.0)
    return ImageSet(out, y)
