"""Kill -9 the driver mid-study, resume, and check nothing is lost, repeated or restarted from zero."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.dataset as ds
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from study_files import write_study

REPO = Path(__file__).resolve().parents[1]


def _driver(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "run_study.py"), *args], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _search_results(folder: Path) -> set[str]:
    parts = folder / "results" / "trials"
    names = {p.stem for p in parts.glob("*.parquet")} if parts.is_dir() else set()
    return {n for n in names if not n.startswith(("base_", "naive_ft_"))}


def _cut_mid_way(folder: Path, finished: set[str]) -> bool:
    """A search trial has written its fourth epoch checkpoint (Tune snapshots the experiment at
    least every second checkpoint, so the snapshot holds an earlier one) and has not finished."""
    for trial_dir in (folder / "tune" / "search").glob("search_trial_*"):
        done = any(t in trial_dir.name for t in finished)
        epochs = [int(m.group(1)) for c in trial_dir.glob("checkpoint_*") if (m := re.search(r"(\d+)$", c.name))]
        if not done and epochs and max(epochs) >= 3:
            return True
    return False


def test_kill_driver_then_resume(ray_cluster, tmp_path):
    store = tmp_path / "store"
    spec_file = write_study(tmp_path, "killed", finetune={"epochs": 10}, search={**_search(), "max_concurrent": 2})
    folder = store / "killed"
    driver = _driver(["run", str(spec_file), "--storage", str(store), "--address", ray_cluster.address], tmp_path / "run.log")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        finished = _search_results(folder)
        if finished and _cut_mid_way(folder, finished):
            break
        time.sleep(0.1)
    assert driver.poll() is None, "the study ended before it could be interrupted:\n" + (tmp_path / "run.log").read_text()
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert len(_search_results(folder)) < 4

    resumed = _driver(["resume", str(folder), "--address", ray_cluster.address], tmp_path / "resume.log")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "resume.log").read_text()

    rows = ds.dataset(str(folder / "results" / "trials"), format="parquet").to_table().to_pylist()
    search = [r for r in rows if r["role"] == "search"]
    assert len(search) == 4 and all(r["status"] == "completed" for r in search)
    assert len({r["trial_id"] for r in rows}) == len(rows)
    assert any(r["start_epoch"] > 0 for r in search), [r["start_epoch"] for r in search]  # resumed, not restarted
    history = ds.dataset(str(folder / "results" / "history"), format="parquet").to_table().to_pylist()
    for r in search:
        assert sorted(h["epoch"] for h in history if h["trial_id"] == r["trial_id"]) == list(range(1, 11))

    _wait_until_cluster_idle()  # the killed driver's trial actors are gone, not holding CPUs

    journal = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    states = [t.state for t in optuna.load_study(study_name="killed", storage=journal).trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) == 4  # every Tune trial told once


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
