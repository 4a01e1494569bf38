"""Tiny study files for the harness tests: seconds per trial on 2 CPU cores."""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

TINY = {
    "name": "tiny",
    "data": {"dataset": "shapes", "cue": "box", "cue_proportion": 0.8, "seed": 0, "n_train": 400, "n_test": 100},
    "model": {"arch": "small_cnn", "width": 8},
    "base": {"epochs": 2, "lr": 0.05, "seeds": [0], "batch_size": 64},
    "finetune": {"method": "cbft", "epochs": 3, "n_clean": 80, "batch_size": 32, "cue_batch_size": 32},
    "baselines": ["naive_ft"],
    "search": {
        "num_samples": 4,
        "sampler": "random",
        "objectives": [{"metric": "acc_rand_cue", "mode": "max"}, {"metric": "cue_reliance", "mode": "min"}],
        "space": {
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
            "lambda_barrier": {"type": "float", "low": 0.1, "high": 3.0},
            "n_clean": {"type": "int", "low": 40, "high": 100},
        },
    },
    "paths": {"alphas": 3, "views": ["clean", "cue", "rand_cue", "rand_img"],
              "bn_reset": {"mode": "cumulative", "batches": 2, "batch_size": 32, "data": "clean"}},
    "resources": {"cpu": 1, "gpu": 0},
}


def write_study(folder: Path, name: str, **changes) -> Path:
    """Write TINY with top-level sections updated by ``changes`` (dicts are merged one level deep)."""
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    spec["name"] = name
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def search(**changes) -> dict:
    """TINY's `search` section with ``changes`` on top."""
    return {**TINY["search"], **changes}


def space(**params) -> dict:
    """TINY's `search` section whose space has ``params`` on top (a value of None drops that setting)."""
    merged = {**TINY["search"]["space"], **params}
    return search(space={k: v for k, v in merged.items() if v is not None})


def write_text(folder: Path, name: str, text: str | bytes) -> Path:
    """A study file with exactly ``text`` in it (for files that are not valid YAML or not a mapping)."""
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def file_digests(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders``, by path: equal only if nothing was added, removed or rewritten."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}
