"""Node loss, driven from outside pytest (issue 8, item 4): used by tests/test_failures.py.

    python tests/failure_driver.py STUDY_FILE STORAGE_DIR REPORT_JSON STUDY_LOG

Starts a fresh two-node local Ray cluster (head: 2 CPUs, worker: 2 CPUs), holds the head's CPUs
with an idle actor (so that every trial runs on the worker until the node is lost, and the test
knows which trials the lost node held), runs the study on it with ``run_study.py run ... --address``
in a further process (as a user would), waits until a search trial is mid-way, removes the worker
node (its processes are killed, without a graceful shutdown, as when a machine is lost), frees the
head's CPUs (the lost trials resume there side by side), waits for the study to end, and writes what
it saw to REPORT_JSON. The cluster is torn down however this ends (SIGTERM included).

It runs in its own process because the pytest process is already connected to the session's Ray
cluster, which the other tests share and which must not lose a node.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mmc_sweep.study import faults

REPO = Path(__file__).resolve().parents[1]
STUDY_DEADLINE_S = 240.0  # safety nets only: the test takes about a minute
REMOVE_DEADLINE_S = 150.0


def _finished(folder: Path) -> set[str]:
    """Trial ids with a ``trials`` part file: the trial's rows are written (the commit)."""
    parts = folder / "results" / "trials"
    return {p.stem for p in parts.glob("*.parquet")} if parts.is_dir() else set()


def _checkpointed(folder: Path) -> dict[str, int]:
    """Search trial id -> the index of its newest epoch state on disk (0: after epoch 1); the study
    has no baselines, so every fine-tuning trial's state (one with a history) is a search trial's."""
    states = {p.stem: torch.load(p, weights_only=True) for p in (folder / "trial_states" / "study").glob("*.pt")}
    return {tune_id: len(state["history"]) - 1 for tune_id, state in states.items() if "history" in state}


def main(study_file: str, storage: str, report_path: str, log_path: str) -> int:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import yaml

    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = yaml.safe_load(Path(study_file).read_text())["name"]
    folder = Path(storage) / name
    report: dict = {"removed": False}
    started = time.monotonic()
    timeline = report["timeline_s"] = {}  # when each step happened (s), for the diagnostics
    # a lost machine is noticed by the GCS's health checks: check often so the test does not wait ~30 s
    system_config = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                     "health_check_failure_threshold": 4}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 80 * 2**20, "include_dashboard": False, "_system_config": system_config})
    study = None
    try:
        # connect while the head is the only node: Ray before 2.54 attaches this driver to any node of
        # the cluster, and a driver on the worker could not remove it
        ray.init(address=cluster.address, log_to_driver=False)
        worker = cluster.add_node(num_cpus=2, object_store_memory=80 * 2**20)
        cluster.wait_for_nodes()
        timeline["cluster_up"] = round(time.monotonic() - started, 1)
        report.update(address=cluster.address, head_node=cluster.head_node.node_id, worker_node=worker.node_id)
        # The head's CPUs are held until the worker is lost: every trial before that runs on the
        # worker (two at a time), every trial after it on the head.
        on_head = NodeAffinitySchedulingStrategy(cluster.head_node.node_id, soft=False)
        hold = _hold_class().options(scheduling_strategy=on_head).remote()
        ray.get(hold.ready.remote(), timeout=60)
        timeline["head_cpu_held"] = round(time.monotonic() - started, 1)

        env = {k: v for k, v in os.environ.items() if k != faults.ENV}  # no injected faults here
        env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        with open(log_path, "w") as log:
            study = subprocess.Popen([sys.executable, str(REPO / "run_study.py"), "run", study_file, "--storage", storage,
                                      "--address", cluster.address], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

        # Remove the worker once an unfinished search trial has its second epoch checkpoint on disk
        # (it runs on the worker: the head's CPUs are held). Two checkpoints, not one: the trial went on
        # past its first report, so Tune had registered a checkpoint, and the rescheduled trial must
        # resume from it, not from zero.
        deadline = time.monotonic() + REMOVE_DEADLINE_S
        while time.monotonic() < deadline and study.poll() is None:
            finished = _finished(folder)
            midway = {t: i for t, i in _checkpointed(folder).items() if t not in finished and i >= 1}
            if midway:
                report.update(midway_at_removal=midway, finished_at_removal=sorted(finished))
                cluster.remove_node(worker, allow_graceful=False)
                report["removed"] = True
                timeline["node_removed"] = round(time.monotonic() - started, 1)
                ray.kill(hold)  # the head's CPUs are free: the study goes on there
                break
            time.sleep(0.1)
        if not report["removed"]:
            report["why_not_removed"] = "the study ended first" if study.poll() is not None else "timed out waiting"
            study.terminate()
        report["exit_code"] = study.wait(timeout=STUDY_DEADLINE_S)
        timeline["study_ended"] = round(time.monotonic() - started, 1)
        report["alive_nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    except subprocess.TimeoutExpired:
        report["exit_code"] = None
        report["error"] = f"the study did not end within {STUDY_DEADLINE_S:.0f} s after the node was removed"
    finally:
        if study is not None and study.poll() is None:
            study.kill()
            study.wait()
        ray.shutdown()
        cluster.shutdown()
        Path(report_path).write_text(json.dumps(report, indent=1))
    return 0


def _hold_class():
    import ray

    @ray.remote(num_cpus=2)
    class Hold:
        """Holds the head's two CPUs, doing nothing."""

        def ready(self) -> bool:
            return True

    return Hold


def _stop(signum, frame):  # pytest's timeout sends SIGTERM: leave through `finally`, tearing the cluster down
    raise SystemExit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(main(*sys.argv[1:]))
