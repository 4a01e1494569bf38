"""What a run of a study ends with: its exit code, its folder and its search trials' counts."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudyOutcome:
    exit_code: int  # 0: done with a completed search trial; 1: failed; 130 / 143: interrupted (SIGINT / SIGTERM)
    study_dir: str
    completed: int  # search trials
    failed: int
