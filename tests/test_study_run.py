"""Studies end to end on a real local Ray cluster (two nodes), with real Parquet results."""
from __future__ import annotations

import json
import math
import shutil

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from ray.tune import ExperimentAnalysis

from drivers import assert_stopped_cleanly, assert_told_once, run_sampling_free_gpu, run_signalled
from mmc_sweep.cli import main
from mmc_sweep.config import spec_hash, stream_seed
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import load_study
from study_files import TINY, file_digests, write_study

VIEWS = ("clean", "cue", "rand_cue", "rand_img")


def _table(folder, name):
    return ds.dataset(str(folder / "results" / name), format="parquet").to_table().to_pylist()


def _by_alpha(rows, path, view):
    """({alpha: loss}, {alpha: acc}) of one path on one view."""
    mine = [p for p in rows if p["path"] == path and p["view"] == view]
    return {p["alpha"]: p["loss"] for p in mine}, {p["alpha"]: p["acc"] for p in mine}


# first_study (the four-trial TINY study, run once per session): tests/conftest.py


def test_four_trial_study_end_to_end(first_study):
    code, store = first_study
    assert code == 0
    folder = store / "first"
    assert (folder / "study.yaml").is_file() and (folder / "optuna.journal").is_file()
    trials = _table(folder, "trials")
    by_role = {role: [r for r in trials if r["role"] == role] for role in ("base", "baseline", "search")}
    assert sorted(r["method"] for r in by_role["base"]) == ["base_clean", "base_cue"]
    assert [r["method"] for r in by_role["baseline"]] == ["naive_ft"]
    search = by_role["search"]
    assert len(search) == 4 and all(r["status"] == "completed" for r in search)
    assert len({r["trial_id"] for r in trials}) == len(trials)  # each trial exactly once
    assert_told_once(folder / "optuna.journal", trials)
    for r in search:
        assert r["method"] == "cbft" and r["device"] == "cpu" and r["error"] is None
        assert 0.01 <= r["param_lr"] <= 0.1 and 40 <= r["param_n_clean"] <= 100
        assert r["param_epochs"] == 3 and r["param_lambda_invariance"] == 1.0  # fixed settings recorded too
        # whole test images counted: every accuracy is a multiple of 1/100 (TINY's n_test)
        assert all(abs(r[f"acc_{v}"] * 100 - round(r[f"acc_{v}"] * 100)) < 1e-6 for v in VIEWS), r
        assert r["cue_reliance"] == pytest.approx((r["acc_rand_img"] - 0.1) / 0.9)
        assert r["duration_s"] > 0 and r["start_epoch"] == 0
        # what it cost: training and evaluation, no alignment or midpoint (straight lines only), within its duration
        assert r["cost_finetune_s"] > 0 and r["cost_paths_s"] > 0 and r["cost_gpu_s"] is None, r
        assert r["cost_align_s"] == 0 and r["cost_midpoint_s"] == 0, r
        assert sum(r[f"cost_{p}_s"] for p in ("finetune", "align", "midpoint", "paths")) <= r["duration_s"]
    base_clean = next(r for r in by_role["base"] if r["method"] == "base_clean")
    assert base_clean["barrier_loss_cue_to_clean_cue"] is not None
    # independent pairs (the default): every row says how its base pair was made
    clean_seeds = (stream_seed(0, "clean", "init"), stream_seed(0, "clean", "order"))
    assert len(set(clean_seeds) | {0}) == 3
    for r in trials:
        assert r["pairing"] == "independent" and (r["cue_init_seed"], r["cue_order_seed"]) == (0, 0), r["trial_id"]
        assert (r["clean_init_seed"], r["clean_order_seed"]) == clean_seeds, r["trial_id"]
    spec = load_study(folder / "study.yaml", stored=True)
    assert spec.base.pairing == "independent"  # written resolved: it resumes with the same meaning
    for kind, seeds in (("cue", ("", 0, 0)), ("clean", ("clean", *clean_seeds))):  # the base models' stored metadata
        info = json.loads((store / "models" / spec_hash(spec.base_model(kind, 0)) / "info.json").read_text())
        assert (info["stream"], info["init_seed"], info["order_seed"]) == seeds, kind

    paths = _table(folder, "paths")
    for r in search:
        mine = [p for p in paths if p["trial_id"] == r["trial_id"]]
        assert len(mine) == 2 * 3 * 4  # two paths x three alphas x four views
        assert {p["bn_reset"] for p in mine} == {"cumulative:2x32:clean"}
        assert {p["views_cue"] for p in mine} == {"full"}  # paths.views_cue data = data.views_cue (full)
        assert {p["alpha"] for p in mine} == {0.0, 0.5, 1.0}
        for path in ("cue_to_ft", "ft_to_clean"):
            for view in VIEWS:  # the trial's barriers, by hand from its three path points
                loss, acc = _by_alpha(mine, path, view)
                assert r[f"barrier_loss_{path}_{view}"] == pytest.approx(max(0.0, loss[0.5] - (loss[0.0] + loss[1.0]) / 2))
                assert r[f"barrier_acc_{path}_{view}"] == pytest.approx(max(0.0, (acc[0.0] + acc[1.0]) / 2 - acc[0.5]))
        # the fine-tuned model ends one path and starts the other: the same point, measured once
        for view in VIEWS:
            assert _by_alpha(mine, "cue_to_ft", view)[0][1.0] == _by_alpha(mine, "ft_to_clean", view)[0][0.0]
    history = _table(folder, "history")
    for r in search:
        assert sorted(h["epoch"] for h in history if h["trial_id"] == r["trial_id"]) == [1, 2, 3]
    revival = _table(folder, "revival")
    cue_model = next(r for r in by_role["base"] if r["method"] == "base_cue")
    for r in search + by_role["baseline"]:  # each fine-tuned model re-trained on cue data: steps 0, 1 and 4
        curve = sorted((p["step"], p["cue_reliance"]) for p in revival if p["trial_id"] == r["trial_id"])
        assert [s for s, _ in curve] == [0, 1, 4] and curve[0][1] == pytest.approx(r["cue_reliance"]), r["trial_id"]
        reached = [s for s, c in curve if c >= cue_model["cue_reliance"] / 2]  # revival_steps, by hand
        assert r["revival_steps"] == (reached[0] if reached else math.inf), (curve, cue_model["cue_reliance"])
        assert r["revival_auc"] == pytest.approx(sum(c for _, c in curve) / 3) and r["cost_revival_s"] > 0
    assert not [p for p in revival if p["trial_id"].startswith("base_")]

    meta = ds.dataset(str(folder / "results" / "trials"), format="parquet").schema.metadata
    assert {b"mmc_sweep.spec_hash", b"mmc_sweep.versions", b"mmc_sweep.device"} <= set(meta)


