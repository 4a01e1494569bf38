"""Seeded training loops: SGD + momentum, cosine learning-rate schedule, weight decay.

``fit`` is the one loop every method uses. Batch order and any other randomness of epoch ``e`` come
from a generator seeded by ``(seed, e)``, so a run resumed from an epoch checkpoint continues exactly
as the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from mmc_sweep.config import TrainSpec
from mmc_sweep.data import ImageSet

# (epoch (1-based), mean training loss over the epoch (nats), the model, checkpoint() -> state dict)
EpochCallback = Callable[[int, float, nn.Module, Callable[[], dict]], None]


class StepLoss(Protocol):
    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int, rng: torch.Generator) -> torch.Tensor: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """CPU generator for epoch ``epoch`` (0-based) of a run seeded with ``seed``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def fit(
    model: nn.Module,
    params: Iterable[nn.Parameter],
    step_loss: StepLoss,
    data: ImageSet,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> None:
    """Minimise ``step_loss`` over ``data`` for ``epochs`` epochs, updating ``params`` in place.

    ``resume`` is a state returned by the ``checkpoint`` callable given to ``on_epoch``: training
    continues after the epoch it was taken at.
    """
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    steps_per_epoch = max(1, math.ceil(len(data) / batch_size))
    total = epochs * steps_per_epoch
    # cosine decay from lr to 0 over all steps (per step, so short runs decay smoothly too)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        start = int(resume["epoch"])

    def checkpoint_at(epoch: int) -> Callable[[], dict]:
        # deep copies: the optimizer's state dict references momentum buffers that later steps mutate
        return lambda: copy.deepcopy(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "epoch": epoch}
        )

    for epoch in range(start, epochs):
        rng = epoch_generator(seed, epoch)
        model.train()
        total_loss = torch.zeros((), device=data.x.device)
        batches = 0
        for x, y in data.batches(batch_size, generator=rng):
            loss = step_loss(x, y, epoch, rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.detach()
            batches += 1
        if on_epoch is not None:
            on_epoch(epoch + 1, float(total_loss) / max(batches, 1), model, checkpoint_at(epoch + 1))


def train_model(
    model: nn.Module,
    data: ImageSet,
    spec: TrainSpec,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> nn.Module:
    """Train ``model`` (already on the data's device) from scratch with cross-entropy."""
    torch.manual_seed(spec.seed)

    def step_loss(x: torch.Tensor, y: torch.Tensor, epoch: int, rng: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    fit(
        model, model.parameters(), step_loss, data,
        epochs=spec.epochs, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
        batch_size=spec.batch_size, seed=spec.seed, on_epoch=on_epoch, resume=resume,
    )
    return model.eval()


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write the state dict atomically (temp file in the same folder + rename)."""
    save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def save_state(state: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a saved state safely (tensors and plain containers only)."""
    return torch.load(path, map_location=device, weights_only=True)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    device = next(model.parameters()).device
    model.load_state_dict(load_state(path, device))
    return model.eval()
