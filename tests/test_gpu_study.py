"""The harness on a real GPU (`pytest -m gpu`): four 0.25-GPU Ray trials share one card at once,
each computing on it with its CUDA memory capped to its quarter. Skipped without CUDA."""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_quarter_gpu_trials_share_the_real_card_each_within_its_quarter(ray_cluster, tmp_path):
    from drivers import run_sampling_free_gpu, table
    from study_files import write_study

    # the session cluster's head advertises one GPU: here it is the real one (CUDA_VISIBLE_DEVICES=0)
    spec_file = write_study(tmp_path, "real_quarters", baselines=[], resources={"cpu": 0.25, "gpu": 0.25},
                            finetune={"epochs": 8})
    code, free_gpu = run_sampling_free_gpu(["run", str(spec_file), "--storage", str(tmp_path / "store")])
    assert code == 0
    assert min(free_gpu) == pytest.approx(0.0)  # four quarter trials held the card at once
    search = [r for r in table(tmp_path / "store" / "real_quarters", "trials") if r["role"] == "search"]
    assert len(search) == 4 and all(r["status"] == "completed" for r in search)
    assert all(r["device"].startswith("cuda:") for r in search), [r["device"] for r in search]
    quarter_mb = torch.cuda.get_device_properties(0).total_memory / 2**20 / 4
    assert all(0 < r["gpu_peak_mb"] < quarter_mb for r in search), [r["gpu_peak_mb"] for r in search]
