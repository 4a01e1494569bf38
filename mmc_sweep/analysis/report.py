"""The analyses as plain, JSON-able records: what ``analyze`` and ``compare`` print in every format.

``analyze``: ``{summary: dict, methods: [row], connectivity: [row], pareto: [row],
importance: {objective: entry}, efficiency: [row], efficiency_goal: [row], efficiency_rule: str,
revival: [row per method], revival_curves: [row per method and step], revival_rule: str, pairs: [row per
mechanism group of each path kind and view], pairs_rule, pairs_measured, layers: [cue layer rows], layers_rule,
layers_pairs}`` (``pairs``/``layers``: what ``run_study.py pairs`` measured).
``compare``: ``{studies: [summary], methods: [row per method and metric, one column per study,
plus the difference of each study from the first], efficiency, efficiency_goal, efficiency_rule}``;
barriers of every path kind any of the studies measures (null for a study without that kind); the
sample efficiency of the studies' trials taken together.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mmc_sweep.analysis.columns import ordered_kinds
from mmc_sweep.analysis.connectivity import connectivity_table
from mmc_sweep.analysis.efficiency import efficiency_table, goal_rule, smallest_n_clean
from mmc_sweep.analysis.load import Study, read_table
from mmc_sweep.analysis.maps import layers_report, pairs_report, read_pairs
from mmc_sweep.analysis.pareto import front_axes, pareto_front
from mmc_sweep.analysis.revival import CURVE_COLUMNS, RULE, revival_curves, revival_summary
from mmc_sweep.analysis.seeds import HI, LO, noise_verdict
from mmc_sweep.analysis.spec import path_kinds
from mmc_sweep.analysis.tables import (DEFAULT_TOLERANCE_PP, DEFAULT_TOP, METRICS, method_barriers, method_table,
                                       summary)

# Counts stored as float64 beside nulls in pandas; reported as integers when whole.
INTEGER_COLUMNS = frozenset({"n_clean", "n_models", "base_seed", "param_n_clean", "smallest_n_clean", "n_clean_tried",
                             "step", "not_revived", "group"})
REVIVAL_COMPARED = ("revival_auc",)  # compare's cue revival row (revival_steps may be inf: a median, not a mean)


def plain(value: Any, column: str = "") -> Any:
    """A JSON-able Python value: NaN/NaT -> None, numpy -> Python, timestamps -> ISO 8601."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if column in INTEGER_COLUMNS and value.is_integer():
            return int(value)
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a frame as dicts of plain values, columns in frame order."""
    cols = list(frame.columns)
    return [{c: plain(v, c) for c, v in zip(cols, row)} for row in frame.itertuples(index=False, name=None)]


def analyze_report(study: Study, top: int = DEFAULT_TOP, tolerance_pp: float = DEFAULT_TOLERANCE_PP,
                   importance: bool = True) -> dict[str, Any]:
    """Summary, method table, connectivity table, Pareto front and (unless ``importance`` is False) importances."""
    axes = ", ".join(o.label for o in front_axes(study.trials, study.spec))
    report: dict[str, Any] = {
        "summary": {**{k: plain(v) for k, v in summary(study, tolerance_pp).items()}, "pareto_axes": axes},
        "methods": records(method_table(study.trials, study.spec, top, tolerance_pp)),
        "connectivity": records(connectivity_table(study.trials, study.spec, top, tolerance_pp)),
        "pareto": records(pareto_front(study.trials, study.spec)),
        "importance": {},
        **efficiency_report(study.trials, tolerance_pp),
        **revival_report(study),
        **map_report(study),
    }
    if importance:
        from mmc_sweep.study.search.importance import param_importances  # lazy: Optuna, in study/search/

        report["importance"] = param_importances(study.trials, study.spec)
    return report


def map_report(study: Study) -> dict[str, Any]:
    """The mechanism map (``run_study.py pairs``): groups per kind and view, and the cue layers."""
    pairs = read_pairs(study)
    return {**pairs_report(study, pairs), **layers_report(study, pairs)}


def study_revival(study: Study) -> pd.DataFrame:
    """The study's revival curves (none read when no trial has a revival: the table is not opened)."""
    if not study.trials["revival_steps"].notna().any():
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return read_table(study.folder, "revival", CURVE_COLUMNS)