def test_a_finished_study_is_compacted(first_study):
    """Compacted once, when its experiment ended: every trial's part files in one file per table."""
    _, store = first_study
    results = store / "first" / "results"
    for name in ("trials", "paths", "history", "revival"):
        assert [p.name for p in (results / name).glob("*.parquet")] == ["compacted-000001-000.parquet"], name
        assert json.loads((results / name / "_compaction.json").read_text())["generation"] == 1
    ids = json.loads(pq.read_schema(results / "trials" / "compacted-000001-000.parquet").metadata[b"mmc_sweep.trial_ids"])
    assert sorted(ids) == sorted(r["trial_id"] for r in _table(store / "first", "trials")) and len(ids) == 2 + 1 + 4
    assert sorted(p.name for p in results.iterdir()) == ["history", "paths", "revival", "trials"]  # no staging folder left


def test_every_row_names_the_cluster_node_it_ran_on(first_study):
    """(Which node a trial lands on is Ray's choice: TINY's trials are over in a tenth of a second, so
    they may all run on one node. That trials run on both nodes, and move when one is lost:
    test_failures' node-loss test, where the other nodes' CPUs are held.)"""
    import ray

    _, store = first_study
    rows = _table(store / "first", "trials")  # base rows: where the base model trained
    assert {r["node"] for r in rows} <= {n["NodeID"] for n in ray.nodes()}, [(r["trial_id"], r["node"]) for r in rows]


