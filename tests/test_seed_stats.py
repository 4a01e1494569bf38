"""Seed statistics: rows over several base seeds carry an interval and n; compare says whether a
difference is within seed noise."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis_fixtures import write_kinds_study
from mmc_sweep.analysis.seeds import BEYOND, WITHIN, interval, noise_verdict
from mmc_sweep.analysis.tables import mean_row
from mmc_sweep.cli import main

T_975_3 = 3.182446305  # Student's t, 0.975 quantile, 3 degrees of freedom (from a table)


def test_interval_rule():
    assert all(math.isnan(v) for v in interval([0.4])) and all(math.isnan(v) for v in interval([]))
    assert interval([0.3, 0.1]) == (0.1, 0.3)                    # n = 2: min–max
    assert interval([0.3, 0.1, float("nan"), 0.7]) == (0.1, 0.7)  # n = 3 finite values: min–max
    # n = 4: mean 2.5, sd sqrt(5/3): 2.5 ± t · sd / 2
    half = T_975_3 * math.sqrt(5 / 3) / 2
    assert interval([1, 2, 3, 4]) == pytest.approx((2.5 - half, 2.5 + half))


def test_noise_verdict():
    assert noise_verdict((0.1, 0.3), (0.25, 0.5)) == WITHIN
    assert noise_verdict((0.1, 0.3), (0.31, 0.5)) == BEYOND
    assert noise_verdict((0.1, 0.3), (None, None)) is None


def test_mean_row_has_the_interval_of_each_column():
    rows = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "acc_clean": [1.0, 2.0, 3.0, 4.0],
                         "cue_reliance": [0.5, None, None, None]})
    got = mean_row("naive_ft", "baseline", rows, ["acc_clean", "cue_reliance"])
    half = T_975_3 * math.sqrt(5 / 3) / 2
    assert got["n_models"] == 4 and got["acc_clean"] == 2.5
    assert (got["acc_clean_lo"], got["acc_clean_hi"]) == pytest.approx((2.5 - half, 2.5 + half))
    assert got["cue_reliance"] == 0.5 and math.isnan(got["cue_reliance_lo"])  # one value: no interval


def test_compare_marks_differences_within_and_beyond_seed_noise(tmp_path, capsys):
    """Two studies of two seeds each. naive FT's clean accuracy: seeds (0.70, 0.72) in the first,
    (0.71, 0.75) in the second (overlapping: within noise); (0.80, 0.82) in a third (beyond)."""
    first = write_kinds_study(tmp_path / "a", "kinds")
    near = write_kinds_study(tmp_path / "b", "near", {"naive_ft_s0": {"acc_clean": 0.71}, "naive_ft_s1": {"acc_clean": 0.75}})
    far = write_kinds_study(tmp_path / "c", "far", {"naive_ft_s0": {"acc_clean": 0.80}, "naive_ft_s1": {"acc_clean": 0.82}})
    assert main(["compare", str(first), str(near), str(far), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["methods"]
    row = next(r for r in rows if r["method"] == "naive_ft" and r["metric"] == "acc_clean")
    assert (row["kinds"], row["kinds_lo"], row["kinds_hi"], row["n kinds"]) == pytest.approx((0.71, 0.70, 0.72, 2))
    assert (row["near_lo"], row["near_hi"]) == pytest.approx((0.71, 0.75))
    assert row["noise near"] == WITHIN and row["noise far"] == BEYOND
    assert row["delta far"] == pytest.approx(0.10)
    best = next(r for r in rows if r["role"] == "search" and r["metric"] == "acc_clean")
    assert best["noise near"] is None  # the best search trial is one trial: no interval

    assert main(["compare", str(first), str(far), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "0.710 [0.700, 0.720]" in out and "0.810 [0.800, 0.820]" in out and BEYOND in out
    assert "min–max for n = 2 or 3" in out


def test_compare_sets_cue_revival_side_by_side_when_a_study_measured_it(tmp_path, capsys):
    """revival_auc (mean cue reliance over the re-training steps) of naive FT's two models: (0.30, 0.34)
    in one study, (0.60, 0.70) in the other: a difference of 0.33, beyond seed noise. Studies without
    revival get no such row."""
    revived = {"naive_ft_s0": {"revival_auc": 0.30}, "naive_ft_s1": {"revival_auc": 0.34}}
    first = write_kinds_study(tmp_path / "a", "kinds", revived)
    other = write_kinds_study(tmp_path / "b", "other", {"naive_ft_s0": {"revival_auc": 0.60},
                                                        "naive_ft_s1": {"revival_auc": 0.70}})
    assert main(["compare", str(first), str(other), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["methods"]
    (row,) = [r for r in rows if r["method"] == "naive_ft" and r["metric"] == "revival_auc"]
    assert (row["kinds"], row["kinds_lo"], row["kinds_hi"], row["n kinds"]) == pytest.approx((0.32, 0.30, 0.34, 2))
    assert row["delta other"] == pytest.approx(0.33) and row["noise other"] == BEYOND
    assert not [r for r in rows if r["metric"] == "revival_auc" and r["method"] != "naive_ft"]  # none measured

    plain = write_kinds_study(tmp_path / "c", "plain")
    assert main(["compare", str(plain), str(write_kinds_study(tmp_path / "d", "plain2")), "--format", "json"]) == 0
    assert all(r["metric"] != "revival_auc" for r in json.loads(capsys.readouterr().out)["methods"])


def test_analyze_prints_the_interval_of_a_two_seed_baseline(tmp_path, capsys):
    study = write_kinds_study(tmp_path, "kinds")
    assert main(["analyze", str(study), "--format", "markdown", "--section", "methods"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("| naive_ft "))
    assert "0.710 [0.700, 0.720]" in line and "| 2 |" in line  # acc_clean over seeds 0 and 1, n = 2


def test_a_search_over_base_seeds_has_a_best_per_seed_row(tmp_path, capsys):
    """cbft_1 (seed 0, acc_clean 0.85) and cbft_2 moved to seed 1 (0.86): each is its seed's best."""
    study = write_kinds_study(tmp_path, "kinds", {"cbft_2": {"base_seed": 1}})
    assert main(["analyze", str(study), "--format", "json", "--section", "methods"]) == 0
    rows = json.loads(capsys.readouterr().out)["methods"]
    per_seed = next(r for r in rows if r["method"] == "cbft (best per seed)")
    assert per_seed["trial_id"] == "cbft_1,cbft_2" and per_seed["n_models"] == 2
    assert (per_seed["acc_clean"], per_seed["acc_clean_lo"], per_seed["acc_clean_hi"]) == pytest.approx((0.855, 0.85, 0.86))
    one_seed = write_kinds_study(tmp_path, "one_seed")
    assert main(["analyze", str(one_seed), "--format", "json", "--section", "methods"]) == 0
    assert not any("best per seed" in r["method"] for r in json.loads(capsys.readouterr().out)["methods"])
