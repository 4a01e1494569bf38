"""``connectivity_figure`` called as a plain script would: path rows of one pair in, a PNG out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmc_sweep.analysis.figures import Size, connectivity_figure, pair_title

# matplotlib's C0, C1, C2: the colours of linear, lmcp and qmc in every figure
KIND_RGB = {"linear": (31, 119, 180), "lmcp": (255, 127, 14), "qmc": (44, 160, 44)}


def pair_rows(kinds, invariance: bool = True) -> pd.DataFrame:
    rows = []
    for k, kind in enumerate(kinds):
        for alpha in np.linspace(0, 1, 5):
            for v, view in enumerate(("clean", "cue")):
                row = {"kind": kind, "alpha": alpha, "view": view, "bn_reset": "cumulative:8x256:clean",
                       "loss": 0.5 + v + (k + 1) * alpha * (1 - alpha), "acc": 0.9 - 0.1 * k * alpha * (1 - alpha)}
                if invariance:
                    row.update({"cue_reliance": 0.9 - 0.8 * alpha, "pred_consistency": 0.5 + 0.4 * alpha,
                                "rep_cosine": 0.7 + 0.2 * alpha})
                rows.append(row)
    return pd.DataFrame(rows)


def colours_in(file: Path) -> set[str]:
    with Image.open(file) as img:
        pixels = {tuple(p[:3]) for p in img.convert("RGB").getdata()}
    return {kind for kind, rgb in KIND_RGB.items() if rgb in pixels}


@pytest.mark.parametrize("kinds", [("linear", "lmcp", "qmc"), ("qmc",), ("lmcp", "linear")])
def test_one_colour_per_kind_whatever_kinds_are_drawn(kinds, tmp_path):
    file = connectivity_figure(pair_rows(kinds), pair_title("cue_to_clean", "base pair, seed 0"),
                               tmp_path / "c.png", Size(500, 400, 50))
    assert file == tmp_path / "c.png"
    assert colours_in(file) == set(kinds)
    with Image.open(file) as img:
        assert img.size == (500, 400)


def test_rows_without_invariance_metrics_and_no_rows(tmp_path):
    file = connectivity_figure(pair_rows(["linear"], invariance=False), "old study", tmp_path / "old.png",
                               Size(400, 300, 50))
    assert file is not None and colours_in(file) == {"linear"}
    assert connectivity_figure(pair_rows([]).reindex(columns=["kind", "alpha", "view", "loss", "acc"]), "none",
                               tmp_path / "none.png", Size()) is None
    assert not (tmp_path / "none.png").exists()


def test_pair_title_names_the_ends():
    assert pair_title("clean_to_clean", "control pair", ("clean reference (seed 0)", "clean reference (seed 1)")) == \
        "Connectivity clean→clean: control pair\nα = 0: clean reference (seed 0), α = 1: clean reference (seed 1)"
    assert "α = 0: cue model, α = 1: fine-tuned model" in pair_title("cue_to_ft", "cbft_1")
