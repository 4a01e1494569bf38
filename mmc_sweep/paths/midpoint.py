"""QMC: train the midpoint theta of the quadratic Bezier curve ``(1-a)²·A + 2a(1-a)·theta + a²·B``.

Each step samples ``a ~ U(0, 1)``, evaluates the curve's point in training mode on a batch (through
``torch.func.functional_call``, so the gradient reaches theta through the curve) and takes an SGD
step on theta; A and B stay fixed. With ``scale_lr`` the update is the reference code's instead: the
gradient taken at the curve point (without the 2a(1-a) factor) with the step's learning rate
multiplied by 2a(1-a). Theta's BatchNorm statistics are the endpoints' average (path evaluation
re-estimates them anyway, by the recorded BN policy).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from mmc_sweep.config import QMCSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.train import EpochCallback, atomic_write_text, fit, load_state, save_state

_MIN_WEIGHT = 1e-6  # floor of 2a(1-a) when scale_lr divides by it (a = 0 exactly has probability ~2^-24)


class MidpointStore(Protocol):
    """Where trained midpoints live, by content key (a hash of both endpoints' specs and the QMC
    settings). ``info``: JSON-able provenance (settings, training time, device)."""

    def load(self, key: str) -> dict[str, Tensor] | None: ...

    def save(self, key: str, state: dict[str, Tensor], info: dict) -> None: ...


class FolderMidpoints:
    """Midpoints as ``<folder>/<key>/midpoint.pt`` beside ``info.json`` (each written atomically,
    the weights last)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def load(self, key: str) -> dict[str, Tensor] | None:
        file = self.folder / key / "midpoint.pt"
        return load_state(file) if file.is_file() else None

    def save(self, key: str, state: dict[str, Tensor], info: dict) -> None:
        atomic_write_text(json.dumps(info, indent=1), self.folder / key / "info.json")
        save_state({k: v.detach().cpu() for k, v in state.items()}, self.folder / key / "midpoint.pt")


def init_midpoint(model_a: nn.Module, model_b: nn.Module, spec: QMCSpec) -> nn.Module:
    """Theta before training: ``linear`` = (A + B) / 2 (the curve is then the straight line);
    ``random`` = a fresh initialisation of the architecture, seeded by ``spec.seed``."""
    theta = copy.deepcopy(model_a)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    if spec.init == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            for module in theta.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    params = {n for n, _ in theta.named_parameters()}
    with torch.no_grad():
        for name, value in theta.state_dict().items():
            if value.is_floating_point() and (spec.init == "linear" or name not in params):
                value.copy_((state_a[name] + state_b[name]) / 2)
    for p in theta.parameters():
        p.requires_grad_(True)
    return theta


def train_midpoint(model_a: nn.Module, model_b: nn.Module, data: ImageSet, spec: QMCSpec,
                   on_epoch: EpochCallback | None = None) -> nn.Module:
    """Theta trained to minimise the expected cross-entropy along the curve on ``data`` (eval mode)."""
    theta = init_midpoint(model_a, model_b, spec)
    fixed_a = {n: p.detach() for n, p in model_a.named_parameters()}
    fixed_b = {n: p.detach() for n, p in model_b.named_parameters()}
    point = copy.deepcopy(model_a).train()  # the module the curve's parameters are run through
    named = list(theta.named_parameters())

    def step_loss(x: Tensor, y: Tensor, epoch: int, rng: torch.Generator):
        a = float(torch.rand((), generator=rng))
        wa, wm, wb = (1 - a) ** 2, 2 * a * (1 - a), a**2
        params = {n: wa * fixed_a[n] + wm * p + wb * fixed_b[n] for n, p in named}
        loss = F.cross_entropy(functional_call(point, params, (x,)), y)
        if spec.scale_lr:
            weight = max(wm, _MIN_WEIGHT)
            return loss / weight, weight
        return loss

    fit(theta, theta.parameters(), step_loss, data, epochs=spec.epochs, lr=spec.lr, momentum=spec.momentum,
        weight_decay=spec.weight_decay, batch_size=spec.batch_size, seed=spec.seed, schedule=spec.schedule,
        on_epoch=on_epoch)
    return theta.eval()
