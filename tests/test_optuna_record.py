"""Where Optuna's record lives (journal in the study, also in an object store; any Optuna storage
URL), diverged trials, and proposals that repeat a finished trial."""
from __future__ import annotations

import json
import signal

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from drivers import (assert_journal_matches_parquet, assert_stopped_cleanly, assert_told_once, driver, journal_trials, run_signalled,
                     running_trial_ready, search_results, signal_when, table, trial_states)
from extras import require
from mmc_sweep.cli import main
from mmc_sweep.study import faults
from mmc_sweep.study.definition.folder import load_resumable
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.run.runner import run
from object_store import start_s3_server
from postgres_server import PostgresServer
from study_files import search, write_study

OBJECTIVES = ["acc_rand_cue", "cue_reliance"]
# stopped after a trial's 4th epoch: Tune's stop lands epochs later (more on an object store, where 16
# once was too few: the trial had ended), and the trial must still be training then
STOP_EPOCHS = 24


@pytest.fixture
def s3(tmp_path):
    """A real S3-protocol server (moto) on 127.0.0.1 with a bucket ``bucket``, for one test."""
    proc, server = start_s3_server(tmp_path / "s3.log", "bucket")
    yield server
    proc.terminate()
    proc.wait(timeout=30)


def test_a_study_in_an_object_store_stopped_on_one_machine_resumes_on_another(ray_cluster, tmp_path, seeded_store, s3,
                                                                              capsys, monkeypatch):
    """A study at ``s3://bucket/studies?endpoint_override=…`` on a real S3 endpoint: results,
    checkpoints, Tune's experiment and the journal in the bucket. Stopped by SIGTERM (as a scheduler
    stops a job) late in a search trial; resumed by a fresh driver process on another machine (another
    home: no local copy of the journal) from the URI; read back with `status` and `analyze` from the
    URI. Exit 143; the stopped trials stay RUNNING (never FAIL) and `status` counts what is left; a
    trial stopped late goes on from its checkpoint, its clock too. NSGA-II, the quickstart's sampler,
    through Tune's snapshot and a resume (TPE: test_study_resume; random: first_study; grid:
    test_study_run)."""
    from mmc_sweep.study.definition.folder import load_resumable
    from mmc_sweep.study.run.jobs import study_status
    from mmc_sweep.study.storage.store import Store

    s3.upload(seeded_store / "models", "bucket/studies/models")  # the TINY base models, in the bucket
    storage, study = s3.uri("bucket/studies"), s3.uri("bucket/studies/remote")
    spec = write_study(tmp_path, "remote", finetune={"epochs": STOP_EPOCHS}, baselines=[],
                       search=search(num_samples=3, max_concurrent=2, sampler="nsga2"))
    mirror = tmp_path / "mirror"  # what the bucket holds, copied here to be looked at

    def refresh(*folders: str) -> None:
        for folder in folders or ("",):
            s3.download("/".join(filter(None, ("bucket/studies/remote", folder))), mirror / folder)

    def late_in_a_trial() -> bool:  # one trial written, another past its 4th epoch and in the snapshot a resume restores
        refresh("results/trials", "trial_states/study", "tune/study")  # (what it looks at, copied)
        return running_trial_ready(mirror, 3, finished_before=1, in_snapshot=True)

    monkeypatch.setenv("HOME", str(tmp_path / "home1"))  # the first machine (its journal cache is under its home)
    # Tune's snapshot (synced to the bucket) every 0.5 s, not every ~10 s: on a fast machine the whole
    # study takes about 10 s, and the trial to stop must be in a snapshot before it ends
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.5")
    with signal_when(late_in_a_trial, signal.SIGTERM):
        code = main(["run", str(spec), "--storage", storage, "--address", ray_cluster.address])
    output = capsys.readouterr()
    assert code == 143, output.out[-3000:] + output.err[-3000:]
    assert "resume" in output.out and "Traceback" not in output.out + output.err
    refresh()
    states = [t.state for t in journal_trials(mirror, "remote")]
    assert TrialState.COMPLETE in states and TrialState.RUNNING in states and TrialState.FAIL not in states, states
    before = search_results(mirror)
    assert 1 <= len(before) < 3
    assert main(["status", study, "--format", "json"]) == 0
    (search_part,) = [p for p in json.loads(capsys.readouterr().out)["parts"] if p["part"] == "search"]
    assert (search_part["completed"], search_part["expected"], search_part["missing"]) == (len(before), 3, 3 - len(before))
    # the Python API's form: a path on a pyarrow.fs file system the caller built
    spec_resumed, options = load_resumable("bucket/studies/remote", filesystem=s3.fs)
    assert next(p for p in study_status(spec_resumed, Store.open(options.storage, options.filesystem))
                if p["part"] == "search") == search_part
    elapsed_before = {trial: state["elapsed_s"] for trial, state in trial_states(mirror).items()}

    # resumed by a new driver process, as on another machine: another home, so no local copy of the journal
    second = driver(["resume", study, "--address", ray_cluster.address], tmp_path / "resume.log",
                    HOME=str(tmp_path / "home2"))
    assert second.wait(timeout=240) == 0, (tmp_path / "resume.log").read_text()
    refresh()
    trials = journal_trials(mirror, "remote")
    rows = table(mirror, "trials")
    assert_journal_matches_parquet(trials, rows, OBJECTIVES)
    assert_told_once(mirror / "optuna.journal", rows)
    search_rows = [r for r in rows if r["role"] == "search"]
    assert len(trials) == 3 and len(search_rows) == 3 and all(r["status"] == "completed" for r in search_rows)
    # each driver works on a copy under its own home and pushes it to the study in the bucket: the
    # resumed one (whose home had none) began from the bucket's copy and left it whole
    copies = [list((tmp_path / home / ".cache" / "mmc_sweep" / "journals").glob("*/optuna.journal")) for home in ("home1", "home2")]
    assert [len(c) for c in copies] == [1, 1], copies
    assert copies[1][0].read_bytes() == (mirror / "optuna.journal").read_bytes()
    assert len(copies[1][0].read_bytes()) > len(copies[0][0].read_bytes())  # it went on from where the first stopped
    # A trial stopped mid-way went on from its checkpoint (the last one Tune had registered: it lags
    # the epoch states on disk), and its clock carried on: its final checkpoint's elapsed time exceeds
    # the one before the stop (counting only the epochs after the restart would not), and its duration
    # covers both. A trial whose training had ended before the stop landed trains nothing more: its
    # clock is unchanged.
    elapsed_after = {trial: state["elapsed_s"] for trial, state in trial_states(mirror).items()}
    resumed = [r for r in search_rows if r["start_epoch"] > 0]
    assert any(r["start_epoch"] < STOP_EPOCHS for r in resumed), [r["start_epoch"] for r in search_rows]
    for r in resumed:
        trial_dir = next(d for d in elapsed_after if r["trial_id"] in d)
        if r["start_epoch"] < STOP_EPOCHS:
            assert elapsed_after[trial_dir] > elapsed_before[trial_dir], (elapsed_before[trial_dir], elapsed_after[trial_dir])
        else:
            assert elapsed_after[trial_dir] == elapsed_before[trial_dir]
        assert r["duration_s"] >= elapsed_after[trial_dir]
    # the analysis reads the study from the URI
    assert main(["analyze", study, "--format", "json", "--section", "summary"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["folder"], summary["search_finished"], summary["trials_completed"]) == (study, 3, len(rows))


def _dashboard_get(app, path: str) -> dict:
    """GET ``path`` from optuna-dashboard's WSGI app (the code its server runs), as JSON."""
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:500])
    return json.loads(body)


