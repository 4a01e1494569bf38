"""Worker and node failures (issue 8, items 3 and 4): a trial whose worker dies is retried from its
last epoch checkpoint, and trials on a node that leaves the cluster are rescheduled on the others.

Real Ray, real Parquet, real Optuna journal; the faults are real too: a worker process that calls
``os._exit(1)`` (the library's test-only switch), and a Ray node whose processes are killed.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pyarrow.dataset as ds
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from rich.console import Console

from drivers import assert_told_once
from mmc_sweep.study import faults
from study_files import search, write_study

REPO = Path(__file__).resolve().parents[1]


def _table(folder: Path, name: str) -> list[dict]:
    return ds.dataset(str(folder / "results" / name), format="parquet").to_table().to_pylist()


def _journal_states(folder: Path, name: str) -> dict[str, list[TrialState]]:
    """The Optuna journal's trials, by the Tune trial id they carry: id -> the states of its Optuna
    trials (a list, so that one id told twice, or asked twice, shows up)."""
    journal = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    states: dict[str, list[TrialState]] = {}
    for trial in optuna.load_study(study_name=name, storage=journal).trials:
        states.setdefault(trial.user_attrs.get("tune_trial_id"), []).append(trial.state)
    return states


def _check_each_trial_once(folder: Path, name: str, samples: int, epochs: int) -> list[dict]:
    """Every search trial is in Parquet exactly once, completed, with each epoch's history exactly
    once, and is COMPLETE exactly once in the Optuna journal. Returns the search rows."""
    trials = _table(folder, "trials")
    assert len({r["trial_id"] for r in trials}) == len(trials), sorted(r["trial_id"] for r in trials)
    search_rows = [r for r in trials if r["role"] == "search"]
    assert len(search_rows) == samples, [(r["trial_id"], r["status"]) for r in search_rows]
    assert all(r["status"] == "completed" and r["error"] is None for r in search_rows), \
        [(r["trial_id"], r["status"], r["error"]) for r in search_rows]
    history = _table(folder, "history")
    for r in search_rows:
        epochs_seen = sorted(h["epoch"] for h in history if h["trial_id"] == r["trial_id"])
        assert epochs_seen == list(range(1, epochs + 1)), (r["trial_id"], epochs_seen)  # no epoch lost or repeated
    # the measured paths too: a retried trial must not leave a second set of rows
    paths = _table(folder, "paths")
    for r in search_rows:
        assert len([p for p in paths if p["trial_id"] == r["trial_id"]]) == 2 * 3 * 4  # 2 paths x 3 alphas x 4 views
    states = _journal_states(folder, name)
    assert states == {r["trial_id"]: [TrialState.COMPLETE] for r in search_rows}, states
    assert_told_once(folder / "optuna.journal", trials)
    return search_rows


# ---- item 3: a worker that dies is retried from its last checkpoint ---------------------------------------

def test_a_dead_worker_is_retried_from_its_last_checkpoint(ray_cluster, tmp_path, seeded_store, monkeypatch):
    from mmc_sweep.study.definition.options import RunOptions
    from mmc_sweep.study.definition.spec import load_study
    from mmc_sweep.study.run.runner import run

    epochs, samples = 4, 2
    spec_file = write_study(tmp_path, "worker_exit", baselines=[], finetune={"epochs": epochs},
                            search=search(num_samples=samples, max_concurrent=2))
    # read on the driver (this process) and handed to every fine-tuning trial: each trial's worker
    # process dies once, at the start of epoch 3's report, so its last checkpoint is epoch 2's
    monkeypatch.setenv(faults.ENV, "worker_exit_epoch=3")
    store = seeded_store
    log = io.StringIO()
    outcome = run(load_study(spec_file), RunOptions(storage=str(store), address=ray_cluster.address),
                  Console(file=log, width=160))
    assert outcome.exit_code == 0, log.getvalue()
    folder = store / "worker_exit"

    rows = _check_each_trial_once(folder, "worker_exit", samples, epochs)
    for r in rows:
        # the fault really fired in this trial (its marker is written just before os._exit)
        assert (folder / f".fault_worker_exit_{r['trial_id']}").is_file(), sorted(p.name for p in folder.iterdir())
        assert r["retries"] == 1, (r["trial_id"], r["retries"])  # Tune restarted it once ...
        assert r["start_epoch"] == 2, (r["trial_id"], r["start_epoch"])  # ... from epoch 2's checkpoint, not from zero
        assert r["epochs"] == epochs and r["duration_s"] > 0


# ---- item 4: a node lost while its trials run --------------------------------------------------------------

@pytest.mark.slow  # a cluster of its own, in a subprocess
def test_trials_of_a_lost_node_are_rescheduled_from_their_checkpoints(tmp_path, seeded_store):
    """On a fresh two-node cluster (in a subprocess: see tests/failure_driver.py), the worker node
    is removed while search trials run on it; they finish on the head from their checkpoints.
    Until then the head's CPUs are held, so every trial that ran before the loss ran on the worker."""
    epochs, samples = 24, 2  # short epochs, enough of them that a trial seen mid-way still runs when its node goes
    spec_file = write_study(tmp_path, "node_loss", baselines=[], finetune={"epochs": epochs},
                            search=search(num_samples=samples, max_concurrent=2))
    # the session's TINY base models are in the store: the cluster's time goes to the search trials
    store, report_file, log_file = seeded_store, tmp_path / "report.json", tmp_path / "study.log"
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}  # no injected faults here
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    driver = subprocess.Popen([sys.executable, str(REPO / "tests" / "failure_driver.py"), str(spec_file), str(store),
                               str(report_file), str(log_file)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = driver.communicate(timeout=420)  # a safety net: the driver's own deadlines are shorter
    except subprocess.TimeoutExpired:
        driver.terminate()  # SIGTERM: the driver tears its cluster down on the way out
        output, _ = driver.communicate(timeout=60)
    study_log = log_file.read_text() if log_file.exists() else "(no study log)"
    diagnostics = f"--- failure driver (rc {driver.returncode}) ---\n{output}\n--- study log ---\n{study_log}"
    assert driver.returncode == 0 and report_file.exists(), diagnostics
    report = json.loads(report_file.read_text())
    diagnostics = f"report: {json.dumps(report)}\n{diagnostics}"
    assert report["removed"], diagnostics
    assert report["exit_code"] == 0, diagnostics  # the study completed without the lost node
    assert report["worker_node"] not in report["alive_nodes"], diagnostics  # the node really left the cluster

    folder = store / "node_loss"
    rows = _check_each_trial_once(folder, "node_loss", samples, epochs)
    head, worker, midway = report["head_node"], report["worker_node"], report["midway_at_removal"]
    summary = [(r["trial_id"], r["node"], r["retries"], r["start_epoch"]) for r in rows]
    assert midway, report
    rescheduled = []
    for r in rows:
        if r["node"] == worker:  # finished before the loss (the head's CPUs were held): never restarted
            assert r["retries"] == 0 and r["start_epoch"] == 0, summary
            continue
        assert r["trial_id"] not in report["finished_at_removal"] and r["node"] == head, summary
        if r["trial_id"] in midway:
            # lost with its node mid-way: Tune restarted it (it may take more than one try while Ray
            # learns that the node is gone) from a checkpoint at least as recent as the one before
            # the last checkpoint seen on disk (index i: epoch i + 1), not from zero
            assert r["retries"] >= 1 and r["start_epoch"] >= midway[r["trial_id"]] >= 1, (summary, midway)
            rescheduled.append(r["trial_id"])
        if r["retries"] == 0:  # never restarted: trained all its epochs in one go
            assert r["start_epoch"] == 0, summary
    assert rescheduled, (summary, midway)  # at least one trial was caught by the loss and resumed elsewhere
