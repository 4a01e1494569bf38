"""Optuna samplers by name, and their state in a form that survives pickling and an Optuna upgrade.

A live sampler is not a safe thing to pickle: Optuna 5.1's NSGA-II holds a thread lock, and a
sampler pickled by one Optuna release may lack attributes the next one expects. Everything a
sampler keeps between trials is either derived from the study (NSGA-II's generation cache, TPE's
search-space cache: rebuilt from the trials on first use) or random state. So a snapshot holds only
the random states, as plain lists, keyed by where they sit in the sampler ("_rng",
"_random_sampler._rng", ...); :func:`rebuild` makes a fresh sampler from the study's settings and
puts them back. A seeded sampler restored this way proposes what an uninterrupted one would.
"""
from __future__ import annotations

import json
import zlib
from typing import Any, Callable

import optuna
from optuna.samplers._lazy_random_state import LazyRandomState  # the one type every sampler keeps its randomness in

from mmc_sweep.study.definition.spec import SearchSpec

class TuneGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, without its stop: once every point is proposed, Optuna's grid calls
    ``study.stop()`` when a trial is told, which raises outside ``study.optimize``. Tune took that error
    as a failed stop and ran the trial again (the last trials of every grid search ran twice). Tune,
    not Optuna, ends the search: a grid's ``num_samples`` is capped at its size (``search_samples``)."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


SAMPLERS: dict[str, Callable[[SearchSpec], optuna.samplers.BaseSampler]] = {
    "tpe": lambda s: optuna.samplers.TPESampler(seed=s.seed, multivariate=True),
    "nsga2": lambda s: optuna.samplers.NSGAIISampler(seed=s.seed, population_size=max(4, min(50, s.num_samples // 3))),
    "random": lambda s: optuna.samplers.RandomSampler(seed=s.seed),
    "grid": lambda s: TuneGridSampler({p.name: p.grid() for p in s.space}, seed=s.seed),
}

SNAPSHOT_VERSION = 1


def _random_states(obj: Any, prefix: str = "", seen: set[int] | None = None) -> dict[str, LazyRandomState]:
    """Every LazyRandomState reachable through the attributes of Optuna objects, by attribute path."""
    seen = set() if seen is None else seen
    seen.add(id(obj))
    found: dict[str, LazyRandomState] = {}
    for name, value in vars(obj).items():
        if isinstance(value, LazyRandomState):
            found[prefix + name] = value
        elif id(value) not in seen and type(value).__module__.startswith("optuna.") and hasattr(value, "__dict__"):
            found.update(_random_states(value, f"{prefix}{name}.", seen))
    return found


def snapshot(sampler: optuna.samplers.BaseSampler) -> dict:
    """The sampler's random states as plain data (JSON-able): ``{"version": 1, "rng": {path: state}}``."""
    rng = {}
    for path, lazy in _random_states(sampler).items():
        kind, keys, pos, has_gauss, cached = lazy.rng.get_state()
        rng[path] = [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    return {"version": SNAPSHOT_VERSION, "rng": rng}


def rebuild(search: SearchSpec, state: dict | None) -> optuna.samplers.BaseSampler:
    """A fresh sampler for ``search`` that goes on from ``state`` (a :func:`snapshot`; None: a new search).

    A random state the snapshot does not have (a newer Optuna keeps one where the older did not) is
    seeded from the snapshot's content, so it does not replay the draws the search started with."""
    sampler = SAMPLERS[search.sampler](search)
    if state is None:
        return sampler
    saved = state["rng"]
    for path, lazy in _random_states(sampler).items():
        if path in saved:
            kind, keys, pos, has_gauss, cached = saved[path]
            lazy.rng.set_state((kind, keys, pos, has_gauss, cached))
        else:
            lazy.rng.seed(zlib.crc32(json.dumps([path, saved], sort_keys=True).encode()))
    return sampler
