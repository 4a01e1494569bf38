"""GPU shares for real: run on a CUDA machine (`pytest -m gpu`); skipped cleanly without one."""
from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import pytest
import torch

from mmc_sweep.gpu_share import claim_share

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
    from mmc_sweep.gpu_share import peak_mb

    device = claim_share(0.5)
    task = build_task(DataSpec(n_train=600, n_test=200), device)
    assert task.train.x.device.type == "cuda" and task.views["clean"].x.device.type == "cuda"
    cue, clean = (train_base(task, kind, ModelSpec(width=8), TrainSpec(epochs=1), device) for kind in ("cue", "clean"))
    final, rows, _ = finetune_and_measure(task, cue, clean, FinetuneSpec(epochs=1, n_clean=100), PathSpec(alphas=3))
    assert all(p.device.type == "cuda" for p in cue.parameters())
    assert 0 < peak_mb(device) < 0.5 * torch.cuda.get_device_properties(device).total_memory / 2**20
    assert 0 <= final["acc_clean"] <= 1 and rows


def _synchronising_calls(run) -> list[str]:
    """``file:line`` of every call in ``run()`` that made the host wait for the GPU (CUDA's sync debug mode)."""
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


@pytest.mark.parametrize("update", ["joint", "alternating"])
def test_cbft_steps_never_wait_for_the_gpu(update):
    """Only each epoch's mean loss is read back: a trial sharing its GPU queues work ahead of it."""
    from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import new_model
    from mmc_sweep.finetune import cue_pool, finetune

    device = claim_share(1.0)
    task = build_task(DataSpec(n_train=600, n_test=200), device)
    spec = FinetuneSpec(method="cbft", epochs=2, n_clean=256, batch_size=32, cue_batch_size=32, lambda_invariance=1.0,
                        warmup_epochs=0, t_distribution="beta", update=update)
    cue, clean = new_model(task, ModelSpec(width=8), 0, device), task.clean_subset(spec.n_clean, 0)
    pool = cue_pool(task, spec)
    finetune(cue, clean, spec, cue_data=pool)  # warm-up: allocator and cuDNN set up outside the count
    waits = _synchronising_calls(lambda: finetune(cue, clean, spec, cue_data=pool))
    assert len(waits) == spec.epochs and {w.split(":")[0] for w in waits} == {"train.py"}, waits


def test_a_path_point_waits_for_the_gpu_once():
    from mmc_sweep.config import BNResetSpec, DataSpec, ModelSpec, PathSpec
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import new_model
    from mmc_sweep.paths.evaluate import evaluate_path

    device = claim_share(1.0)
    task = build_task(DataSpec(n_train=600, n_test=200), device)
    a, b = (new_model(task, ModelSpec(width=8), seed, device).eval() for seed in (0, 1))
    spec = PathSpec(alphas=3, bn_reset=BNResetSpec(mode="cumulative", batches=4, batch_size=32))
    measure = lambda: evaluate_path(a, b, task.views, spec, bn_data={"clean": task.train_clean})  # noqa: E731
    measure()
    waits = _synchronising_calls(measure)
    assert len(waits) == spec.alphas and {w.split(":")[0] for w in waits} == {"metrics.py"}, waits

