"""Where Optuna's record lives (journal in the study, also on non-local storage; any Optuna storage
URL), diverged trials, and proposals that repeat a finished trial."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import optuna
import pyarrow.fs as pafs
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from rich.console import Console

from drivers import (REPO, assert_journal_matches_parquet, assert_stopped_cleanly, run_signalled, search_results, table,
                     trial_states, wait_for_running_trial)
from mmc_sweep.study import faults
from mmc_sweep.study.definition.folder import load_resumable
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.run.runner import run
from study_files import search, write_study

OBJECTIVES = ["acc_rand_cue", "cue_reliance"]


def _uri_driver(bucket, study_file: str, address: str, home, log) -> subprocess.Popen:
    """A fresh driver process whose home (so its local journal cache) is ``home``: another machine."""
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "uri_driver.py"), str(bucket), study_file, address],
                            cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


STOP_EPOCHS = 16  # stopped after a trial's 4th epoch: Tune's stop lands epochs later, the trial must still be training


def test_a_study_stopped_on_one_machine_resumes_on_another_from_non_local_storage(ray_cluster, tmp_path, seeded_store,
                                                                                  monkeypatch):
    """Stopped by SIGTERM (as a scheduler stops a job) late in a search trial, on one machine; resumed
    on another. Exit 143; the stopped trials stay RUNNING (never FAIL) and `status` counts what is left;
    the journal travels in the storage; a trial stopped late goes on from its checkpoint, its clock
    too. NSGA-II, the quickstart's sampler, through Tune's snapshot and a resume (TPE:
    test_study_resume; random: first_study; grid: test_study_run)."""
    from mmc_sweep.study.run.jobs import study_status
    from mmc_sweep.study.storage.store import Store

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    seeded_store.rename(bucket / "studies")  # the storage root in the bucket, with the TINY base models
    spec = write_study(tmp_path, "remote", finetune={"epochs": STOP_EPOCHS}, baselines=[],
                       search=search(num_samples=3, max_concurrent=2, sampler="nsga2"))
    folder = bucket / "studies" / "remote"
    log = tmp_path / "run.log"
    first = _uri_driver(bucket, str(spec), ray_cluster.address, tmp_path / "home1", log)
    wait_for_running_trial(first, folder, 3, log, finished_before=1)
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=120) == 143, log.read_text()
    assert "resume" in log.read_text() and "Traceback" not in log.read_text()
    stored = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    states = [t.state for t in optuna.load_study(study_name="remote", storage=stored).trials]
    assert TrialState.COMPLETE in states and TrialState.RUNNING in states and TrialState.FAIL not in states, states
    before = search_results(folder)
    assert 1 <= len(before) < 3
    fs = pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem())
    spec_resumed, options = load_resumable("studies/remote", filesystem=fs)
    search_part = next(p for p in study_status(spec_resumed, Store.open("studies", fs)) if p["part"] == "search")
    assert (search_part["completed"], search_part["expected"], search_part["missing"]) == (len(before), 3, 3 - len(before))
    elapsed_before = {trial: state["elapsed_s"] for trial, state in trial_states(folder).items()}

    # resumed here, as on another machine: another home, so no local copy of the journal
    monkeypatch.setenv("HOME", str(tmp_path / "home2"))
    options = RunOptions(storage=options.storage, filesystem=fs, address=ray_cluster.address)
    out = io.StringIO()
    assert run(spec_resumed, options, Console(file=out, width=160)).exit_code == 0, out.getvalue()
    stored = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    trials = optuna.load_study(study_name="remote", storage=stored).trials
    rows = table(folder, "trials")
    assert_journal_matches_parquet(trials, rows, OBJECTIVES)
    search_rows = [r for r in rows if r["role"] == "search"]
    assert len(trials) == 3 and len(search_rows) == 3 and all(r["status"] == "completed" for r in search_rows)
    # each driver works on a copy under its own home and pushes it to the study in the storage: the
    # resumed one (whose home had none) began from the storage's copy and left it whole
    copies = [list((tmp_path / home / ".cache" / "mmc_sweep" / "journals").glob("*/optuna.journal")) for home in ("home1", "home2")]
    assert [len(c) for c in copies] == [1, 1], copies
    assert copies[1][0].read_bytes() == (folder / "optuna.journal").read_bytes()
    assert len(copies[1][0].read_bytes()) > len(copies[0][0].read_bytes())  # it went on from where the first stopped
    # A trial stopped mid-way went on from its checkpoint (the last one Tune had registered: it lags
    # the epoch states on disk), and its clock carried on: its final checkpoint's elapsed time exceeds
    # the one before the stop (counting only the epochs after the restart would not), and its duration
    # covers both. A trial whose training had ended before the stop landed trains nothing more: its
    # clock is unchanged.
    elapsed_after = {trial: state["elapsed_s"] for trial, state in trial_states(folder).items()}
    resumed = [r for r in search_rows if r["start_epoch"] > 0]
    assert any(r["start_epoch"] < STOP_EPOCHS for r in resumed), [r["start_epoch"] for r in search_rows]
    for r in resumed:
        trial_dir = next(d for d in elapsed_after if r["trial_id"] in d)
        if r["start_epoch"] < STOP_EPOCHS:
            assert elapsed_after[trial_dir] > elapsed_before[trial_dir], (elapsed_before[trial_dir], elapsed_after[trial_dir])
        else:
            assert elapsed_after[trial_dir] == elapsed_before[trial_dir]
        assert r["duration_s"] >= elapsed_after[trial_dir]


def test_any_optuna_storage_url(ray_cluster, tmp_path, seeded_store, monkeypatch):
    """Also: SIGTERM as the final compaction begins, Ctrl-C as the summary begins (each ends its run
    cleanly; the results are whole; a resume ends the study)."""
    from mmc_sweep.study.definition.spec import load_study

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = load_study(write_study(tmp_path, "in_db", baselines=[], search=search(num_samples=2)))
    store = seeded_store
    options = RunOptions(storage=str(store), address=ray_cluster.address, optuna_storage=url)
    code, output = run_signalled(spec, options, "compaction:TERM", monkeypatch)
    assert_stopped_cleanly(code, output, "compaction:TERM")
    assert "results compacted" in output  # the compaction it interrupted finished first
    trials = optuna.load_study(study_name="in_db", storage=url).trials
    assert_journal_matches_parquet(trials, table(store / "in_db", "trials"), OBJECTIVES)
    assert not (store / "in_db" / "optuna.journal").exists()
    # a resume without --optuna-storage finds the database again (remembered in the study)
    _, options = load_resumable(str(store / "in_db"))
    code, output = run_signalled(spec, options, "summary:INT", monkeypatch)
    assert_stopped_cleanly(code, output, "summary:INT")
    assert run(spec, options).exit_code == 0
    trials = optuna.load_study(study_name="in_db", storage=url).trials
    assert len(trials) == 2
    assert_journal_matches_parquet(trials, table(store / "in_db", "trials"), OBJECTIVES)


def test_diverged_trials_fail_and_repeated_proposals_reuse_results(ray_cluster, tmp_path, seeded_store):
    """lr 1e38 diverges in its first epoch: a failed row, FAIL in Optuna, never retried. The random
    sampler proposes each of the two settings more than once: a repeat of a completed trial reuses
    its result (same values, rows copied, no training), recorded with reused_from."""
    from mmc_sweep.study.definition.spec import load_study

    space = {"lr": {"type": "categorical", "choices": [0.05, 1.0e38]}}
    spec = load_study(write_study(tmp_path, "dup", baselines=[], finetune={"method": "naive_ft", "epochs": 2},
                                  search=search(num_samples=6, max_concurrent=1, space=space)))
    store = seeded_store
    assert run(spec, RunOptions(storage=str(store), address=ray_cluster.address)).exit_code == 0
    folder = store / "dup"
    rows = [r for r in table(folder, "trials") if r["role"] == "search"]
    assert len(rows) == 6
    diverged = [r for r in rows if r["param_lr"] > 1]
    fine = [r for r in rows if r["param_lr"] < 1]
    assert diverged and all(r["status"] == "failed" and "diverged" in r["error"] and r["retries"] == 0 for r in diverged)
    assert all(r["status"] == "completed" for r in fine)
    originals = [r for r in fine if r["reused_from"] is None]
    copies = [r for r in fine if r["reused_from"] is not None]
    assert len(originals) == 1 and len(copies) == len(fine) - 1 >= 1, [(r["param_lr"], r["reused_from"]) for r in rows]
    source = originals[0]
    history = table(folder, "history")
    for copy in copies:
        assert copy["reused_from"] == source["trial_id"]
        assert [copy[o] for o in OBJECTIVES] == [source[o] for o in OBJECTIVES]
        assert sorted(h["epoch"] for h in history if h["trial_id"] == copy["trial_id"]) == [1, 2]
    trials = optuna.load_study(study_name="dup", storage=JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))).trials
    assert_journal_matches_parquet(trials, table(folder, "trials"), OBJECTIVES)


def test_a_non_finite_final_metric_fails_the_trial_and_the_study(ray_cluster, tmp_path, seeded_store, monkeypatch):
    """A fine-tuned model whose final loss on a view is NaN (fault point ``nan_metric``): the trial is
    failed, its row names the metric and the view, Optuna is told FAIL; with no completed search trial
    the study exits 1."""
    from mmc_sweep.study.definition.spec import load_study

    monkeypatch.setenv(faults.ENV, "nan_metric=rand_img")  # read on this driver, passed to every trial
    spec = load_study(write_study(tmp_path, "nan", baselines=[], search=search(num_samples=2, max_concurrent=2)))
    assert run(spec, RunOptions(storage=str(seeded_store), address=ray_cluster.address)).exit_code == 1
    folder = seeded_store / "nan"
    rows = table(folder, "trials")
    search_rows = [r for r in rows if r["role"] == "search"]
    assert len(search_rows) == 2, search_rows
    for r in search_rows:
        assert r["status"] == "failed" and r["loss_rand_img"] is None, r
        assert r["error"].startswith("NonFiniteMetricError: non-finite loss_rand_img (nan) on the rand_img view"), r["error"]
    assert [r["status"] for r in rows if r["role"] == "base"] == ["completed", "completed"]  # the base pair: models, not fine-tuned
    trials = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    told = optuna.load_study(study_name="nan", storage=trials).trials
    assert [t.state for t in told] == [TrialState.FAIL] * 2
    assert_journal_matches_parquet(told, rows, OBJECTIVES)
