"""What the analysis reads from a study's ``study.yaml``: objectives, search space, expected rows.

The spec is the harness's resolved spec as a plain dict (``yaml.safe_load``); the analysis reads it
defensively, with the defaults below, so an old or hand-written spec still gives a report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Used when a spec names no objectives: the two quantities the paper trades off.
DEFAULT_OBJECTIVES = (("acc_clean", "max"), ("cue_reliance", "min"))


@dataclass(frozen=True)
class Objective:
    """One objective of the search: a ``trials`` column (or ``param_<metric>``) and its direction."""

    metric: str
    mode: str  # "max" or "min"

    @property
    def label(self) -> str:
        return f"{self.metric} ({self.mode})"


def objectives(spec: dict[str, Any]) -> list[Objective]:
    """The study's objectives, in the order the spec lists them."""
    found = []
    for item in (spec.get("search") or {}).get("objectives") or []:
        if isinstance(item, dict) and item.get("metric"):
            mode = str(item.get("mode", "max")).lower()
            found.append(Objective(str(item["metric"]), "min" if mode.startswith("min") else "max"))
    return found or [Objective(m, d) for m, d in DEFAULT_OBJECTIVES]


def search_space(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``search.space``: parameter name -> ``{type, low, high, log}`` or ``{type: categorical, choices}``."""
    space = (spec.get("search") or {}).get("space") or {}
    return {str(k): dict(v) for k, v in space.items() if isinstance(v, dict)}


def base_seeds(spec: dict[str, Any]) -> list[Any]:
    """Seeds of the base models (one cue model and one clean reference per seed)."""
    base = spec.get("base") or {}
    seeds = base.get("seeds")
    if seeds is None:
        seeds = [base.get("seed", 0)]
    return list(seeds) if isinstance(seeds, (list, tuple)) else [seeds]


def baseline_methods(spec: dict[str, Any]) -> list[str]:
    """Baseline methods the study runs at their defaults (``baselines:``), in spec order."""
    baselines = spec.get("baselines") or []
    return [str(b) for b in baselines] if isinstance(baselines, (list, tuple)) else [str(baselines)]


def search_method(spec: dict[str, Any]) -> str:
    """The method the search tunes (``finetune.method``)."""
    return str((spec.get("finetune") or {}).get("method", "cbft"))


def expected_rows(spec: dict[str, Any]) -> dict[str, int]:
    """Rows a finished study has per role: 2 base models and one row per baseline per base seed,
    plus ``search.num_samples`` search trials."""
    seeds = len(base_seeds(spec))
    return {
        "base": 2 * seeds,
        "baseline": len(baseline_methods(spec)) * seeds,
        "search": int((spec.get("search") or {}).get("num_samples") or 0),
    }
