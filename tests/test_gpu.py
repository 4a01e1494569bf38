"""GPU shares for real: run on a CUDA machine (`pytest -m gpu`); skipped cleanly without one."""
from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]  # (not from drivers: that needs optuna, which a GPU box may lack)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CAP_PROBE = """
import sys, torch
from mmc_sweep.gpu_share import claim_share
device = claim_share(0.25)
total = torch.cuda.get_device_properties(device).total_memory
small = torch.empty(int(0.10 * total), dtype=torch.uint8, device=device)  # inside the quarter
del small
try:
    torch.empty(int(0.40 * total), dtype=torch.uint8, device=device)  # beyond it
except torch.cuda.OutOfMemoryError:
    sys.exit(0)
sys.exit(3)
"""


def test_a_quarter_share_cannot_take_more_than_a_quarter_of_the_gpu():
    # a fresh process: the cap is per process, as a Ray trial worker's is
    done = subprocess.run([sys.executable, "-c", CAP_PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_trial_keeps_its_data_and_models_on_its_gpu_and_reports_its_peak():
    from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, PathSpec, TrainSpec
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import finetune_and_measure, train_base
    from mmc_sweep.gpu_share import claim_share, peak_mb

    device = claim_share(0.5)
    task = build_task(DataSpec(n_train=600, n_test=200), device)
    assert task.train.x.device.type == "cuda" and task.views["clean"].x.device.type == "cuda"
    cue, clean = (train_base(task, kind, ModelSpec(width=8), TrainSpec(epochs=1), device) for kind in ("cue", "clean"))
    final, rows = finetune_and_measure(task, cue, clean, FinetuneSpec(epochs=1, n_clean=100), PathSpec(alphas=3))
    assert all(p.device.type == "cuda" for p in cue.parameters())
    assert 0 < peak_mb(device) < 0.5 * torch.cuda.get_device_properties(device).total_memory / 2**20
    assert 0 <= final["acc_clean"] <= 1 and rows
