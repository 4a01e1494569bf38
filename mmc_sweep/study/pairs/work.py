"""What one Ray Tune trial of a ``pairs`` run does, in a worker that keeps the study's task, the
loaded models and the measured endpoint rows between trials (Tune reuses actors): the savings of a
matrix over pairs measured alone.

* ``{"model": id}``: re-make a fine-tuned model that is not stored yet — fine-tune the stored cue model
  again with the trial's recorded settings (the same seeds, so the same model on a CPU) — and store it
  content-addressed beside the base models (``models/<hash of its FinetunedSpec>/``);
* ``{"a": id, "b": id, "kind": kind}``: the pair's rows of one path kind, measured and recorded in the
  storage's shared record of pairs (``pairs/<pair key>/``), then written to the study's ``layers``
  (with ``--layers``) and ``pairs`` tables. A pair whose record holds everything asked for (measured
  before, by this or another study) is copied by the driver (:func:`copy_recorded`), with no trial.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import traceback
import time
from collections import OrderedDict
from datetime import datetime, timezone

import torch
from ray import tune

from mmc_sweep.config import BaseModelSpec, PathSpec, spec_hash, to_dict
from mmc_sweep.data import CueTask
from mmc_sweep.experiment import Pair, device_label, finetune_cue_model, measure_pair_layers, measure_paths
from mmc_sweep.models import CueModel
from mmc_sweep.pair_matrix import pair_rows
from mmc_sweep.results_layout import pair_part_name
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.pairs.selection import ModelRef
from mmc_sweep.study.run.trials import ENDPOINTS, cpu_task, setup_device
from mmc_sweep.study.storage.artifacts import StoreMidpoints, has_base, load_base, save_base
from mmc_sweep.study.storage.results import metadata_for, write_part
from mmc_sweep.study.storage.store import Store

SEED = 0  # of the BN batches: one for every pair, so every model's endpoint rows are shared
_MODELS: OrderedDict[str, CueModel] = OrderedDict()  # loaded models of this worker, by content hash
MODEL_CACHE = 16


def study_task(spec: StudySpec, device: torch.device) -> CueTask:
    """The views every pair is evaluated on: the study's data (the cue proportion of its `data`)."""
    return cpu_task(spec.base_model("cue", spec.base.seeds[0]).data).to(device)


def _base(ref: ModelRef) -> BaseModelSpec:
    return ref.key if isinstance(ref.key, BaseModelSpec) else ref.key.base


def load_model(store: Store, ref: ModelRef, task: CueTask, device: torch.device) -> CueModel:
    """A stored model, loaded once per worker (the most recent :data:`MODEL_CACHE` kept)."""
    if ref.hash not in _MODELS:
        _MODELS[ref.hash] = load_base(store, ref.key, task, device)
        while len(_MODELS) > MODEL_CACHE:
            _MODELS.popitem(last=False)
    _MODELS.move_to_end(ref.hash)
    return _MODELS[ref.hash]


def pairs_trial(config: dict, *, spec: StudySpec, store: Store, refs: dict[str, ModelRef], paths: PathSpec,
                layers: tuple[str, ...] | None, cpus: float) -> None:
    """A model or pair job (see the module). An exception is reported (``failed``), not raised: a rerun
    would fail the same way; only a dead worker is retried by Tune."""
    job = config["job"]
    device = setup_device(cpus, spec.resources.gpu)
    try:
        if "model" in job:
            _remake(refs[job["model"]], spec, store, device)
        else:
            _measure(refs[job["a"]], refs[job["b"]], job["kind"], spec, store, paths, layers, device)
    except Exception as err:
        traceback.print_exc()
        tune.report({"done": 1, "failed": 1, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]})


def _remake(ref: ModelRef, spec: StudySpec, store: Store, device: torch.device) -> None:
    if not has_base(store, ref.key):
        started = time.perf_counter()
        base = _base(ref)
        task = cpu_task(base.data).to(device)  # its own cue proportion: the cue images fine-tuning saw
        model = finetune_cue_model(task, load_model(store, dataclasses.replace(ref, key=base), task, device),
                                   ref.key.finetune)
        save_base(store, ref.key, model, {"duration_s": time.perf_counter() - started, "device": device_label(device),
                                          "remade_for": f"pairs of study {spec.name} (trial {ref.id})",
                                          "spec": to_dict(ref.key)})
    tune.report({"done": 1})


