"""Refusals that need more than the files and options: each exits 2 with one line before anything is
written. A trial larger than every node needs the cluster (here). Elsewhere: a second driver and an
Optuna study owned by another folder (refused before Ray starts) in the bad-input corpus; a cluster's
token refusal in test_cluster.py; a cluster that never answers in test_interrupts.py."""
from __future__ import annotations

from mmc_sweep.cli import main
from study_files import write_study


def test_a_trial_larger_than_every_node_is_refused_with_nothing_written(ray_cluster, tmp_path, capsys):
    spec_file = write_study(tmp_path, "huge", resources={"cpu": 1, "gpu": 2})
    code = main(["run", str(spec_file), "--storage", str(tmp_path / "store")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert lines == ["error: resources.gpu: 2 GPUs per trial, but the largest node of the Ray cluster has 1; "
                     "lower it in the study file or with --gpus-per-trial"]
    assert not (tmp_path / "store").exists()
