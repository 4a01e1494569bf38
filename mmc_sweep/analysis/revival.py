"""Cue revival by method: did fine-tuning remove the cue mechanism, or only hide it?

Every completed fine-tuned model of a study run with ``revival.steps`` has a revival curve (its cue
reliance after each step count of re-training on cue data: the ``revival`` table) and the trial
columns ``revival_steps`` and ``revival_auc`` (:mod:`mmc_sweep.revival`). Per method: the mean
curve, and how many steps its models needed to regain half the cue model's cue reliance. A method
that removed the mechanism needs more steps than one that hid it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mmc_sweep.analysis.tables import completed

CURVE_COLUMNS = ("trial_id", "step", "cue_reliance", "acc_clean")
SUMMARY = ("method", "n_models", "revival_steps", "not_revived", "revival_auc", "cue_reliance_start", "cue_reliance_end")
RULE = ("revival_steps: median over the method's models of the re-training steps until cue reliance is back to half "
        "the cue model's (null: most models never got there within the last step count); not_revived: models that "
        "never did")


def revival_curves(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Mean cue reliance per (method, step) over the completed fine-tuned models that have a curve,
    with its range over them (``cue_reliance_min``/``_max``) and ``n_models``."""
    models = completed(trials)
    models = models[models["role"].isin(("baseline", "search"))][["trial_id", "method"]]
    rows = curves.merge(models, on="trial_id")
    if rows.empty:
        return pd.DataFrame(columns=["method", "step", "n_models", "cue_reliance", "cue_reliance_min", "cue_reliance_max"])
    out = rows.groupby(["method", "step"], sort=True)["cue_reliance"].agg(
        n_models="count", cue_reliance="mean", cue_reliance_min="min", cue_reliance_max="max").reset_index()
    out["step"] = out["step"].astype("int64")
    return out


def revival_summary(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per method with revival curves (see :data:`RULE`), by method name."""
    mean = revival_curves(trials, curves)
    done = completed(trials)
    rows = []
    for method, points in mean.groupby("method", sort=True):
        models = done[(done["method"] == method) & done["revival_steps"].notna()]
        steps = models["revival_steps"].to_numpy(dtype=float)
        median = float(np.median(steps)) if len(steps) else math.nan
        rows.append({"method": method, "n_models": int(points["n_models"].max()),
                     "revival_steps": median if math.isfinite(median) else None,
                     "not_revived": int(np.isinf(steps).sum()), "revival_auc": float(models["revival_auc"].mean()),
                     "cue_reliance_start": float(points["cue_reliance"].iloc[0]),
                     "cue_reliance_end": float(points["cue_reliance"].iloc[-1])})
    return pd.DataFrame(rows, columns=list(SUMMARY))


def cue_model_reliance(trials: pd.DataFrame) -> float:
    """Mean cue reliance of the study's cue models: revival_steps counts until half of it."""
    cue = completed(trials)
    return float(cue.loc[cue["method"] == "base_cue", "cue_reliance"].mean())
