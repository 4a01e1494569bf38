"""``run_study.py pairs`` (issue 20, items 1 and 2): the matrix among a study's models on the session's
Ray, in a copy of the session's first study. Values checked against what the study's own trials
measured between the same models with the same path settings."""
from __future__ import annotations

import json
import shutil

import pyarrow.dataset as ds
import pytest

from mmc_sweep.cli import main
from mmc_sweep.study.storage.lock import study_lock


def _rows(folder, table: str) -> list[dict]:
    return ds.dataset(str(folder / "results" / table), format="parquet").to_table().to_pylist()


@pytest.fixture
def study(first_study, tmp_path):
    """A copy of the first study and of the storage's models: pairs add tables and models to it."""
    _, store = first_study
    copy = tmp_path / "store"
    shutil.copytree(store / "first", copy / "first")
    shutil.copytree(store / "models", copy / "models")
    return copy / "first"


def _cue_to_ft(row: dict, view: str) -> float:
    return row[f"barrier_loss_cue_to_ft_{view}"]


def test_the_matrix_measures_every_pair_once_and_reuses_what_was_measured(study, capsys):
    trials = {r["trial_id"]: r for r in _rows(study, "trials")}
    best = next(r["trial_id"] for r in trials.values() if r["role"] == "search")  # any search trial, named by id
    models = ["base_cue_s0", "base_clean_s0", "naive_ft_s0", best]
    assert main(["pairs", str(study), "--models", f"base,baselines,{best}", "--layers", "head"]) == 0
    pairs = _rows(study, "pairs")
    assert len(pairs) == 6 * 4  # 4 models: 6 pairs, one kind (linear), 4 views
    assert {(r["model_a"], r["model_b"]) for r in pairs} == {(a, b) for i, a in enumerate(models) for b in models[i + 1:]}
    by_pair = {(r["model_a"], r["model_b"], r["view"]): r for r in pairs}
    for view in ("clean", "cue", "rand_cue", "rand_img"):
        # the base pair, as the study's base_clean row measured it (same paths settings, same BN batches)
        base = trials["base_clean_s0"][f"barrier_loss_cue_to_clean_{view}"]
        assert by_pair[("base_cue_s0", "base_clean_s0", view)]["barrier_loss"] == pytest.approx(base, abs=1e-9)
        # fine-tuned models re-made from their recorded settings: the same models the trials measured
        for trial in ("naive_ft_s0", best):
            assert by_pair[("base_cue_s0", trial, view)]["barrier_loss"] == pytest.approx(_cue_to_ft(trials[trial], view),
                                                                                         abs=1e-6), (trial, view)
    assert {r["method_b"] for r in pairs if r["model_a"] == "base_cue_s0"} == {"base_clean", "naive_ft", "cbft"}
    assert not any(r["reused"] for r in pairs)
    layers = _rows(study, "layers")
    assert {r["layer"] for r in layers} == {"head"} and len(layers) == 6 * 4
    # the run compacted both tables at its end: one file each, not one per pair and kind
    for table in ("pairs", "layers"):
        names = [f.name for f in (study / "results" / table).glob("*.parquet")]
        assert len(names) == 1 and names[0].startswith("compacted-"), names
    out = capsys.readouterr().out
    assert "4 models, 6 pairs x kinds (0 written before, 0 copied from the record of pairs measured before); " \
           "2 fine-tuned model(s) to re-make" in out
    # status counts them per kind (they are measured on demand: no expected count)
    assert main(["status", str(study), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == {"linear": 6}
    assert main(["status", str(study)]) == 0
    assert "pairs measured by `run_study.py pairs`: 6 (linear 6)" in capsys.readouterr().out

    # analyze: per view, mechanism groups that partition the models, cut at the scale (no clean pair, no
    # control pair in this study: the 0.05 nats floor); models in one group have barriers below it on average
    assert main(["analyze", str(study), "--format", "json", "--section", "pairs"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs_measured"] == 6
    for view in ("clean", "cue", "rand_cue", "rand_img"):
        groups = [g for g in report["pairs"] if g["view"] == view]
        members = [m for g in groups for m in g["members"].split(", ")]
        assert sorted(members) == sorted(models) and {g["scale"] for g in groups} == {0.05}, groups
        for g in groups:
            names = g["members"].split(", ")
            within = [by_pair[k]["barrier_loss"] for k in by_pair if k[2] == view and k[0] in names and k[1] in names]
            assert not within or sum(within) / len(within) < 0.05, (g, within)
    assert main(["plot", str(study), "--out", str(study / "figures")]) == 0
    assert (study / "figures" / "pairs.png").is_file() and (study / "figures" / "layers.png").is_file()
    capsys.readouterr()

    # the same command again: nothing to measure
    assert main(["pairs", str(study), "--models", f"base,baselines,{best}", "--layers", "head"]) == 0
    assert "(6 written before, 0 copied" in capsys.readouterr().out
    # the study's rows lost: measured before (the storage's record of pairs), so copied, not measured again
    shutil.rmtree(study / "results" / "pairs")
    assert main(["pairs", str(study), "--models", "base_cue_s0,naive_ft_s0"]) == 0
    assert "(0 written before, 1 copied from the record of pairs measured before)" in capsys.readouterr().out
    again = _rows(study, "pairs")
    assert len(again) == 4 and all(r["reused"] for r in again)
    assert {r["view"]: r["barrier_loss"] for r in again} == \
        {r["view"]: r["barrier_loss"] for r in pairs if (r["model_a"], r["model_b"]) == ("base_cue_s0", "naive_ft_s0")}


def test_a_study_in_use_is_refused_with_nothing_written(study, capsys):
    """One writer at a time: a pairs run waits for no running study, compaction or other pairs run."""
    with study_lock(study):  # as a running study's driver holds it
        assert main(["pairs", str(study), "--models", "base"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the study is in use by another process" in err[0], err
    assert not (study / "results" / "pairs").exists() and not (study.parent / "pairs").exists()


@pytest.mark.parametrize("args, message", [
    (["--models", "base,top:0"], "--models: 'top:0': expected top:K with K a whole number >= 1"),
    (["--models", "base,nosuch"], "--models: no model or trial 'nosuch'"),
    (["--models", "naive_ft_s0"], "a matrix needs at least two"),
    (["--kinds", "linear,curvy"], "--kinds: unknown path kind(s) ['curvy']"),
    (["--layers", "trunk.0,neck"], "--layers: unknown layer(s) ['neck'] of small_cnn"),
])
def test_bad_selections_exit_2_before_ray_with_nothing_written(study, capsys, args, message):
    assert main(["pairs", str(study), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (study / "results" / "pairs").exists() and not (study.parent / "pairs").exists()
