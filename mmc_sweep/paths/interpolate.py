"""Points of a path between two models, as state dicts: the straight line and the quadratic Bezier curve.

Both are written as weighted sums (not ``lerp``), so alpha=0 and alpha=1 give the endpoints bit for
bit. Integer buffers (BatchNorm's batch counter) are taken from the first model.
"""
from __future__ import annotations

from typing import Callable

import torch

State = dict[str, torch.Tensor]
Curve = Callable[[float], State]  # alpha in [0, 1] -> the state dict at that point of the path


def alpha_grid(points: int) -> list[float]:
    """``points`` evenly spaced positions in [0, 1], endpoints included."""
    return [i / (points - 1) for i in range(points)]


def check_compatible(*states: State) -> None:
    """Same keys and shapes (the same architecture), or ``ValueError`` naming the first difference."""
    first = states[0]
    for other in states[1:]:
        if first.keys() != other.keys():
            raise ValueError("models differ in architecture: their state dicts have different keys")
        for name, value in first.items():
            if value.shape != other[name].shape:
                raise ValueError(f"models differ in architecture: {name} has shape {tuple(value.shape)} vs {tuple(other[name].shape)}")


def interpolate_state(a: State, b: State, alpha: float) -> State:
    """State dict of ``(1-alpha)·a + alpha·b`` (parameters and float buffers)."""
    check_compatible(a, b)
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v.clone() for k, v in a.items()}


def bezier_state(a: State, mid: State, b: State, alpha: float) -> State:
    """State dict of ``(1-alpha)²·a + 2·alpha·(1-alpha)·mid + alpha²·b``: the quadratic Bezier curve
    from ``a`` to ``b`` pulled towards ``mid`` (it passes through ``(a + 2·mid + b) / 4`` at 0.5)."""
    check_compatible(a, mid, b)
    wa, wm, wb = (1 - alpha) ** 2, 2 * alpha * (1 - alpha), alpha**2
    return {k: wa * v + wm * mid[k] + wb * b[k] if v.is_floating_point() else v.clone() for k, v in a.items()}


def linear_curve(a: State, b: State) -> Curve:
    check_compatible(a, b)
    return lambda alpha: interpolate_state(a, b, alpha)


def bezier_curve(a: State, mid: State, b: State) -> Curve:
    check_compatible(a, mid, b)
    return lambda alpha: bezier_state(a, mid, b, alpha)
