"""The Optuna side of a study: samplers, the search space, and the searcher Ray Tune drives.

The space is a dict of Optuna distributions (not a define-by-run function), so the searcher
pickles cleanly into Tune's experiment snapshot. Trials are recorded in an Optuna
``JournalStorage`` file, which ``optuna-dashboard`` reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from mmc_sweep.study.spec import SearchSpec

SAMPLERS: dict[str, Callable[[SearchSpec], optuna.samplers.BaseSampler]] = {
    "tpe": lambda s: optuna.samplers.TPESampler(seed=s.seed, multivariate=True),
    "nsga2": lambda s: optuna.samplers.NSGAIISampler(seed=s.seed, population_size=max(4, min(50, s.num_samples // 3))),
    "random": lambda s: optuna.samplers.RandomSampler(seed=s.seed),
    "grid": lambda s: optuna.samplers.GridSampler({p.name: p.grid() for p in s.space}, seed=s.seed),
}


def distributions(search: SearchSpec) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched settings (grid: every value as a categorical)."""
    out: dict[str, BaseDistribution] = {}
    for p in search.space:
        if p.type == "categorical" or search.sampler == "grid":
            out[p.name] = CategoricalDistribution(p.grid())
        elif p.type == "int":
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step) if p.step and not p.log else 1)
        else:
            out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step if p.step and not p.log else None)
    return out


def grid_size(search: SearchSpec) -> int:
    size = 1
    for p in search.space:
        size *= len(p.grid())
    return size


def journal(path: Path) -> JournalStorage:
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_searcher(search: SearchSpec, study_name: str, journal_path: Path) -> OptunaSearch:
    """An ``OptunaSearch`` over ``search.space`` with ``search.objectives`` (one or several)."""
    metrics = [o.metric for o in search.objectives]
    modes = [o.mode for o in search.objectives]
    return OptunaSearch(
        space=distributions(search),
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        sampler=SAMPLERS[search.sampler](search),
        study_name=study_name,
        storage=journal(journal_path),
    )


def reconcile_journal(journal_path: Path, study_name: str) -> int:
    """Mark trials left RUNNING in the journal as FAIL once no Tune trial can finish them (after a
    killed driver, Tune's snapshot can be older than the journal). Returns how many were closed."""
    if not journal_path.exists():
        return 0
    storage = journal(journal_path)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return 0
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return len(stale)
