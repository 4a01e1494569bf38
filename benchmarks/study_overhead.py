#!/usr/bin/env python
"""Benchmark: what the harness costs per trial, and how well it keeps the trial slots busy.

Runs the same N fine-tuning trials (about 10 s of compute each on one CPU thread) twice: through
the harness (a study's Ray Tune experiment with Optuna, two concurrent one-CPU trials, its base
models already stored) and as a plain sequential loop of the same trial function. The experiment
also measures the base pair's path (its one reference job), so the loop does too. Last line:

    per_trial_overhead_s=<(wall x slots - summed trial compute) / N> slot_efficiency=<summed trial compute / (wall x slots)>

where a trial's compute time is what the trial function itself takes (its ``duration_s``); the base
pair's is its time in the loop.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from rich.console import Console

from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, PathSpec
from mmc_sweep.data import build_task
from mmc_sweep.experiment import Pair, finetune_and_measure, measure_paths
from mmc_sweep.study.definition.folder import prepare_study_folder
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import BaseSpec, ObjectiveSpec, ParamSpec, ResourceSpec, SearchSpec, StudySpec
from mmc_sweep.study.run.cluster import connect_ray
from mmc_sweep.study.run.stages import run_stages
from mmc_sweep.study.storage.artifacts import load_base
from mmc_sweep.study.storage.results import read_trials
from mmc_sweep.study.storage.store import Store

N_TRIALS = 8
SLOTS = 2  # concurrent one-CPU trials on the 2-core machine
LRS = [0.01 + 0.005 * i for i in range(N_TRIALS)]  # one grid point per trial: the same trials both ways

SPEC = StudySpec(
    name="overhead",
    data=DataSpec(n_test=1000),
    model=ModelSpec(),
    base=BaseSpec(epochs=4, seeds=(0,)),
    finetune=FinetuneSpec(method="cbft", epochs=6, n_clean=500),
    search=SearchSpec(num_samples=N_TRIALS, sampler="grid", max_concurrent=SLOTS,
                      objectives=(ObjectiveSpec("acc_rand_cue", "max"),),
                      space=(ParamSpec(name="lr", type="categorical", choices=tuple(LRS)),)),
    paths=PathSpec(),
    resources=ResourceSpec(cpu=1, gpu=0),
)


def plain_loop(store: Store) -> tuple[list[float], float]:
    """The same trials, one after another, one thread, no Ray: the compute time of each, and of the
    base pair's path."""
    torch.set_num_threads(1)
    device = torch.device("cpu")
    keys = (SPEC.base_model("cue", 0), SPEC.base_model("clean", 0))
    times = []
    for lr in LRS:
        start = time.perf_counter()
        task = build_task(SPEC.data)
        cue, clean = (load_base(store, key, task, device) for key in keys)
        finetune_and_measure(task, cue, clean, dataclasses.replace(SPEC.finetune, lr=lr), SPEC.paths,
                             on_epoch=lambda epoch, metrics, checkpoint: checkpoint())
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    task = build_task(SPEC.data)
    cue, clean = (load_base(store, key, task, device) for key in keys)
    measure_paths(task, {"cue_to_clean": Pair(cue, clean, keys)}, SPEC.paths, seed=0)
    return times, time.perf_counter() - start


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(folder)
        options = RunOptions(storage=folder)
        connect_ray(options)
        import ray

        warm_up = dataclasses.replace(SPEC, name="overhead_base", search=dataclasses.replace(SPEC.search, num_samples=1))
        for spec in (warm_up, SPEC):  # the first trains the base models, which are not part of the measurement
            prepare_study_folder(store, spec)
            outcome = run_stages(spec, store, options, console)
        harness_wall = outcome.seconds["search"]  # the experiment, its base models found
        rows = [r for r in read_trials(store, SPEC.name).to_pylist() if r["role"] == "search"]
        assert len(rows) == N_TRIALS and all(r["status"] == "completed" for r in rows), rows
        ray.shutdown()

        plain, base_pair = plain_loop(store)
        harness_compute = sum(r["duration_s"] for r in rows) + base_pair
    plain_wall = sum(plain) + base_pair
    overhead = (harness_wall * SLOTS - harness_compute) / N_TRIALS
    efficiency = harness_compute / (harness_wall * SLOTS)
    print(f"{N_TRIALS} trials, {SLOTS} slots: harness wall {harness_wall:.1f} s, summed trial compute "
          f"{harness_compute:.1f} s (mean {harness_compute / N_TRIALS:.1f} s); plain loop {plain_wall:.1f} s "
          f"(mean {plain_wall / N_TRIALS:.1f} s per trial); speedup over the loop {plain_wall / harness_wall:.2f}x")
    print(f"per_trial_overhead_s={overhead:.2f} slot_efficiency={efficiency:.3f}")


if __name__ == "__main__":
    main()
