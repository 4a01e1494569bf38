"""Interruptions leave results that are complete and true: Ctrl-C / SIGTERM stop gracefully and
resume (a driver killed between two table writes, or mid-trial: test_study_resume.py)."""
from __future__ import annotations

import json
import os
import signal

from optuna.trial import TrialState

from drivers import (assert_journal_matches_parquet, driver, journal_trials, resume_here, search_results, table,
                     trial_states, wait_for_running_trial)
from mmc_sweep.cli import main
from study_files import search, write_study

OBJECTIVES = ["acc_rand_cue", "cue_reliance"]
CTRL_C_EPOCHS = 16  # interrupted after the 6th: Tune's stop lands epochs later, the trial must still be training


def _elapsed_at_newest_checkpoints(folder) -> dict[str, float]:
    """Trial id -> seconds of work its newest epoch state says the trial had done."""
    return {trial_id: state["elapsed_s"] for trial_id, state in trial_states(folder).items()}


def test_ctrl_c_stops_gracefully_and_resume_agrees_with_optuna(ray_cluster, tmp_path, seeded_store, capsys):
    store = seeded_store
    # NSGA-II: the quickstart's sampler, through Tune's snapshot and a resume (TPE: test_study_resume)
    # at 10 epochs Tune's stop sometimes landed after the trial's last epoch: its resume trained nothing
    spec = write_study(tmp_path, "ctrl_c", finetune={"epochs": CTRL_C_EPOCHS}, baselines=[], search=search(max_concurrent=2, sampler="nsga2"))
    folder = store / "ctrl_c"
    log = tmp_path / "run.log"
    run = driver(["run", str(spec), "--storage", str(store), "--address", ray_cluster.address], log)
    # interrupt late in a trial, so much of its work happened before the interruption
    wait_for_running_trial(run, folder, 6, log)
    os.kill(run.pid, signal.SIGINT)
    assert run.wait(timeout=120) == 130, log.read_text()
    assert "resume" in log.read_text()
    before = search_results(folder)
    assert len(before) < 4
    states = [t.state for t in journal_trials(folder, "ctrl_c")]
    assert TrialState.FAIL not in states, states  # the stopped trials are resumed, not failed
    assert states.count(TrialState.RUNNING) >= 1
    elapsed_before = _elapsed_at_newest_checkpoints(folder)
    capsys.readouterr()
    assert main(["status", str(folder), "--format", "json"]) == 0  # what is left, as status tells it
    search_part = next(p for p in json.loads(capsys.readouterr().out)["parts"] if p["part"] == "search")
    assert (search_part["completed"], search_part["expected"], search_part["missing"]) == (len(before), 4, 4 - len(before))

    assert resume_here(folder, ray_cluster.address, tmp_path / "resume.log") == 0, (tmp_path / "resume.log").read_text()
    rows = table(folder, "trials")
    search_rows = [r for r in rows if r["role"] == "search"]
    assert len(search_rows) == 4 and all(r["status"] == "completed" for r in search_rows)
    assert_journal_matches_parquet(journal_trials(folder, "ctrl_c"), rows, OBJECTIVES)
    # A trial resumed late (6+ of its epochs done before Ctrl-C) continued from its checkpoint, and its
    # clock carried on: its final checkpoint's elapsed time exceeds the pre-interrupt one (counting
    # only the epochs after the restart would not), and its duration covers both. A trial whose
    # training had ended before the stop landed trains nothing more: its clock is unchanged.
    elapsed_after = _elapsed_at_newest_checkpoints(folder)
    late = [r for r in search_rows if r["start_epoch"] >= 6]  # at least the trial we waited for
    assert any(r["start_epoch"] < CTRL_C_EPOCHS for r in late), [r["start_epoch"] for r in search_rows]
    for r in late:
        trial_dir = next(d for d in elapsed_after if r["trial_id"] in d)
        if r["start_epoch"] < CTRL_C_EPOCHS:
            assert elapsed_after[trial_dir] > elapsed_before[trial_dir], (elapsed_before[trial_dir], elapsed_after[trial_dir])
        else:
            assert elapsed_after[trial_dir] == elapsed_before[trial_dir]
        assert r["duration_s"] >= elapsed_after[trial_dir]
