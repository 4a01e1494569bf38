"""What the analysis reads from a study's ``study.yaml``: objectives, search space, path kinds and
views, expected rows.

The spec is the harness's resolved spec as a plain dict (``yaml.safe_load``); the analysis reads it
defensively, with the defaults below, so an old or hand-written spec still gives a report.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmc_sweep.analysis.columns import VIEWS, ordered_kinds

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


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


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
    return _as_list(seeds)


def baseline_methods(spec: dict[str, Any]) -> list[str]:
    """Baseline methods the study runs once each with its fixed fine-tuning settings (``baselines:``), in spec order."""
    return [str(b) for b in _as_list(spec.get("baselines") or [])]


def control_pair(spec: dict[str, Any]) -> bool:
    """``base.control_pair``: the clean references of consecutive base seeds are measured as a pair."""
    return bool((spec.get("base") or {}).get("control_pair", False))


def path_kinds(spec: dict[str, Any]) -> list[str]:
    """Path kinds the study measures (``paths.kinds``; ``linear`` first, default ``[linear]``)."""
    kinds = (spec.get("paths") or {}).get("kinds")
    return ordered_kinds(_as_list(kinds)) if kinds else ["linear"]


def path_views(spec: dict[str, Any]) -> list[str]:
    """Views evaluated along the paths (``paths.views``, default all four), in the usual view order."""
    views = (spec.get("paths") or {}).get("views")
    listed = {str(v) for v in _as_list(views)} if views else set(VIEWS)
    return [v for v in VIEWS if v in listed] or list(VIEWS)


def expected_rows(spec: dict[str, Any]) -> dict[str, int]:
    """Rows a finished study has per role: 2 base models per base seed (plus one control pair per
    two consecutive seeds with ``base.control_pair``), one row per baseline per base seed, and
    ``search.num_samples`` search trials."""
    seeds = len(base_seeds(spec))
    controls = seeds - 1 if control_pair(spec) and seeds >= 2 else 0
    return {
        "base": 2 * seeds + controls,
        "baseline": len(baseline_methods(spec)) * seeds,
        "search": int((spec.get("search") or {}).get("num_samples") or 0),
    }
