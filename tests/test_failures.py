"""Worker and node failures (issue 8, items 3 and 4): a trial whose worker dies is retried from its
last epoch checkpoint, and trials on a node that leaves the cluster are rescheduled on the others.

Real Ray, real Parquet, real Optuna journal; the faults are real too: a worker process that calls
``os._exit(1)`` (the library's test-only switch), and a Ray node whose processes are killed.
"""
from __future__ import annotations

import io
from pathlib import Path

import optuna
import pyarrow.dataset as ds
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from rich.console import Console

from drivers import assert_told_once, meanwhile
from mmc_sweep.study import faults
from study_files import search, write_study



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
def _checkpointed(folder: Path) -> dict[str, int]:
    """Search trial id -> the index of its newest epoch state on disk (0: after epoch 1); the study
    has no baselines, so every fine-tuning trial's state (one with a history) is a search trial's."""
    states = {p.stem: torch.load(p, weights_only=True) for p in (folder / "trial_states" / "study").glob("*.pt")}
    return {tune_id: len(state["history"]) - 1 for tune_id, state in states.items() if "history" in state}


def test_trials_of_a_lost_node_are_rescheduled_from_their_checkpoints(ray_cluster, tmp_path, seeded_store):
    """A third node joins the session's cluster and every trial runs there (the other nodes' CPUs
    are held); once a search trial is mid-way the node is removed without a graceful shutdown, as
    when a machine is lost (the session's head notices within about 2 s: tests/conftest.py); the
    held CPUs are freed and the lost trials finish on the other nodes from their checkpoints."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from mmc_sweep.cli import main

    epochs, samples = 24, 2  # short epochs, enough of them that a trial seen mid-way still runs when its node goes
    spec_file = write_study(tmp_path, "node_loss", baselines=[], finetune={"epochs": epochs},
                            search=search(num_samples=samples, max_concurrent=2))
    store, folder = seeded_store, seeded_store / "node_loss"  # the session's TINY base models: time goes to the search
    others = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    lost = ray_cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20)
    ray_cluster.wait_for_nodes()
    @ray.remote(num_cpus=1)  # each other node has one CPU (defined here: workers cannot import a test module)
    class Hold:
        def ready(self) -> bool:
            return True

    holds = [Hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote() for node in others]
    ray.get([h.ready.remote() for h in holds], timeout=60)
    seen: dict = {}

    def remove_when_midway() -> bool:  # an unfinished trial has its second epoch state: Tune registered the first
        finished = {p.stem for p in (folder / "results" / "trials").glob("*.parquet")}
        midway = {t: i for t, i in _checkpointed(folder).items() if t not in finished and i >= 1}
        if not midway:
            return False
        seen.update(midway=midway, finished=finished)
        ray_cluster.remove_node(lost, allow_graceful=False)
        for hold in holds:
            ray.kill(hold)  # the other nodes' CPUs are free: the study goes on there
        return True

    with meanwhile(remove_when_midway):
        code = main(["run", str(spec_file), "--storage", str(store), "--address", ray_cluster.address])
    assert seen, "the study ended before a trial was mid-way"
    assert code == 0  # the study completed without the lost node
    assert lost.node_id not in [n["NodeID"] for n in ray.nodes() if n["Alive"]]  # it really left the cluster

    rows = _check_each_trial_once(folder, "node_loss", samples, epochs)
    midway = seen["midway"]
    summary = [(r["trial_id"], r["node"], r["retries"], r["start_epoch"]) for r in rows]
    rescheduled = []
    for r in rows:
        if r["node"] == lost.node_id:  # finished before the loss (the other CPUs were held): never restarted
            assert r["retries"] == 0 and r["start_epoch"] == 0, summary
            continue
        assert r["trial_id"] not in seen["finished"] and r["node"] in others, summary
        if r["trial_id"] in midway:
            # lost with its node mid-way: Tune restarted it (it may take more than one try while Ray
            # learns that the node is gone) from a checkpoint at least as recent as the one before
            # the last checkpoint seen on disk (index i: epoch i + 1), not from zero
            assert r["retries"] >= 1 and r["start_epoch"] >= midway[r["trial_id"]] >= 1, (summary, midway)
            rescheduled.append(r["trial_id"])
        if r["retries"] == 0:  # never restarted: trained all its epochs in one go
            assert r["start_epoch"] == 0, summary
    assert rescheduled, (summary, midway)  # at least one trial was caught by the loss and resumed elsewhere
