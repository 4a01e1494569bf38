"""A trial's share of a GPU: its CUDA memory capped to its fraction, and its peak use read back.

Ray gives a 0.25-GPU trial a quarter of the GPU's *scheduling* capacity only; nothing stops its
PyTorch caching allocator from taking the whole card and starving the three trials beside it. The
cap makes an over-eager trial fail with an out-of-memory error of its own instead.
"""
from __future__ import annotations

import torch


def claim_share(fraction: float) -> torch.device:
    """The current CUDA device, with this process's memory capped to ``fraction`` of it (0 < f < 1;
    1 or more: no cap) and its peak-memory counter reset."""
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.set_per_process_memory_fraction(min(max(fraction, 0.0), 1.0) or 1.0, device)
    torch.cuda.reset_peak_memory_stats(device)
    return device


def peak_mb(device: torch.device) -> float | None:
    """Most CUDA memory the process's tensors held since :func:`claim_share`, MiB (None off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
