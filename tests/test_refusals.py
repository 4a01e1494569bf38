"""Refusals that need more than the files and options (the bad-input corpus covers those): each exits
2 with one line before anything is written. A trial larger than every node needs the cluster; a
cluster that never answers is given up after --connect-timeout. A second driver and an Optuna study
owned by another folder are in the corpus (refused before Ray starts); a cluster's token refusal is in
test_cluster.py."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmc_sweep.cli import main
from study_files import write_study

REPO = Path(__file__).resolve().parents[1]


def test_a_trial_larger_than_every_node_is_refused_with_nothing_written(ray_cluster, tmp_path, capsys):
    spec_file = write_study(tmp_path, "huge", resources={"cpu": 1, "gpu": 2})
    code = main(["run", str(spec_file), "--storage", str(tmp_path / "store")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert lines == ["error: resources.gpu: 2 GPUs per trial, but the largest node of the Ray cluster has 1; "
                     "lower it in the study file or with --gpus-per-trial"]
    assert not (tmp_path / "store").exists()


@pytest.mark.slow  # a driver process of its own: a hung connect ends it with os._exit
def test_a_cluster_that_never_answers_is_given_up_after_the_connect_timeout(tmp_path):
    spec_file = write_study(tmp_path, "silent")
    with socket.socket() as listener:  # accepts connections and never says a word, like a hung head node
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        proc = subprocess.run([sys.executable, "run_study.py", "run", str(spec_file), "--storage", str(tmp_path / "store"),
                               "--address", address, "--connect-timeout", "3"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [f"error: --address {address}: no Ray cluster answered within 3 s"]
    assert not (tmp_path / "store").exists()
