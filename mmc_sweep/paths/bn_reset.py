"""BatchNorm re-estimation of a model on a path: its interpolated running statistics are wrong until reset."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from mmc_sweep.config import ALL_BATCHES, BNResetSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.data.imageset import host_to


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reset_bn(model: nn.Module, spec: BNResetSpec, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate BatchNorm running statistics from ``batches`` (policy ``spec.mode``).

    ``ema`` keeps each layer's momentum; ``cumulative`` weights every batch by its images, so the
    statistics are the exact average over the images (with equal batches: over the batches, as
    torch's ``momentum=None``; a smaller last batch counts for its images only). The model is left
    in eval mode.
    """
    if spec.mode == "none":
        model.eval()
        return
    layers = bn_layers(model)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
    model.train()
    seen = 0  # images so far
    with torch.no_grad():
        for x in batches:
            seen += x.shape[0]
            if spec.mode == "cumulative":
                # momentum n_batch / n_seen is the exact running average over the images, set on the host:
                # no batch counter is read back from the GPU every layer and batch
                for m in layers:
                    m.momentum = x.shape[0] / seen
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


class StreamedBatches:
    """Every image of ``data`` once per pass, in batches of ``batch_size`` in an order fixed by ``seed``
    (the same at every alpha). A batch is gathered only when the pass reaches it, so a re-estimation on
    a whole training set never holds a second copy of that set on the device."""

    def __init__(self, data: ImageSet, batch_size: int, seed: int) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.data) // self.batch_size)  # batches per pass

    def __iter__(self) -> Iterator[torch.Tensor]:
        for x, _ in self.data.batches(self.batch_size, generator=torch.Generator().manual_seed(self.seed)):
            yield x


def bn_batches(data: ImageSet, spec: BNResetSpec, seed: int) -> Sequence[torch.Tensor] | StreamedBatches:
    """The batches used for BN re-estimation, the same images at every alpha: ``spec.batches`` fixed
    batches, or with ``all`` every image of ``data`` streamed."""
    if spec.mode == "none":
        return []
    if spec.batches == ALL_BATCHES:
        return StreamedBatches(data, spec.batch_size, seed)
    return fixed_batches(data, spec.batches, spec.batch_size, seed)