def test_an_optuna_record_in_postgresql(ray_cluster, tmp_path, seeded_store, monkeypatch):
    """``--optuna-storage postgresql://…`` against a real PostgreSQL server on 127.0.0.1: SIGTERM as the
    final compaction begins, Ctrl-C as the summary begins (each ends its run cleanly; the results are
    whole), a resume without the option finds the database again and ends the study, and
    optuna-dashboard reads the study from the database."""
    from mmc_sweep.study.definition.spec import load_study

    wsgi = require("optuna_dashboard").wsgi
    spec = load_study(write_study(tmp_path, "in_db", baselines=[], search=search(num_samples=2)))
    store = seeded_store
    with PostgresServer() as url:
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
        rows = table(store / "in_db", "trials")
        assert_journal_matches_parquet(trials, rows, OBJECTIVES)

        app = wsgi(url)
        (summary,) = _dashboard_get(app, "/api/studies")["study_summaries"]
        assert summary["study_name"] == "in_db"
        detail = _dashboard_get(app, f"/api/studies/{summary['study_id']}")
        shown = {next(a["value"] for a in t["user_attrs"] if a["key"] == "tune_trial_id"): t["values"]
                 for t in detail["trials"] if t["state"] == "Complete"}
        assert shown == {r["trial_id"]: [r[o] for o in OBJECTIVES] for r in rows
                         if r["role"] == "search" and r["status"] == "completed"}


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
    assert_told_once(folder / "optuna.journal", table(folder, "trials"))  # a reused result is told once too


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
