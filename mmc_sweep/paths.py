"""Interpolation paths between two models, BatchNorm re-estimation, path evaluation and barriers.

A path table is tidy: one dict per (alpha, view) with ``alpha``, ``view``, ``loss`` (mean
cross-entropy, nats) and ``acc`` (fraction correct).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmc_sweep.config import BNResetSpec, PathSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.models import fold_batchnorm


def alpha_grid(points: int) -> list[float]:
    """``points`` evenly spaced positions in [0, 1], endpoints included."""
    return [i / (points - 1) for i in range(points)]


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """State dict of ``(1-alpha)·a + alpha·b`` (parameters and float buffers); integer buffers from ``a``.

    Written as a weighted sum, not ``lerp``, so alpha=0 and alpha=1 give the endpoints bit for bit.
    """
    if a.keys() != b.keys():
        raise ValueError("models differ in architecture: their state dicts have different keys")
    out = {}
    for name, value in a.items():
        other = b[name]
        if value.shape != other.shape:
            raise ValueError(f"models differ in architecture: {name} has shape {tuple(value.shape)} vs {tuple(other.shape)}")
        out[name] = (1 - alpha) * value + alpha * other if value.is_floating_point() else value.clone()
    return out


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reset_bn(model: nn.Module, spec: BNResetSpec, batches: list[torch.Tensor]) -> None:
    """Re-estimate BatchNorm running statistics from ``batches`` (policy ``spec.mode``).

    ``ema`` keeps each layer's momentum; ``cumulative`` sets momentum None, so the statistics are the
    exact average over the batches. The model is left in eval mode.
    """
    if spec.mode == "none":
        model.eval()
        return
    layers = _bn_layers(model)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        if spec.mode == "cumulative":
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    model.eval()


def bn_batches(data: ImageSet, spec: BNResetSpec, seed: int) -> list[torch.Tensor]:
    """The fixed batches used for BN re-estimation: the same images at every alpha."""
    if spec.mode == "none":
        return []
    gen = torch.Generator().manual_seed(seed)
    need = min(spec.batches * spec.batch_size, len(data))
    index = torch.randperm(len(data), generator=gen)[:need].to(data.x.device)
    return list(data.x[index].split(spec.batch_size))


@torch.inference_mode()
def evaluate(model: nn.Module, images: ImageSet, batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy of ``model`` (in its current mode) on ``images``."""
    loss = torch.zeros((), device=images.x.device)
    correct = torch.zeros((), device=images.x.device, dtype=torch.long)
    for x, y in images.batches(batch_size):
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = len(images)
    return float(loss) / n, float(correct) / n  # one device sync per view


def evaluate_path(
    model_a: nn.Module,
    model_b: nn.Module,
    views: dict[str, ImageSet],
    spec: PathSpec,
    bn_data: dict[str, ImageSet] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Loss and accuracy of ``(1-alpha)·A + alpha·B`` at ``spec.alphas`` points on ``spec.views``.

    ``bn_data`` maps ``clean``/``cue`` to the training images used for BN re-estimation when
    ``spec.bn_reset.data`` names one of them; ``view`` re-estimates on each evaluated view.
    """
    missing = [v for v in spec.views if v not in views]
    if missing:
        raise ValueError(f"paths.views: no images for view(s) {missing}; available: {sorted(views)}")
    reset = spec.bn_reset
    shared: list[torch.Tensor] = []
    if reset.mode != "none" and reset.data != "view":
        if not bn_data or reset.data not in bn_data:
            raise ValueError(f"paths.bn_reset.data: {reset.data!r} needs bn_data[{reset.data!r}] (training images)")
        shared = bn_batches(bn_data[reset.data], reset, seed)
    per_view = {v: bn_batches(views[v], reset, seed) for v in spec.views} if reset.data == "view" else {}

    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    work = copy.deepcopy(model_a)
    rows = []
    for alpha in alpha_grid(spec.alphas):
        work.load_state_dict(interpolate_state(state_a, state_b, alpha))
        if reset.data != "view":
            reset_bn(work, reset, shared)
        folded = fold_batchnorm(work) if reset.data != "view" else None
        for view in spec.views:
            if reset.data == "view":
                reset_bn(work, reset, per_view[view])
                folded = fold_batchnorm(work)
            loss, acc = evaluate(folded, views[view], spec.eval_batch_size)
            rows.append({"alpha": alpha, "view": view, "loss": loss, "acc": acc})
    return rows


def barriers(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per view: ``barrier_loss``/``barrier_acc`` (max over alpha above/below the straight line
    between the endpoints) and ``barrier_mid_loss``/``barrier_mid_acc`` (the same at alpha = 0.5 only).

    Loss barriers are in nats, accuracy barriers in fraction. The line meets the curve at both
    endpoints, so the max-based barriers are >= 0; the midpoint ones can be negative.
    """
    out: dict[str, dict[str, float]] = {}
    for view in dict.fromkeys(r["view"] for r in rows):
        pts = sorted((r["alpha"], r["loss"], r["acc"]) for r in rows if r["view"] == view)
        alpha = np.array([p[0] for p in pts])
        loss = np.array([p[1] for p in pts])
        acc = np.array([p[2] for p in pts])
        line_loss = (1 - alpha) * loss[0] + alpha * loss[-1]
        line_acc = (1 - alpha) * acc[0] + alpha * acc[-1]
        out[view] = {
            "barrier_loss": float(np.max(loss - line_loss)),
            "barrier_acc": float(np.max(line_acc - acc)),
            "barrier_mid_loss": float(np.interp(0.5, alpha, loss) - (loss[0] + loss[-1]) / 2),
            "barrier_mid_acc": float((acc[0] + acc[-1]) / 2 - np.interp(0.5, alpha, acc)),
        }
    return out
