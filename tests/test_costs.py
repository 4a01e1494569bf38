"""What each measurement costs (mmc_sweep.costs): seconds per phase, counted where they are spent."""
from __future__ import annotations

import time

import pytest
import torch

from mmc_sweep.config import AlignSpec, FinetuneSpec, PathSpec, QMCSpec, RevivalSpec
from mmc_sweep.costs import COST_PHASES, PhaseClock
from mmc_sweep.experiment import finetune_and_measure


def test_a_phase_counts_its_own_seconds_and_resumes_from_earlier_totals():
    clock = PhaseClock(torch.device("cpu"), {"finetune": 2.0})
    with clock.phase("paths"):
        time.sleep(0.05)
        assert 0.05 <= clock.so_far()["paths"] < 1.0 and clock.seconds["paths"] == 0.0  # open: in so_far only
    assert 0.05 <= clock.seconds["paths"] < 1.0
    assert clock.seconds["finetune"] == 2.0 and clock.seconds["align"] == clock.seconds["midpoint"] == 0.0
    assert set(clock.metrics()) == {f"cost_{p}_s" for p in COST_PHASES}
    with pytest.raises(KeyError):
        with clock.phase("training"):
            pass


@pytest.mark.parametrize("kinds", [("linear",), ("linear", "lmcp", "qmc")])
def test_each_phase_of_a_fine_tuning_trial_is_counted_once(trained_clean_pair, kinds):
    task, cue, clean = trained_clean_pair  # (two clean models: which model is the cue model does not matter here)
    paths = PathSpec(kinds=kinds, alphas=3, align=AlignSpec(batches=1, batch_size=64), qmc=QMCSpec(epochs=1, batch_size=64))
    clock = PhaseClock(torch.device("cpu"))
    started = time.perf_counter()
    revival = RevivalSpec(steps=(1, 2), batch_size=16) if "qmc" in kinds else RevivalSpec()  # and with revival off
    final, _, curve = finetune_and_measure(task, cue, clean, FinetuneSpec(method="naive_ft", epochs=1, n_clean=64), paths,
                                           clock=clock, revival=revival)
    wall = time.perf_counter() - started
    s = clock.seconds
    assert s["finetune"] > 0 and s["paths"] > 0
    assert (s["align"] > 0, s["midpoint"] > 0, s["revival"] > 0) == ("lmcp" in kinds, "qmc" in kinds, "qmc" in kinds), s
    assert [p["step"] for p in curve] == ([0, *revival.steps] if revival.steps else [])
    assert ("revival_steps" in final) == bool(revival.steps)
    assert sum(s.values()) <= wall  # no second counted twice
