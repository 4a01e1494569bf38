"""Mechanism-map analysis on hand-made rows (no training): the layers that carry the cue, the groups
table, and the pairs / layers figures."""
import pandas as pd
import pytest
from PIL import Image

from mmc_sweep.analysis.figures import Size
from mmc_sweep.analysis.map_figures import layers_figure, pairs_figure
from mmc_sweep.analysis.mechanisms import (CUE_LAYER_COLUMNS, barrier_matrix, cue_layers, groups_table,
                                           mechanism_groups)
from mmc_sweep.pair_matrix import MATRIX_COLUMNS

SIZE = Size(width=900, height=600, dpi=100)


def _layer_rows() -> list[dict]:
    """Two pairs; on rand_img the first pair's late layers and the second pair's first layer are high,
    on clean the opposite (so a function reading the wrong view picks the wrong layers)."""
    barriers = {  # (pair, layer) -> (clean, rand_img) barrier, nats
        ("cue", "ft", "trunk.0"): (0.90, 0.01), ("cue", "ft", "trunk.4"): (0.02, 0.30),
        ("cue", "ft", "trunk.8"): (0.03, 1.20), ("cue", "ft", "head"): (0.70, 0.10),
        ("cue", "cbft", "trunk.0"): (0.01, 0.50), ("cue", "cbft", "trunk.4"): (0.80, float("nan")),
        ("cue", "cbft", "trunk.8"): (0.90, 0.05), ("cue", "cbft", "head"): (0.60, 0.10),
    }
    rows = []
    for (a, b, layer), (clean, rand_img) in barriers.items():
        for view, value in (("clean", clean), ("rand_img", rand_img)):
            rows.append({"model_a": a, "model_b": b, "kind": "linear", "layer": layer, "view": view,
                         "barrier_loss": value, "barrier_acc": value / 10})
    # another kind, where every layer is high: cue_layers(kind="linear") must leave it out
    rows += [{**r, "kind": "lmcp", "barrier_loss": 5.0} for r in rows if r["model_b"] == "ft"]
    return rows


def test_cue_layers_lists_exactly_the_layers_above_scale_on_the_cue_view_largest_first():
    found = cue_layers(_layer_rows(), scale=0.2, kind="linear")
    assert tuple(found.columns) == CUE_LAYER_COLUMNS
    assert list(zip(found["model_b"], found["layer"])) == [("ft", "trunk.8"), ("ft", "trunk.4"), ("cbft", "trunk.0")]
    assert found["barrier_loss"].tolist() == [1.20, 0.30, 0.50]
    # every kind without `kind`; the lmcp rows follow the linear ones of their pair in first-appearance order
    everything = cue_layers(_layer_rows(), scale=0.2)
    assert set(everything["kind"]) == {"linear", "lmcp"}
    assert len(everything[everything["kind"] == "lmcp"]) == 4
    # strictly above: a barrier equal to the scale is not listed; another view reads other layers
    assert cue_layers(_layer_rows(), scale=0.30, kind="linear")["layer"].tolist() == ["trunk.8", "trunk.0"]
    assert cue_layers(_layer_rows(), scale=0.75, view="clean", kind="linear")["layer"].tolist() == ["trunk.0", "trunk.8", "trunk.4"]
    # nothing above the scale, or no rows at all: empty, with the columns
    for rows in (_layer_rows(), []):
        empty = cue_layers(rows, scale=10.0)
        assert empty.empty and tuple(empty.columns) == CUE_LAYER_COLUMNS


def test_groups_table_lists_every_model_with_its_method_and_cue_proportion():
    info = {"cue_s0": {"method": "base_cue", "cue_proportion": 0.8},
            "cue_s1": {"method": "base_cue", "cue_proportion": 0.8},
            "naive_ft": {"method": "naive_ft", "cue_proportion": 0.8},
            "cbft": {"method": "cbft", "cue_proportion": 0.8},
            "clean_s0": {"method": "base_clean", "cue_proportion": 0.0}}
    names = ["cue_s0", "cue_s1", "naive_ft", "cbft", "clean_s0", "lonely"]
    table = groups_table(names, [["cue_s0", "naive_ft", "cue_s1"], ["cbft", "clean_s0"]], info)
    assert [r["group"] for r in table] == [1, 2, 3]
    assert table[0]["members"] == ["cue_s0", "naive_ft", "cue_s1"] and table[0]["n_models"] == 3
    assert table[0]["methods"] == ["base_cue", "naive_ft"] and table[0]["cue_proportions"] == [0.8]
    assert table[1]["methods"] == ["cbft", "base_clean"] and table[1]["cue_proportions"] == [0.8, 0.0]
    assert table[2] == {"group": 3, "n_models": 1, "members": ["lonely"], "methods": [None], "cue_proportions": []}
    with pytest.raises(ValueError, match="stranger"):
        groups_table(names, [["stranger"]], info)


