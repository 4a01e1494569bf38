"""Seeded training loops: SGD + momentum (Nesterov or plain), a learning-rate schedule (cosine, step,
constant), weight decay.

``fit`` is the one loop every method uses. Batch order and any other randomness of epoch ``e`` come
from a generator seeded by ``(seed, e)``, so a run resumed from an epoch checkpoint continues exactly
as the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Iterable, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from mmc_sweep.config import TrainSpec
from mmc_sweep.data import ImageSet

# (epoch (1-based), mean training loss over the epoch (nats), the model, checkpoint() -> state dict)
EpochCallback = Callable[[int, float, nn.Module, Callable[[], dict]], None]


Stage = torch.Tensor | tuple[torch.Tensor, float]


class StepLoss(Protocol):
    """The loss of one batch; or ``(loss, lr_scale)`` to scale this step's learning rate; or an iterator
    of such losses: one optimizer step each, in order, the next loss computed only after the previous
    step (a generator function: CBFT's alternating update)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int, rng: torch.Generator) -> Stage | Iterator[Stage]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """CPU generator for epoch ``epoch`` (0-based) of a run seeded with ``seed``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class DivergedError(ValueError):
    """Training produced a non-finite loss: the run is over (every later step would be NaN too)."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"diverged: non-finite training loss ({loss}) in epoch {epoch}")


def lr_factor(schedule: str, total: int, steps_per_epoch: int, milestones: tuple[int, ...] = (),
              gamma: float = 0.1) -> Callable[[int], float]:
    """The learning rate of optimizer step ``step`` (0-based) as a multiple of the initial one.

    ``cosine``: from 1 to 0 over ``total`` steps, per step so short runs decay smoothly too;
    ``step``: ``gamma ** k`` in an epoch after ``k`` milestones (epochs), as torch's StepLR/MultiStepLR
    stepped once per epoch; ``constant``: 1.
    """
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    if schedule == "step":
        return lambda step: gamma ** sum(step // steps_per_epoch >= m for m in milestones)
    if schedule == "constant":
        return lambda step: 1.0
    raise ValueError(f"schedule: expected cosine, step or constant, got {schedule!r}")


class PlainSGD(torch.optim.SGD):
    """``torch.optim.SGD`` with its single-tensor update written out, so that training never imports
    ``torch._dynamo``.

    torch wraps ``SGD.step``, ``zero_grad`` and ``(load_)state_dict`` to turn its compiler off, and the
    wrappers import ``torch._dynamo`` on their first call: 1.5 s at the start of every trial's worker on
    2 cores, for a compiler mmc-sweep never uses. The arithmetic is torch's single-tensor SGD (the one
    it runs on the CPU), op for op; the state (``momentum_buffer`` per parameter) and the state_dict
    format are torch's, so a checkpoint of either optimizer loads into the other. On a GPU, torch's
    default would fuse the update across parameters; these models have a few dozen tensors.
    """

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: D102
        if closure is not None:
            raise ValueError("PlainSGD.step takes no closure")
        for group in self.param_groups:
            lr, weight_decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = grad.detach().clone()
                    else:
                        buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                    grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(grad, alpha=-lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    # the base class's implementations, under torch's compiler-off wrappers (functools.wraps keeps them)
    def add_param_group(self, param_group: dict) -> None:
        torch.optim.Optimizer.add_param_group.__wrapped__(self, param_group)

    def state_dict(self) -> dict:
        return torch.optim.Optimizer.state_dict.__wrapped__(self)

    def load_state_dict(self, state_dict: dict) -> None:
        torch.optim.Optimizer.load_state_dict.__wrapped__(self, state_dict)


def _optimizer_step(optimizer: torch.optim.Optimizer, stage: Stage) -> torch.Tensor:
    """One optimizer step on ``stage``'s loss (its lr scale for this step only); the detached loss."""
    loss, lr_scale = stage if isinstance(stage, tuple) else (stage, 1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if lr_scale == 1.0:
        optimizer.step()
        return loss.detach()
    saved = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] *= lr_scale
    optimizer.step()
    for group, lr in zip(optimizer.param_groups, saved):  # the scale lasts this one step
        group["lr"] = lr
    return loss.detach()


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
    schedule: str = "cosine",
    nesterov: bool = True,
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    even_batches: bool = False,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> None:
    """Minimise ``step_loss`` over ``data`` for ``epochs`` epochs, updating ``params`` in place.

    ``schedule``: see :func:`lr_factor`. ``nesterov``: Nesterov momentum when ``momentum > 0``, else
    plain (heavy-ball) momentum. ``even_batches``: batches of sizes that differ by at most one instead
    of full ones and a remainder (:meth:`ImageSet.batches`). The schedule advances once per batch,
    however many optimizer steps the batch takes; the reported epoch loss sums a batch's stage losses.

    ``resume`` is a state returned by the ``checkpoint`` callable given to ``on_epoch``: training
    continues after the epoch it was taken at. A non-finite epoch loss raises :class:`DivergedError`.
    """
    params = [p for p in params if p.requires_grad]
    optimizer = PlainSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0)
    steps_per_epoch = max(1, math.ceil(len(data) / batch_size))
    factor = lr_factor(schedule, epochs * steps_per_epoch, steps_per_epoch, milestones, gamma)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["schedule"])
        start = int(resume["epoch"])

    def checkpoint_at(epoch: int) -> Callable[[], dict]:
        # deep copies: the optimizer's state dict references momentum buffers that later steps mutate
        return lambda: copy.deepcopy(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": scheduler.state_dict(), "epoch": epoch}
        )

    for epoch in range(start, epochs):
        rng = epoch_generator(seed, epoch)
        model.train()
        total_loss = torch.zeros((), device=data.x.device)
        batches = 0
        for x, y in data.batches(batch_size, generator=rng, even=even_batches):
            out = step_loss(x, y, epoch, rng)
            for stage in out if isinstance(out, Iterator) else (out,):  # an iterator is pulled after each step
                total_loss += _optimizer_step(optimizer, stage)
            scheduler.step()  # per batch
            batches += 1
        mean_loss = float(total_loss) / max(batches, 1)
        if not math.isfinite(mean_loss):
            raise DivergedError(epoch + 1, mean_loss)
        if on_epoch is not None:
            on_epoch(epoch + 1, mean_loss, model, checkpoint_at(epoch + 1))


def train_model(
    model: nn.Module,
    data: ImageSet,
    spec: TrainSpec,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> nn.Module:
    """Train ``model`` (already on the data's device) from scratch with cross-entropy; batch order and any
    other randomness of training from ``spec.order_seed`` (``spec.seed`` in the seed's own stream)."""
    torch.manual_seed(spec.order_seed)

    def step_loss(x: torch.Tensor, y: torch.Tensor, epoch: int, rng: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    fit(
        model, model.parameters(), step_loss, data,
        epochs=spec.epochs, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
        batch_size=spec.batch_size, seed=spec.order_seed, schedule=spec.schedule, nesterov=spec.nesterov,
        milestones=spec.milestones, gamma=spec.gamma, on_epoch=on_epoch, resume=resume,
    )
    return model.eval()


def _atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_state(state: dict, path: str | Path) -> None:
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def atomic_write_text(text: str, path: str | Path) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a saved state safely (tensors and plain containers only)."""
    return torch.load(path, map_location=device, weights_only=True)


