"""PlainSGD is torch's SGD, step for step, and training never imports torch's compiler (1.5 s at the
start of every trial's worker: mmc_sweep/train.py)."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmc_sweep.models import create_model
from mmc_sweep.train import PlainSGD

REPO = Path(__file__).resolve().parents[1]


def _train(optimizer_class, steps: int, resume_from: dict | None = None, **settings):
    """A small CNN after ``steps`` SGD steps under a decaying lr; (model, optimizer)."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=4, width=8)
    optimizer = optimizer_class(list(model.parameters()), lr=0.05, **settings)
    if resume_from is not None:  # a copy: loading keeps the checkpoint's momentum tensors, which steps change
        resume_from = copy.deepcopy(resume_from)
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9 ** step)
    gen = torch.Generator().manual_seed(1 if resume_from is None else 2)
    for _ in range(steps):
        x, y = torch.rand(8, 3, 16, 16, generator=gen), torch.randint(4, (8,), generator=gen)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        schedule.step()
    return model, optimizer


@pytest.mark.parametrize("settings", [dict(momentum=0.9, weight_decay=5e-4, nesterov=True),
                                      dict(momentum=0.9, weight_decay=1e-4, nesterov=False),
                                      dict(momentum=0.0, weight_decay=0.0)], ids=["nesterov", "heavy_ball", "plain"])
def test_plain_sgd_takes_torch_sgds_steps_bit_for_bit(settings):
    theirs, their_optimizer = _train(torch.optim.SGD, 5, **settings)
    ours, our_optimizer = _train(PlainSGD, 5, **settings)
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
    # the same state in the same format: a checkpoint of either goes on in the other, bit for bit
    mine, theirs_saved = our_optimizer.state_dict(), their_optimizer.state_dict()
    assert mine["param_groups"] == theirs_saved["param_groups"] and mine["state"].keys() == theirs_saved["state"].keys()
    checkpoint = {"model": ours.state_dict(), "optimizer": their_optimizer.state_dict()}
    continued_theirs, _ = _train(torch.optim.SGD, 3, resume_from=checkpoint, **settings)
    continued_ours, _ = _train(PlainSGD, 3, resume_from=checkpoint, **settings)
    for name, value in continued_theirs.state_dict().items():
        assert torch.equal(continued_ours.state_dict()[name], value), name


def test_training_fine_tuning_and_every_path_kind_never_import_the_compiler():
    # a fresh process: the test session imported torch._dynamo long ago
    code = """
import sys, torch
from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, PathSpec, QMCSpec, TrainSpec
from mmc_sweep.data import build_task
from mmc_sweep.experiment import finetune_and_measure, train_base
task = build_task(DataSpec(n_train=120, n_test=40))
model, train = ModelSpec(arch="small_cnn", width=8), TrainSpec(epochs=1, batch_size=64)
cue, clean = (train_base(task, kind, model, train, torch.device("cpu")) for kind in ("cue", "clean"))
finetune_and_measure(task, cue, clean, FinetuneSpec(method="cbft", epochs=1, n_clean=40, batch_size=20, cue_batch_size=20),
                     PathSpec(alphas=3, kinds=("linear", "lmcp", "qmc"), qmc=QMCSpec(epochs=1, batch_size=64)))
print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]", out.stdout
