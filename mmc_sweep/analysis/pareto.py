"""Pareto front of the search trials over the study's objectives, plus ``n_clean`` (fewer is better).

The paper's point is that CBFT needs very little clean data, so sample efficiency is an axis of
interest even when the search does not optimise it: the front is taken over the objectives and
``n_clean`` (minimised), and ``on_objective_front`` says whether a trial is also on the front of the
objectives alone. Trials missing a value of any axis cannot be compared and are left out.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mmc_sweep.analysis.spec import Objective, objectives, search_space
from mmc_sweep.analysis.tables import completed, with_n_clean


def non_dominated(scores: np.ndarray) -> np.ndarray:
    """Mask of rows of ``scores`` (points x axes, larger is better) that no other row dominates.

    Points are visited in lexicographically descending order, so every dominator of a point comes
    before it; dominance is transitive, so comparing each point with the front found so far is
    enough: O(n log n + n * front size). Equal points do not dominate each other: all are kept.
    """
    scores = np.asarray(scores, dtype=float)
    keep = np.zeros(len(scores), dtype=bool)
    if scores.size == 0:
        return np.ones(len(scores), dtype=bool) if len(scores) else keep
    order = np.lexsort(-scores.T[::-1])  # first axis is the primary key, all descending
    front = np.empty((0, scores.shape[1]))
    for i in order:
        point = scores[i]
        if not ((front >= point).all(axis=1) & (front > point).any(axis=1)).any():
            keep[i] = True
            front = np.vstack([front, point])
    return keep


def metric_column(trials: pd.DataFrame, metric: str) -> str:
    """Column of an objective: the metric itself, or ``param_<metric>`` for a searched setting."""
    if metric in trials.columns:
        return metric
    return f"param_{metric}" if f"param_{metric}" in trials.columns else metric


def search_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed search trials, with the ``n_clean`` column."""
    done = completed(trials)
    return with_n_clean(done[done["role"] == "search"])


def front_axes(trials: pd.DataFrame, spec: dict) -> list[Objective]:
    """The study's objectives, plus ``n_clean`` (min) when it varies among the completed search
    trials and is not already one."""
    axes = objectives(spec)
    if all(o.metric != "n_clean" for o in axes) and search_trials(trials)["n_clean"].nunique() > 1:
        axes = axes + [Objective("n_clean", "min")]
    return axes


def _scores(frame: pd.DataFrame, axes: list[Objective]) -> np.ndarray:
    """Axis values with every axis turned into "larger is better"."""
    cols = [pd.to_numeric(frame[metric_column(frame, o.metric)], errors="coerce").to_numpy(dtype=float)
            for o in axes]
    signs = np.array([1.0 if o.mode == "max" else -1.0 for o in axes])
    return np.stack(cols, axis=1) * signs if cols else np.empty((len(frame), 0))


def pareto_front(trials: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Completed search trials on the front; columns: trial_id, method, each axis, acc_clean,
    cue_reliance, on_objective_front, then the trial's parameters. Sorted by the first objective,
    best first (ties: trial id)."""
    search = search_trials(trials)
    axes = front_axes(trials, spec)
    for o in axes:  # an objective the trials table lacks: no trial can be placed on the front
        col = metric_column(search, o.metric)
        if col not in search.columns:
            search = search.assign(**{col: np.nan})
    scores = _scores(search, axes)
    finite = np.isfinite(scores).all(axis=1) if len(search) else np.zeros(0, dtype=bool)
    search, scores = search[finite], scores[finite]
    on_front = non_dominated(scores)
    n_obj = len(objectives(spec))
    front = search[on_front].copy()
    front["on_objective_front"] = non_dominated(scores[:, :n_obj])[on_front]

    axis_cols = [metric_column(front, o.metric) for o in axes]
    extra = [c for c in ("acc_clean", "cue_reliance", "n_clean") if c not in axis_cols]
    # the searched parameters (fixed ones are the same for every trial and live in study.yaml);
    # a spec without a space falls back to the parameters that vary
    space = search_space(spec)
    params = [c for c in front.columns if c.startswith("param_") and c not in axis_cols + ["param_n_clean"]
              and front[c].notna().any()
              and (c.removeprefix("param_") in space if space else front[c].nunique(dropna=True) > 1)]
    columns = ["trial_id", "method"] + axis_cols + extra + ["on_objective_front"] + params
    first = axes[0]
    front["_key"] = pd.to_numeric(front[axis_cols[0]], errors="coerce") * (-1 if first.mode == "max" else 1)
    front = front.sort_values(["_key", "trial_id"], kind="stable")
    return front[columns].reset_index(drop=True)
