"""The ``pairs`` command: check everything, start or join Ray, re-make the fine-tuned models not
stored yet, measure every pair and kind not written yet (each a Ray Tune trial), print what was done.
Ctrl-C or SIGTERM stops it as it stops a study (Tune's graceful stop; exit 130 / 143).

Nothing is restored from Tune: every run takes stock from what is stored. A pair is written once its
``pairs`` part file exists (its ``layers`` file, with ``--layers``, is written before it), so an
interrupted run loses at most the pairs in flight, and the next run measures only what is missing.
A run holds the study's lock (one writer at a time) and compacts the study's tables at its end.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from typing import Callable

from rich.console import Console

from mmc_sweep.config import FinetunedSpec
from mmc_sweep.results_layout import PAIR_SEPARATOR, pair_part_name
from mmc_sweep.study.definition.folder import load_resumable
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.pairs.selection import ModelRef, check_kinds, check_layers, pair_list, select_models
from mmc_sweep.study.storage.artifacts import has_base
from mmc_sweep.study.storage.compaction import held_study
from mmc_sweep.study.storage.results import check_results_readable, part_ids
from mmc_sweep.study.storage.store import Store

EXPERIMENTS = ("pair_models", "pairs")  # the Tune runs: <study>/tune/<name>


def pairs_per_kind(store: Store, study: str) -> dict[str, int]:
    """Pairs written to the study's ``pairs`` table, per path kind (``status``)."""
    return dict(sorted(Counter(name.rsplit(PAIR_SEPARATOR, 1)[-1] for name in part_ids(store, study, "pairs")).items()))


def run_pairs(study_dir: str, models: str, kinds: str, layers: str | None, options: RunOptions,
              console: Console | None = None) -> int:
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    spec, stored = load_resumable(study_dir)
    store = Store.open(stored.storage, stored.filesystem)
    kinds_wanted, layer_names = check_kinds(kinds), check_layers(spec, layers)
    refs = select_models(spec, store, models)
    # one writer at a time in a local or shared folder (a running study, a compaction, another pairs run):
    # refused with exit 2 before anything is written; an object store has no lock (and no compaction)
    folder = None if store.local_root is None else store.local_root / spec.name
    if folder:
        check_results_readable(store, spec.name)
    with held_study(folder):
        return _measure(spec, stored, store, refs, kinds_wanted, layer_names, options, console)


def _measure(spec: StudySpec, stored: RunOptions, store: Store, refs: list[ModelRef], kinds_wanted: tuple[str, ...],
             layer_names: tuple[str, ...] | None, options: RunOptions, console: Console) -> int:
    """Copy or measure what is missing, then compact the study's tables; the caller holds the study."""
    paths = dataclasses.replace(spec.paths, kinds=kinds_wanted)
    from mmc_sweep.study.pairs.work import copy_recorded

    def unwritten(jobs: list[tuple[ModelRef, ModelRef, str]]) -> list[tuple[ModelRef, ModelRef, str]]:
        """The pairs and kinds among ``jobs`` whose rows are not written: one listing per table (and
        compacted files' footers)."""
        tables = ("pairs",) + (("layers",) if layer_names is not None else ())
        names = set.intersection(*(part_ids(store, spec.name, t) for t in tables))
        return [(a, b, kind) for a, b, kind in jobs if pair_part_name(a.id, b.id, kind) not in names]

    jobs = [(a, b, kind) for a, b in pair_list(refs) for kind in kinds_wanted]
    missing = unwritten(jobs)
    recorded = set(store.list("pairs"))  # pairs measured before by any study of this storage
    todo = [(a, b, kind) for a, b, kind in missing
            if not copy_recorded(store, spec, a, b, kind, paths, layer_names, recorded)]
    needed = {r.id for a, b, _ in todo for r in (a, b)}
    remake = [r for r in refs if r.id in needed and isinstance(r.key, FinetunedSpec) and not has_base(store, r.key)]
    total = len(jobs)
    console.print(f"pairs of study [bold]{spec.name}[/]: {len(refs)} models, {total} pairs x kinds "
                  f"({total - len(missing)} written before, {len(missing) - len(todo)} copied from the record of "
                  f"pairs measured before); {len(remake)} fine-tuned model(s) to re-make")
    if todo:
        from mmc_sweep.study.run.cluster import connect_ray
        from mmc_sweep.study.run.interrupt import INTERRUPTS, StartUpInterrupted

        with INTERRUPTS:  # Ctrl-C / SIGTERM: Tune's graceful stop, then 130 / 143; what is written stays
            try:
                with INTERRUPTS.around_ray_start():
                    connect_ray(dataclasses.replace(options, storage=stored.storage))
            except StartUpInterrupted:
                INTERRUPTS.report_start_up(console)
                return INTERRUPTS.exit_code
            INTERRUPTS.starting = False
            by_id = {r.id: r for r in refs}
            if remake:
                _tune(EXPERIMENTS[0], [{"model": r.id} for r in remake], spec, store, by_id, paths, layer_names, console,
                      _model_line)
            if not INTERRUPTS.stopping:
                _tune(EXPERIMENTS[1], [{"a": a.id, "b": b.id, "kind": k} for a, b, k in todo], spec, store, by_id,
                      paths, layer_names, console, _pair_line)
        if INTERRUPTS.stopping:
            done = total - len(unwritten(todo))
            console.print(f"interrupted: {done} of {total} pairs x kinds written; the same command measures the rest",
                          markup=False, highlight=False)
            return INTERRUPTS.exit_code
    left = unwritten(todo)
    where = store.uri_of(spec.name, "results", "pairs")
    if left:
        console.print(f"[red]{len(left)} of {total} pairs not measured[/] (see the Ray logs, --verbose); "
                      f"run the same command again to measure them", highlight=False)
        return 1
    if missing:
        from mmc_sweep.study.run.stages import compact

        compact(store, spec, console)  # one file per table again, not one per pair and kind
    console.print(f"{total} pairs x kinds in {where}; read them with  python run_study.py analyze "
                  f"{store.uri_of(spec.name)} --section pairs", markup=False, highlight=False, soft_wrap=True)
    return 0


