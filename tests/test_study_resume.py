"""Kill -9 the driver mid-study, resume, and check nothing is lost, repeated or restarted from zero."""
from __future__ import annotations

import os
import signal
import time

from optuna.trial import TrialState

from drivers import (assert_journal_matches_parquet, driver, journal_trials, resume_here, search_results, table,
                     wait_for_running_trial)
from study_files import write_study


def test_kill_driver_then_resume(ray_cluster, tmp_path, seeded_store, monkeypatch):
    # TPE through Tune's snapshot and a resume (NSGA-II: test_interrupts; random: first_study; grid: test_study_run)
    store = seeded_store
    spec_file = write_study(tmp_path, "killed", finetune={"epochs": 10}, search={**_search(), "max_concurrent": 2, "sampler": "tpe"})
    folder = store / "killed"
    # Tune snapshots the experiment every 10 s or more by default: a trial started since the last
    # snapshot is unknown to the resumed run and is recorded as lost, not resumed. Snapshot every
    # 0.5 s here, and kill only once the trial waited for is in the snapshot on disk.
    snapshots = {"TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    run = driver(["run", str(spec_file), "--storage", str(store), "--address", ray_cluster.address], tmp_path / "run.log",
                 **snapshots)
    # a search trial has written its fourth epoch state, has not finished and is in the snapshot
    wait_for_running_trial(run, folder, 3, tmp_path / "run.log", finished_before=1, in_snapshot=True)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert len(search_results(folder)) < 4

    for key, value in snapshots.items():
        monkeypatch.setenv(key, value)
    assert resume_here(folder, ray_cluster.address, tmp_path / "resume.log") == 0, (tmp_path / "resume.log").read_text()

    rows = table(folder, "trials")
    # Optuna may have proposed a trial that Tune's last snapshot before the kill never held: it is
    # recorded as failed ("lost") in both; the four trials Tune ran all completed
    search = [r for r in rows if r["role"] == "search" and r["status"] == "completed"]
    lost = [r for r in rows if r["role"] == "search" and r["status"] != "completed"]
    assert len(search) == 4 and all(r["error"].startswith("lost") for r in lost), lost
    assert len({r["trial_id"] for r in rows}) == len(rows)
    assert any(r["start_epoch"] > 0 for r in search), [r["start_epoch"] for r in search]  # resumed, not restarted
    history = table(folder, "history")
    for r in search:
        assert sorted(h["epoch"] for h in history if h["trial_id"] == r["trial_id"]) == list(range(1, 11))

    _wait_until_cluster_idle()  # the killed driver's trial actors are gone, not holding CPUs

    trials = journal_trials(folder, "killed")
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) == 4  # every Tune trial told once
    assert_journal_matches_parquet(trials, rows, ["acc_rand_cue", "cue_reliance"])


def _wait_until_cluster_idle(timeout_s: float = 120.0) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU"):
            return
        time.sleep(0.2)
    raise AssertionError(f"resources still held after the study: {ray.available_resources()}")


def _search():
    from study_files import TINY

    return dict(TINY["search"])
