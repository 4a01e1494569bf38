"""Run or resume a study: refuse what can be refused before anything is written, start or join Ray,
write the spec, take the study's lock, run the study's one Ray Tune experiment (``stages.py``)."""
from __future__ import annotations

import sys

from rich.console import Console

from mmc_sweep.study.definition.folder import STUDY_FILE, check_study_name
from mmc_sweep.study.definition.options import RunOptions
from mmc_sweep.study.definition.spec import StudySpec, dump_study
from mmc_sweep.study.run.cluster import check_fits_a_node, connect_ray
from mmc_sweep.study.run.outcome import StudyOutcome, timed
from mmc_sweep.study.storage.store import Store


def run(spec: StudySpec, options: RunOptions, console: Console | None = None) -> StudyOutcome:
    """Run (or continue) a study to the end. Ray and Optuna are imported here, not at start-up."""
    from mmc_sweep.study.run.interrupt import INTERRUPTS, StartUpInterrupted
    from mmc_sweep.study.run.stages import run_stages
    from mmc_sweep.study.search.record import OptunaRecord
    from mmc_sweep.study.storage.compaction import held_study
    from mmc_sweep.study.storage.lock import check_not_in_use
    from mmc_sweep.study.storage.results import check_results_readable

    console = console or Console(width=None if sys.stdout.isatty() else 160)  # logs: do not wrap at 80
    store = Store.open(options.storage, options.filesystem)
    # a local or shared folder has one writer at a time; an object store has no lock (and no compaction)
    folder = None if store.local_root is None else store.local_root / spec.name
    seconds: dict[str, float] = {}
    with INTERRUPTS:  # Ctrl-C / SIGTERM at any phase: 130 / 143 (interrupt.py)
        try:
            # every refusal that can be decided before anything is written is decided here, before Ray starts
            check_study_name(store, spec)
            if folder:  # (an object store is not probed: thousands of part files, a request each)
                check_not_in_use(folder)
                check_results_readable(store, spec.name)  # a resume never builds on a damaged results file
            OptunaRecord.of(store, spec.name, options.optuna_storage).check_owner()
            with timed(seconds, "ray_start"), INTERRUPTS.around_ray_start():
                connect_ray(options)
            INTERRUPTS.fault_point("start")
            check_fits_a_node(spec)  # needs the cluster; still nothing written
        except StartUpInterrupted:
            INTERRUPTS.report_start_up(console)
            return StudyOutcome(INTERRUPTS.exit_code, store.uri_of(spec.name), 0, 0, seconds)
        INTERRUPTS.starting = False  # from here a signal stops the study gracefully
        if not store.exists(spec.name, STUDY_FILE):
            store.write_bytes(dump_study(spec).encode(), spec.name, STUDY_FILE)
        with held_study(folder):
            return run_stages(spec, store, options, console, seconds)