def _model_line(job: dict, result: dict) -> str:
    return f"re-made {job['model']}"


def _pair_line(job: dict, result: dict) -> str:
    barriers = json.loads(result.get("barriers_json", "{}"))
    values = ", ".join(f"@{view} {value:.3f}" for view, value in barriers.items())
    return f"{job['a']} ~ {job['b']} ({job['kind']}): loss barrier {values}{' (reused)' if result.get('reused') else ''}"


def _lines():
    from ray import tune

    class Lines(tune.Callback):
        """One line per finished trial. Tune pickles its callbacks with the experiment: the console stays out."""

        def __init__(self, total: int, line: Callable[[dict, dict], str], console: Console) -> None:
            self.total, self.line, self.console, self.done = total, line, console, 0

        def on_step_begin(self, iteration, trials, **info) -> None:
            from mmc_sweep.study.run.interrupt import INTERRUPTS  # here: a closure over it would be pickled

            INTERRUPTS.on_tune_step()  # a stop asked for before Tune listened

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if result.get("done") and self.console is not None:
                self.done += 1
                text = f"failed: {result['error']}" if result.get("failed") else self.line(trial.config["job"], result)
                self.console.print(f"[{self.done}/{self.total}] {text}", markup=False, highlight=False, soft_wrap=True)

        def __getstate__(self) -> dict:
            return {"total": self.total, "line": self.line, "console": None, "done": self.done}

    return Lines


def _tune(name: str, jobs: list[dict], spec, store: Store, refs, paths, layers, console: Console,
          line: Callable[[dict, dict], str]) -> None:
    """One Tune run over ``jobs`` (a grid: each job a trial), workers reused between trials."""
    import os

    from ray import tune

    from mmc_sweep.study.pairs.work import pairs_trial
    from mmc_sweep.study.run.stages import trial_slots

    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    trainable = tune.with_resources(
        tune.with_parameters(pairs_trial, spec=spec, store=store, refs=refs, paths=paths, layers=layers,
                             cpus=spec.resources.cpu), {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    tuner = tune.Tuner(
        trainable, param_space={"job": tune.grid_search(jobs)},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=trial_slots(spec)),
        run_config=tune.RunConfig(name=name, storage_path=store.path(spec.name, "tune"),
                                  storage_filesystem=store.given_filesystem, verbose=0, callbacks=[_lines()(len(jobs), line, console)],
                                  failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures)))
    from mmc_sweep.study.run.interrupt import INTERRUPTS

    INTERRUPTS.in_tune = True
    try:
        tuner.fit()
    finally:
        INTERRUPTS.in_tune = False
