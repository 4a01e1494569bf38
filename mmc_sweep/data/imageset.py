"""A labelled set of images held as two tensors, with batching that never touches single samples."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor


def host_to(t: Tensor, device: torch.device) -> Tensor:
    """``t`` (a batch's indices, drawn on the CPU) on ``device`` without making the host wait for the GPU.

    A plain copy from pageable memory synchronises the CUDA stream: every step would wait until the
    GPU has drained, and a trial sharing its GPU would wait for its neighbours' work too. From pinned
    memory the copy is queued like a kernel (PyTorch keeps the pinned buffer until it is done).
    """
    if t.device.type != "cpu" or device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value; compare fields
class ImageSet:
    """Images ``x`` (N, 3, H, W) float32 in [0, 1] and labels ``y`` (N,) int64, on one device."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"ImageSet: expected x (N, C, H, W) and y (N,), got {tuple(self.x.shape)} and {tuple(self.y.shape)}")
        if self.y.dtype != torch.int64:
            raise ValueError(f"ImageSet: labels must be int64, got {self.y.dtype}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: str | torch.device) -> ImageSet:
        return ImageSet(self.x.to(device), self.y.to(device))

    def subset(self, index: Tensor) -> ImageSet:
        """The images at ``index`` (LongTensor of positions or a bool mask), in that order."""
        index = host_to(index, self.x.device)
        return ImageSet(self.x[index], self.y[index])

    def random_subset(self, n: int, seed: int) -> ImageSet:
        """``n`` images drawn uniformly without replacement by ``seed``, kept in their order (all of them
        when ``n`` is 0 or at least their number)."""
        if n == 0 or n >= len(self):
            return self
        return self.subset(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False, even: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches: shuffled with ``generator`` (a CPU generator) when given, in order otherwise.

        ``even``: the same number of batches, ceil(n / batch_size), with sizes that differ by at most one
        (200 images at 64: four of 50, not 64, 64, 64, 8). A last batch of a few images is a step, and a
        BatchNorm update, on almost nothing: it can wreck fine-tuning on a small clean set.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        n = len(self)
        order = None if generator is None else host_to(torch.randperm(n, generator=generator), self.x.device)
        for start, stop in batch_bounds(n, batch_size, drop_last, even):
            if order is None:
                yield self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                yield self.x[idx], self.y[idx]


def batch_bounds(n: int, batch_size: int, drop_last: bool = False, even: bool = False) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch of ``n`` items (see :meth:`ImageSet.batches`)."""
    if even:
        count = -(-n // batch_size)
        size, larger = divmod(n, max(count, 1))
        stops = [(i + 1) * size + min(i + 1, larger) for i in range(count)]
        return list(zip([0] + stops[:-1], stops))
    stop = n - n % batch_size if drop_last else n
    return [(start, min(start + batch_size, n)) for start in range(0, stop, batch_size)]
