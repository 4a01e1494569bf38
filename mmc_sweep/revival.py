"""Cue revival: did fine-tuning remove the cue mechanism, or only hide it?

A copy of a fine-tuned model is re-trained on cue data (the training images, every one carrying its
label's cue) with plain SGD, and its cue reliance measured after each step count of
:class:`~mmc_sweep.config.RevivalSpec` (step 0 too). A mechanism that is only hidden comes back in a
few steps (Jain, Kirk, Lubana et al., ICLR 2024: fine-tuning as a "wrapper"); one that was removed
takes as long as learning the cue from scratch. Plain PyTorch, device-agnostic.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from mmc_sweep.config import RevivalSpec, derive_seed
from mmc_sweep.data import CueTask
from mmc_sweep.metrics import view_metrics
from mmc_sweep.models import CueModel
from mmc_sweep.train import PlainSGD

MOMENTUM = 0.9
REVIVAL_METRICS = ("revival_steps", "revival_auc")  # trial columns (and search objectives) of a revival


def revival_curve(task: CueTask, model: CueModel, spec: RevivalSpec) -> list[dict[str, float]]:
    """``[{"step": s, "cue_reliance": r, "acc_clean": a}]`` for step 0 and every step count of
    ``spec``: a copy of ``model`` re-trained on ``task.train_cue`` (``model`` itself is left as it is).
    Batches are drawn with replacement from a generator of the revival's own seed stream, so the
    curve of a model is the same whatever was measured before it."""
    if not spec.steps:
        return []
    revived = copy.deepcopy(model)
    optimizer = PlainSGD(revived.parameters(), lr=spec.lr, momentum=MOMENTUM)
    data = task.train_cue
    rng = torch.Generator().manual_seed(derive_seed(spec.seed, "revival") % 2**31)
    curve = [_point(0, revived, task)]
    for step in range(1, spec.steps[-1] + 1):
        index = torch.randint(len(data), (spec.batch_size,), generator=rng).to(data.x.device)
        revived.train()
        loss = F.cross_entropy(revived(data.x[index]), data.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in spec.steps:
            curve.append(_point(step, revived, task))
    return curve


def _point(step: int, model: CueModel, task: CueTask) -> dict[str, float]:
    metrics = view_metrics(model, task.views)
    return {"step": step, "cue_reliance": metrics["cue_reliance"], "acc_clean": metrics["acc_clean"]}


def revival_steps(curve: list[dict[str, float]], cue_model_reliance: float) -> float:
    """Steps until cue reliance regains half of the cue model's: the first measured step count at
    which it is at least that (0: the model never lost it); ``inf`` when no measured count reaches it
    (censored: more than the last count), so it sorts as the slowest and stays a valid objective."""
    threshold = cue_model_reliance / 2
    return next((float(p["step"]) for p in curve if p["cue_reliance"] >= threshold), math.inf)


def revival_metrics(curve: list[dict[str, float]], cue_model_reliance: float) -> dict[str, float]:
    """The trial columns of a revival curve (none for an empty one: revival off)."""
    if not curve:
        return {}
    return {"revival_steps": revival_steps(curve, cue_model_reliance), "revival_auc": revival_auc(curve)}


def revival_auc(curve: list[dict[str, float]]) -> float:
    """Mean cue reliance over the measured points (step 0 and each step count): on the default
    doubling schedule, the area under the curve against log steps. Higher: the cue comes back sooner."""
    values = [p["cue_reliance"] for p in curve]
    return sum(values) / len(values) if values else math.nan