def test_rerunning_a_finished_study_changes_nothing(first_study, tmp_path_factory):
    code, store = first_study
    folder = store / "first"
    before = file_digests(folder / "results", store / "models")
    journal = (folder / "optuna.journal").read_bytes()
    spec_file = tmp_path_factory.mktemp("again") / "first.yaml"
    spec_file.write_text((folder / "study.yaml").read_text())
    assert main(["run", str(spec_file), "--storage", str(store)]) == 0
    # no row, part file, model or Optuna record added or rewritten: no trial ran again
    assert file_digests(folder / "results", store / "models") == before
    assert (folder / "optuna.journal").read_bytes() == journal


def test_fractional_gpu_trials_run_at_once_and_reuse_base_models(first_study, tmp_path):
    _, store = first_study
    models_before = {p: p.stat().st_mtime_ns for p in (store / "models").rglob("*") if p.is_file()}
    spec_file = write_study(tmp_path, "gpu_quarters", baselines=[], resources={"cpu": 0.25, "gpu": 0.25},
                            finetune={"epochs": 6})
    code, free_gpu = run_sampling_free_gpu(["run", str(spec_file), "--storage", str(store)])
    assert code == 0
    assert min(free_gpu) == pytest.approx(0.0)  # four 0.25-GPU trials held the one GPU at once
    folder = store / "gpu_quarters"
    trained = [t.config["job"] for t in ExperimentAnalysis(str(folder / "tune" / "study")).trials if "kind" in t.config.get("job", {})]
    assert trained == []  # the first study's base models were found: no trial trained one
    assert {p: p.stat().st_mtime_ns for p in (store / "models").rglob("*") if p.is_file()} == models_before
    search = [r for r in _table(folder, "trials") if r["role"] == "search"]
    assert len(search) == 4 and all(r["status"] == "completed" for r in search)
    assert {r["device"] for r in search} == {"cpu"}  # Ray's GPU is fake: torch sees no CUDA


