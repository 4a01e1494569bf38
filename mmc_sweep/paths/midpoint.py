"""QMC: train the midpoint theta of the quadratic Bezier curve ``(1-a)²·A + 2a(1-a)·theta + a²·B``.

Each step samples ``a ~ U(0, 1)``, evaluates the curve's point in training mode on a batch (through
``torch.func.functional_call``, so the gradient reaches theta through the curve) and takes an SGD
step on theta; A and B stay fixed. With ``scale_lr`` the update is the reference code's instead: the
gradient taken at the curve point (without the 2a(1-a) factor) with the step's learning rate
multiplied by 2a(1-a) (the same SGD update, weight decay and momentum included). Theta's stored
BatchNorm statistics are the endpoints' average or a fresh network's (``bn_stats``; path evaluation
re-estimates them anyway unless its BN policy is ``none``).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from mmc_sweep.config import QMCSpec, derive_seed
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


@dataclass(frozen=True)
class RandomInitStream:
    """Part of the content key of a randomly initialised midpoint (see :func:`midpoint_key_specs`).

    Theta's random initialisation is drawn from ``derive_seed(qmc.seed, stream)``. Before this stream
    existed theta was seeded with ``qmc.seed`` itself, exactly like the base models of that seed, so
    it started as a base model's initialisation; its key carries the stream so that such a stored
    midpoint is never taken for one drawn from the stream.
    """

    stream: str = "qmc_init"


def midpoint_key_specs(spec: QMCSpec) -> tuple:
    """The specs that, after both endpoints' and the data's, content-address a midpoint trained by ``spec``.
    A ``linear`` midpoint's key is unchanged (its content is); a ``random`` one's names its seed stream."""
    return (spec,) if spec.init == "linear" else (spec, RandomInitStream())


def random_init_seed(spec: QMCSpec) -> int | None:
    """The torch seed of theta's random initialisation (None for ``linear``): recorded with the midpoint."""
    return derive_seed(spec.seed, RandomInitStream().stream) if spec.init == "random" else None


def init_midpoint(model_a: nn.Module, model_b: nn.Module, spec: QMCSpec) -> nn.Module:
    """Theta before training: ``linear`` = (A + B) / 2 (the curve is then the straight line);
    ``random`` = a fresh initialisation of the architecture from theta's own stream of ``spec.seed``.

    BatchNorm running statistics (``spec.bn_stats``): the endpoints' average, or a fresh network's.
    """
    theta = copy.deepcopy(model_a)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    if spec.init == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_init_seed(spec))
            for module in theta.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    params = {n for n, _ in theta.named_parameters()}
    with torch.no_grad():
        for name, value in theta.state_dict().items():
            if value.is_floating_point() and (spec.init == "linear" or name not in params):
                value.copy_((state_a[name] + state_b[name]) / 2)
        if spec.bn_stats == "init":
            for module in theta.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_running_stats()
    for p in theta.parameters():
        p.requires_grad_(True)
    return theta


def train_midpoint(model_a: nn.Module, model_b: nn.Module, data: ImageSet, spec: QMCSpec,
                   on_epoch: EpochCallback | None = None) -> nn.Module:
    """Theta trained to minimise the expected cross-entropy along the curve on ``data``; returned in eval mode.

    Every curve point runs in training mode (batch statistics), as in the reference; the recipe
    (momentum kind, weight decay, schedule, lr scaling, epochs, batch size) is ``spec``'s.
    """
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
        nesterov=spec.nesterov, milestones=spec.milestones, gamma=spec.gamma, on_epoch=on_epoch)
    return theta.eval()
