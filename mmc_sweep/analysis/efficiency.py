"""Sample efficiency: how many clean images each fine-tuning method needs to remove the cue.

For every method and every ``n_clean`` a study measured (search trials over ``n_clean`` and
``method``, and the baselines at the study's fixed ``n_clean``): the mean cue reliance and clean
accuracy of its completed models (one per base seed and setting) with their seed intervals. Per
method, the smallest ``n_clean`` that reaches the goal (:func:`goal_rule`): mean cue reliance at
most :data:`GOAL_CUE_RELIANCE` with a mean clean accuracy within ``tolerance_pp`` percentage points
of the best mean clean accuracy of any method at any ``n_clean`` of the same table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mmc_sweep.analysis.seeds import HI, LO
from mmc_sweep.analysis.tables import completed, mean_row, with_n_clean, within_tolerance

GOAL_CUE_RELIANCE = 0.05  # at or below: the model no longer follows the cue (0: chance, 1: the cue model's)
METRICS = ("cue_reliance", "acc_clean")
ROWS = ("method", "n_clean", "n_models") + tuple(c for m in METRICS for c in (m, m + LO, m + HI))


def goal_rule(tolerance_pp: float) -> str:
    return (f"goal: mean cue_reliance <= {GOAL_CUE_RELIANCE:g} with mean acc_clean within {tolerance_pp:g} pp of "
            f"the best mean acc_clean of any method at any n_clean here")


def efficiency_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, n_clean) of the completed fine-tuned models (baselines and search trials):
    how many, and the mean and seed interval of each of :data:`METRICS`; by method, then n_clean."""
    done = with_n_clean(completed(trials))
    done = done[done["role"].isin(("baseline", "search")) & done["n_clean"].notna() & done["method"].notna()]
    rows = [{**mean_row(method, "", group, METRICS), "n_clean": int(n_clean)}  # the method table's averaging
            for (method, n_clean), group in done.groupby(["method", "n_clean"], sort=True)]
    return pd.DataFrame(rows, columns=list(ROWS))


def smallest_n_clean(table: pd.DataFrame, tolerance_pp: float) -> pd.DataFrame:
    """Per method of :func:`efficiency_table`: the smallest ``n_clean`` reaching the goal (null when
    none does), its mean cue reliance and clean accuracy, and how many ``n_clean`` values were tried."""
    columns = ["method", "smallest_n_clean", "cue_reliance", "acc_clean", "n_clean_tried"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    reached = (table["cue_reliance"] <= GOAL_CUE_RELIANCE) & within_tolerance(table["acc_clean"], tolerance_pp)
    rows = []
    for method, group in table.groupby("method", sort=True):
        hits = group[reached[group.index]]
        first = hits.iloc[0] if len(hits) else None  # the table is sorted by n_clean within a method
        rows.append({"method": method, "smallest_n_clean": None if first is None else int(first["n_clean"]),
                     "cue_reliance": np.nan if first is None else first["cue_reliance"],
                     "acc_clean": np.nan if first is None else first["acc_clean"],
                     "n_clean_tried": int(group["n_clean"].nunique())})
    return pd.DataFrame(rows, columns=columns)
