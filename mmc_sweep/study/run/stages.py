"""The three stages of a study as Ray Tune experiments, and what is reconciled after each."""
from __future__ import annotations

import functools
import json

from ray import tune
from ray.tune.search import ConcurrencyLimiter
from rich.console import Console

from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.run.callbacks import LiveProgress, ResultsSink
from mmc_sweep.study.run.interrupt import INTERRUPTS
from mmc_sweep.study.run.outcome import StudyOutcome, seconds_line, timed
from mmc_sweep.study.run.trials import ROWS_KEY, base_trial, reference_trial, search_trial, worker_exit_epoch
from mmc_sweep.study.search.record import OptunaRecord, reconcile
from mmc_sweep.study.search.searcher import StudySearcher, grid_size
from mmc_sweep.study.storage.artifacts import has_base
from mmc_sweep.study.storage.compaction import compact_study
from mmc_sweep.study.storage.results import finished_trials, read_trials
from mmc_sweep.study.storage.store import Store

STAGES = ("base", "reference", "search")  # in the order they run; each a Tune experiment under <study>/tune/


def _status_counts(store: Store, spec: StudySpec, role: str, trial_ids: frozenset[str] = frozenset()) -> tuple[int, int]:
    """(finished, failed) trials already written, of ``role`` or with one of ``trial_ids``: a restored
    stage's progress starts from them."""
    rows = [r for r in read_trials(store, spec.name).to_pylist() if r["role"] == role or r["trial_id"] in trial_ids]
    return sum(r["status"] != "failed" for r in rows), sum(r["status"] == "failed" for r in rows)


def _trainable(fn, spec: StudySpec, store: Store):
    resources = {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    extra = {"exit_epoch": worker_exit_epoch()} if fn is not base_trial else {}
    return tune.with_resources(tune.with_parameters(fn, spec=spec, store=store, cpus=spec.resources.cpu, **extra),
                               resources)


def _experiment(stage: str, trainable, spec: StudySpec, store: Store, options: RunOptions, *, param_space: dict | None,
                tune_config: tune.TuneConfig, callbacks: list, resume_errored: bool) -> tune.ResultGrid:
    """Restore the stage's experiment when an earlier run left one, else start it; run it to the end."""
    storage, fs = store.tune_path(spec.name, "tune"), store.given_filesystem
    path = f"{storage}/{stage}"
    if tune.Tuner.can_restore(path, storage_filesystem=fs):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, storage_filesystem=fs,
                                   resume_errored=resume_errored, restart_errored=False)
    else:
        run_config = tune.RunConfig(
            name=stage, storage_path=storage, storage_filesystem=fs, verbose=1 if options.verbose else 0, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
        )
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
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


def run_base_stage(spec: StudySpec, store: Store, options: RunOptions, console: Console) -> bool:
    jobs = [{"kind": key.kind, "seed": key.train.seed, "cue_proportion": key.data.cue_proportion}
            for kind in ("cue", "clean") for key in spec.base_models(kind) if not has_base(store, key)]
    if not jobs:
        console.print(f"base models: all {len(spec.base_models('cue')) + len(spec.base_models('clean'))} found in {store.uri_of('models')}, reused")
        return True
    progress = LiveProgress(None, "base models", len(jobs), [], done_before=lambda: (0, 0))
    results = _experiment("base", _trainable(base_trial, spec, store), spec, store, options,
                          param_space={"job": tune.grid_search(jobs)}, tune_config=tune.TuneConfig(reuse_actors=True),
                          callbacks=[progress], resume_errored=True)
    return not results.errors and all(has_base(store, k) for kind in ("cue", "clean") for k in spec.base_models(kind))


def reference_jobs(spec: StudySpec) -> list[dict]:
    """The reference stage's jobs, the longest first: a baseline fine-tunes and measures two paths, a
    pair only measures one, so the pairs fill the slots the baselines leave at the end."""
    jobs = [{"role": "baseline", "method": m, "seed": s, "trial_id": f"{m}_s{s}"} for m in spec.baselines for s in spec.base.seeds]
    jobs += [{"role": "base", "seed": s, "trial_id": f"base_clean_s{s}"} for s in spec.base.seeds]
    if spec.base.control_pair:  # clean references of consecutive seeds
        seeds = spec.base.seeds
        jobs += [{"role": "control", "seeds": [a, b], "trial_id": f"control_clean_s{a}_s{b}"} for a, b in zip(seeds, seeds[1:])]
    return jobs


def run_reference_stage(spec: StudySpec, store: Store, options: RunOptions, console: Console) -> bool:
    done = finished_trials(store, spec.name)
    jobs = [j for j in reference_jobs(spec) if j["trial_id"] not in done]
    if not jobs:
        return True
    sink = ResultsSink(store, spec, "baseline")
    progress = LiveProgress(None, "base pair and baselines", len(reference_jobs(spec)), [],
                            done_before=functools.partial(_status_counts, store, spec, "baseline",
                                                          frozenset(j["trial_id"] for j in reference_jobs(spec))))
    results = _experiment("reference", _trainable(reference_trial, spec, store), spec, store, options,
                          param_space={"job": tune.grid_search(jobs)}, tune_config=tune.TuneConfig(reuse_actors=True),
                          callbacks=[sink, progress], resume_errored=True)
    _write_missing(results, sink)
    ids = {j["trial_id"] for j in reference_jobs(spec)}
    rows = [r for r in read_trials(store, spec.name).to_pylist() if r["trial_id"] in ids]
    return not results.errors and all(r["status"] == "completed" for r in rows)


