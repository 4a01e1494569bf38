"""A study's one Ray Tune experiment (see jobs: base models, reference jobs, the search), and what
is reconciled after it."""
from __future__ import annotations

import json
import os
import time

from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from rich.console import Console

from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.run.callbacks import LiveProgress, ResultsSink
from mmc_sweep.study.run.interrupt import INTERRUPTS
from mmc_sweep.study.run.jobs import (BASE, EXPERIMENT, REFERENCE, SEARCH, BaseClock, StudyGenerator, StudyJobs,
                                      base_jobs, base_model_key, group, reference_jobs, search_samples)
from mmc_sweep.study.run.outcome import StudyOutcome, seconds_line, timed
from mmc_sweep.study.run.trials import ROWS_KEY, study_trial, worker_faults
from mmc_sweep.study.search.record import OptunaRecord, reconcile
from mmc_sweep.study.search.searcher import StudySearcher
from mmc_sweep.study.storage.artifacts import has_base
from mmc_sweep.study.storage.compaction import compact_study
from mmc_sweep.study.storage.results import finished_trials, read_trials
from mmc_sweep.study.storage.store import Store


def trial_slots(spec: StudySpec) -> int:
    """Trials the cluster can run at once with the study's per-trial resources."""
    import ray

    total = ray.cluster_resources()
    slots = int(total.get("CPU", 1.0) // spec.resources.cpu)
    if spec.resources.gpu:
        slots = min(slots, int(total.get("GPU", 0.0) // spec.resources.gpu))
    return max(1, slots)


class SearchASHA(ASHAScheduler):
    """Tune's ASHA over the search trials only: base models and reference jobs run to their end."""

    def on_trial_add(self, tune_controller, trial) -> None:
        if group(trial.config) == SEARCH:
            super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if group(trial.config) != SEARCH:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if group(trial.config) == SEARCH:
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if group(trial.config) == SEARCH:
            super().on_trial_remove(tune_controller, trial)


def _scheduler(spec: StudySpec):
    """ASHA on the study's per-epoch metric (search trials only), or none (FIFO)."""
    if spec.search.scheduler != "asha":
        return None
    a = spec.search.asha
    # time: the trial's epoch, not Tune's report count, which restarts at 0 when a trial resumes
    return SearchASHA(time_attr="epoch", metric=a.metric, mode=a.mode, grace_period=a.grace_period,
                      reduction_factor=a.reduction_factor, max_t=10**6)  # max_t: trials end by their epochs


def _snapshot_period_s() -> float:
    """How often the experiment's snapshot reaches the study's storage: as often as Tune takes one
    (``TUNE_GLOBAL_CHECKPOINT_S``; about every 10 s by default), not every 300 s (Ray's sync period).
    A trial started after the newest snapshot in storage is lost when the driver is killed (it is
    recorded ``lost`` and proposed again), so this bounds the work a kill -9 repeats."""
    period = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", "auto")
    return 10.0 if period == "auto" else float(period)


def _experiment(spec: StudySpec, store: Store, options: RunOptions, searcher: StudySearcher,
                callbacks: list) -> tune.ResultGrid | None:
    """Restore the study's experiment when an earlier run left one, else start it; run it to the end."""
    storage, fs = store.path(spec.name, "tune"), store.given_filesystem  # fs None: a local folder
    path = f"{storage}/{EXPERIMENT}"
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    trainable = tune.with_resources(tune.with_parameters(study_trial, spec=spec, store=store, cpus=spec.resources.cpu,
                                                         faults=worker_faults()), resources)
    # base and reference trials report no search metric (ASHA's included); our search trials always do
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    if tune.Tuner.can_restore(path, storage_filesystem=fs):  # errored trials are not rerun: StudyJobs reschedules them
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, storage_filesystem=fs,
                                   resume_errored=False, restart_errored=False)
    else:
        slots = trial_slots(spec)
        cap = spec.search.max_concurrent or slots
        # always behind a limiter: without one Tune keeps a single trial pending and slots sit idle
        jobs = ConcurrencyLimiter(StudyJobs(spec, store, searcher, cap), max_concurrent=max(cap, slots))
        run_config = tune.RunConfig(
            name=EXPERIMENT, storage_path=storage, storage_filesystem=fs, verbose=1 if options.verbose else 0,
            callbacks=callbacks, failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            sync_config=tune.SyncConfig(sync_period=_snapshot_period_s()))
        tune_config = tune.TuneConfig(search_alg=StudyGenerator(jobs), scheduler=_scheduler(spec), num_samples=-1,
                                      reuse_actors=True)  # -1: until StudyJobs says FINISHED
        tuner = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
    if INTERRUPTS.stopping:  # stopped before the experiment began: nothing to run or save
        return None
    INTERRUPTS.in_tune = True
    try:
        return tuner.fit()
    finally:
        INTERRUPTS.in_tune = False


def _write_missing(results: tune.ResultGrid, sink: ResultsSink) -> None:
    """Rows that reached Tune but not Parquet (the driver died between the two) are written now."""
    done = finished_trials(sink.store, sink.spec.name)
    for result in results:
        rows = (result.metrics or {}).get(ROWS_KEY)
        if rows:
            payload = json.loads(rows)
            if any(r["trial_id"] not in done for r in payload["trials"]):
                sink.write_payload(payload)


def _progress(spec: StudySpec, store: Store, missing: int) -> LiveProgress:
    """The live view: every reference job and search trial; the ``missing`` base models this run trains."""
    totals = {BASE: missing, REFERENCE: len(reference_jobs(spec)), SEARCH: search_samples(spec)}
    ids = {j["trial_id"] for j in reference_jobs(spec)}

    def done_before() -> dict[str, dict[str, bool]]:  # trials already written (id -> failed): a restored run counts them
        rows = read_trials(store, spec.name).to_pylist()
        return {REFERENCE: {r["trial_id"]: r["status"] == "failed" for r in rows if r["trial_id"] in ids},
                SEARCH: {r["trial_id"]: r["status"] == "failed" for r in rows if r["role"] == "search"}}

    objectives = [(o.metric, o.mode) for o in spec.search.objectives]
    return LiveProgress(None, f"study {spec.name} ({spec.finetune.method})", totals, objectives, done_before)


def run_experiment(spec: StudySpec, store: Store, options: RunOptions, console: Console,
                   seconds: dict[str, float]) -> tuple[bool, bool]:
    """The study's experiment; (every base model trained, every reference job completed).
    ``seconds``: ``base`` until the last base model of this run ended, ``search`` the rest."""
    record = OptunaRecord.of(store, spec.name, options.optuna_storage)
    record.remember()
    record.fetch()
    searcher = StudySearcher(spec.search, record)
    found = sum(has_base(store, base_model_key(spec, j)) for j in base_jobs(spec))
    if found:
        console.print(f"base models: {found} of {len(base_jobs(spec))} found in {store.uri_of('models')}, reused")
    sink = ResultsSink(store, spec)
    started = time.perf_counter()
    progress = _progress(spec, store, missing=len(base_jobs(spec)) - found)
    results = _experiment(spec, store, options, searcher, [sink, progress])
    ended = time.perf_counter()
    base_end = ended if BaseClock.ended is None else min(max(BaseClock.ended, started), ended)
    seconds["base"] = seconds.get("base", 0.0) + base_end - started
    seconds["search"] = seconds.get("search", 0.0) + ended - base_end
    if INTERRUPTS.stopping:  # Tune resumes the running trials: Optuna must not hear of them yet
        record.push()
        return True, True
    _write_missing(results, sink)
    base_ok = all(has_base(store, base_model_key(spec, j)) for j in base_jobs(spec))
    rows = read_trials(store, spec.name).to_pylist()
    ids = {j["trial_id"] for j in reference_jobs(spec)}
    reference_ok = base_ok and all(r["status"] == "completed" for r in rows if r["trial_id"] in ids) \
        and ids <= {r["trial_id"] for r in rows}
    if base_ok:  # with a base model missing no search trial started
        search_rows = [r for r in rows if r["role"] == "search"]
        lost = reconcile(searcher.study, search_rows, [o.metric for o in spec.search.objectives])
        for trial_id in lost:  # asked of Optuna, but never recorded by Tune (a killed driver): say so in both
            sink.write_payload({"trials": [{"trial_id": trial_id, "role": "search", "status": "failed",
                                            "method": spec.finetune.method,
                                            "error": "lost: the driver died before Tune recorded this trial"}]})
        if lost:
            console.print(f"optuna: {len(lost)} trial(s) lost by an interrupted run recorded as failed")
    record.push()
    return base_ok, reference_ok


def compact(store: Store, spec: StudySpec, console: Console) -> None:
    """Merge the part files written so far into a few large files (local and shared folders: an
    object store has no atomic rename, so it keeps its part files). A failure loses nothing."""
    if store.local_root is None:
        return
    INTERRUPTS.fault_point("compaction")
    try:
        done = compact_study(store.local_root / spec.name)
    except OSError as err:
        console.print(f"[yellow]results not compacted[/] ({err}); the part files are complete as they are")
        return
    if done:
        tables = ", ".join(f"{d.table} {d.files_before} -> {d.files_after}" for d in done)
        console.print(f"results compacted (files: {tables}) in {sum(d.seconds for d in done):.1f} s")


def run_stages(spec: StudySpec, store: Store, options: RunOptions, console: Console,
               seconds: dict[str, float] | None = None) -> StudyOutcome:
    """The study's experiment, then compaction and the summary; ``seconds`` collects each phase's wall time."""
    seconds = {} if seconds is None else seconds
    folder = store.uri_of(spec.name)
    console.print(f"study [bold]{spec.name}[/] ({spec.hash}) -> {folder}")
    base_ok, reference_ok = run_experiment(spec, store, options, console, seconds)
    if INTERRUPTS.stopping:
        return _interrupted(folder, console)
    if not base_ok:
        console.print("[red]base models failed to train[/]: see the Ray logs (--verbose); run again to retry them")
        return StudyOutcome(1, folder, 0, 0, seconds)
    with timed(seconds, "compaction"):
        compact(store, spec, console)
    if INTERRUPTS.stopping:  # compaction finished (or was undone) first: the results are whole
        return _interrupted(folder, console)
    rows = [r for r in read_trials(store, spec.name).to_pylist() if r["role"] == "search"]
    completed = sum(r["status"] == "completed" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    from mmc_sweep.study.run.report import print_summary

    with timed(seconds, "summary"):
        INTERRUPTS.fault_point("summary")
        print_summary(spec, store, console)
    if INTERRUPTS.stopping:
        return _interrupted(folder, console)
    console.print(seconds_line(seconds), markup=False, highlight=False)
    code = 0 if reference_ok and completed > 0 else 1
    return StudyOutcome(code, folder, completed, failed, seconds)


def _interrupted(folder: str, console: Console) -> StudyOutcome:
    if INTERRUPTS.failure:  # the study stopped itself (a full storage): one line, exit 1
        console.print(f"error: {INTERRUPTS.failure}:  python run_study.py resume {folder}", markup=False,
                      highlight=False, soft_wrap=True)
        return StudyOutcome(1, folder, 0, 0)
    console.print(f"interrupted: what finished is written; continue with  python run_study.py resume {folder}",
                  markup=False, highlight=False)
    return StudyOutcome(INTERRUPTS.exit_code, folder, 0, 0)