def test_analysis_reads_what_the_harness_wrote(first_study, capsys):

    _, store = first_study
    assert main(["analyze", str(store / "first"), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"base_cue", "base_clean", "naive_ft", "cbft"} <= {row["method"] for row in report["methods"]}
    assert report["pareto"] and all(row["method"] == "cbft" for row in report["pareto"])
    trials = {r["trial_id"]: r for r in _table(store / "first", "trials")}
    revival = {r["method"]: r for r in report["revival"]}  # per method: the median of its models' steps
    assert sorted(revival) == ["cbft", "naive_ft"] and revival["cbft"]["n_models"] == 4
    steps = sorted(r["revival_steps"] for r in trials.values() if r["method"] == "cbft")
    median = (steps[1] + steps[2]) / 2
    assert revival["cbft"]["revival_steps"] == (median if math.isfinite(median) else None)
    assert revival["cbft"]["not_revived"] == sum(map(math.isinf, steps))


def _status(folder, capsys) -> dict[str, tuple[int, int, int, int, int]]:
    """``status --format json``: part -> (completed, failed, pruned, expected, missing)."""
    assert main(["status", str(folder), "--format", "json"]) == 0
    parts = json.loads(capsys.readouterr().out)["parts"]
    return {p["part"]: (p["completed"], p["failed"], p["pruned"], p["expected"], p["missing"]) for p in parts}


def test_status_counts_each_part_of_the_first_study(first_study, capsys):
    _, store = first_study
    assert _status(store / "first", capsys) == {
        "base models": (2, 0, 0, 2, 0), "base pairs": (2, 0, 0, 2, 0), "control pairs": (0, 0, 0, 0, 0),
        "baselines": (1, 0, 0, 1, 0), "search": (4, 0, 0, 4, 0)}
    assert main(["status", str(store / "first")]) == 0  # the table names the study and every part
    out = capsys.readouterr().out
    assert "first" in out and all(part in out for part in ("base models", "control pairs", "baselines", "search"))


def test_a_changed_spec_under_the_same_name_is_refused(first_study, tmp_path, capsys):
    _, store = first_study
    spec_file = write_study(tmp_path, "first", finetune={"epochs": 4})
    assert main(["run", str(spec_file), "--storage", str(store)]) == 2
    assert "another spec" in capsys.readouterr().err


KINDS = ("linear", "lmcp", "qmc")


@pytest.fixture(scope="module")
def grid_study(ray_cluster, tmp_path_factory):
    """The connectivity preset in small: method none over cue proportion x seed, all three path
    kinds, and the control pair of the two seeds' clean references."""
    root = tmp_path_factory.mktemp("grid")
    grid = {"num_samples": 10, "sampler": "grid", "objectives": [{"metric": "barrier_loss_lmcp_ft_to_clean_cue", "mode": "max"}],
            "space": {"cue_proportion": {"type": "categorical", "choices": [0.5, 1.0]},
                      "base_seed": {"type": "categorical", "choices": [0, 1]}}}
    paths = dict(TINY["paths"], kinds=list(KINDS), qmc={"epochs": 2, "batch_size": 64},
                 align={"batches": 2, "batch_size": 64})
    spec_file = write_study(root, "grid", finetune={"method": "none"}, baselines=[], search=grid,
                            base={"seeds": [0, 1], "control_pair": True}, paths=paths)
    # stopped twice on the way (Ctrl-C as the base models train, SIGTERM as the reference jobs begin)
    # and resumed each time: the study's results are those of one uninterrupted run
    store = root / "store"
    with pytest.MonkeyPatch.context() as monkeypatch:
        spec, options = load_study(spec_file), RunOptions(storage=str(store), address=ray_cluster.address)
        for signal_at in ("base:INT", "reference:TERM"):
            code, output = run_signalled(spec, options, signal_at, monkeypatch)
            assert_stopped_cleanly(code, output, signal_at)
    code = main(["resume", str(store / "grid"), "--address", ray_cluster.address])
    return code, root, spec_file


def test_connectivity_grid_over_cue_proportion_and_seed(grid_study):
    code, root, _ = grid_study
    assert code == 0
    folder = root / "store" / "grid"
    trials = _table(folder, "trials")
    search = [r for r in trials if r["role"] == "search"]
    assert sorted((r["cue_proportion"], r["base_seed"]) for r in search) == [(0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]
    for r in search:  # every kind costs something: LMCP its alignment, QMC its midpoint (trained, or loaded)
        costs = [r[f"cost_{p}_s"] for p in ("finetune", "align", "midpoint", "paths")]
        assert all(c > 0 for c in costs) and sum(costs) <= r["duration_s"], (costs, r["duration_s"])
    for kind in ("", "lmcp_", "qmc_"):
        assert all(r[f"barrier_loss_{kind}ft_to_clean_cue"] is not None and r[f"barrier_loss_{kind}cue_to_ft_cue"] is None
                   for r in search)
    paths = _table(folder, "paths")
    mine = [p for p in paths if p["trial_id"] in {r["trial_id"] for r in search}]
    assert {p["path"] for p in mine} == {"ft_to_clean"} and {p["kind"] for p in mine} == set(KINDS)
    assert len(mine) == 4 * 3 * 3 * 4  # trials x kinds x alphas x views
    # cue models per (proportion, seed) for the grid and at data.cue_proportion (0.8) for the base
    # pair's reference rows, plus one clean reference per seed
    assert len(list((root / "store" / "models").iterdir())) == 3 * 2 + 2
    # midpoints: one per distinct pair of models (the grid's four, the two base pairs, the control pair)
    assert len(list((root / "store" / "midpoints").glob("*/midpoint.pt"))) == 4 + 2 + 1


def test_status_counts_control_pairs_and_caps_a_grid(grid_study, capsys):
    """Two seeds: eight base models (cue models at 0.5, 1.0 and the reference rows' 0.8, per seed; two
    clean), two base pairs (four rows), one control pair, no baselines; num_samples 10 on a grid of 4."""
    _, root, _ = grid_study
    assert _status(root / "store" / "grid", capsys) == {
        "base models": (8, 0, 0, 8, 0), "base pairs": (4, 0, 0, 4, 0), "control pairs": (1, 0, 0, 1, 0),
        "baselines": (0, 0, 0, 0, 0), "search": (4, 0, 0, 4, 0)}


def test_the_control_pair_and_invariance_along_its_paths(grid_study):
    _, root, _ = grid_study
    folder = root / "store" / "grid"
    control = [r for r in _table(folder, "trials") if r["method"] == "control_clean"]
    assert [r["trial_id"] for r in control] == ["control_clean_s0_s1"]
    assert all(control[0][f"barrier_loss_{k}clean_to_clean_{v}"] is not None for k in ("", "lmcp_", "qmc_") for v in VIEWS)
    rows = [p for p in _table(folder, "paths") if p["trial_id"] == "control_clean_s0_s1"]
    assert {(p["path"], p["kind"]) for p in rows} == {("clean_to_clean", k) for k in KINDS}
    assert all(p["cue_reliance"] is not None and p["rep_cosine"] is not None for p in rows)
    for p in rows:  # per-alpha metrics: one value per point, on every view's row
        same_point = {q["cue_reliance"] for q in rows if (q["kind"], q["alpha"]) == (p["kind"], p["alpha"])}
        assert same_point == {p["cue_reliance"]}


def test_a_second_study_reuses_the_stored_midpoints(grid_study, tmp_path):
    _, root, spec_file = grid_study
    midpoints = {p: p.stat().st_mtime_ns for p in (root / "store" / "midpoints").rglob("*") if p.is_file()}
    again = tmp_path / "again.yaml"
    again.write_text(spec_file.read_text().replace("name: grid", "name: grid_again").replace("num_samples: 10", "num_samples: 1"))
    assert main(["run", str(again), "--storage", str(root / "store")]) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "store" / "midpoints").rglob("*") if p.is_file()} == midpoints
    trials = _table(root / "store" / "grid_again", "trials")
    assert len([r for r in trials if r["role"] == "search"]) == 1
    by_method = {r["method"]: r for r in trials}  # each with its QMC barrier, from a reused midpoint
    for method, path in (("none", "ft_to_clean"), ("base_clean", "cue_to_clean"), ("control_clean", "clean_to_clean")):
        assert by_method[method][f"barrier_loss_qmc_{path}_cue"] is not None, method


