"""Changing a study file from the command line: ``--set KEY=VALUE`` and ``--smoke``.

``--set`` edits the file's YAML content before it is validated, so an override is checked exactly
like the same key written in the file; an error names the ``--set`` item and the key. ``--smoke``
shrinks a validated study to minutes on a laptop (a few hundred images, two epochs, three trials)
so a preset can be tried before it goes to a cluster; it is a different study (``<name>_smoke``).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import yaml

from mmc_sweep.config import ALL_BATCHES
from mmc_sweep.errors import InputError
from mmc_sweep.study.definition.spec import StudySpec, dump_study, parse_study

# --smoke: the largest value of each size setting (images, epochs, trials, path points)
SMOKE_IMAGES = {"n_train": 600, "n_test": 200}
SMOKE_CLEAN = 100  # finetune.n_clean / n_cue and the top of a searched n_clean
SMOKE_EPOCHS = 2  # every *epochs setting of base training and fine-tuning (a 0 stays 0; warm-ups at most 1)
SMOKE_TRIALS = 3
SMOKE_WIDTH = 16  # channels of the first stage: same architecture, narrower


def apply_sets(raw: Any, items: list[str], source: str) -> StudySpec:
    """The study of YAML content ``raw`` with every ``KEY=VALUE`` of ``items`` set, validated."""
    if not items:
        return parse_study(raw, source)
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else raw
    spec = parse_study(raw, source)  # the file itself first: its errors name the file
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.split(".")):
            raise InputError(f"--set {item}: expected KEY=VALUE with a dotted KEY, e.g. finetune.lr=0.01")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text  # not YAML: the plain string (a path with a colon, say)
        _set(raw, key.strip().split("."), value, item)
        spec = parse_study(raw, f"--set {item}")
    return spec


def _set(raw: dict, keys: list[str], value: Any, item: str) -> None:
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise InputError(f"--set {item}: {'.'.join(keys[:depth + 1])} is {child!r}, not a section with keys")
        node = child
    node[keys[-1]] = value


def smoke(spec: StudySpec) -> StudySpec:
    """``spec`` shrunk to run on 2 CPU cores in minutes (one CPU and no GPU per trial): same data set, cue, architecture, method,
    path kinds and search space; fewer and smaller of everything (one base seed, two with a control
    pair)."""
    data = dataclasses.replace(spec.data, **{k: min(getattr(spec.data, k), v) for k, v in SMOKE_IMAGES.items()},
                               max_files_train=_cap(spec.data.max_files_train, SMOKE_IMAGES["n_train"]),
                               max_files_test=_cap(spec.data.max_files_test, SMOKE_IMAGES["n_test"]))
    model = dataclasses.replace(spec.model, width=min(spec.model.width or SMOKE_WIDTH, SMOKE_WIDTH))
    seeds = spec.base.seeds[:2 if spec.base.control_pair else 1]  # every seed is two base models to train
    base = dataclasses.replace(spec.base, seeds=seeds, **_epochs(spec.base))
    finetune = dataclasses.replace(spec.finetune, **_epochs(spec.finetune), **_images(spec.finetune))
    space = tuple(_smaller_space(p, seeds) for p in spec.search.space)
    proportions = next((p.choices for p in space if p.name == "cue_proportion"), ())
    if proportions:  # the reference rows' cue models: one of the searched ones, not one more to train
        data = dataclasses.replace(data, cue_proportion=proportions[0])
    search = dataclasses.replace(spec.search, num_samples=min(spec.search.num_samples, SMOKE_TRIALS), space=space)
    paths = spec.paths
    paths = dataclasses.replace(
        paths, alphas=min(paths.alphas, 3),
        bn_reset=dataclasses.replace(paths.bn_reset, batches=_smaller_batches(paths.bn_reset.batches, 2)),
        align=dataclasses.replace(paths.align, batches=min(paths.align.batches, 1)),
        qmc=dataclasses.replace(paths.qmc, epochs=min(paths.qmc.epochs, SMOKE_EPOCHS)))
    resources = dataclasses.replace(spec.resources, cpu=1.0, gpu=0.0)  # a laptop: one CPU per trial, no GPU
    smaller = dataclasses.replace(spec, name=f"{spec.name}_smoke", data=data, model=model, base=base,
                                  finetune=finetune, search=search, paths=paths, resources=resources)
    return parse_study(yaml.safe_load(dump_study(smaller)), "--smoke")  # every cross-check again


def _smaller_batches(batches: int | str, most: int) -> int | str:
    """A batch count capped at ``most``; ``all`` stays: every image of a smoke run's few hundred is a few batches."""
    return batches if batches == ALL_BATCHES else min(batches, most)


def _cap(limit: int, most: int) -> int:
    """A max_files_* setting (0 = everything) capped at ``most``."""
    return most if limit == 0 else min(limit, most)


def _epochs(section: Any) -> dict[str, int]:
    """Every ``*epochs`` field of a section, at most SMOKE_EPOCHS; a warm-up at most 1 (it must stay
    shorter than the run)."""
    return {f.name: min(getattr(section, f.name), 1 if f.name.startswith("warmup") else SMOKE_EPOCHS)
            for f in dataclasses.fields(section) if f.name.endswith("epochs") and isinstance(getattr(section, f.name), int)}


def _images(finetune: Any) -> dict[str, int]:
    return {k: min(getattr(finetune, k), SMOKE_CLEAN) for k in ("n_clean", "n_cue") if hasattr(finetune, k)}


def _smaller_space(p, seeds: tuple[int, ...]):
    """A searched image count (a range, or choices) or epoch count capped like the fixed ones; searched base models (seeds,
    cue proportions: each a model to train first) cut to the kept seeds and two proportions; other
    settings kept."""
    if p.name == "base_seed":
        return dataclasses.replace(p, choices=tuple(c for c in p.choices if c in seeds))
    if p.name == "cue_proportion":
        return dataclasses.replace(p, choices=p.choices[:2])
    if p.type == "categorical" and p.name in ("n_clean", "n_cue"):  # the choices that fit, else the cap itself
        return dataclasses.replace(p, choices=tuple(c for c in p.choices if c <= SMOKE_CLEAN) or (SMOKE_CLEAN,))
    if p.type == "categorical" or not (p.name in ("n_clean", "n_cue") or p.name.endswith("epochs")):
        return p
    # a searched warm-up at most 1 epoch, as a fixed one (_epochs): it must stay shorter than the run
    top = SMOKE_CLEAN if p.name in ("n_clean", "n_cue") else 1 if p.name.startswith("warmup") else max(SMOKE_EPOCHS, int(p.low) + 1)
    high = min(p.high, top)
    low = min(p.low, high - 1)
    return dataclasses.replace(p, low=low, high=high, step=0.0 if p.step and (high - low) < p.step else p.step)
