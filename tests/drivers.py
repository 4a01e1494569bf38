"""Helpers for tests that drive `run_study.py` in a subprocess and look at what it left behind."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import optuna
import pyarrow.dataset as ds
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from mmc_sweep.study.search.record import TUNE_ID, row_id

REPO = Path(__file__).resolve().parents[1]


def driver(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """`python run_study.py ARGS` with its output in ``log`` (``env`` on top of ours)."""
    full_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen([sys.executable, str(REPO / "run_study.py"), *args], cwd=REPO, env=full_env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def resume_here(folder: Path, address: str, log: Path) -> int:
    """``run_study.py resume FOLDER --address ADDRESS`` in this process, its output in ``log``: a new
    driver as far as the study goes (this process never ran it), without a Python start-up."""
    from mmc_sweep.cli import main

    with log.open("w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return main(["resume", str(folder), "--address", address])


def run_with_fault(spec, options, point: str, monkeypatch) -> tuple[int, str]:
    """Run ``spec`` in this process with the fault switch ``point`` (``"POINT=VALUE"``, see
    mmc_sweep.study.faults) set on this driver; (exit code, everything it printed)."""
    from rich.console import Console

    from mmc_sweep.study import faults
    from mmc_sweep.study.run.runner import run

    monkeypatch.setenv(faults.ENV, point)
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out):
            code = run(spec, options, Console(file=out, width=400)).exit_code
    finally:
        monkeypatch.delenv(faults.ENV)
    return code, out.getvalue()


def run_signalled(spec, options, signal_at: str, monkeypatch) -> tuple[int, str]:
    """:func:`run_with_fault` with ``signal_at`` (e.g. ``"reference:TERM"``: the driver signals itself
    as that phase begins)."""
    return run_with_fault(spec, options, f"signal_at={signal_at}", monkeypatch)


def assert_stopped_cleanly(code: int, output: str, signal_at: str) -> None:
    """The exit code of the signal (130 / 143), said once, no traceback, and how to go on."""
    expected = {"INT": 130, "TERM": 143}[signal_at.partition(":")[2]]
    assert code == expected and "Traceback" not in output, (code, output[-3000:])
    assert "resume" in output or "nothing was written" in output, output[-3000:]


def run_sampling_free_gpu(args: list[str]) -> tuple[int, list[float]]:
    """``mmc_sweep.cli.main(args)`` in this process (on the session's Ray), and Ray's unclaimed GPU
    share sampled every 50 ms while it ran."""
    import ray

    from mmc_sweep.cli import main

    free_gpu: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            free_gpu.append(ray.available_resources().get("GPU", 0.0))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        code = main(args)
    finally:
        stop.set()
        watcher.join()
    return code, free_gpu


def table(folder: Path, name: str) -> list[dict]:
    """Every row of one results table of a study folder. While the study runs, its driver compacts the
    results when a stage ends: a file listed just before the swap is gone when opened, so read again
    (as the README tells every reader of a running study)."""
    parts = folder / "results" / name
    for attempt in range(5):
        try:
            return ds.dataset(str(parts), format="parquet").to_table().to_pylist() if parts.is_dir() else []
        except FileNotFoundError:
            if attempt == 4:
                raise


def search_results(folder: Path) -> set[str]:
    """Ids of the search trials whose row is written."""
    return {r["trial_id"] for r in table(folder, "trials") if r["role"] == "search"}


def trial_states(folder: Path) -> dict[str, dict]:
    """Search trial id -> the newest epoch state it saved (``<study>/trial_states/study/<Tune id>.pt``).
    A base model's state is there too (it has no history), and a baseline's, under its Tune id, but
    its history names its own id (``naive_ft_s0``)."""
    states = {p.stem: torch.load(p, weights_only=True) for p in (folder / "trial_states" / "study").glob("*.pt")}
    return {tune_id: s for tune_id, s in states.items()
            if "history" in s and all(h["trial_id"] == tune_id for h in s["history"])}


def latest_checkpoints(folder: Path) -> dict[str, int]:
    """Search trial id -> the index of its newest epoch state (0 = after epoch 1)."""
    return {trial_id: len(state["history"]) - 1 for trial_id, state in trial_states(folder).items()}


def in_tune_snapshot(folder: Path) -> str:
    """The text of the newest Tune experiment snapshot in the study's storage: the one a resume
    restores (each driver writes its own, named by when it started; an older one may hold trials the
    newest has dropped)."""
    snapshots = sorted((folder / "tune" / "study").glob("experiment_state-*.json"))
    return snapshots[-1].read_text() if snapshots else ""


def running_trial_ready(folder: Path, min_checkpoint: int, finished_before: int = 0, in_snapshot: bool = False) -> bool:
    """Whether ``finished_before`` search trials are written and one that is not has written checkpoint
    ``min_checkpoint`` or later (and, with ``in_snapshot``, is in Tune's experiment snapshot on disk)."""
    finished = search_results(folder)
    running = [name for name, k in latest_checkpoints(folder).items()
               if k >= min_checkpoint and not any(t in name for t in finished)]
    return len(finished) >= finished_before and bool(running) and (
        not in_snapshot or any(t in in_tune_snapshot(folder) for t in running))


def wait_for_running_trial(proc: subprocess.Popen, folder: Path, min_checkpoint: int, log: Path,
                           finished_before: int = 0, timeout_s: float = 240, in_snapshot: bool = False) -> None:
    """Until :func:`running_trial_ready` (the driver ``proc`` still running)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if running_trial_ready(folder, min_checkpoint, finished_before, in_snapshot):
            return
        time.sleep(0.05)
    raise AssertionError("the study ended (or hung) before it could be interrupted:\n" + log.read_text())


@contextlib.contextmanager
def meanwhile(step: Callable[[], bool]) -> Iterator[None]:
    """While the block runs (a driver in this process), call ``step()`` every 50 ms from another
    thread until it returns True (it did what it waited for)."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not step():
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def signal_when(ready: Callable[[], bool], signum: int) -> contextlib.AbstractContextManager:
    """While the block runs, send this process ``signum`` once ``ready()`` (Python runs the handler in
    the main thread, as for a signal from outside)."""
    return meanwhile(lambda: ready() and os.kill(os.getpid(), signum) is None)


def journal_trials(folder: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage).trials


STATE_OF_STATUS = {"completed": "COMPLETE", "failed": "FAIL", "pruned": "PRUNED"}
# the Optuna journal's own log: one JSON object per operation, in the order Optuna wrote them
CREATE_TRIAL, SET_TRIAL_STATE_VALUES, SET_TRIAL_USER_ATTR = 4, 6, 8  # optuna.storages.journal JournalOperation
FINISHED_STATES = {1, 2, 3}  # TrialState COMPLETE, PRUNED, FAIL


def assert_told_once(journal: Path, rows: list[dict]) -> None:
    """Read from the journal's log (every operation every driver wrote, not Optuna's replay of them,
    which keeps only the last): each Optuna trial was created once, tagged with its Tune trial at most
    once and finished exactly once, and the trials are the Parquet search rows, one to one (an
    untagged trial, whose driver died between Optuna's ask and the tag, as ``optuna_<number>``)."""
    ops = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    created = sum(op["op_code"] == CREATE_TRIAL for op in ops)  # one study per journal: trial id = number
    finished = Counter(op["trial_id"] for op in ops
                       if op["op_code"] == SET_TRIAL_STATE_VALUES and op["state"] in FINISHED_STATES)
    assert finished == Counter(range(created)), (created, finished)
    tags: dict[int, list[str]] = {}
    for op in ops:
        if op["op_code"] == SET_TRIAL_USER_ATTR and TUNE_ID in op["user_attr"]:
            tags.setdefault(op["trial_id"], []).append(op["user_attr"][TUNE_ID])
    assert all(len(t) == 1 for t in tags.values()), tags
    ids = sorted(tags.get(n, [f"optuna_{n}"])[0] for n in range(created))
    assert ids == sorted(r["trial_id"] for r in rows if r["role"] == "search"), ids


def assert_journal_matches_parquet(trials: list[optuna.trial.FrozenTrial], rows: list[dict], objectives: list[str]) -> None:
    """The Optuna record and the Parquet search rows hold the same trials, in the same states, with
    the same objective values."""
    search = {r["trial_id"]: r for r in rows if r["role"] == "search"}
    told = {row_id(t): t for t in trials}
    assert set(told) == set(search), (sorted(told), sorted(search))
    for trial_id, trial in told.items():
        row = search[trial_id]
        assert trial.state.name == STATE_OF_STATUS[row["status"]], (trial_id, trial.state, row["status"], row["error"])
        if row["status"] == "completed":
            assert all(math.isclose(v, row[o]) for v, o in zip(trial.values, objectives)), (trial.values, [row[o] for o in objectives])
