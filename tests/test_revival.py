"""Cue revival (issue 20, item 3, library part): a fine-tuned model re-trained on cue data, its cue
reliance after each step count. Real training on the embedded data."""
from __future__ import annotations

import math

import pytest
import torch

from mmc_sweep.config import ModelSpec, RevivalSpec, TrainSpec
from mmc_sweep.experiment import train_base
from mmc_sweep.metrics import view_metrics
from mmc_sweep.revival import revival_auc, revival_curve, revival_steps

SPEC = RevivalSpec(steps=(1, 4, 16, 64), lr=0.05, batch_size=64)


@pytest.fixture(scope="module")
def cue_model(trained_clean_pair):
    task = trained_clean_pair[0]
    return train_base(task, "cue", ModelSpec(width=16), TrainSpec(epochs=2, seed=0), torch.device("cpu"))


def test_the_cue_model_needs_no_step_and_a_clean_model_needs_some(trained_clean_pair, cue_model):
    task, clean, _ = trained_clean_pair
    reliance = view_metrics(cue_model, task.views)["cue_reliance"]
    assert reliance > 0.3  # it follows the cue: there is something to revive
    cue_curve = revival_curve(task, cue_model, SPEC)
    assert [p["step"] for p in cue_curve] == [0, 1, 4, 16, 64]
    assert cue_curve[0]["cue_reliance"] == pytest.approx(reliance)  # step 0 is the model as it is
    assert revival_steps(cue_curve, reliance) == 0

    before = {k: v.clone() for k, v in clean.state_dict().items()}
    clean_curve = revival_curve(task, clean, SPEC)
    assert all(torch.equal(v, clean.state_dict()[k]) for k, v in before.items())  # re-trained a copy
    assert clean_curve[0]["cue_reliance"] < reliance / 2  # a clean model ignores the cue ...
    assert clean_curve[-1]["cue_reliance"] > clean_curve[0]["cue_reliance"] + 0.1  # ... and learns it on cue data
    steps = revival_steps(clean_curve, reliance)
    assert 0 < steps < math.inf, clean_curve  # half the cue model's reliance, within 64 steps
    assert revival_auc(clean_curve) < revival_auc(cue_curve)
    assert revival_curve(task, clean, SPEC) == clean_curve  # its own seed stream: the same curve again


def test_steps_and_area_by_hand():
    curve = [{"step": 0, "cue_reliance": 0.0}, {"step": 2, "cue_reliance": 0.2}, {"step": 8, "cue_reliance": 0.5}]
    assert revival_steps(curve, cue_model_reliance=0.8) == 8  # the first count at or above 0.4
    assert revival_steps(curve, cue_model_reliance=1.2) == math.inf  # 0.6 is never reached
    assert revival_auc(curve) == pytest.approx(0.7 / 3)


@pytest.mark.parametrize("bad, key", [({"steps": (0, 2)}, "revival.steps"), ({"steps": (4, 2)}, "revival.steps"),
                                      ({"lr": 0.0}, "revival.lr"), ({"batch_size": 0}, "revival.batch_size")])
def test_bad_settings_are_refused(bad, key):
    with pytest.raises(ValueError, match=key):
        RevivalSpec(**bad)
