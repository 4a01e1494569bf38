"""A study's trials in the order they may run, handed to Ray Tune as one experiment.

1. the missing base models (content-addressed, shared by studies);
2. once every base model is trained: the reference jobs (base pair, control pairs, baselines);
3. beside them: the search trials Optuna proposes, at most ``search.max_concurrent`` at a time.

One experiment, not one per stage: Tune keeps the same worker processes for every trial of an
experiment (``reuse_actors``), so a study starts its workers (Python, torch, Ray Tune: ~2.5 s on a
busy 2-core machine) once, and search trials fill the slots the reference jobs leave free.

Every run takes stock from what is stored (base models, result rows) and from the trials Tune is
resuming, so a trial that failed for good in an earlier run (a dead worker past ``max_failures``)
is scheduled again, and the search never runs more than its ``num_samples`` in all.
"""
from __future__ import annotations

import pickle
import time
from typing import Any

from ray.tune.search import SearchGenerator, Searcher

from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.search.searcher import StudySearcher, grid_size
from mmc_sweep.study.storage.artifacts import has_base
from mmc_sweep.study.storage.results import read_trials
from mmc_sweep.study.storage.store import Store

EXPERIMENT = "study"  # the Tune experiment: <study>/tune/study; trial states: <study>/trial_states/study/
BASE, REFERENCE, SEARCH = "base models", "reference", "search"  # the groups of trials, in the order they start
STORED_KEY = "stored"  # in a base model trial's last report: its model is in the store


def base_jobs(spec: StudySpec) -> list[dict]:
    return [{"kind": key.kind, "seed": key.train.seed, "cue_proportion": key.data.cue_proportion}
            for kind in ("cue", "clean") for key in spec.base_models(kind)]


def reference_jobs(spec: StudySpec) -> list[dict]:
    """The reference jobs, the longest first: a baseline fine-tunes and measures two paths, a pair
    only measures one, so the pairs fill the slots the baselines leave at the end."""
    jobs = [{"role": "baseline", "method": m, "seed": s, "trial_id": f"{m}_s{s}"} for m in spec.baselines for s in spec.base.seeds]
    jobs += [{"role": "base", "seed": s, "trial_id": f"base_clean_s{s}"} for s in spec.base.seeds]
    if spec.base.control_pair:  # clean references of consecutive seeds
        seeds = spec.base.seeds
        jobs += [{"role": "control", "seeds": [a, b], "trial_id": f"control_clean_s{a}_s{b}"} for a, b in zip(seeds, seeds[1:])]
    return jobs


def search_samples(spec: StudySpec) -> int:
    """Trials the search runs: ``num_samples``, but a grid stops when every point has been tried."""
    return min(spec.search.num_samples, grid_size(spec.search)) if spec.search.sampler == "grid" else spec.search.num_samples


def group(config: dict) -> str:
    """Which kind of trial a Tune config is: a base model, a reference job or a search trial."""
    job = config.get("job")
    return SEARCH if job is None else BASE if "kind" in job else REFERENCE


def base_model_key(spec: StudySpec, job: dict):
    return spec.base_model(job["kind"], job["seed"], job["cue_proportion"])


def study_status(spec: StudySpec, store: Store) -> list[dict]:
    """What a study has done, part by part, against what it will do: base models stored (``completed``),
    then the rows written of its base pairs (two per seed: ``base_cue_s<seed>``, ``base_clean_s<seed>``),
    control pairs, baselines (each by its id) and search trials (``search_samples``, a grid capped at
    its size), by status. ``missing``: expected and not there yet."""
    rows = read_trials(store, spec.name).to_pylist()
    by_id = {r["trial_id"]: r for r in rows}
    stored = sum(has_base(store, base_model_key(spec, j)) for j in base_jobs(spec))
    parts = [{"part": BASE, "completed": stored, "failed": 0, "pruned": 0, "expected": len(base_jobs(spec)),
              "missing": len(base_jobs(spec)) - stored}]
    reference = reference_jobs(spec)
    expected_ids = {
        "base pairs": [f"base_{kind}_s{j['seed']}" for j in reference if j["role"] == "base" for kind in ("cue", "clean")],
        "control pairs": [j["trial_id"] for j in reference if j["role"] == "control"],
        "baselines": [j["trial_id"] for j in reference if j["role"] == "baseline"],
    }
    for name, ids in expected_ids.items():
        parts.append(_counts(name, [by_id[i] for i in ids if i in by_id], len(ids)))
    parts.append(_counts(SEARCH, [r for r in rows if r["role"] == "search"], search_samples(spec)))
    return parts


