"""A storage that fills up mid-study: one clear line, exit 1, nothing written half; after space is
freed, resume finishes the study with every trial exactly once. The full storage is injected into
the study's store: the driver's writes (fault point ``disk_full_after``: they fail with ENOSPC from
the Nth on), then each trial worker's (``worker_disk_full_after``)."""
from __future__ import annotations

from optuna.trial import TrialState

from drivers import assert_journal_matches_parquet, assert_told_once, journal_trials, run_with_fault, table
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import load_study
from mmc_sweep.study.run.runner import run
from mmc_sweep.study.storage.results import check_results_readable
from mmc_sweep.study.storage.store import Store
from study_files import search, write_study

OBJECTIVES = ["acc_rand_cue", "cue_reliance"]


def _run_on_a_full_storage(spec, options, monkeypatch, point: str) -> str:
    """Run ``spec`` with the fault ``point`` set; it must end with exit 1 and one line saying the
    storage is full (returned), no traceback."""
    code, output = run_with_fault(spec, options, point, monkeypatch)
    said = [line for line in output.splitlines() if "storage is full" in line]
    assert code == 1 and "Traceback" not in output and len(said) == 1, output[-3000:]
    assert "No space left on device" in said[0] and "resume" in said[0], said
    return said[0]


def test_a_full_storage_stops_the_study_in_one_line_and_resume_finishes_it(ray_cluster, tmp_path, seeded_store,
                                                                          monkeypatch):
    spec = load_study(write_study(tmp_path, "full", baselines=[], search=search(num_samples=3, max_concurrent=1)))
    options = RunOptions(storage=str(seeded_store), address=ray_cluster.address)
    folder = seeded_store / "full"
    # 1. the driver: the study file, the base pair's rows (3 files) and one search trial's (3) fit, the next does not
    said = _run_on_a_full_storage(spec, options, monkeypatch, "disk_full_after=7")
    assert str(folder / "results") in said  # names where the write went
    written = [r for r in table(folder, "trials") if r["role"] == "search"]
    assert len(written) == 1, written  # what fitted is whole and readable, nothing half-written
    check_results_readable(Store.open(str(seeded_store)), "full")
    assert not [p for p in (folder / "results").rglob(".*")], "a temporary file was left behind"

    # 2. space freed, then a worker fills it: each trial worker's first epoch state fits, its second does not
    said = _run_on_a_full_storage(spec, options, monkeypatch, "worker_disk_full_after=1")
    assert str(folder / "trial_states") in said
    assert TrialState.FAIL not in [t.state for t in journal_trials(folder, "full")]  # the trial is not at fault
    assert all(r["status"] == "completed" for r in table(folder, "trials"))

    # 3. space freed: the resume writes what did not fit, goes on from the epoch states and ends the study
    assert run(spec, options).exit_code == 0
    rows = table(folder, "trials")
    search_rows = [r for r in rows if r["role"] == "search"]
    assert len(search_rows) == 3 and all(r["status"] == "completed" for r in search_rows), search_rows
    assert any(r["start_epoch"] > 0 for r in search_rows), [r["start_epoch"] for r in search_rows]
    assert len({r["trial_id"] for r in rows}) == len(rows)
    assert_journal_matches_parquet(journal_trials(folder, "full"), rows, OBJECTIVES)
    assert_told_once(folder / "optuna.journal", rows)
