"""BatchNorm re-estimation of a model on a path: its interpolated running statistics are wrong until reset."""
from __future__ import annotations

import torch
from torch import nn

from mmc_sweep.config import BNResetSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.data.imageset import host_to


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reset_bn(model: nn.Module, spec: BNResetSpec, batches: list[torch.Tensor]) -> None:
    """Re-estimate BatchNorm running statistics from ``batches`` (policy ``spec.mode``).

    ``ema`` keeps each layer's momentum; ``cumulative`` sets momentum None, so the statistics are the
    exact average over the batches. The model is left in eval mode.
    """
    if spec.mode == "none":
        model.eval()
        return
    layers = bn_layers(model)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for k, x in enumerate(batches, start=1):
            if spec.mode == "cumulative":
                # momentum 1/k after k batches is the exact running average: what momentum=None
                # computes, without reading the batch counter back from the GPU every layer and batch
                for m in layers:
                    m.momentum = 1.0 / k
            model(x)
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    model.eval()


def fixed_batches(data: ImageSet, batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``batches`` batches of images drawn once by ``seed``: the same images wherever they are used."""
    gen = torch.Generator().manual_seed(seed)
    need = min(batches * batch_size, len(data))
    index = host_to(torch.randperm(len(data), generator=gen)[:need], data.x.device)
    return list(data.x[index].split(batch_size))


def bn_batches(data: ImageSet, spec: BNResetSpec, seed: int) -> list[torch.Tensor]:
    """The fixed batches used for BN re-estimation: the same images at every alpha."""
    return [] if spec.mode == "none" else fixed_batches(data, spec.batches, spec.batch_size, seed)
