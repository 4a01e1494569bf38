"""The Optuna side of a study: samplers, the search space, and the searcher Ray Tune drives.

The space is a dict of Optuna distributions (not a define-by-run function) and the sampler travels
as a snapshot of plain data (see samplers), so the searcher pickles cleanly into Tune's experiment
snapshot, on any Optuna release. Where the trials are recorded: see record.
"""
from __future__ import annotations

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from ray.tune.search import Searcher

from mmc_sweep.study.definition.spec import SearchSpec
from mmc_sweep.study.faults import kill_at_pass
from mmc_sweep.study.search.record import TUNE_ID, OptunaRecord, finite_values, tell_once
from mmc_sweep.study.search.samplers import rebuild, snapshot

REUSE_KEY = "reuse_of"  # in a trial's config: the id of the finished trial with the same parameters
ROWS_KEY = "rows_json"  # in a trial's final report: its result rows (a trial without one was stopped early)

def distributions(search: SearchSpec) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched settings (grid: every value as a categorical)."""
    out: dict[str, BaseDistribution] = {}
    for p in search.space:
        if p.type == "categorical" or search.sampler == "grid":
            out[p.name] = CategoricalDistribution(p.grid())
        elif p.type == "int":
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step) or 1)  # step with log: refused by the spec
        else:
            out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step or None)
    return out


def grid_size(search: SearchSpec) -> int:
    size = 1
    for p in search.space:
        size *= len(p.grid())
    return size


class StudySearcher(Searcher):
    """Ray Tune's searcher for a study, driving Optuna through its public ask/tell API.

    Each Tune trial is one Optuna trial (``ask``), tagged with the Tune trial id; its final result
    is told exactly once (:func:`~mmc_sweep.study.search.record.tell_once`): values when every objective is
    finite, FAIL otherwise (a failed or diverged trial), PRUNED for one a scheduler stopped (it ended
    without its final report). An interrupted
    trial is told nothing: Tune resumes it and it reports later. A proposal identical to a completed
    trial's parameters carries ``reuse_of`` (that trial's id): the trial reuses its result.
    The Optuna record itself is the truth; only the sampler's random states (plain data) and Tune's
    ids are pickled (into the study searcher's checkpoints, see run/jobs): the sampler is rebuilt from
    the study's settings when the searcher is unpickled.
    """

    def __init__(self, search: SearchSpec, record: OptunaRecord) -> None:
        metrics = [o.metric for o in search.objectives]
        modes = [o.mode for o in search.objectives]
        super().__init__(metric=metrics if len(metrics) > 1 else metrics[0], mode=modes if len(modes) > 1 else modes[0])
        self.search, self.objectives, self.record = search, metrics, record
        self.directions = ["maximize" if m == "max" else "minimize" for m in modes]
        self.space = distributions(search)
        self.sampler = rebuild(search, None)
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = self.record.open_study(self.directions, self.sampler)
        return self._study

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space and objectives come from the study spec

    def suggest(self, trial_id: str) -> dict:
        trial = self.study.ask(self.space)
        kill_at_pass("kill_between_ask_and_tag")  # tests: an Optuna trial no Tune trial will ever own
        trial.set_user_attr(TUNE_ID, trial_id)
        self.numbers[trial_id] = trial.number
        config = dict(trial.params)
        twin = next((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.params == trial.params and TUNE_ID in t.user_attrs), None)
        if twin is not None:
            config[REUSE_KEY] = twin.user_attrs[TUNE_ID]
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        values = None if error or not result or ROWS_KEY not in result else finite_values(result, self.objectives)
        if values is not None:
            tell_once(self.study, number, values)
        elif result and not error and ROWS_KEY not in result:  # stopped before its final report (a scheduler)
            tell_once(self.study, number, state=TrialState.PRUNED)
        else:
            tell_once(self.study, number, state=TrialState.FAIL)
        self.record.push()

    def __getstate__(self) -> dict:  # pickled into Tune's experiment snapshot: no open storage, no live sampler
        return {**self.__dict__, "_study": None, "sampler": snapshot(self.sampler)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.sampler = rebuild(self.search, state["sampler"])