def _counts(name: str, mine: list[dict], expected: int) -> dict:
    counts = {status: sum(r["status"] == status for r in mine) for status in ("completed", "failed", "pruned")}
    return {"part": name, **counts, "expected": expected, "missing": max(0, expected - len(mine))}


class BaseClock:
    """When the current run's last base model ended (``time.perf_counter``, driver process): the split
    between the ``base`` and ``search`` phases of the run's ``phase seconds`` line. Module state,
    because Tune restores its searcher from a pickle, not as the object the run built."""

    ended: float | None = None


class StudyJobs(Searcher):
    """Ray Tune's searcher for the whole study: the jobs of :func:`base_jobs` and
    :func:`reference_jobs` still missing, then the proposals of ``search`` (the Optuna searcher).

    It reports no metric to Tune: base models and reference jobs report none, and the search's
    results go to ``search`` directly. ``suggest`` returns None (Tune asks again) while a base model
    is training or the search is at its concurrency cap, and FINISHED when nothing is left.
    """

    def __init__(self, spec: StudySpec, store: Store, search: StudySearcher, search_cap: int) -> None:
        super().__init__()
        self.spec, self.store, self.search, self.search_cap = spec, store, search, search_cap
        self.live: dict[str, dict | None] = {}  # Tune trial id -> its job (None: a search trial)
        self.stored: set[str] = set()  # live base model trials whose model is stored (they are ending)
        self._take_stock()

    def _take_stock(self) -> None:
        """What is left to run, from the store and the trials still live (Tune resumes those)."""
        live_jobs = [job for job in self.live.values() if job is not None]
        self.base = [j for j in base_jobs(self.spec) if j not in live_jobs and not has_base(self.store, base_model_key(self.spec, j))]
        rows = read_trials(self.store, self.spec.name).to_pylist()  # once: the written trials, every role
        done = {r["trial_id"] for r in rows}
        self.reference = [j for j in reference_jobs(self.spec) if j not in live_jobs and j["trial_id"] not in done]
        searched = {r["trial_id"] for r in rows if r["role"] == "search"}
        live_search = {trial_id for trial_id, job in self.live.items() if job is None}
        self.search_left = search_samples(self.spec) - len(searched | live_search)
        self.base_failed = False
        BaseClock.ended = None if self.base or self._running(BASE) else time.perf_counter()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # everything comes from the study spec

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.base:
            return self._hand_out(trial_id, self.base.pop(0))
        if any(job and "kind" in job and live_id not in self.stored for live_id, job in self.live.items()):
            # reference jobs and search trials load the base models. Handed out as soon as the last one
            # is stored, before its trial ends: pending then, they take over the ending trials'
            # worker processes (Tune reuses an actor only for a pending trial)
            return None
        if self.base_failed:
            return Searcher.FINISHED  # the run ends; the next one trains the missing models again
        if self.reference:
            return self._hand_out(trial_id, self.reference.pop(0))
        if self.search_left <= 0:
            return Searcher.FINISHED
        if self._running(SEARCH) >= self.search_cap:
            return None
        config = self.search.suggest(trial_id)
        self.live[trial_id] = None
        self.search_left -= 1
        return config

    def _hand_out(self, trial_id: str, job: dict) -> dict:
        self.live[trial_id] = job
        return {"job": job}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(STORED_KEY) and trial_id in self.live:
            self.stored.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        self.stored.discard(trial_id)
        job = self.live.pop(trial_id)
        if job is None:
            self.search.on_trial_complete(trial_id, result, error)
        elif "kind" in job:
            self.base_failed |= error  # retried past failure.max_failures
            if not self.base and not self._running(BASE):
                BaseClock.ended = time.perf_counter()

    def _running(self, kind: str) -> int:
        return sum(group({} if job is None else {"job": job}) == kind for job in self.live.values())

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"live": self.live, "stored": self.stored, "search": self.search}, f)  # the searcher pickles as plain data

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state: dict[str, Any] = pickle.load(f)
        self.live, self.stored, self.search = state["live"], state["stored"], state["search"]
        self._take_stock()


class StudyGenerator(SearchGenerator):
    """Tune's search generator, except that a restored experiment asks its searcher again: Tune
    saves "finished" with the experiment, but a study that ended with a failed base model or
    reference job has work left for the next run, which :class:`StudyJobs` finds when it takes stock."""

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._finished = False