def revival_report(study: Study) -> dict[str, Any]:
    """``revival`` (per method), ``revival_curves`` (per method and step) and the rule in words:
    see :mod:`mmc_sweep.analysis.revival`."""
    curves = study_revival(study)
    return {"revival": records(revival_summary(study.trials, curves)),
            "revival_curves": records(revival_curves(study.trials, curves)), "revival_rule": RULE}


def efficiency_report(trials: pd.DataFrame, tolerance_pp: float) -> dict[str, Any]:
    """``efficiency`` (per method and n_clean), ``efficiency_goal`` (per method) and the goal's rule in
    words (``efficiency_rule``): see :mod:`mmc_sweep.analysis.efficiency`."""
    table = efficiency_table(trials)
    return {"efficiency": records(table), "efficiency_goal": records(smallest_n_clean(table, tolerance_pp)),
            "efficiency_rule": goal_rule(tolerance_pp)}


def study_labels(studies: Sequence[Study]) -> list[str]:
    """Column labels of compared studies: the study name, made unique with the folder when needed."""
    names = [s.name for s in studies]
    labels = [n if names.count(n) == 1 else f"{n} ({s.location})" for n, s in zip(names, studies)]
    return [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def compare_report(studies: Sequence[Study], tolerance_pp: float = DEFAULT_TOLERANCE_PP) -> dict[str, Any]:
    """Method tables of several studies aligned by (method, role), one row per metric.

    Each row has one column per study (its label), that study's seed interval (``<label>_lo``,
    ``<label>_hi``) and number of models (``n <label>``), and for every study after the first
    ``delta <label>`` = that study minus the first and ``noise <label>``: ``within seed noise`` when
    the two intervals overlap, ``beyond seed noise`` when they do not, null when either study has a
    single seed. The best search trial (top 1) stands for each study's search. Metrics no study
    has for a method (e.g. ``n_clean`` of base models) are left out. Where a study measured cue
    revival, ``revival_auc`` (mean cue reliance over the re-training steps; its mean over models)
    is compared too: ``revival_steps`` can be infinite (not revived), so the analysis gives its
    median per study instead.
    """
    labels = study_labels(studies)
    kinds = ordered_kinds(k for s in studies for k in path_kinds(s.spec))
    revival = tuple(c for c in REVIVAL_COMPARED if any(s.trials[c].notna().any() for s in studies))
    tables = [method_table(s.trials, s.spec, 1, tolerance_pp, kinds, revival) for s in studies]
    keys: list[tuple[str, str]] = []
    for table in tables:
        keys += [k for k in zip(table["method"], table["role"]) if k not in keys]
    rows: list[dict[str, Any]] = []
    for method, role in keys:
        found = [t[(t["method"] == method) & (t["role"] == role)] for t in tables]
        counts = [plain(f["n_models"].iloc[0], "n_models") if len(f) else None for f in found]
        for metric in METRICS + revival + method_barriers(kinds):
            values = [plain(f[metric].iloc[0], metric) if len(f) else None for f in found]
            if all(v is None for v in values):  # e.g. n_clean of base models: nothing to compare
                continue
            bounds = [(plain(f[metric + LO].iloc[0]), plain(f[metric + HI].iloc[0])) if len(f) else (None, None)
                      for f in found]
            row: dict[str, Any] = {"method": method, "role": role, "metric": metric}
            for label, value, (lo, hi), n in zip(labels, values, bounds, counts):
                row.update({label: value, label + LO: lo, label + HI: hi, f"n {label}": n})
            for label, value, bound in zip(labels[1:], values[1:], bounds[1:]):
                first = values[0]
                row[f"delta {label}"] = None if value is None or first is None else plain(value - first, metric)
                row[f"noise {label}"] = noise_verdict(bounds[0], bound)
            rows.append(row)
    return {
        "studies": [{"label": lab, **{k: plain(v) for k, v in summary(s, tolerance_pp).items()}}
                    for lab, s in zip(labels, studies)],
        "methods": rows,
        **efficiency_report(pd.concat([s.trials for s in studies], ignore_index=True), tolerance_pp),
    }
