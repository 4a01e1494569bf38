"""What one Ray Tune trial does: train a base model, or fine-tune the cue model and measure it.

Every trial reports per-epoch metrics with an epoch checkpoint (``ray.tune.report``), resumes from
``ray.tune.get_checkpoint()`` when restarted, and ends with one report holding its result rows as
JSON (``rows_json``), which the driver's results sink writes to Parquet.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from mmc_sweep.config import DataSpec, FinetuneSpec, to_dict
from mmc_sweep.data import CueTask, build_task
from mmc_sweep.experiment import Pair, device_label, finetune_and_measure, measure_paths, train_base
from mmc_sweep.finetune import total_epochs
from mmc_sweep.metrics import view_metrics
from mmc_sweep.study.artifacts import StoreMidpoints, has_base, load_base, model_folder, save_base
from mmc_sweep.study.results import PARAM_TYPES
from mmc_sweep.study.spec import StudySpec
from mmc_sweep.study.store import Store
from mmc_sweep.train import load_state

STATE_FILE = "state.pt"
ROWS_KEY = "rows_json"  # the final report's key holding {"trials": [...], "paths": [...], "history": [...]}


@functools.lru_cache(maxsize=2)
def _cpu_task(data: DataSpec) -> CueTask:
    """Built once per worker process and data spec: Tune reuses actors, so later trials skip it."""
    return build_task(data)


def _setup(cpus: float) -> torch.device:
    """Torch threads = the trial's CPUs; CUDA only when Ray assigned a GPU and CUDA works."""
    torch.set_num_threads(max(1, int(cpus)))
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _report_epoch(metrics: dict[str, Any], state: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / STATE_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _restored_state() -> dict | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return load_state(Path(folder) / STATE_FILE)


# ---- base models: content-addressed under <storage>/models/<hash>/ (see artifacts) ---------------------

def base_trial(config: dict, *, spec: StudySpec, store_uri: str, cpus: float) -> None:
    """Train one base model (config: kind, seed, cue_proportion) unless the store already has it."""
    device = _setup(cpus)
    store = Store.open(store_uri)
    job = config["job"]
    key = spec.base_model(job["kind"], job["seed"], job["cue_proportion"])
    if has_base(store, key):
        tune.report({"epoch": 0, "reused": 1})
        return
    task = _cpu_task(key.data).to(device)
    restored = _restored_state()
    started = time.perf_counter() - (restored["elapsed_s"] if restored else 0.0)

    def on_epoch(epoch, loss, model, checkpoint) -> None:
        _report_epoch({"epoch": epoch, "train_loss": loss, "reused": 0},
                      {"train": checkpoint(), "elapsed_s": time.perf_counter() - started})

    model = train_base(task, key.kind, key.model, key.train, device, on_epoch=on_epoch,
                       resume=restored["train"] if restored else None)
    save_base(store, key, model, {"duration_s": time.perf_counter() - started, "device": device_label(device), "spec": to_dict(key)})


# ---- fine-tuning trials -----------------------------------------------------------------------------

def _params(ft: FinetuneSpec) -> dict[str, Any]:
    return {f"param_{name}": getattr(ft, name) for name in PARAM_TYPES}


def _nan_free(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def reference_trial(config: dict, *, spec: StudySpec, store_uri: str, cpus: float) -> None:
    """A reference row set: the base pair of a seed (``role: base``), the control pair of two
    seeds (``role: control``) or a baseline method."""
    job = config["job"]
    if job["role"] == "base":
        _base_pair(job["seed"], spec, store_uri, cpus)
    elif job["role"] == "control":
        _control_pair(job["trial_id"], *job["seeds"], spec=spec, store_uri=store_uri, cpus=cpus)
    else:
        ft = dataclasses.replace(spec.finetune, method=job["method"])
        _finetune(job["trial_id"], "baseline", ft, job["seed"], spec.data.cue_proportion, spec, store_uri, cpus)


def search_trial(config: dict, *, spec: StudySpec, store_uri: str, cpus: float) -> None:
    """One trial of the search: the fixed fine-tuning settings with the searched ones on top."""
    seed = config.get("base_seed", spec.base.seeds[0])
    proportion = config.get("cue_proportion", spec.data.cue_proportion)
    trial_id = tune.get_context().get_trial_id()
    _finetune(trial_id, "search", spec.finetune_spec(config), seed, proportion, spec, store_uri, cpus)


def _load_pair(store: Store, spec: StudySpec, seed: int, proportion: float, device: torch.device):
    """The task of the cue model of (seed, proportion) and both base models, loaded from the store."""
    keys = {"cue": spec.base_model("cue", seed, proportion), "clean": spec.base_model("clean", seed)}
    task = _cpu_task(keys["cue"].data).to(device)
    return keys, task, {kind: load_base(store, key, task, device) for kind, key in keys.items()}


def _base_pair(seed: int, spec: StudySpec, store_uri: str, cpus: float) -> None:
    device = _setup(cpus)
    store = Store.open(store_uri)
    keys, task, models = _load_pair(store, spec, seed, spec.data.cue_proportion, device)
    pair = Pair(models["cue"], models["clean"], (keys["cue"], keys["clean"]))
    barriers, paths = measure_paths(task, {"cue_to_clean": pair}, spec.paths, seed=seed, midpoints=StoreMidpoints(store))
    trials = []
    for kind, key in keys.items():
        info = json.loads(store.read_bytes(*model_folder(key), "info.json"))
        row = {"trial_id": f"base_{kind}_s{seed}", "role": "base", "status": "completed", "method": f"base_{kind}",
               "base_seed": seed, "cue_proportion": key.data.cue_proportion, "epochs": key.train.epochs, "start_epoch": 0,
               "device": info["device"], "duration_s": info["duration_s"], **view_metrics(models[kind], task.views)}
        if kind == "clean":
            row.update(barriers)
        trials.append(_nan_free(row))
    rows = {"trials": trials, "paths": [{"trial_id": f"base_clean_s{seed}", **r} for r in paths], "history": []}
    tune.report({"done": 1, ROWS_KEY: json.dumps(rows)})


def _control_pair(trial_id: str, first: int, second: int, *, spec: StudySpec, store_uri: str, cpus: float) -> None:
    """The paths between the clean references of two seeds: same data, same mechanism, other init."""
    started = time.perf_counter()
    device = _setup(cpus)
    store = Store.open(store_uri)
    keys = [spec.base_model("clean", seed) for seed in (first, second)]
    task = _cpu_task(spec.base_model("cue", first).data).to(device)  # the views and training images of the study
    a, b = (load_base(store, key, task, device) for key in keys)
    barriers, paths = measure_paths(task, {"clean_to_clean": Pair(a, b, tuple(keys))}, spec.paths, seed=first,
                                    midpoints=StoreMidpoints(store))
    row = {"trial_id": trial_id, "role": "base", "status": "completed", "method": "control_clean", "base_seed": first,
           "cue_proportion": 0.0, "epochs": 0, "start_epoch": 0, "device": device_label(device),
           "node": ray.get_runtime_context().get_node_id(), "duration_s": time.perf_counter() - started, **barriers}
    rows = {"trials": [_nan_free(row)], "paths": [{"trial_id": trial_id, **r} for r in paths], "history": []}
    tune.report({"done": 1, ROWS_KEY: json.dumps(rows)})


def _finetune(trial_id: str, role: str, ft: FinetuneSpec, seed: int, proportion: float, spec: StudySpec,
              store_uri: str, cpus: float) -> None:
    """Fine-tune the cue model of (seed, proportion), report per epoch, then measure and report rows."""
    started = time.perf_counter()
    device = _setup(cpus)
    row = {"trial_id": trial_id, "role": role, "method": ft.method, "base_seed": seed, "cue_proportion": proportion,
           "epochs": total_epochs(ft), "device": device_label(device), "node": ray.get_runtime_context().get_node_id(),
           **_params(ft)}
    objectives = [o.metric for o in spec.search.objectives]
    try:
        store = Store.open(store_uri)
        keys, task, models = _load_pair(store, spec, seed, proportion, device)
        cue_model, clean_model = models["cue"], models["clean"]
        restored = _restored_state()
        history: list[dict] = restored["history"] if restored else []
        row["start_epoch"] = len(history)

        def on_epoch(epoch: int, metrics: dict[str, float], checkpoint) -> None:
            history.append({"trial_id": trial_id, "epoch": epoch, **metrics})
            # objectives measured only at the end (barriers) are NaN per epoch: Tune needs every key
            _report_epoch({o: float("nan") for o in objectives} | {"epoch": epoch, **metrics},
                          {"finetune": checkpoint(), "history": history})

        final, paths = finetune_and_measure(task, cue_model, clean_model, ft, spec.paths, seed=seed, on_epoch=on_epoch,
                                            resume=restored["finetune"] if restored else None,
                                            keys=(keys["cue"], keys["clean"]), midpoints=StoreMidpoints(store))
        row.update(status="completed", duration_s=time.perf_counter() - started, **final)
        rows = {"trials": [_nan_free(row)], "paths": [{"trial_id": trial_id, **r} for r in paths], "history": history}
        tune.report({"epoch": total_epochs(ft), **final, ROWS_KEY: json.dumps(rows)})
    except Exception as err:
        row.update(status="failed", duration_s=time.perf_counter() - started,
                   error=f"{type(err).__name__}: {err}".splitlines()[0][:500])
        nan_objectives = {o: float("nan") for o in objectives}  # Tune checks every result for them
        tune.report({**nan_objectives, ROWS_KEY: json.dumps({"trials": [row], "paths": [], "history": []}), "failed": 1})
        traceback.print_exc()
        raise