def _slots(spec: StudySpec) -> int:
    """Trials the cluster can run at once with the study's per-trial resources."""
    import ray

    total = ray.cluster_resources()
    slots = int(total.get("CPU", 1.0) // spec.resources.cpu)
    if spec.resources.gpu:
        slots = min(slots, int(total.get("GPU", 0.0) // spec.resources.gpu))
    return max(1, slots)


def search_samples(spec: StudySpec) -> int:
    """Trials the search runs: ``num_samples``, but a grid stops when every point has been tried."""
    return min(spec.search.num_samples, grid_size(spec.search)) if spec.search.sampler == "grid" else spec.search.num_samples


def _scheduler(spec: StudySpec):
    """Tune's ASHA on the study's per-epoch metric, or none (FIFO)."""
    if spec.search.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    a = spec.search.asha
    # time: the trial's epoch, not Tune's report count, which restarts at 0 when a trial resumes
    return ASHAScheduler(time_attr="epoch", metric=a.metric, mode=a.mode, grace_period=a.grace_period,
                         reduction_factor=a.reduction_factor, max_t=10**6)  # max_t: trials end by their epochs


def run_search_stage(spec: StudySpec, store: Store, options: RunOptions, console: Console) -> None:
    record = OptunaRecord.of(store, spec.name, options.optuna_storage)
    record.remember()
    record.fetch()
    searcher = StudySearcher(spec.search, record)
    # Always behind a limiter: without one Tune keeps a single trial pending, so trials start one
    # by one and slots sit idle; with one it keeps `limit` pending.
    search_alg = ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent or _slots(spec))
    objectives = [(o.metric, o.mode) for o in spec.search.objectives]
    sink = ResultsSink(store, spec, "search")
    progress = LiveProgress(None, f"search ({spec.finetune.method})", search_samples(spec), objectives,
                            done_before=functools.partial(_status_counts, store, spec, "search"))
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=_scheduler(spec), num_samples=search_samples(spec),
                                  reuse_actors=True)
    results = _experiment("search", _trainable(search_trial, spec, store), spec, store, options, param_space=None,
                          tune_config=tune_config, callbacks=[sink, progress], resume_errored=False)
    if INTERRUPTS.received:  # Tune resumes the running trials: Optuna must not hear of them yet
        record.push()
        return
    _write_missing(results, sink)
    rows = [r for r in read_trials(store, spec.name).to_pylist() if r["role"] == "search"]
    lost = reconcile(searcher.study, rows, [o.metric for o in spec.search.objectives])
    for trial_id in lost:  # asked of Optuna, but never recorded by Tune (a killed driver): say so in both
        sink.write_payload({"trials": [{"trial_id": trial_id, "role": "search", "status": "failed", "method": spec.finetune.method,
                                        "error": "lost: the driver died before Tune recorded this trial"}]})
    record.push()
    if lost:
        console.print(f"optuna: {len(lost)} trial(s) lost by an interrupted run recorded as failed")


def compact(store: Store, spec: StudySpec, console: Console) -> None:
    """Merge the part files written so far into a few large files (local and shared folders: an
    object store has no atomic rename, so it keeps its part files). A failure loses nothing."""
    if store.local_root is None:
        return
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
    """The three stages, compacting after the last two; ``seconds`` collects each phase's wall time."""
    seconds = {} if seconds is None else seconds
    folder = store.uri_of(spec.name)
    console.print(f"study [bold]{spec.name}[/] ({spec.hash}) -> {folder}")
    with timed(seconds, "base"):
        ok = run_base_stage(spec, store, options, console)
    if INTERRUPTS.received:
        return _interrupted(folder, console)
    if not ok:
        console.print("[red]base models failed to train[/]: see the Ray logs (--verbose) ")
        return StudyOutcome(1, folder, 0, 0, seconds)
    with timed(seconds, "reference"):
        ok = run_reference_stage(spec, store, options, console)
    if INTERRUPTS.received:
        return _interrupted(folder, console)
    with timed(seconds, "compaction"):
        compact(store, spec, console)
    with timed(seconds, "search"):
        run_search_stage(spec, store, options, console)
    if INTERRUPTS.received:
        return _interrupted(folder, console)
    with timed(seconds, "compaction"):
        compact(store, spec, console)
    rows = [r for r in read_trials(store, spec.name).to_pylist() if r["role"] == "search"]
    completed = sum(r["status"] == "completed" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    from mmc_sweep.study.run.report import print_summary

    with timed(seconds, "summary"):
        print_summary(spec, store, console)
    console.print(seconds_line(seconds), markup=False, highlight=False)
    code = 0 if ok and completed > 0 else 1
    return StudyOutcome(code, folder, completed, failed, seconds)


def _interrupted(folder: str, console: Console) -> StudyOutcome:
    console.print(f"interrupted: what finished is written; continue with  python run_study.py resume {folder}",
                  markup=False, highlight=False)
    return StudyOutcome(INTERRUPTS.exit_code, folder, 0, 0)