def test_groups_table_of_real_groups_puts_naive_ft_with_the_cue_models():
    # a block matrix: the cue models and naive FT connected, CBFT with the clean model
    rows = []
    members = {"cue_s0": 0, "cue_s1": 0, "naive_ft": 0, "cbft": 1, "clean_s0": 1}
    names = list(members)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rows.append({"model_a": a, "model_b": b, "kind": "linear", "view": "rand_img",
                         "barrier_loss": 0.02 if members[a] == members[b] else 1.5})
    order, groups = mechanism_groups(*barrier_matrix(rows, "linear", "rand_img"), scale=0.1)
    table = groups_table(order, groups, {n: {"method": n.split("_s")[0], "cue_proportion": 0.8} for n in names})
    assert sorted(sorted(r["members"]) for r in table) == [["cbft", "clean_s0"], ["cue_s0", "cue_s1", "naive_ft"]]


def _matrix_rows() -> pd.DataFrame:
    names = ["cue_s0", "cue_s1", "clean_s0", "clean_s1", "naive_ft", "cbft"]
    cue_like = {"cue_s0", "cue_s1", "naive_ft"}
    rows = []
    for kind in ("linear", "lmcp"):
        for view in ("rand_img", "clean"):  # not in the drawing order: the figure sorts the views
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    value = 0.03 if (a in cue_like) == (b in cue_like) else 2.0 + i / 10
                    rows.append({c: None for c in MATRIX_COLUMNS} | {"model_a": a, "model_b": b, "kind": kind,
                                                                      "view": view, "barrier_loss": value})
    rows[3]["barrier_loss"] = None  # one pair not measured: drawn grey, not a crash
    return pd.DataFrame(rows, columns=list(MATRIX_COLUMNS))


def _png(file) -> tuple[int, int]:
    assert file.is_file() and file.stat().st_size > 5000
    with Image.open(file) as image:
        image.verify()
    with Image.open(file) as image:
        return image.size


def test_pairs_figure_writes_a_png_of_the_requested_size_and_none_without_rows(tmp_path):
    labels = {"cue_s0": "cue p=0.8 s0", "cue_s1": "cue p=0.8 s1", "clean_s0": "clean s0", "clean_s1": "clean s1"}
    file = pairs_figure(_matrix_rows(), labels, 0.03, "mechanism map (test)", tmp_path / "pairs.png", SIZE)
    assert file == tmp_path / "pairs.png"
    assert _png(file) == (SIZE.width, SIZE.height)
    per_panel = {(k, v): 0.05 for k in ("linear", "lmcp") for v in ("clean", "rand_img")}
    assert _png(pairs_figure(_matrix_rows(), {}, per_panel, "t", tmp_path / "p2.png", SIZE)) == (900, 600)
    assert _png(pairs_figure(_matrix_rows(), {}, None, "t", tmp_path / "p3.png", SIZE)) == (900, 600)
    empty = pd.DataFrame(columns=list(MATRIX_COLUMNS))
    assert pairs_figure(empty, labels, 0.03, "t", tmp_path / "none.png", SIZE) is None
    assert not (tmp_path / "none.png").exists()


def test_layers_figure_writes_a_png_and_none_without_rows(tmp_path):
    rows = pd.DataFrame(_layer_rows())
    file = layers_figure(rows, "layers (test)", tmp_path / "layers.png", SIZE, labels={"cue": "cue p=0.8 s0"}, scale=0.2)
    assert _png(file) == (SIZE.width, SIZE.height)
    assert _png(layers_figure(rows[rows["kind"] == "linear"], "t", tmp_path / "l2.png", SIZE)) == (900, 600)
    framed = layers_figure(rows, "t", tmp_path / "l3.png", SIZE, scale=0.2, scale_view="rand_img")
    assert _png(framed) == (900, 600)
    assert layers_figure(pd.DataFrame(), "t", tmp_path / "none.png", SIZE) is None
    assert not (tmp_path / "none.png").exists()

