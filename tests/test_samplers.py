"""Every sampler's searcher survives being pickled mid-study (Tune's experiment snapshot and its
searcher checkpoint) and goes on proposing what an uninterrupted searcher proposes."""
from __future__ import annotations

import pickle

import optuna
import pytest

from mmc_sweep.study.definition.spec import SAMPLER_NAMES, ObjectiveSpec, ParamSpec, SearchSpec
from mmc_sweep.study.search.record import OptunaRecord
from mmc_sweep.study.search.samplers import SAMPLERS
from mmc_sweep.study.search.searcher import ROWS_KEY, StudySearcher
from mmc_sweep.study.storage.store import Store

# stepped ranges, so that the grid sampler has a grid (48 points); NSGA-II's population is 4
SPACE = (ParamSpec("lr", "categorical", choices=(0.01, 0.03, 0.1)),
         ParamSpec("lambda_barrier", "float", low=0.5, high=2.0, step=0.5),
         ParamSpec("n_clean", "int", low=40, high=100, step=20))
OBJECTIVES = (ObjectiveSpec("acc_rand_cue", "max"), ObjectiveSpec("cue_reliance", "min"))
PROPOSALS = 16  # past TPE's 10 random start-up trials and through three NSGA-II generations


def _result(params: dict) -> dict:
    """A deterministic final report: the same parameters always give the same values."""
    return {ROWS_KEY: "[]", "acc_rand_cue": params["lr"] * params["lambda_barrier"],
            "cue_reliance": params["n_clean"] / 100 - params["lambda_barrier"] / 4}


def _searcher(tmp_path, name: str, sampler: str) -> StudySearcher:
    search = SearchSpec(num_samples=PROPOSALS, sampler=sampler, seed=3, objectives=OBJECTIVES, space=SPACE)
    return StudySearcher(search, OptunaRecord(Store.open(str(tmp_path)), name))


def _propose(searcher: StudySearcher, first: int, last: int, pending: list[str]) -> list[dict]:
    """Proposals ``first..last-1``; each trial completes when the next one is proposed (one is
    always running, as in a real search), so a snapshot taken between two calls has one in flight."""
    out = []
    for i in range(first, last):
        trial_id = f"t{i:02d}"
        out.append(searcher.suggest(trial_id))
        pending.append(trial_id)
        if len(pending) > 1:
            done = pending.pop(0)
            searcher.on_trial_complete(done, _result(searcher.study.trials[searcher.numbers[done]].params))
    return out


def _interrupted(searcher: StudySearcher) -> StudySearcher:
    """How a resumed study gets its searcher back: the study's searcher (run/jobs.StudyJobs) pickles
    it into every checkpoint of the experiment, and the resumed run unpickles the newest."""
    blob = pickle.dumps(searcher)
    assert b"_thread" not in blob and b"NSGAIISampler" not in blob  # no live sampler in the snapshot
    return pickle.loads(blob)


def test_every_sampler_name_has_a_sampler():
    assert set(SAMPLERS) == set(SAMPLER_NAMES)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_a_restored_searcher_proposes_what_an_uninterrupted_one_does(tmp_path, sampler):
    pending: list[str] = []
    expected = _propose(_searcher(tmp_path, "straight", sampler), 0, PROPOSALS, pending)

    pending = []
    searcher = _searcher(tmp_path, "interrupted", sampler)
    got = _propose(searcher, 0, 5, pending)  # inside TPE's start-up and NSGA-II's first generation
    searcher = _interrupted(searcher)
    got += _propose(searcher, 5, 11, pending)  # TPE's model and NSGA-II's crossover from here on
    searcher = _interrupted(searcher)
    got += _propose(searcher, 11, PROPOSALS, pending)

    assert got == expected
    assert len({tuple(sorted(p.items())) for p in got}) > PROPOSALS // 2  # it went on exploring, not replaying
    # the trial in flight at each interruption was told to Optuna by the restored searcher
    states = [t.state for t in searcher.study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == PROPOSALS - 1 and states[-1] == optuna.trial.TrialState.RUNNING


def test_a_finished_grid_is_told_its_last_trials_without_an_error(tmp_path):
    """Tune tells trials outside ``study.optimize``: telling the last trials of an exhausted grid must
    not raise (Optuna's own grid sampler calls ``study.stop()`` there, and Tune reran the trial)."""
    space = (ParamSpec("lr", "categorical", choices=(0.01, 0.03, 0.1)),)
    search = SearchSpec(num_samples=3, sampler="grid", seed=3, objectives=OBJECTIVES, space=space)
    searcher = StudySearcher(search, OptunaRecord(Store.open(str(tmp_path)), "grid"))
    proposed = [searcher.suggest(f"t{i}")["lr"] for i in range(3)]
    assert sorted(proposed) == [0.01, 0.03, 0.1]  # every point once
    for i, lr in enumerate(proposed):
        searcher.on_trial_complete(f"t{i}", _result({"lr": lr, "lambda_barrier": 1.0, "n_clean": 40}))
    assert [t.state.name for t in searcher.study.trials] == ["COMPLETE"] * 3
