#!/usr/bin/env python
"""Benchmark: what the harness costs per trial, and how well it keeps the trial slots busy.

Runs the same N fine-tuning trials (about 10 s of compute each on one CPU thread) twice: through
the harness (a study's Ray Tune experiment with Optuna, two concurrent one-CPU trials, its base
models already stored) and as a plain sequential loop of the same trial function. The experiment
also measures the base pairs' paths (its reference jobs), so the loop does too: two base seeds, so
that the two short pair jobs take one slot each and the slots' work is balanced (with one, a slot
sits idle for the pair's few seconds at the end whatever the harness does). Last line:

    per_trial_overhead_s=<(wall x slots - summed trial compute) / N> slot_efficiency=<summed trial compute / (wall x slots)>

where a trial's compute time is what the trial function itself takes in the harness (a search
trial's ``duration_s``; a pair job's ``time_total_s`` in Tune's record), the first work of each fresh
worker process included, as it was when the search trials were an experiment of their own.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from ray.tune import ExperimentAnalysis
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
    base=BaseSpec(epochs=4, seeds=(0, 1)),  # the search fine-tunes seed 0's cue model
    finetune=FinetuneSpec(method="cbft", epochs=6, n_clean=500),
    search=SearchSpec(num_samples=N_TRIALS, sampler="grid", max_concurrent=SLOTS,
                      objectives=(ObjectiveSpec("acc_rand_cue", "max"),),
                      space=(ParamSpec(name="lr", type="categorical", choices=tuple(LRS)),)),
    paths=PathSpec(),
    resources=ResourceSpec(cpu=1, gpu=0),
)


def plain_loop(store: Store) -> tuple[list[float], float]:
    """The same trials, one after another, one thread, no Ray: the compute time of each, and of the
    base pairs' paths."""
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
    for seed in SPEC.base.seeds:
        task = build_task(SPEC.data)
        pair = (SPEC.base_model("cue", seed), SPEC.base_model("clean", seed))
        cue, clean = (load_base(store, key, task, device) for key in pair)
        measure_paths(task, {"cue_to_clean": Pair(cue, clean, pair)}, SPEC.paths, seed=seed)
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
        trials = ExperimentAnalysis(f"{folder}/{SPEC.name}/tune/study").trials
        pairs_in_harness = sum(t.last_result["time_total_s"] for t in trials if "job" in t.config)
        ray.shutdown()

        plain, base_pairs = plain_loop(store)
        harness_compute = sum(r["duration_s"] for r in rows) + pairs_in_harness
    plain_wall = sum(plain) + base_pairs
    overhead = (harness_wall * SLOTS - harness_compute) / N_TRIALS
    efficiency = harness_compute / (harness_wall * SLOTS)
    print(f"{N_TRIALS} trials, {SLOTS} slots: harness wall {harness_wall:.1f} s, summed trial compute "
          f"{harness_compute:.1f} s (mean {harness_compute / N_TRIALS:.1f} s); plain loop {plain_wall:.1f} s "
          f"(mean {plain_wall / N_TRIALS:.1f} s per trial); speedup over the loop {plain_wall / harness_wall:.2f}x")
    print(f"per_trial_overhead_s={overhead:.2f} slot_efficiency={efficiency:.3f}")


if __name__ == "__main__":
    main()