def pair_record(spec: StudySpec, a: ModelRef, b: ModelRef, one: PathSpec) -> tuple[str, tuple[str, str]]:
    """The pair's content key (both models' specs, the study's data, the path settings of one kind, the
    BN seed) and where its record lives in the storage (``pairs/<key>/``, shared by every study there)."""
    key = f"{spec_hash(a.key, b.key, spec.base_model('cue', spec.base.seeds[0]).data, one)}-{SEED}"
    return key, ("pairs", key)


def layers_file(layers: tuple[str, ...]) -> str:
    return f"layers-{hashlib.sha256(','.join(layers).encode()).hexdigest()[:16]}.json"


def copy_recorded(store: Store, spec: StudySpec, a: ModelRef, b: ModelRef, kind: str, paths: PathSpec,
                  layers: tuple[str, ...] | None, recorded: set[str]) -> bool:
    """Write the pair's part files from its record when everything asked for was measured before (the
    driver does it: no trial needed); False when something is missing. ``recorded``: the record keys
    of the storage (one listing of ``pairs/``, not a request per pair that was never measured)."""
    key, record = pair_record(spec, a, b, dataclasses.replace(paths, kinds=(kind,)))
    wanted = ["pair.json"] + ([layers_file(layers)] if layers is not None else [])
    if key not in recorded or not all(store.exists(*record, name) for name in wanted):
        return False
    by_layer = json.loads(store.read_bytes(*record, wanted[1])) if layers is not None else None
    _write(store, spec, a, b, kind, key, json.loads(store.read_bytes(*record, "pair.json")), by_layer, True,
           0.0, "none (copied from the record of pairs)")
    return True


def _measure(a: ModelRef, b: ModelRef, kind: str, spec: StudySpec, store: Store, paths: PathSpec,
             layers: tuple[str, ...] | None, device: torch.device) -> None:
    started = time.perf_counter()
    task = study_task(spec, device)
    one = dataclasses.replace(paths, kinds=(kind,))
    key, record = pair_record(spec, a, b, one)
    models = None
    if store.exists(*record, "pair.json"):
        rows, reused = json.loads(store.read_bytes(*record, "pair.json")), True
    else:
        models = load_model(store, a, task, device), load_model(store, b, task, device)
        _, path_rows = measure_paths(task, {"pair": Pair(*models, (a.key, b.key))}, one, seed=SEED,
                                     midpoints=StoreMidpoints(store), endpoints=ENDPOINTS)
        rows, reused = [{k: v for k, v in r.items() if k not in ("model_a", "model_b")} for r in pair_rows("", "", path_rows)], False
        store.write_bytes(json.dumps(rows).encode(), *record, "pair.json")
    by_layer = None
    if layers is not None:
        if store.exists(*record, layers_file(layers)):
            by_layer = json.loads(store.read_bytes(*record, layers_file(layers)))
        else:
            models = models or (load_model(store, a, task, device), load_model(store, b, task, device))
            by_layer = measure_pair_layers(task, Pair(*models, (a.key, b.key)), one, layers, SEED, StoreMidpoints(store),
                                           ENDPOINTS)
            store.write_bytes(json.dumps(by_layer).encode(), *record, layers_file(layers))
    _write(store, spec, a, b, kind, key, rows, by_layer, reused, time.perf_counter() - started, device_label(device))
    barrier = {r["view"]: r["barrier_loss"] for r in rows}
    tune.report({"done": 1, "reused": int(reused), "barriers_json": json.dumps(barrier)})


def _write(store: Store, spec: StudySpec, a: ModelRef, b: ModelRef, kind: str, key: str, rows: list[dict],
           by_layer: list[dict] | None, reused: bool, seconds: float, device: str) -> None:
    """The pair's part files in the study: ``layers`` (with layers) first, ``pairs`` last (the commit)."""
    names = {"model_a": a.id, "model_b": b.id}
    meta = metadata_for(spec.hash, device)
    if by_layer is not None:
        write_part(store, spec.name, "layers", pair_part_name(a.id, b.id, kind),
                   [{**names, **r, "pair_key": key} for r in by_layer], meta)
    info = {**names, "method_a": a.method, "method_b": b.method, "cue_proportion_a": a.cue_proportion,
            "cue_proportion_b": b.cue_proportion, "pair_key": key, "reused": reused, "duration_s": seconds,
            "finished_at": datetime.now(timezone.utc)}
    write_part(store, spec.name, "pairs", pair_part_name(a.id, b.id, kind), [{**info, **r} for r in rows], meta)

