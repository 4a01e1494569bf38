"""The connectivity table: every barrier of every path kind, path and view, from the trials rows.

One row per (model of the method table that has paths, or the control pair) x path x kind, with
the loss barrier (nats) and the accuracy barrier (fraction) on each view the study evaluates.
Models are averaged as in the method table (``n_models`` per base seed); ``base_clean`` stands for
the base pair (path ``cue_to_clean``) and ``control_clean`` for the control pair (``clean_to_clean``:
the clean references of two base seeds, the barrier between two models that share a mechanism).
Beside every barrier stands the control pair's of the same kind and view (``control_*`` columns),
when the study has one: a barrier means something only next to that scale.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mmc_sweep.analysis.columns import barrier_column
from mmc_sweep.analysis.seeds import HI, LO
from mmc_sweep.analysis.spec import path_kinds, path_views
from mmc_sweep.analysis.tables import (CONTROL_METHOD, DEFAULT_TOLERANCE_PP, DEFAULT_TOP, ID_COLUMNS, completed,
                                       mean_row, model_groups)

BARRIER_TYPES = ("barrier_loss", "barrier_acc")  # nats, fraction
# Paths each model of the table is an end of; any other method is a fine-tuned model.
MODEL_PATHS = {"base_cue": (), "base_clean": ("cue_to_clean",), CONTROL_METHOD: ("clean_to_clean",)}
FINETUNED_PATHS = ("cue_to_ft", "ft_to_clean")


def control_column(barrier_type: str, view: str) -> str:
    """The column holding the control pair's barrier beside ``<barrier_type>_<view>``."""
    return f"control_{barrier_type}_{view}"


def connectivity_columns(views: Sequence[str], control: bool = False) -> tuple[str, ...]:
    """``barrier_loss_<view>`` for every view, then ``barrier_acc_<view>``; with ``control`` each followed
    by the control pair's barrier of the same type, view and kind (:func:`control_column`); then the
    seed interval of each barrier (``_lo``, ``_hi``)."""
    barriers = [(t, v) for t in BARRIER_TYPES for v in views]
    per_barrier = [(f"{t}_{v}", control_column(t, v)) if control else (f"{t}_{v}",) for t, v in barriers]
    intervals = tuple(f"{t}_{v}{end}" for t, v in barriers for end in (LO, HI))
    return ID_COLUMNS + ("path", "kind") + tuple(c for cols in per_barrier for c in cols) + intervals


def connectivity_table(trials: pd.DataFrame, spec: dict, top: int = DEFAULT_TOP,
                       tolerance_pp: float = DEFAULT_TOLERANCE_PP, kinds: Sequence[str] | None = None,
                       views: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows (columns :func:`connectivity_columns`) for the method table's models, then the control pair.

    ``kinds`` / ``views`` default to the study's (``paths.kinds``, ``paths.views``). A path no model
    of a row has on any kind and view (e.g. ``cue_to_ft`` of method ``none``) is left out. When the
    study has a control pair, every barrier is followed by the control pair's barrier (mean over its
    pairs) of the same kind and view: the scale "nothing changed" gives (null on the control's own rows).
    """
    kinds = path_kinds(spec) if kinds is None else list(kinds)
    views = path_views(spec) if views is None else list(views)
    done = completed(trials)
    groups = model_groups(trials, spec, top, tolerance_pp)
    control = done[(done["role"] == "base") & (done["method"] == CONTROL_METHOD)]
    if len(control):
        groups.append((CONTROL_METHOD, "base", control))
    rows = []
    for method, role, sel in groups:
        for path in MODEL_PATHS.get(method, FINETUNED_PATHS):
            found = [_kind_row(method, role, sel, path, kind, views) for kind in kinds]
            if any(pd.notna(r[c]) for r in found for c in r if c.startswith(BARRIER_TYPES)):
                rows += found
    if len(control):
        rows = _beside_control(rows, views)
    return pd.DataFrame(rows, columns=list(connectivity_columns(views, control=len(control) > 0)))


def _beside_control(rows: list[dict], views: Sequence[str]) -> list[dict]:
    """``rows`` with the control pair's barrier of the same kind and view in each :func:`control_column`."""
    names = [(f"{t}_{v}", control_column(t, v)) for t in BARRIER_TYPES for v in views]
    scale = {r["kind"]: r for r in rows if r["method"] == CONTROL_METHOD}
    for row in rows:
        own = row["method"] == CONTROL_METHOD or row["kind"] not in scale
        row.update({ctrl: np.nan if own else scale[row["kind"]][col] for col, ctrl in names})
    return rows


def _kind_row(method: str, role: str, sel: pd.DataFrame, path: str, kind: str, views: Sequence[str]) -> dict:
    names = {f"{t}_{v}": barrier_column(t, kind, path, v) for t in BARRIER_TYPES for v in views}
    row = mean_row(method, role, sel.rename(columns={c: n for n, c in names.items()}), list(names))
    return {**row, "path": path, "kind": kind}