def test_the_pairs_command_measures_aligned_and_curved_paths_as_the_study_did(grid_study, tmp_path, capsys):
    """`pairs --kinds lmcp,qmc` between a seed's cue model, its clean reference and the other seed's: the
    base pair and the control pair measured again give the study's own barriers (same alignment, the
    stored midpoints reused); the pair the study never measured gets a midpoint trained and stored."""
    _, root, _ = grid_study
    store = tmp_path / "store"
    shutil.copytree(root / "store", store)  # pairs add tables, a record of pairs and a midpoint
    midpoints = len(list((store / "midpoints").glob("*/midpoint.pt")))
    folder = store / "grid"
    assert main(["pairs", str(folder), "--models", "base_cue_s0,base_clean_s0,base_clean_s1", "--kinds", "lmcp,qmc"]) == 0
    capsys.readouterr()
    pairs = {(r["model_a"], r["model_b"], r["kind"], r["view"]): r["barrier_loss"] for r in _table(folder, "pairs")}
    assert len(pairs) == 3 * 2 * len(VIEWS)
    trials = {r["trial_id"]: r for r in _table(folder, "trials")}
    for kind in ("lmcp", "qmc"):
        for view in VIEWS:
            assert pairs[("base_cue_s0", "base_clean_s0", kind, view)] == pytest.approx(
                trials["base_clean_s0"][f"barrier_loss_{kind}_cue_to_clean_{view}"], abs=1e-6), (kind, view)
            assert pairs[("base_clean_s0", "base_clean_s1", kind, view)] == pytest.approx(
                trials["control_clean_s0_s1"][f"barrier_loss_{kind}_clean_to_clean_{view}"], abs=1e-6), (kind, view)
            assert pairs[("base_cue_s0", "base_clean_s1", kind, view)] is not None
    assert len(list((store / "midpoints").glob("*/midpoint.pt"))) == midpoints + 1  # cue s0 to clean s1


def test_analyze_and_plot_a_study_with_every_kind(grid_study, tmp_path, capsys):

    _, root, _ = grid_study
    folder = root / "store" / "grid"
    assert main(["analyze", str(folder), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    control = [r for r in report["connectivity"] if r["path"] == "clean_to_clean"]
    assert {r["kind"] for r in control} == set(KINDS)
    assert main(["plot", str(folder), "--out", str(tmp_path / "figs"), "--no-importance"]) == 0
    assert (tmp_path / "figs" / "connectivity_cue_to_clean.png").is_file()
    assert (tmp_path / "figs" / "connectivity_clean_to_clean.png").is_file()
