"""Mechanism groups: the barrier matrix over many models (rows of :mod:`mmc_sweep.pair_matrix`) and its
hierarchical clustering into groups of models connected by low barriers, i.e. sharing a mechanism.

numpy, scipy and pandas only: it reads the rows as stored (Parquet), without torch.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform


def barrier_matrix(rows: list[dict] | pd.DataFrame, kind: str, view: str,
                   metric: str = "barrier_loss") -> tuple[list[str], np.ndarray]:
    """The symmetric ``metric`` matrix of path ``kind`` on ``view`` over every model the rows name (in
    order of first appearance, so the matrix of each kind and view has the same axes): diagonal 0, NaN
    where the pair was not measured (or its value is missing), the mean where it was measured more
    than once (in either direction)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        return [], np.zeros((0, 0))
    names = list(dict.fromkeys(n for a, b in zip(frame["model_a"], frame["model_b"]) for n in (a, b)))
    index = {n: i for i, n in enumerate(names)}
    chosen = frame[(frame["kind"] == kind) & (frame["view"] == view)]
    values = pd.to_numeric(chosen[metric], errors="coerce").to_numpy(dtype=float)  # None -> NaN
    total = np.zeros((len(names), len(names)))
    count = np.zeros_like(total)
    for a, b, value in zip(chosen["model_a"], chosen["model_b"], values):
        if a == b or not np.isfinite(value):  # a model's path to itself is the diagonal; a missing value is no measurement
            continue
        for i, j in ((index[a], index[b]), (index[b], index[a])):
            total[i, j] += value
            count[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(count > 0, total / count, np.nan)
    np.fill_diagonal(matrix, 0.0)
    return names, matrix


def mechanism_groups(names: Sequence[str], matrix: np.ndarray, scale: float) -> tuple[list[str], list[list[str]]]:
    """Cluster models by their barriers: average linkage on the barrier matrix, cut at ``scale``.

    Returns the names in dendrogram leaf order (blocks of low barriers contiguous, for drawing the
    matrix) and the groups: models merged at an average barrier below ``scale``, each in leaf order,
    the groups in order of their first leaf. Barriers are distances here: negative ones (a midpoint
    barrier can dip below the line) count as 0, and a missing pair (NaN) as the largest measured
    barrier, so that an unmeasured pair never joins two groups by itself.
    """
    names = list(names)
    m = np.array(matrix, dtype=float)
    if m.shape != (len(names), len(names)):
        raise ValueError(f"mechanism_groups: matrix of shape {m.shape} for {len(names)} names")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"mechanism_groups: scale must be a finite number >= 0, got {scale!r}")
    if len(names) <= 1:  # linkage needs two observations
        return names, [names] if names else []
    finite = m[np.isfinite(m)]
    m = np.where(np.isfinite(m), m, finite.max() if finite.size else 0.0)
    m = np.clip((m + m.T) / 2, 0.0, None)  # the mean of both directions: squareform reads one triangle
    np.fill_diagonal(m, 0.0)
    tree = linkage(squareform(m, checks=False), method="average")
    order = [names[i] for i in leaves_list(tree)]
    # fcluster keeps merges at height <= t; the next float below scale makes "below scale" strict
    labels = fcluster(tree, t=np.nextafter(scale, -np.inf), criterion="distance")
    label_of = dict(zip(names, labels))
    groups: dict[int, list[str]] = {}
    for name in order:
        groups.setdefault(label_of[name], []).append(name)
    return order, list(groups.values())


def same_mechanism_scale(control_barrier: float | None, floor: float = 0.05) -> float:
    """The barrier below which two models count as sharing a mechanism: ``max(2 * control, floor)``.

    The control pair (two clean models trained from different seeds) is the barrier of two models known
    to share a mechanism, so it is the scale a barrier means something against; twice it leaves room
    for seed noise in other pairs. The floor (in the metric's units, nats for loss barriers) keeps a
    tiny control from splitting identical models over float noise. No control (None or NaN): the floor.
    """
    if control_barrier is None or not math.isfinite(control_barrier):
        return floor
    return max(2 * control_barrier, floor)


def groups_table(names: Sequence[str], groups: Sequence[Sequence[str]],
                 info: dict[str, dict]) -> list[dict]:
    """The mechanism groups (:func:`mechanism_groups`) as rows to print: ``group`` (1, 2, ...),
    ``n_models``, ``members`` (names, in the group's order), ``methods`` and ``cue_proportions`` (the
    distinct values of their members, in member order; a member without an entry in ``info`` counts as
    method None). ``info[name]``: ``{"method": ..., "cue_proportion": ...}``, e.g. ``base_cue``, 0.8.

    ``names``: every model of the matrix; one that no group lists gets a group of its own, at the end,
    so the table accounts for every model. A group member that ``names`` lacks is a ``ValueError``.
    """
    known = set(names)
    listed = [n for g in groups for n in g]
    stray = [n for n in listed if n not in known]
    if stray:
        raise ValueError(f"groups_table: group member(s) {stray} are not among the names")
    everyone = [list(g) for g in groups if len(g)] + [[n] for n in names if n not in set(listed)]
    rows = []
    for number, members in enumerate(everyone, start=1):
        of = [info.get(n, {}) for n in members]
        rows.append({"group": number, "n_models": len(members), "members": members,
                     "methods": list(dict.fromkeys(m.get("method") for m in of)),
                     "cue_proportions": list(dict.fromkeys(m.get("cue_proportion") for m in of
                                                           if m.get("cue_proportion") is not None))})
    return rows


CUE_LAYER_COLUMNS = ("model_a", "model_b", "kind", "layer", "barrier_loss")


def cue_layers(rows: list[dict] | pd.DataFrame, scale: float, view: str = "rand_img",
               kind: str | None = None) -> pd.DataFrame:
    """The layers that carry a pair's difference on the cue-isolating view: per pair (``model_a``,
    ``model_b``) and path kind, the layers whose interpolation ALONE (every other layer at model A:
    :func:`mmc_sweep.paths.layers.measure_layers`) raises the loss barrier on ``view`` above ``scale``
    (nats, e.g. :func:`same_mechanism_scale`; strictly above), largest barrier first within each pair and
    kind, pairs and kinds in the order the rows name them. Only ``kind`` when given; a missing barrier
    (None/NaN) is no evidence and never listed.

    ``rows``: layer barrier rows (:func:`~mmc_sweep.paths.layers.layer_barriers` plus ``model_a`` and
    ``model_b``). Returns the columns of :data:`CUE_LAYER_COLUMNS` (empty when no layer is above ``scale``).
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=list(CUE_LAYER_COLUMNS))
    wanted = frame["view"] == view
    if kind is not None:
        wanted &= frame["kind"] == kind
    chosen = frame[wanted].copy()
    chosen["barrier_loss"] = pd.to_numeric(chosen["barrier_loss"], errors="coerce")
    chosen = chosen[chosen["barrier_loss"] > scale]  # NaN compares False: dropped
    if chosen.empty:
        return pd.DataFrame(columns=list(CUE_LAYER_COLUMNS))
    keys = list(dict.fromkeys(zip(frame["model_a"], frame["model_b"], frame["kind"])))  # first appearance
    chosen["_order"] = [keys.index(k) for k in zip(chosen["model_a"], chosen["model_b"], chosen["kind"])]
    chosen = chosen.sort_values(["_order", "barrier_loss"], ascending=[True, False], kind="stable")
    return chosen[list(CUE_LAYER_COLUMNS)].reset_index(drop=True)
