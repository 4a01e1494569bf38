"""What one Ray Tune trial does: train a base model, or fine-tune the cue model and measure it.

Every trial reports per-epoch metrics (``ray.tune.report``) after saving its epoch state to the study
storage (:func:`~mmc_sweep.study.storage.artifacts.trial_state_parts`), resumes from that state when Tune
restarts it, and ends with one report holding its result rows as JSON (``rows_json``), which the
driver's results sink writes to Parquet.

A fine-tuning trial that fails (an exception, a diverged loss) reports a ``failed`` row and returns:
rerunning it would fail again. Only a dead worker (out of memory, lost node) is an error that Tune
retries from the last epoch state (``failure.max_failures``). A trial whose write finds the storage
full asks the driver to stop the whole study (``stop_study``) and waits: it resumes from its last
whole epoch state once space is freed.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import traceback
from typing import Any

import ray
import torch
from ray import tune

from mmc_sweep.config import DataSpec, FinetuneSpec, to_dict
from mmc_sweep.costs import PhaseClock
from mmc_sweep.data import CueTask, build_task
from mmc_sweep.errors import StorageFull
from mmc_sweep.experiment import Pair, device_label, finetune_and_measure, measure_paths, train_base
from mmc_sweep.finetune import total_epochs
from mmc_sweep.gpu_share import claim_share, peak_mb
from mmc_sweep.metrics import view_metrics
from mmc_sweep.paths import EndpointRows
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.faults import fault, switch
from mmc_sweep.study.run.jobs import STORED_KEY
from mmc_sweep.study.search.searcher import REUSE_KEY, ROWS_KEY  # ROWS_KEY: the final report's rows (JSON)
from mmc_sweep.study.storage.artifacts import (StoreMidpoints, has_base, load_base, load_trial_state, model_folder,
                                              save_base, save_trial_state, trial_state_parts)
from mmc_sweep.study.storage.results import PARAM_TYPES, TABLES, read_trial
from mmc_sweep.study.storage.store import Store
from mmc_sweep.train import DivergedError


STOP_KEY = "stop_study"  # in a trial's report: why the study must stop (a full storage); the driver stops it
STOP_WAIT_S = 600.0  # how long a trial that asked for the stop waits for it before failing as a crash does


def worker_faults() -> dict[str, str]:
    """The fault points a trial acts on, set (tests only; empty outside): read on the driver, whose
    environment a test sets, and passed to every trial (workers may not share it)."""
    return {name: value for name in ("worker_exit_epoch", "nan_metric", "worker_disk_full_after") if (value := fault(name))}


class NonFiniteMetricError(ValueError):
    """A fine-tuned model's final accuracy or loss on a view is not finite: the trial fails (its row
    says which), Optuna is told FAIL; never a `completed` row with holes."""


ENDPOINTS = EndpointRows()  # path endpoints measured in this worker process: later trials reuse their rows


@functools.lru_cache(maxsize=2)
def cpu_task(data: DataSpec) -> CueTask:
    """Built once per worker process and data spec: Tune reuses actors, so later trials skip it."""
    return build_task(data)


def setup_device(cpus: float, gpu: float = 0.0) -> torch.device:
    """Torch threads = the trial's CPUs; CUDA only when Ray assigned a GPU and CUDA works, with the
    process's CUDA memory capped to the trial's GPU fraction."""
    torch.set_num_threads(max(1, int(cpus)))
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return claim_share(gpu)
    return torch.device("cpu")


def _own_state(spec: StudySpec) -> tuple[str, ...]:
    context = tune.get_context()
    return trial_state_parts(spec.name, context.get_experiment_name(), context.get_trial_id())


def _report_epoch(metrics: dict[str, Any], state: dict, store: Store, spec: StudySpec) -> None:
    save_trial_state(store, _own_state(spec), state)  # first: a kill after it loses no reported epoch
    tune.report(metrics)


def _restored_state(store: Store, spec: StudySpec) -> dict | None:
    return load_trial_state(store, _own_state(spec))


def study_trial(config: dict, *, spec: StudySpec, store: Store, cpus: float, faults: dict[str, str] | None = None) -> None:
    """Any trial of the study's experiment (see jobs): a base model, a reference job or a search trial.
    ``faults``: :func:`worker_faults` (tests only)."""
    job, faults = config.get("job"), faults or {}
    if "worker_disk_full_after" in faults:  # tests only: this worker's storage is full after N writes
        os.environ.update(switch(disk_full_after=faults["worker_disk_full_after"]))
    try:
        if job is None:
            search_trial(config, spec=spec, store=store, cpus=cpus, faults=faults)
        elif "kind" in job:
            base_trial(config, spec=spec, store=store, cpus=cpus)
        else:
            reference_trial(config, spec=spec, store=store, cpus=cpus, faults=faults)
    except StorageFull as err:
        _stop_the_study(str(err))


def _stop_the_study(message: str) -> None:
    """The storage is full: ask the driver to stop the study (Tune's graceful stop: this trial stays
    running in Tune's record, with its last whole epoch state) and wait to be stopped. Not a failed
    row: the trial is fine, the storage is not."""
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        # again and again: the actor runs one call at a time, and Tune's stop call waits behind the call
        # that waits for this thread's next report (without one, Tune kills the actor after 10 s)
        tune.report({STOP_KEY: message})
        time.sleep(0.2)
    raise StorageFull(message)  # never stopped (the driver is gone?): an error, retried like a crash


# ---- base models: content-addressed under <storage>/models/<hash>/ (see artifacts) ---------------------

def base_trial(config: dict, *, spec: StudySpec, store: Store, cpus: float) -> None:
    """Train one base model (config: kind, seed, cue_proportion) unless the store already has it."""
    device = setup_device(cpus, spec.resources.gpu)
    job = config["job"]
    key = spec.base_model(job["kind"], job["seed"], job["cue_proportion"])
    if has_base(store, key):
        tune.report({"epoch": 0, STORED_KEY: 1})
        return
    task = cpu_task(key.data).to(device)
    restored = _restored_state(store, spec)
    started = time.perf_counter() - (restored["elapsed_s"] if restored else 0.0)

    def on_epoch(epoch, loss, model, checkpoint) -> None:
        _report_epoch({"epoch": epoch, "train_loss": loss},
                      {"train": checkpoint(), "elapsed_s": time.perf_counter() - started}, store, spec)

    model = train_base(task, key.kind, key.model, key.train, device, on_epoch=on_epoch,
                       resume=restored["train"] if restored else None)
    seeds = {"stream": key.train.stream, "init_seed": key.train.init_seed, "order_seed": key.train.order_seed}
    save_base(store, key, model, {"duration_s": time.perf_counter() - started, "device": device_label(device), **seeds,
                                  "node": ray.get_runtime_context().get_node_id(), "spec": to_dict(key)})
    tune.report({"epoch": key.train.epochs, STORED_KEY: 1})


# ---- fine-tuning trials -----------------------------------------------------------------------------

def params_row(ft: FinetuneSpec) -> dict[str, Any]:
    """The ``param_<name>`` columns of a trial's row."""
    return {f"param_{name}": getattr(ft, name) for name in PARAM_TYPES}


def pairing_row(spec: StudySpec, seed: int) -> dict[str, Any]:
    """How the base pair of ``seed`` was made (columns ``results.PAIRING_COLUMNS``): the study's pairing
    and the seeds of the cue model's and the clean reference's initialisation and batch order."""
    cue, clean = spec.base.train_spec(seed, "cue"), spec.base.train_spec(seed, "clean")
    return {"pairing": spec.base.pairing, "cue_init_seed": cue.init_seed, "cue_order_seed": cue.order_seed,
            "clean_init_seed": clean.init_seed, "clean_order_seed": clean.order_seed}


def _nan_free(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def reference_trial(config: dict, *, spec: StudySpec, store: Store, cpus: float, faults: dict[str, str]) -> None:
    """A reference row set: the base pair of a seed (``role: base``), the control pair of two
    seeds (``role: control``) or a baseline method."""
    job = config["job"]
    if job["role"] == "base":
        _base_pair(job["seed"], spec, store, cpus)
    elif job["role"] == "control":
        _control_pair(job["trial_id"], *job["seeds"], spec=spec, store=store, cpus=cpus)
    else:
        ft = dataclasses.replace(spec.finetune, method=job["method"])
        _finetune(job["trial_id"], "baseline", ft, job["seed"], spec.data.cue_proportion, spec, store, cpus, faults)


def search_settings(config: dict, spec: StudySpec) -> tuple[FinetuneSpec, int, float]:
    """A search trial's fine-tuning settings, base seed and cue proportion, from its Tune config."""
    params = {k: v for k, v in config.items() if k != REUSE_KEY}
    return (spec.finetune_spec(params), params.get("base_seed", spec.base.seeds[0]),
            params.get("cue_proportion", spec.data.cue_proportion))


def search_trial(config: dict, *, spec: StudySpec, store: Store, cpus: float, faults: dict[str, str]) -> None:
    """One trial of the search: the fixed fine-tuning settings with the searched ones on top; or,
    when the searcher found a finished trial with the same parameters, that trial's result again."""
    trial_id = tune.get_context().get_trial_id()
    if REUSE_KEY in config and _reuse(config[REUSE_KEY], trial_id, spec, store):
        return
    ft, seed, proportion = search_settings(config, spec)
    _finetune(trial_id, "search", ft, seed, proportion, spec, store, cpus, faults)


def _reuse(source: str, trial_id: str, spec: StudySpec, store: Store) -> bool:
    """Report the rows of finished trial ``source`` as this trial's, marked ``reused_from``; False
    when ``source`` has no completed row (then the trial trains as usual)."""
    rows = read_trial(store, spec.name, source)
    trials = rows["trials"]
    if len(trials) != 1 or trials[0]["status"] != "completed":
        return False
    row = {k: v for k, v in trials[0].items() if k not in ("study", "finished_at", "retries")}
    row.update(trial_id=trial_id, reused_from=source, duration_s=0.0, node=ray.get_runtime_context().get_node_id())
    copy = {"trials": [row]}
    for table in TABLES[:-1]:  # every table written before `trials`
        copy[table] = [{**{k: v for k, v in r.items() if k != "study"}, "trial_id": trial_id} for r in rows[table]]
    objectives = {key: row.get(key, float("nan")) for key in _reported(spec)}
    tune.report({"epoch": row.get("epochs") or 0, **objectives, ROWS_KEY: json.dumps(copy, default=str)})
    return True


def _load_pair(store: Store, spec: StudySpec, seed: int, proportion: float, device: torch.device):
    """The task of the cue model of (seed, proportion) and both base models, loaded from the store."""
    keys = {"cue": spec.base_model("cue", seed, proportion), "clean": spec.base_model("clean", seed)}
    task = cpu_task(keys["cue"].data).to(device)
    return keys, task, {kind: load_base(store, key, task, device) for kind, key in keys.items()}


def _base_pair(seed: int, spec: StudySpec, store: Store, cpus: float) -> None:
    device = setup_device(cpus, spec.resources.gpu)
    keys, task, models = _load_pair(store, spec, seed, spec.data.cue_proportion, device)
    pair = Pair(models["cue"], models["clean"], (keys["cue"], keys["clean"]))
    barriers, paths = measure_paths(task, {"cue_to_clean": pair}, spec.paths, seed=seed, midpoints=StoreMidpoints(store),
                                    endpoints=ENDPOINTS)
    trials = []
    for kind, key in keys.items():
        info = json.loads(store.read_bytes(*model_folder(key), "info.json"))
        row = {"trial_id": f"base_{kind}_s{seed}", "role": "base", "status": "completed", "method": f"base_{kind}",
               "base_seed": seed, "cue_proportion": key.data.cue_proportion, "epochs": key.train.epochs, "start_epoch": 0,
               "device": info["device"], "duration_s": info["duration_s"], "node": info.get("node"),  # older models: none
               **pairing_row(spec, seed),
               **view_metrics(models[kind], task.views)}
        if kind == "clean":
            row.update(barriers)
        trials.append(_nan_free(row))
    rows = {"trials": trials, "paths": [{"trial_id": f"base_clean_s{seed}", **r} for r in paths], "history": []}
    tune.report({"done": 1, ROWS_KEY: json.dumps(rows)})


def _control_pair(trial_id: str, first: int, second: int, *, spec: StudySpec, store: Store, cpus: float) -> None:
    """The paths between the clean references of two seeds: same data, same mechanism, other init."""
    started = time.perf_counter()
    device = setup_device(cpus, spec.resources.gpu)
    keys = [spec.base_model("clean", seed) for seed in (first, second)]
    task = cpu_task(spec.base_model("cue", first).data).to(device)  # the views and training images of the study
    a, b = (load_base(store, key, task, device) for key in keys)
    barriers, paths = measure_paths(task, {"clean_to_clean": Pair(a, b, tuple(keys))}, spec.paths, seed=first,
                                    midpoints=StoreMidpoints(store), endpoints=ENDPOINTS)
    row = {"trial_id": trial_id, "role": "base", "status": "completed", "method": "control_clean", "base_seed": first,
           "cue_proportion": 0.0, "epochs": 0, "start_epoch": 0, "device": device_label(device),
           "node": ray.get_runtime_context().get_node_id(), "duration_s": time.perf_counter() - started,
           "pairing": spec.base.pairing, "clean_init_seed": keys[0].train.init_seed, "clean_order_seed": keys[0].train.order_seed,
           "clean_b_init_seed": keys[1].train.init_seed, "clean_b_order_seed": keys[1].train.order_seed, **barriers}
    rows = {"trials": [_nan_free(row)], "paths": [{"trial_id": trial_id, **r} for r in paths], "history": []}
    tune.report({"done": 1, ROWS_KEY: json.dumps(rows)})


def _reported(spec: StudySpec) -> list[str]:
    """Keys Tune checks in every result of a search trial: the objectives and the scheduler's metric."""
    keys = [o.metric for o in spec.search.objectives]
    return keys + [spec.search.asha.metric] * (spec.search.scheduler == "asha" and spec.search.asha.metric not in keys)


def _check_finite(metrics: dict[str, float], views) -> None:
    """Raise :class:`NonFiniteMetricError` naming the first view whose final accuracy or loss is not finite."""
    for view in views:
        for name in (f"acc_{view}", f"loss_{view}"):
            value = metrics.get(name)
            if value is not None and not math.isfinite(value):
                raise NonFiniteMetricError(f"non-finite {name} ({value}) on the {view} view")


def _die_once(exit_epoch: int, epoch: int, store: Store, spec: StudySpec, trial_id: str) -> None:
    """Fault point ``worker_exit_epoch`` (tests): the worker process dies hard, once per trial, at ``exit_epoch``."""
    marker = f".fault_worker_exit_{trial_id}"
    if exit_epoch and epoch == exit_epoch and not store.exists(spec.name, marker):
        store.write_bytes(b"", spec.name, marker)
        os._exit(1)


def _finetune(trial_id: str, role: str, ft: FinetuneSpec, seed: int, proportion: float, spec: StudySpec,
              store: Store, cpus: float, faults: dict[str, str]) -> None:
    """Fine-tune the cue model of (seed, proportion), report per epoch, then measure and report rows.
    ``duration_s`` counts the time before an interruption too (it travels in the epoch state)."""
    device = setup_device(cpus, spec.resources.gpu)
    restored = _restored_state(store, spec)
    started = time.perf_counter() - (restored.get("elapsed_s", 0.0) if restored else 0.0)
    row = {"trial_id": trial_id, "role": role, "method": ft.method, "base_seed": seed, "cue_proportion": proportion,
           "epochs": total_epochs(ft), "device": device_label(device), "node": ray.get_runtime_context().get_node_id(),
           **pairing_row(spec, seed), **params_row(ft)}
    objectives = _reported(spec)
    history: list[dict] = restored["history"] if restored else []
    row["start_epoch"] = len(history)
    clock = PhaseClock(device, (restored or {}).get("cost_s"))  # a resumed trial's costs go on from its state
    try:
        keys, task, models = _load_pair(store, spec, seed, proportion, device)

        def on_epoch(epoch: int, metrics: dict[str, float], checkpoint) -> None:
            _die_once(int(faults.get("worker_exit_epoch", 0)), epoch, store, spec, trial_id)
            history.append({"trial_id": trial_id, "epoch": epoch, **metrics})
            # objectives measured only at the end (barriers) are NaN per epoch: Tune needs every key
            _report_epoch({o: float("nan") for o in objectives} | {"epoch": epoch, **metrics},
                          {"finetune": checkpoint(), "history": history, "elapsed_s": time.perf_counter() - started,
                           "cost_s": clock.so_far()},
                          store, spec)

        final, paths, revival = finetune_and_measure(task, models["cue"], models["clean"], ft, spec.paths, seed=seed, on_epoch=on_epoch,
                                            resume=restored["finetune"] if restored else None,
                                            keys=(keys["cue"], keys["clean"]), midpoints=StoreMidpoints(store),
                                            epoch_views=spec.epoch_metrics == "views", endpoints=ENDPOINTS,
                                            clock=clock, revival=spec.revival)
        if "nan_metric" in faults:  # tests only
            final[f"loss_{faults['nan_metric']}"] = float("nan")
        _check_finite(final, task.views)
        duration = time.perf_counter() - started
        final.update(clock.metrics(), cost_gpu_s=duration * spec.resources.gpu if device.type == "cuda" else None)
    except StorageFull:  # not the trial's fault: the study stops, the trial resumes later
        raise
    except Exception as err:  # reported as a failed row; not raised: a rerun would fail the same way
        if not isinstance(err, (DivergedError, NonFiniteMetricError)):
            traceback.print_exc()
        row.update(status="failed", duration_s=time.perf_counter() - started,
                   error=f"{type(err).__name__}: {err}".splitlines()[0][:500])
        rows = {"trials": [row], "paths": [], "history": history}
        tune.report({**{o: float("nan") for o in objectives}, ROWS_KEY: json.dumps(rows), "failed": 1})
        return
    row.update(status="completed", duration_s=duration, gpu_peak_mb=peak_mb(device), **final)
    rows = {"trials": [_nan_free(row)], "paths": [{"trial_id": trial_id, **r} for r in paths], "history": history,
            "revival": [{"trial_id": trial_id, **r} for r in revival]}
    tune.report({"epoch": total_epochs(ft), **final, ROWS_KEY: json.dumps(rows)})
