"""How (not what) a study runs: where its results go and which Ray cluster runs its trials.

The spec says what a study computes (and is hashed); these options may change between a run and
its resume without changing the study. ``preflight`` checks them before anything starts.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunOptions:
    """How (not what) to run: where results go and which Ray cluster runs the trials."""

    storage: str = "studies"
    address: str | None = None  # None: start a local Ray; "auto" or host:port: join a cluster
    verbose: bool = False  # Ray's own console output
    connect_timeout_s: float = 60.0
    optuna_storage: str | None = None  # an Optuna storage URL (sqlite:///..., postgresql://...); None: a journal in the study
    filesystem: object | None = None  # a pyarrow.fs.FileSystem that `storage` is a path on (Python API only)
