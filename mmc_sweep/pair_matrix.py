"""The connectivity matrix: the paths between every pair of many models, one row per pair, kind and view.

Each row holds the pair's barriers (:func:`mmc_sweep.paths.barriers`) and the invariance metrics of
the path's middle point; :mod:`mmc_sweep.analysis.mechanisms` turns the rows into a barrier matrix
and clusters it into mechanism groups.
"""
from __future__ import annotations

from mmc_sweep.config import INVARIANCE_METRICS, PathSpec
from mmc_sweep.costs import PhaseClock
from mmc_sweep.data import CueTask
from mmc_sweep.experiment import Pair, measure_paths
from mmc_sweep.models import CueModel
from mmc_sweep.paths import EndpointRows, MidpointStore, barriers

BARRIER_COLUMNS = ("barrier_loss", "barrier_acc", "barrier_mid_loss", "barrier_mid_acc")
MID_COLUMNS = tuple(f"mid_{name}" for name in INVARIANCE_METRICS)
MATRIX_COLUMNS = ("model_a", "model_b", "kind", "view", *BARRIER_COLUMNS, *MID_COLUMNS)


def pair_rows(a_name: str, b_name: str, path_rows: list[dict]) -> list[dict]:
    """Matrix rows of ONE pair from its path rows (as :func:`~mmc_sweep.experiment.measure_paths` gives
    them): one per (kind, view), kinds and views in the order they first occur.

    ``mid_*``: the invariance metrics at alpha 0.5, or at the alpha nearest it (the smaller one on a
    tie) when the grid has no middle point; they do not depend on the view (None where not measured).
    """
    out = []
    for kind in dict.fromkeys(r["kind"] for r in path_rows):
        rows = [r for r in path_rows if r["kind"] == kind]
        # rounded: on an even grid i/(n-1) the two middle points are equally near 0.5 but for float error
        mid_alpha = min({r["alpha"] for r in rows}, key=lambda a: (round(abs(a - 0.5), 9), a))
        mid = next(r for r in rows if r["alpha"] == mid_alpha)
        invariance = {f"mid_{name}": mid.get(name) for name in INVARIANCE_METRICS}
        for view, values in barriers(rows).items():
            out.append({"model_a": a_name, "model_b": b_name, "kind": kind, "view": view,
                        **{c: values[c] for c in BARRIER_COLUMNS}, **invariance})
    return out


def measure_matrix(
    task: CueTask,
    models: dict[str, CueModel],
    spec: PathSpec,
    seed: int = 0,
    keys: dict[str, object] | None = None,
    midpoints: MidpointStore | None = None,
    endpoints: EndpointRows | None = None,
    clock: PhaseClock | None = None,
) -> list[dict]:
    """Matrix rows (:func:`pair_rows`) of every unordered pair of ``models``, A before B in the dict's
    order, measured with :func:`~mmc_sweep.experiment.measure_paths`.

    ``keys[name]``: the model's spec, its content key. With keys every model's endpoint rows are
    measured once for the whole matrix (one :class:`EndpointRows` shared by all pairs, ``endpoints``
    when given) and QMC midpoints are stored in ``midpoints``; without, every pair measures both of its
    ends and trains its midpoint afresh.
    """
    names = list(models)
    if keys is not None and set(names) - set(keys):
        raise ValueError(f"measure_matrix: keys lack model(s) {sorted(set(names) - set(keys))}")
    # one cache for every endpoint of the matrix: each model ends n-1 paths; capacity for all of them
    endpoints = EndpointRows(capacity=max(32, len(names))) if endpoints is None else endpoints
    rows: list[dict] = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pair = Pair(models[a], models[b], (keys[a], keys[b]) if keys is not None else ())
            _, path_rows = measure_paths(task, {f"{a}_to_{b}": pair}, spec, seed=seed, midpoints=midpoints,
                                         endpoints=endpoints, clock=clock)
            rows += pair_rows(a, b, path_rows)
    return rows
