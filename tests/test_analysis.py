"""Analysis of study results on a hand-made Parquet study with known values (tests/analysis_fixtures.py)."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis_fixtures import (SPEC_HASH, TRIALS, kinds_barrier, kinds_reliance, write_kinds_study,
                               write_study)
from mmc_sweep.analysis.columns import KINDS, barrier_column, parse_barrier_column
from mmc_sweep.analysis.connectivity import connectivity_table
from mmc_sweep.analysis.load import load_study, read_paths
from mmc_sweep.analysis.pareto import non_dominated, pareto_front
from mmc_sweep.analysis.report import records
from mmc_sweep.analysis.spec import expected_rows, path_kinds
from mmc_sweep.analysis.tables import method_table
from mmc_sweep.cli import main

REPO = Path(__file__).resolve().parents[1]
NAN_BARRIERS = {"barrier_loss_cue_to_ft_cue": None, "barrier_loss_cue_to_ft_clean": None,
                "barrier_loss_ft_to_clean_cue": None, "barrier_loss_ft_to_clean_clean": None}


def row(method, role, trial_id, accs, reliance, n_clean, barriers):
    out = {"method": method, "role": role, "trial_id": trial_id, "n_models": 1,
           "acc_clean": accs[0], "acc_cue": accs[1], "acc_rand_cue": accs[2], "acc_rand_img": accs[3],
           "cue_reliance": reliance, "n_clean": n_clean}
    out.update(NAN_BARRIERS if barriers is None else dict(zip(NAN_BARRIERS, barriers)))
    # one model per row: no seed interval
    out.update({f"{c}{end}": None for c in list(out)[4:] for end in ("_lo", "_hi")})
    return out


EXPECTED_METHODS = [
    row("base_cue", "base", "base_cue_0", (0.50, 0.98, 0.20, 0.90), 0.88, None, None),
    # base_clean: its cue->ft barriers are the base pair's cue_to_clean path; ft->clean is itself
    row("base_clean", "base", "base_clean_0", (0.90, 0.91, 0.89, 0.12), 0.02, None, (2.0, 1.5, None, None)),
    row("naive_ft", "baseline", "naive_ft_0", (0.70, 0.95, 0.40, 0.80), 0.78, 500, (0.1, 0.05, 1.8, 1.2)),
    row("llrt", "baseline", "llrt_0", (0.65, 0.96, 0.30, 0.85), 0.83, 500, (0.0, 0.0, 1.9, 1.3)),
    row("lpft", "baseline", "lpft_0", (0.72, 0.94, 0.45, 0.75), 0.72, 500, (0.2, 0.1, 1.7, 1.1)),
    # best: lowest cue_reliance among acc_clean >= 0.86 - 0.02 -> cbft_3 (.05), cbft_1 (.10), cbft_2 (.20)
    row("cbft", "search", "cbft_3", (0.84, 0.85, 0.78, 0.145), 0.05, 200, (1.9, 1.4, 0.2, 0.1)),
    row("cbft", "search", "cbft_1", (0.85, 0.86, 0.80, 0.19), 0.10, 1000, (1.5, 1.0, 0.3, 0.2)),
    row("cbft", "search", "cbft_2", (0.86, 0.90, 0.82, 0.28), 0.20, 4000, (1.2, 0.8, 0.4, 0.3)),
]

# Axes: acc_rand_cue (max), cue_reliance (min), n_clean (min); sorted by acc_rand_cue, best first.
# cbft_6 (.75, .15, 2000) is dominated by cbft_1 (.80, .10, 1000); cbft_7 is on the front only
# because it used fewer clean images (150) than every trial that beats it on both objectives.
EXPECTED_PARETO = [
    {"trial_id": "cbft_2", "method": "cbft", "acc_rand_cue": 0.82, "cue_reliance": 0.20, "n_clean": 4000,
     "acc_clean": 0.86, "on_objective_front": True, "param_lr": 0.02, "param_lambda_barrier": 0.5},
    {"trial_id": "cbft_1", "method": "cbft", "acc_rand_cue": 0.80, "cue_reliance": 0.10, "n_clean": 1000,
     "acc_clean": 0.85, "on_objective_front": True, "param_lr": 0.01, "param_lambda_barrier": 1.0},
    {"trial_id": "cbft_3", "method": "cbft", "acc_rand_cue": 0.78, "cue_reliance": 0.05, "n_clean": 200,
     "acc_clean": 0.84, "on_objective_front": True, "param_lr": 0.005, "param_lambda_barrier": 2.0},
    {"trial_id": "cbft_7", "method": "cbft", "acc_rand_cue": 0.77, "cue_reliance": 0.12, "n_clean": 150,
     "acc_clean": 0.65, "on_objective_front": False, "param_lr": 0.003, "param_lambda_barrier": 2.5},
    {"trial_id": "cbft_4", "method": "cbft", "acc_rand_cue": 0.69, "cue_reliance": 0.01, "n_clean": 100,
     "acc_clean": 0.70, "on_objective_front": True, "param_lr": 0.001, "param_lambda_barrier": 4.0},
]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("studies") / "handmade")


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_method_table_exact_rows(study_dir):
    study = load_study(study_dir)
    assert records(method_table(study.trials, study.spec, top=3)) == EXPECTED_METHODS


def test_top_and_tolerance_change_the_best_rows(study_dir):
    study = load_study(study_dir)
    best = method_table(study.trials, study.spec, top=1)
    assert list(best["trial_id"])[-1] == "cbft_3"
    # with 0 pp only the best clean accuracy qualifies; the rest follow by cue_reliance
    strict = method_table(study.trials, study.spec, top=3, tolerance_pp=0.0)
    assert list(strict["trial_id"])[-3:] == ["cbft_2", "cbft_4", "cbft_3"]


def test_pareto_front_exact_rows(study_dir):
    study = load_study(study_dir)
    assert records(pareto_front(study.trials, study.spec)) == EXPECTED_PARETO


def test_non_dominated_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(100):
        pts = rng.integers(0, 4, size=(rng.integers(0, 25), rng.integers(1, 4))).astype(float)
        brute = [not any((q >= p).all() and (q > p).any() for q in pts) for p in pts]
        assert non_dominated(pts).tolist() == brute


def test_json_output(study_dir, capsys):
    code, out, _ = run_cli(["analyze", str(study_dir), "--format", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"summary", "methods", "connectivity", "pareto", "importance", "efficiency", "efficiency_goal",
                           "efficiency_rule", "revival", "revival_curves", "revival_rule", "pairs", "pairs_rule",
                           "pairs_measured", "layers", "layers_rule", "layers_pairs"}
    assert report["pairs"] == [] and report["layers"] == []  # no pairs measured
    assert report["revival"] == [] and report["revival_curves"] == []  # its trials measured no revival
    s = report["summary"]
    assert (s["study"], s["spec_hash"], s["trials_completed"], s["trials_failed"], s["trials_pruned"]) == \
        ("handmade", SPEC_HASH, 11, 1, 0)
    assert s["trials_missing"] == 0 and s["devices"] == "cpu"
    assert s["compute_seconds"] == sum(10.0 * (i + 1) for i in range(len(TRIALS)))
    assert "2 pp" in s["best_rule"]
    assert [m["trial_id"] for m in report["methods"]] == [r["trial_id"] for r in EXPECTED_METHODS]
    assert [p["trial_id"] for p in report["pareto"]] == [r["trial_id"] for r in EXPECTED_PARETO]
    for metric in ("acc_rand_cue", "cue_reliance"):
        entry = report["importance"][metric]
        assert entry["n_trials"] == 6 and entry["note"] is None
        assert set(entry["importances"]) == {"lr", "n_clean", "lambda_barrier"}
        assert sum(entry["importances"].values()) == pytest.approx(1.0)


def test_table_markdown_and_csv(study_dir, capsys):
    code, out, _ = run_cli(["analyze", str(study_dir), "--top", "1", "--no-importance"], capsys)
    assert code == 0 and "Methods" in out and "cbft_3" in out and "cbft_1" not in out.split("Pareto")[0]
    code, out, _ = run_cli(["analyze", str(study_dir), "--format", "markdown", "--no-importance"], capsys)
    assert code == 0 and "## Methods" in out and "| method | role |" in out
    code, out, _ = run_cli(["analyze", str(study_dir), "--format", "csv", "--section", "methods"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["trial_id"] for r in rows] == [r["trial_id"] for r in EXPECTED_METHODS]
    assert float(rows[0]["acc_cue"]) == 0.98 and rows[0]["n_clean"] == ""


def test_plot_writes_pngs_of_the_requested_size(study_dir, tmp_path, capsys):
    out_dir = tmp_path / "figs"
    code, out, _ = run_cli(["plot", str(study_dir), "--out", str(out_dir), "--width", "333", "--height", "257",
                            "--dpi", "50"], capsys)
    assert code == 0
    # an old study (one path kind, no control pair): the base pair's connectivity figure only; its
    # search over n_clean draws CBFT's sample efficiency
    names = {"paths_cue_to_ft.png", "paths_ft_to_clean.png", "connectivity_cue_to_clean.png", "pareto.png",
             "history.png", "importance.png", "efficiency.png"}
    assert {p.name for p in out_dir.iterdir()} == names
    for name in names:
        assert str(out_dir / name) in out  # listed at the end
        assert (out_dir / name).stat().st_size > 1000
        with Image.open(out_dir / name) as img:
            assert img.size == (333, 257)


def test_plot_chosen_trials_and_unknown_trial(study_dir, tmp_path, capsys):
    code, out, _ = run_cli(["plot", str(study_dir), "--out", str(tmp_path), "--trial", "cbft_4", "lpft_0",
                            "--no-importance"], capsys)
    assert code == 0 and (tmp_path / "paths_cue_to_ft.png").exists() and not (tmp_path / "importance.png").exists()
    code, _, err = run_cli(["plot", str(study_dir), "--out", str(tmp_path), "--trial", "nope"], capsys)
    assert code == 2 and "nope" in err


def test_partially_written_study(tmp_path, capsys):
    """Interrupted: 3 base/baseline rows and 2 search trials of 7 written, a temp file mid-write."""
    folder = write_study(tmp_path / "partial", ["base_cue_0", "base_clean_0", "naive_ft_0", "cbft_1", "cbft_2"])
    (folder / "results" / "trials" / ".cbft_3.parquet.tmp").write_bytes(b"PAR1 half a file")
    (folder / "results" / "paths" / "cbft_2.parquet").unlink()  # its path curves are not written yet
    code, out, _ = run_cli(["analyze", str(folder), "--format", "json"], capsys)
    assert code == 0
    s = json.loads(out)["summary"]
    assert (s["trials_finished"], s["trials_missing"], s["search_finished"], s["baseline_finished"]) == (5, 7, 2, 1)
    assert s["trials_without_paths"] == 1 and s["unreadable_part_files"] == 0
    code, out, _ = run_cli(["analyze", str(folder), "--no-importance"], capsys)
    assert code == 0 and "7 trial(s) still missing" in out


def test_damaged_part_file_is_skipped_and_reported(tmp_path, capsys):
    folder = write_study(tmp_path / "damaged", ["base_cue_0", "cbft_1"])
    (folder / "results" / "trials" / "cbft_9.parquet").write_bytes(b"not parquet")
    code, out, _ = run_cli(["analyze", str(folder), "--format", "json", "--no-importance"], capsys)
    assert code == 0 and json.loads(out)["summary"]["unreadable_part_files"] == 1


def test_empty_study(tmp_path, capsys):
    folder = write_study(tmp_path / "empty", [])
    (folder / "results" / "trials").mkdir(parents=True)
    code, out, _ = run_cli(["analyze", str(folder)], capsys)
    assert code == 0 and "no finished trials yet (0 of 12 expected)" in out
    code, out, _ = run_cli(["analyze", str(folder), "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["methods"] == [] and report["pareto"] == []
    assert report["summary"]["trials_missing"] == 12
    assert all(e["importances"] == {} and e["note"].startswith("unavailable") for e in report["importance"].values())
    code, out, _ = run_cli(["plot", str(folder), "--out", str(tmp_path / "figs")], capsys)
    assert code == 0 and "no figures written" in out


def test_single_trial_importance_is_unavailable(tmp_path, capsys):
    folder = write_study(tmp_path / "one", ["base_cue_0", "cbft_1"])
    code, out, _ = run_cli(["analyze", str(folder), "--format", "json", "--section", "importance"], capsys)
    report = json.loads(out)
    assert code == 0 and set(report) == {"importance"}
    assert "need >= 2" in report["importance"]["cue_reliance"]["note"]


def test_compare_aligns_methods_and_differences(study_dir, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(study_dir, other)
    # Drop the best search trial from the copy: its best becomes cbft_1
    (other / "results" / "trials" / "cbft_3.parquet").unlink()
    code, out, _ = run_cli(["compare", str(study_dir), str(other), "--format", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    labels = [s["label"] for s in report["studies"]]
    assert labels == [f"handmade ({study_dir})", f"handmade ({other})"]
    by_key = {(r["method"], r["metric"]): r for r in report["methods"]}
    naive = by_key[("naive_ft", "acc_clean")]
    assert (naive[labels[0]], naive[labels[1]], naive[f"delta {labels[1]}"]) == (0.70, 0.70, 0.0)
    best = by_key[("cbft", "cue_reliance")]
    assert (best[labels[0]], best[labels[1]]) == (0.05, 0.10)
    assert best[f"delta {labels[1]}"] == pytest.approx(0.05)
    code, out, _ = run_cli(["compare", str(study_dir), str(other)], capsys)
    assert code == 0 and "Methods compared" in out
    code, _, err = run_cli(["compare", str(study_dir)], capsys)
    assert code == 2 and "two or more" in err


def test_not_a_study_folder(tmp_path, capsys):
    code, out, err = run_cli(["analyze", str(tmp_path)], capsys)
    assert code == 2 and out == "" and "not a study folder (no study.yaml)" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["plot", str(tmp_path / "missing")], capsys)
    assert code == 2 and "folder does not exist" in err


def test_not_a_study_folder_subprocess(tmp_path):
    result = subprocess.run([sys.executable, "run_study.py", "analyze", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "no study.yaml" in result.stderr


def test_baselines_are_averaged_over_base_seeds(study_dir):
    study = load_study(study_dir)
    seed1 = study.trials[study.trials["role"].isin(["base", "baseline"])].copy()
    seed1["trial_id"] += "_s1"
    seed1["base_seed"] = 1
    seed1["acc_clean"] += 0.1
    trials = pd.concat([study.trials, seed1], ignore_index=True)
    table = method_table(trials, study.spec, top=1).set_index("method")
    assert table.loc["naive_ft", "trial_id"] == "naive_ft_0,naive_ft_0_s1"
    assert table.loc["naive_ft", "n_models"] == 2
    assert table.loc["naive_ft", "acc_clean"] == pytest.approx(0.75)


def test_read_paths_of_chosen_trials(study_dir):
    paths = read_paths(study_dir, ["cbft_3", "base_clean_0"])
    assert set(paths["trial_id"]) == {"cbft_3", "base_clean_0"}
    assert set(paths["path"]) == {"cue_to_ft", "ft_to_clean", "cue_to_clean"}
    cue = paths[(paths["trial_id"] == "cbft_3") & (paths["path"] == "cue_to_ft") & (paths["view"] == "cue")]
    assert cue.sort_values("alpha")["loss"].tolist() == pytest.approx([0.5, 2.4, 0.5])  # barrier 1.9 nats


def test_analysis_package_keeps_ray_out_and_optuna_isolated():
    package = REPO / "mmc_sweep" / "analysis"
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import ray" not in text and "from ray" not in text, source
        if source.name != "importance.py":
            assert "import optuna" not in text and "from optuna" not in text, source


# ------------------------------------------------------------------ path kinds and the control pair
# The kinds study lists paths.kinds as [linear, qmc, lmcp]: tables keep the study's order.
SHOWN_KINDS = ["linear", "qmc", "lmcp"]
VIEWS = ("clean", "cue", "rand_cue", "rand_img")
# (method, trials averaged, paths) of the kinds study's models, in table order
KINDS_MODELS = [
    ("base_clean", ["base_clean_s0", "base_clean_s1"], ["cue_to_clean"]),
    ("naive_ft", ["naive_ft_s0", "naive_ft_s1"], ["cue_to_ft", "ft_to_clean"]),
    ("cbft", ["cbft_1"], ["cue_to_ft", "ft_to_clean"]),  # best: lowest cue_reliance within 2 pp
    ("cbft", ["cbft_2"], ["cue_to_ft", "ft_to_clean"]),
    ("control_clean", ["control_clean_s0_s1"], ["clean_to_clean"]),
]


@pytest.fixture(scope="module")
def kinds_dir(tmp_path_factory) -> Path:
    return write_kinds_study(tmp_path_factory.mktemp("storage"))


def mean_barrier(trial_ids, barrier_type, kind, path, view):
    return float(np.mean([kinds_barrier(t, barrier_type, kind, path, view) for t in trial_ids]))


def test_barrier_column_names_are_the_harness_names():
    from mmc_sweep.paths import BARRIER_TYPES, barrier_metric, kind_names
    from mmc_sweep.study.storage.results import BARRIER_METRICS

    assert list(KINDS) == kind_names()
    for name in BARRIER_METRICS:  # every barrier column the harness writes parses back to its parts
        barrier_type, kind, path, view = parse_barrier_column(name)
        assert barrier_column(barrier_type, kind, path, view) == barrier_metric(barrier_type, kind, path, view) == name
    assert set(BARRIER_TYPES) == {parse_barrier_column(n)[0] for n in BARRIER_METRICS}
    assert parse_barrier_column("acc_clean") is None and parse_barrier_column("barrier_loss_cue") is None


def test_path_kinds_and_expected_rows_from_the_spec():
    assert path_kinds({}) == ["linear"]
    assert path_kinds({"paths": {"kinds": ["qmc", "linear", "lmcp"]}}) == ["linear", "qmc", "lmcp"]
    assert path_kinds({"paths": {"kinds": "lmcp"}}) == ["lmcp"]
    base = {"seeds": [0, 1, 2], "control_pair": True}
    assert expected_rows({"base": base})["base"] == 3 * 2 + 2  # one control pair per consecutive seeds
    assert expected_rows({"base": {**base, "control_pair": False}})["base"] == 6
    assert expected_rows({"base": {"seeds": [0], "control_pair": True}})["base"] == 2


def test_method_table_has_barriers_of_every_kind(kinds_dir):
    study = load_study(kinds_dir)
    table = method_table(study.trials, study.spec, top=3)
    barriers = [c for c in table.columns if c.startswith("barrier_") and not c.endswith(("_lo", "_hi"))]
    assert barriers == [barrier_column("barrier_loss", k, p, v) for k in SHOWN_KINDS
                        for p in ("cue_to_ft", "ft_to_clean") for v in ("cue", "clean")]
    assert list(table["method"]) == ["base_cue", "base_clean", "naive_ft", "cbft", "cbft"]  # no control pair
    rows = table.set_index("trial_id")
    for method, ids, _ in KINDS_MODELS[1:4]:
        for kind in SHOWN_KINDS:
            for view in ("cue", "clean"):
                # base_clean: its cue->ft barriers are the base pair's cue->clean path, mean over both seeds
                cue_path = "cue_to_clean" if method == "base_clean" else "cue_to_ft"
                column = barrier_column("barrier_loss", kind, "cue_to_ft", view)
                got = rows.at[",".join(ids), column]
                assert got == pytest.approx(mean_barrier(ids, "barrier_loss", kind, cue_path, view))
                # two base seeds: the interval is their range
                each = sorted(kinds_barrier(i, "barrier_loss", kind, cue_path, view) for i in ids)
                lo, hi = rows.at[",".join(ids), column + "_lo"], rows.at[",".join(ids), column + "_hi"]
                assert (lo, hi) == pytest.approx(tuple(each)) if len(ids) == 2 else np.isnan(lo) and np.isnan(hi)
                far = rows.at[",".join(ids), barrier_column("barrier_loss", kind, "ft_to_clean", view)]
                if method == "base_clean":
                    assert np.isnan(far)
                else:
                    assert far == pytest.approx(mean_barrier(ids, "barrier_loss", kind, "ft_to_clean", view))
    assert rows.loc["base_cue_s0,base_cue_s1", barriers].isna().all()


def test_method_table_headers_name_the_kind(kinds_dir, capsys):
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "markdown", "--section", "methods"], capsys)
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| method |"))
    assert header.endswith("| n_clean | cue→ft @cue | cue→ft @clean | ft→clean @cue | ft→clean @clean "
                           "| cue→ft @cue (qmc) | cue→ft @clean (qmc) | ft→clean @cue (qmc) "
                           "| ft→clean @clean (qmc) "
                           "| cue→ft @cue (lmcp) | cue→ft @clean (lmcp) | ft→clean @cue (lmcp) "
                           "| ft→clean @clean (lmcp) |")
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--no-importance"], capsys)  # rich: whole, not cut
    assert code == 0 and "(lmcp)" in out.split("Connectivity")[0] and "ft→clean" in out


def test_connectivity_lists_every_kind_path_and_view(kinds_dir, capsys):
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "json", "--section", "connectivity"], capsys)
    assert code == 0
    rows = json.loads(out)["connectivity"]
    expected_keys = [(m, ",".join(ids), p, k) for m, ids, paths in KINDS_MODELS for p in paths for k in SHOWN_KINDS]
    assert [(r["method"], r["trial_id"], r["path"], r["kind"]) for r in rows] == expected_keys
    for row in rows:
        ids = row["trial_id"].split(",")
        assert row["n_models"] == len(ids)
        for view in VIEWS:  # loss barriers (nats) and accuracy barriers (fraction), not the mid-point ones
            for barrier_type in ("barrier_loss", "barrier_acc"):
                want = mean_barrier(ids, barrier_type, row["kind"], row["path"], view)
                assert row[f"{barrier_type}_{view}"] == pytest.approx(want), (row, view)
    control = [r for r in rows if r["method"] == "control_clean"]
    assert {(r["role"], r["path"]) for r in control} == {("base", "clean_to_clean")}
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "csv", "--section", "connectivity"], capsys)
    assert len(list(csv.DictReader(io.StringIO(out)))) == len(expected_keys)
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "markdown", "--section", "connectivity"], capsys)
    assert ("| clean→clean | lmcp | 0.100 | — | 0.200 | — | 0.300 | — | 0.400 | — | 0.010 | — | 0.020 | — | 0.030 | — "
            "| 0.040 | — |") in out  # the control pair's own rows have no control beside them


def test_connectivity_shows_the_control_barrier_beside_each_barrier(kinds_dir, study_dir, capsys):
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "json", "--section", "connectivity"], capsys)
    rows = json.loads(out)["connectivity"]
    control = {r["kind"]: r for r in rows if r["method"] == "control_clean"}
    others = [r for r in rows if r["method"] != "control_clean"]
    assert others and set(control) == set(SHOWN_KINDS)
    for row in others:
        for view in VIEWS:
            for barrier_type in ("barrier_loss", "barrier_acc"):
                want = mean_barrier(["control_clean_s0_s1"], barrier_type, row["kind"], "clean_to_clean", view)
                assert row[f"control_{barrier_type}_{view}"] == pytest.approx(want), (row["trial_id"], view)
    keys = list(rows[0])
    assert keys[keys.index("barrier_loss_cue") + 1] == "control_barrier_loss_cue"  # beside, not at the end
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "markdown", "--section", "connectivity"], capsys)
    assert "| loss @cue | ctrl loss @cue | loss @rand_cue |" in out and "ctrl: the control pair's barrier" in out
    # a study without a control pair: no control columns, and a note that its barriers have no scale
    code, out, _ = run_cli(["analyze", str(study_dir), "--format", "json", "--section", "connectivity"], capsys)
    assert not any(k.startswith("control_") for r in json.loads(out)["connectivity"] for k in r)
    code, out, _ = run_cli(["analyze", str(study_dir), "--format", "markdown", "--section", "connectivity"], capsys)
    assert "no control pair" in out


def test_connectivity_leaves_out_paths_a_model_does_not_have(kinds_dir):
    study = load_study(kinds_dir)
    trials = study.trials.copy()
    unmeasured = [c for c in trials if (parse_barrier_column(c) or ("", "", ""))[2] == "cue_to_ft"]
    trials.loc[trials["trial_id"] == "cbft_2", unmeasured] = np.nan  # as method none: no cue_to_ft path
    table = connectivity_table(trials, study.spec)
    assert set(table.loc[table["trial_id"] == "cbft_2", "path"]) == {"ft_to_clean"}
    only = connectivity_table(trials, study.spec, kinds=["lmcp"], views=["cue"])
    assert set(only["kind"]) == {"lmcp"} and [c for c in only if c.startswith("barrier_")] == \
        ["barrier_loss_cue", "barrier_acc_cue", "barrier_loss_cue_lo", "barrier_loss_cue_hi",
         "barrier_acc_cue_lo", "barrier_acc_cue_hi"]


def test_summary_counts_the_control_pair(kinds_dir, capsys):
    code, out, _ = run_cli(["analyze", str(kinds_dir), "--format", "json", "--section", "summary"], capsys)
    s = json.loads(out)["summary"]
    assert (s["base_finished"], s["base_expected"], s["trials_missing"]) == (5, 5, 0)
    assert s["trials_without_paths"] == 0 and s["path_kinds"] == "linear, qmc, lmcp"


def test_read_paths_has_invariance_metrics_or_nulls(kinds_dir, study_dir):
    rows = read_paths(kinds_dir, ["control_clean_s0_s1"])
    point = rows[(rows["kind"] == "qmc") & (rows["alpha"] == 0.5)]
    assert len(point) == 4 and point["cue_reliance"].tolist() == pytest.approx([kinds_reliance("qmc", 0.5)] * 4)
    old = read_paths(study_dir, ["cbft_3"])  # an old study: no kind, no invariance columns in its files
    assert set(old["kind"]) == {"linear"}
    assert old[["cue_reliance", "pred_consistency", "rep_cosine"]].isna().all().all()


def test_plot_writes_connectivity_figures_of_every_pair(kinds_dir, tmp_path, capsys):
    code, out, _ = run_cli(["plot", str(kinds_dir), "--out", str(tmp_path), "--width", "640", "--height", "480",
                            "--no-importance"], capsys)
    assert code == 0
    # base pair of seed 0, the control pair, and cue->ft of the best search trial (several kinds)
    names = {"connectivity_cue_to_clean.png", "connectivity_clean_to_clean.png", "connectivity_cue_to_ft.png"}
    assert names <= {p.name for p in tmp_path.iterdir()}
    for name in names:
        assert str(tmp_path / name) in out
        with Image.open(tmp_path / name) as img:
            assert img.size == (640, 480)


def test_compare_with_a_study_without_the_kinds(kinds_dir, study_dir, capsys):
    code, out, _ = run_cli(["compare", str(kinds_dir), str(study_dir), "--format", "json"], capsys)
    assert code == 0
    report = json.loads(out)
    first, second = (s["label"] for s in report["studies"])
    by_key = {(r["method"], r["metric"]): r for r in report["methods"]}
    lmcp = by_key[("cbft", "barrier_loss_lmcp_cue_to_ft_cue")]
    assert lmcp[first] == pytest.approx(kinds_barrier("cbft_1", "barrier_loss", "lmcp", "cue_to_ft", "cue"))
    assert lmcp[second] is None and lmcp[f"delta {second}"] is None
    linear = by_key[("cbft", "barrier_loss_cue_to_ft_cue")]
    assert (linear[first], linear[second]) == (pytest.approx(2.4), 1.9)  # handmade best cbft_3: 1.9 nats
    code, out, _ = run_cli(["compare", str(kinds_dir), str(study_dir)], capsys)
    assert code == 0 and "cue→ft @cue (lmcp)" in out
