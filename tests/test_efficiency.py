"""Sample efficiency (issue 20, item 4): cue reliance and clean accuracy against n_clean per method,
and the smallest n_clean at which each method reaches the goal. A made-up study with known values,
written by the harness's own writer."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis_fixtures import SPEC_HASH, spec
from mmc_sweep.analysis.efficiency import efficiency_table, smallest_n_clean
from mmc_sweep.analysis.load import load_study
from mmc_sweep.cli import main

# (method, n_clean) -> per base seed 0, 1, 2: (cue_reliance, acc_clean)
GRID = {
    ("naive_ft", 100): ((0.50, 0.80), (0.60, 0.82), (0.55, 0.81)),
    ("naive_ft", 400): ((0.30, 0.85), (0.35, 0.86), (0.32, 0.84)),
    ("cbft", 100): ((0.04, 0.70), (0.05, 0.72), (0.03, 0.71)),  # cue gone, but 14 pp below the best accuracy
    ("cbft", 400): ((0.02, 0.84), (0.01, 0.85), (0.03, 0.86)),  # cue gone, accuracy the best's
}


def write_grid_study(storage: Path, name: str = "efficiency", grid: dict = GRID) -> Path:
    from mmc_sweep.study.storage.results import write_trial
    from mmc_sweep.study.storage.store import Store

    folder = storage / name
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(yaml.safe_dump(spec(name), sort_keys=False))
    store = Store.open(str(storage))
    rows = [{"trial_id": "base_cue_s0", "role": "base", "status": "completed", "method": "base_cue", "base_seed": 0,
             "acc_clean": 0.5, "cue_reliance": 0.9},  # a base model: not a point of any method's curve
            {"trial_id": "cbft_failed", "role": "search", "status": "failed", "method": "cbft", "base_seed": 0,
             "param_n_clean": 100}]
    for (method, n_clean), seeds in grid.items():
        for seed, (reliance, acc) in enumerate(seeds):
            rows.append({"trial_id": f"{method}_{n_clean}_s{seed}", "role": "search", "status": "completed",
                         "method": method, "base_seed": seed, "param_n_clean": n_clean, "acc_clean": acc,
                         "cue_reliance": reliance})
    for row in rows:
        write_trial(store, name, {"trials": [row]}, {"spec_hash": SPEC_HASH})
    return folder


def test_each_method_at_each_n_clean_and_the_smallest_that_reaches_the_goal(tmp_path):
    table = efficiency_table(load_study(write_grid_study(tmp_path)).trials)
    assert [(r.method, r.n_clean, r.n_models) for r in table.itertuples()] == [
        ("cbft", 100, 3), ("cbft", 400, 3), ("naive_ft", 100, 3), ("naive_ft", 400, 3)]
    cbft_100 = table.iloc[0]  # the mean of three seeds, the range min–max as their interval
    assert cbft_100["cue_reliance"] == pytest.approx(0.04) and cbft_100["acc_clean"] == pytest.approx(0.71)
    assert (cbft_100["cue_reliance_lo"], cbft_100["cue_reliance_hi"]) == pytest.approx((0.03, 0.05))
    # best mean acc_clean: 0.85 (naive_ft and cbft at 400); cbft at 100 has no cue left but gives up 14 pp
    goal = smallest_n_clean(table, tolerance_pp=2.0).set_index("method")
    assert goal.loc["cbft", "smallest_n_clean"] == 400 and goal.loc["cbft", "n_clean_tried"] == 2
    assert pd.isna(goal.loc["naive_ft", "smallest_n_clean"])  # never below 0.05
    assert smallest_n_clean(table, tolerance_pp=15.0).set_index("method").loc["cbft", "smallest_n_clean"] == 100


def test_analyze_compare_and_plot_show_it(tmp_path, capsys):
    folder = write_grid_study(tmp_path)
    assert main(["analyze", str(folder), "--format", "json", "--section", "efficiency"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["n_clean"]) for r in report["efficiency"]] == [
        ("cbft", 100), ("cbft", 400), ("naive_ft", 100), ("naive_ft", 400)]
    assert {r["method"]: r["smallest_n_clean"] for r in report["efficiency_goal"]} == {"cbft": 400, "naive_ft": None}
    assert main(["analyze", str(folder), "--section", "efficiency"]) == 0
    text = capsys.readouterr().out
    assert "Sample efficiency" in text and "goal: mean cue_reliance <= 0.05" in text
    # across studies: a second study's naive_ft at 1600 images joins the first's curve
    other = write_grid_study(tmp_path, "more", {("naive_ft", 1600): ((0.04, 0.86), (0.05, 0.85), (0.03, 0.87))})
    assert main(["compare", str(folder), str(other), "--format", "json"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["n_clean"]) for r in merged["efficiency"] if r["method"] == "naive_ft"] == [
        ("naive_ft", 100), ("naive_ft", 400), ("naive_ft", 1600)]
    assert {r["method"]: r["smallest_n_clean"] for r in merged["efficiency_goal"]} == {"cbft": 400, "naive_ft": 1600}
    assert main(["plot", str(folder), "--out", str(tmp_path / "figs"), "--no-importance", "--width", "600",
                 "--height", "400"]) == 0
    from PIL import Image

    with Image.open(tmp_path / "figs" / "efficiency.png") as image:
        assert image.size == (600, 400)
