"""Content-addressed artifacts under the storage root, shared by every study that needs them:

* base models: ``models/<hash of the BaseModelSpec>/`` with ``info.json`` and ``model.pt`` (and fine-tuned
  models a ``pairs`` run measures, by the hash of their ``FinetunedSpec``);
* pairs a ``pairs`` run measured: ``pairs/<hash of both models' specs, the data, the path settings>/``;
* QMC midpoints: ``midpoints/<hash of both endpoints' specs, the data and the QMC settings>/`` with
  ``info.json`` and ``midpoint.pt``.

The weights file is written last: its presence marks the artifact as complete.
"""
from __future__ import annotations

import io
import json

import torch

from mmc_sweep.config import BaseModelSpec, FinetunedSpec, spec_hash
from mmc_sweep.data import CueTask
from mmc_sweep.experiment import new_model
from mmc_sweep.models import CueModel
from mmc_sweep.study.storage.store import Store, to_buffer


def model_folder(key: BaseModelSpec | FinetunedSpec) -> tuple[str, str]:
    return "models", spec_hash(key)


def has_base(store: Store, key: BaseModelSpec | FinetunedSpec) -> bool:
    return store.exists(*model_folder(key), "model.pt")


def _read_state(store: Store, *parts: str, device: torch.device | str = "cpu") -> dict:
    return torch.load(io.BytesIO(store.read_bytes(*parts)), map_location=device, weights_only=True)


def _write_state(store: Store, state: dict[str, torch.Tensor], info: dict, *folder: str, name: str) -> None:
    weights = {k: v.detach().cpu() for k, v in state.items()}
    store.write_bytes(json.dumps(info, indent=1).encode(), *folder, "info.json")
    store.write_bytes(to_buffer(lambda f: torch.save(weights, f)), *folder, name)  # last: marks it done


def load_base(store: Store, key: BaseModelSpec | FinetunedSpec, task: CueTask, device: torch.device) -> CueModel:
    """A stored model: a base model, or a fine-tuned one stored beside them (``run_study.py pairs``)."""
    base = key if isinstance(key, BaseModelSpec) else key.base  # a fine-tuned model has its cue model's architecture
    model = new_model(task, base.model, base.train.init_seed, device)  # the architecture; the weights are loaded
    model.load_state_dict(_read_state(store, *model_folder(key), "model.pt", device=device))
    return model.eval()


def save_base(store: Store, key: BaseModelSpec | FinetunedSpec, model: CueModel, info: dict) -> None:
    _write_state(store, model.state_dict(), info, *model_folder(key), name="model.pt")


def trial_state_parts(study: str, experiment: str, tune_trial_id: str) -> tuple[str, ...]:
    """Where a running trial keeps its newest epoch state: ``<study>/trial_states/<experiment>/<id>.pt``.

    Trials resume from this file, not from Ray Tune's checkpoints: Tune deletes all but the newest
    checkpoints of a trial before its experiment snapshot names a newer one, so a driver killed in
    between leaves a snapshot that points at a deleted checkpoint, which Tune cannot restore.
    """
    return study, "trial_states", experiment, f"{tune_trial_id}.pt"


def save_trial_state(store: Store, parts: tuple[str, ...], state: dict) -> None:
    store.write_bytes(to_buffer(lambda f: torch.save(state, f)), *parts)  # atomic: a kill leaves the last whole one


def load_trial_state(store: Store, parts: tuple[str, ...]) -> dict | None:
    """The saved state (None when the trial has saved none)."""
    return _read_state(store, *parts) if store.exists(*parts) else None


class StoreMidpoints:
    """QMC midpoints in the study storage (a :class:`~mmc_sweep.paths.MidpointStore`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        if not self.store.exists("midpoints", key, "midpoint.pt"):
            return None
        return _read_state(self.store, "midpoints", key, "midpoint.pt")

    def save(self, key: str, state: dict[str, torch.Tensor], info: dict) -> None:
        _write_state(self.store, state, info, "midpoints", key, name="midpoint.pt")
