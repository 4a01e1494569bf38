"""What each measurement of a trial costs: wall seconds per phase, so a search can weigh barrier
resolution (more path kinds, points, midpoint epochs) against compute.

Phases: ``finetune`` (training, with its per-epoch metrics), ``align`` (matching hidden units for
LMCP paths), ``midpoint`` (training or loading QMC midpoints) and ``paths`` (evaluating every path
point, BatchNorm re-estimation included) and ``revival`` (re-training on cue data and measuring the cue
reliance of every step count: :mod:`mmc_sweep.revival`; 0 with revival off). Plain PyTorch, device-agnostic.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch

COST_PHASES = ("finetune", "align", "midpoint", "paths", "revival")
# trial columns (seconds; cost_gpu_s: the trial's wall seconds times the GPU share it held, null off a GPU)
COST_METRICS = tuple(f"cost_{p}_s" for p in COST_PHASES) + ("cost_gpu_s",)


class PhaseClock:
    """Seconds spent per phase, accumulated over ``with clock.phase(name):`` blocks (``seconds``: a
    resumed trial's earlier totals). On a GPU each block ends with one wait for the device, so the
    work a phase queued is counted in that phase (a few waits a trial, not one per step)."""

    def __init__(self, device: torch.device | None = None, seconds: dict[str, float] | None = None) -> None:
        self.device = device
        self.seconds = {p: 0.0 for p in COST_PHASES} | dict(seconds or {})
        self._open: tuple[str, float] | None = None  # the phase running now, and since when

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in COST_PHASES:
            raise KeyError(f"{name!r} is not a cost phase ({', '.join(COST_PHASES)})")
        start = time.perf_counter()
        self._open = (name, start)
        try:
            yield
        finally:
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start
            self._open = None

    def so_far(self) -> dict[str, float]:
        """Each phase's seconds up to now, the running one's included (what an epoch state keeps)."""
        out = dict(self.seconds)
        if self._open is not None:
            out[self._open[0]] += time.perf_counter() - self._open[1]
        return out

    def metrics(self) -> dict[str, float]:
        """``cost_<phase>_s`` of every phase."""
        return {f"cost_{p}_s": self.seconds[p] for p in COST_PHASES}


def clocked(clock: PhaseClock | None, name: str) -> contextlib.AbstractContextManager:
    """``clock.phase(name)``, or nothing without a clock."""
    return clock.phase(name) if clock is not None else contextlib.nullcontext()
