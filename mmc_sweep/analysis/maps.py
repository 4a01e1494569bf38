"""What ``analyze`` and ``plot`` read of a study's mechanism map (``run_study.py pairs``): the
``pairs`` and ``layers`` tables, the control pair's barrier that sets the scale of "same mechanism",
the mechanism groups of every path kind and view, and the layers that carry the cue."""
from __future__ import annotations

from typing import Any

import pandas as pd

from mmc_sweep.analysis.columns import KINDS, VIEWS, ordered_kinds
from mmc_sweep.analysis.load import Study, read_table
from mmc_sweep.analysis.mechanisms import barrier_matrix, cue_layers, groups_table, mechanism_groups, same_mechanism_scale
from mmc_sweep.config import BARRIER_TYPES

PAIR_COLUMNS = ("model_a", "model_b", "kind", "view", "method_a", "method_b", "cue_proportion_a", "cue_proportion_b",
                *BARRIER_TYPES, "mid_cue_reliance", "reused")
LAYER_COLUMNS = ("model_a", "model_b", "kind", "layer", "view", *BARRIER_TYPES)
CUE_VIEW = "rand_img"  # the view that isolates the cue (random images carrying a label's cue)
GROUPS_RULE = ("groups: average-linkage clustering of the loss barriers, cut at the scale: twice the control pair's "
               "barrier (clean references of two seeds: known to share a mechanism), at least 0.05 nats; no barrier "
               "is weak evidence of one mechanism (a path towards a model that is bad on a view rarely rises above "
               "the line between its ends), a barrier strong evidence of two")
LAYERS_RULE = (f"cue layers: those whose interpolation alone (every other layer at model A) raises the loss barrier "
               f"on {CUE_VIEW} above the same-mechanism scale of that kind")


def read_pairs(study: Study) -> pd.DataFrame:
    return read_table(study.folder, "pairs", PAIR_COLUMNS)


def read_layers(study: Study) -> pd.DataFrame:
    return read_table(study.folder, "layers", LAYER_COLUMNS)


def control_barriers(pairs: pd.DataFrame, trials: pd.DataFrame) -> dict[tuple[str, str], float]:
    """The control barrier per (kind, view): the mean loss barrier of the measured pairs of two clean
    references, else the study's own control pair (``control_clean`` rows), where it has one."""
    out: dict[tuple[str, str], float] = {}
    clean = pairs[(pairs["method_a"] == "base_clean") & (pairs["method_b"] == "base_clean")]
    for (kind, view), rows in clean.groupby(["kind", "view"]):
        out[(kind, view)] = float(rows["barrier_loss"].mean())
    control = trials[(trials["method"] == "control_clean") & (trials["status"] == "completed")]
    for kind in KINDS:
        for view in VIEWS:
            column = f"barrier_loss_clean_to_clean_{view}" if kind == "linear" else f"barrier_loss_{kind}_clean_to_clean_{view}"
            if (kind, view) not in out and column in control and control[column].notna().any():
                out[(kind, view)] = float(control[column].mean())
    return out


def pairs_report(study: Study, pairs: pd.DataFrame | None = None) -> dict[str, Any]:
    """``pairs``: one row per mechanism group of every (kind, view) measured; ``pairs_rule``."""
    pairs = read_pairs(study) if pairs is None else pairs
    control = control_barriers(pairs, study.trials)
    info = {}
    for side in ("a", "b"):
        for name, method, proportion in zip(pairs[f"model_{side}"], pairs[f"method_{side}"], pairs[f"cue_proportion_{side}"]):
            info[name] = {"method": method, "cue_proportion": None if pd.isna(proportion) else float(proportion)}
    rows = []
    for kind in ordered_kinds(pairs["kind"]):
        for view in [v for v in VIEWS if v in set(pairs.loc[pairs["kind"] == kind, "view"])]:
            names, matrix = barrier_matrix(pairs, kind, view)
            scale = same_mechanism_scale(control.get((kind, view)))
            _, groups = mechanism_groups(names, matrix, scale)
            for g in groups_table(names, groups, info):
                rows.append({"kind": kind, "view": view, "control": control.get((kind, view)), "scale": scale,
                             "group": g["group"], "n_models": g["n_models"], "members": ", ".join(g["members"]),
                             "methods": ", ".join(str(m) for m in g["methods"]),
                             "cue_proportions": ", ".join(f"{p:g}" for p in g["cue_proportions"])})
    return {"pairs": rows, "pairs_rule": GROUPS_RULE,
            "pairs_measured": int(len(pairs[["model_a", "model_b", "kind"]].drop_duplicates())) if len(pairs) else 0}


def layers_report(study: Study, pairs: pd.DataFrame | None = None) -> dict[str, Any]:
    """``layers``: the cue layers of every pair and kind measured layer by layer; ``layers_rule``."""
    layers = read_layers(study)
    control = control_barriers(read_pairs(study) if pairs is None else pairs, study.trials)
    found = [cue_layers(layers, same_mechanism_scale(control.get((kind, CUE_VIEW))), CUE_VIEW, kind)
             for kind in ordered_kinds(layers["kind"])]
    rows = pd.concat(found, ignore_index=True).to_dict("records") if found else []
    measured = layers[["model_a", "model_b", "kind"]].drop_duplicates().to_dict("records")
    return {"layers": rows, "layers_rule": LAYERS_RULE, "layers_pairs": measured}
