"""What a run of a study ends with: its exit code, its folder, its search trials' counts and where its time went."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterator


@dataclass(frozen=True)
class StudyOutcome:
    exit_code: int  # 0: done with a completed search trial; 1: failed; 130 / 143: interrupted (SIGINT / SIGTERM)
    study_dir: str
    completed: int  # search trials
    failed: int
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per phase (ray_start, base, ...)


@contextlib.contextmanager
def timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall seconds the block takes to ``seconds[phase]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - start


def seconds_line(seconds: dict[str, float]) -> str:
    """``phase seconds: ray_start=3.1 base=20.4 ...``: printed at the end of a run, read by benchmarks."""
    return "phase seconds: " + " ".join(f"{phase}={s:.1f}" for phase, s in seconds.items())
