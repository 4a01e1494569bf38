"""The connectivity matrix over many models and its mechanism groups: an exact copy of a model has no
barrier with it and joins its group, an independently trained model does not; each model's endpoint
rows are measured once for the whole matrix; the barrier matrix and the clustering on hand-made rows."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from mmc_sweep.analysis.mechanisms import barrier_matrix, mechanism_groups, same_mechanism_scale
from mmc_sweep.config import BaseModelSpec, BNResetSpec, PathSpec, TrainSpec

# BN re-estimated on 2 batches, not 8: the matrix in a fifth of the time (about 0.2 s), the same barriers to 1e-3
SPEC = PathSpec(kinds=("linear",), alphas=5, views=("clean",), bn_reset=BNResetSpec(batches=2))


@pytest.fixture(scope="module")
def twin_matrix(trained_clean_pair):
    """A, an exact copy of A and C (trained from another seed), measured as a keyed matrix once, with
    the number of model evaluations (one per measured point and view) counted."""
    import mmc_sweep.paths.evaluate as evaluate
    from mmc_sweep.pair_matrix import measure_matrix
    from mmc_sweep.paths import EndpointRows

    task, a, c = trained_clean_pair
    models = {"A": a, "twin": copy.deepcopy(a), "C": c}
    keys = {name: BaseModelSpec(train=TrainSpec(seed=i)) for i, name in enumerate(models)}
    calls = []
    measured = evaluate.features_and_logits
    endpoints = EndpointRows()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate, "features_and_logits", lambda *args: calls.append(1) or measured(*args))
        rows = measure_matrix(task, models, SPEC, keys=keys, endpoints=endpoints)
    return task, keys, rows, endpoints, len(calls)


def _barrier(rows, a, b):
    return next(r["barrier_loss"] for r in rows if {r["model_a"], r["model_b"]} == {a, b})


def test_an_exact_copy_has_no_barrier_and_joins_the_models_group(twin_matrix):
    _, _, rows, _, _ = twin_matrix
    assert len(rows) == 3  # 3 pairs x 1 kind x 1 view
    assert [(r["model_a"], r["model_b"]) for r in rows] == [("A", "twin"), ("A", "C"), ("twin", "C")]
    assert {(r["kind"], r["view"]) for r in rows} == {("linear", "clean")}
    twin, other = _barrier(rows, "A", "twin"), min(_barrier(rows, "A", "C"), _barrier(rows, "twin", "C"))
    assert abs(twin) < 1e-6 and other > twin + 1e-3, (twin, other)
    assert all(r["mid_cue_reliance"] is None for r in rows)  # needs the rand_img view, not evaluated
    names, matrix = barrier_matrix(rows, "linear", "clean")
    assert names == ["A", "twin", "C"]
    _, groups = mechanism_groups(names, matrix, scale=(twin + other) / 2)
    assert sorted(sorted(g) for g in groups) == [["A", "twin"], ["C"]]


def test_each_models_endpoint_rows_are_measured_once(twin_matrix):
    from mmc_sweep.experiment import endpoint_key

    task, keys, _, endpoints, calls = twin_matrix
    assert set(endpoints._rows) == {endpoint_key(task, k, SPEC, seed=0) for k in keys.values()}
    # each pair measures its 3 inner points; the 3 models' ends once each (unshared: 3 pairs x 5 points)
    assert calls == 3 * 3 + 3


def _rows(pairs: dict[tuple[str, str], float], kind="linear", view="clean") -> list[dict]:
    return [{"model_a": a, "model_b": b, "kind": kind, "view": view, "barrier_loss": v} for (a, b), v in pairs.items()]


def test_barrier_matrix_is_symmetric_with_nan_for_a_missing_pair_and_the_mean_of_repeats():
    rows = _rows({("a", "b"): 1.0, ("b", "c"): 3.0}) + _rows({("b", "a"): 2.0}) + _rows({("a", "c"): 9.0}, kind="qmc")
    names, m = barrier_matrix(pd.DataFrame(rows), "linear", "clean")
    assert names == ["a", "b", "c"]  # every model the rows name, also one only another kind reaches
    assert np.array_equal(m, m.T, equal_nan=True) and np.all(np.diag(m) == 0)
    assert m[0, 1] == 1.5 and m[1, 2] == 3.0 and math.isnan(m[0, 2])
    assert barrier_matrix(rows, "qmc", "clean")[1][0, 2] == 9.0  # a list of dicts reads the same
    assert barrier_matrix([], "linear", "clean")[0] == []


def test_mechanism_groups_cut_two_blocks_and_keep_each_contiguous():
    names = ["a1", "b1", "a2", "b2"]  # interleaved, so a contiguous order is the clustering's doing
    low = {("a1", "a2"): 0.01, ("b1", "b2"): -0.02}  # a negative (midpoint) barrier counts as 0
    m = np.full((4, 4), 1.0)
    for (x, y), v in low.items():
        m[names.index(x), names.index(y)] = m[names.index(y), names.index(x)] = v
    m[names.index("a1"), names.index("b2")] = m[names.index("b2"), names.index("a1")] = np.nan  # as the largest
    np.fill_diagonal(m, 0.0)
    order, groups = mechanism_groups(names, m, scale=0.1)
    assert sorted(map(sorted, groups)) == [["a1", "a2"], ["b1", "b2"]]
    assert order == groups[0] + groups[1]  # blocks contiguous, groups in leaf order
    assert len(mechanism_groups(names, m, scale=2.0)[1]) == 1
    assert len(mechanism_groups(names, m, scale=0.01)[1]) == 3  # 0.01 is not below 0.01: a1 and a2 split
    assert mechanism_groups(["x"], np.zeros((1, 1)), 0.1) == (["x"], [["x"]])
    with pytest.raises(ValueError):
        mechanism_groups(names, m[:3, :3], 0.1)


def test_same_mechanism_scale():
    assert same_mechanism_scale(0.2) == 0.4
    assert same_mechanism_scale(0.01) == 0.05 and same_mechanism_scale(0.01, floor=0.001) == 0.02
    assert same_mechanism_scale(None) == 0.05 and same_mechanism_scale(float("nan"), floor=0.1) == 0.1


def test_pair_rows_give_the_barriers_and_the_invariance_nearest_the_middle():
    from mmc_sweep.pair_matrix import MATRIX_COLUMNS, pair_rows
    from mmc_sweep.paths import barriers

    alphas = [0.0, 1 / 3, 2 / 3, 1.0]  # no middle point: 1/3 and 2/3 tie, the smaller is taken
    path = [{"path": "p", "kind": kind, "view": view, "alpha": a, "loss": 1.0 + (a == 2 / 3) + (kind == "qmc"), "acc": 0.5,
             "cue_reliance": a, "pred_consistency": None, "rep_cosine": 1 - a}
            for kind in ("linear", "qmc") for a in alphas for view in ("clean", "cue")]
    rows = pair_rows("x", "y", path)
    assert [(r["kind"], r["view"]) for r in rows] == [(k, v) for k in ("linear", "qmc") for v in ("clean", "cue")]
    assert all(tuple(r) == MATRIX_COLUMNS and (r["model_a"], r["model_b"]) == ("x", "y") for r in rows)
    assert all(r["mid_cue_reliance"] == 1 / 3 and r["mid_rep_cosine"] == 1 - 1 / 3 and r["mid_pred_consistency"] is None
               for r in rows)
    expected = barriers([r for r in path if r["kind"] == "qmc"])["cue"]
    assert {k: rows[3][k] for k in expected} == expected and rows[3]["barrier_loss"] == 1.0
