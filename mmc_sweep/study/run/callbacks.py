"""Driver-side Tune callbacks: the results sink (Parquet) and the rich live progress view."""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from ray import tune

from mmc_sweep.errors import StorageFull
from mmc_sweep.finetune import total_epochs
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.run.interrupt import INTERRUPTS
from mmc_sweep.study.run.jobs import BASE, EXPERIMENT, REFERENCE, SEARCH, group
from mmc_sweep.study.run.trials import ROWS_KEY, STOP_KEY, params_row, search_settings
from mmc_sweep.study.storage.artifacts import load_trial_state, trial_state_parts
from mmc_sweep.study.storage.results import metadata_for, write_trial
from mmc_sweep.study.storage.store import Store


def trial_key(trial) -> str:
    """The id a trial's rows carry: the job's id for reference trials, Tune's id for the search."""
    job = trial.config.get("job") or {}
    return job.get("trial_id") or trial.trial_id


PHASE_OF_GROUP = {BASE: "base", REFERENCE: "reference", SEARCH: "search"}  # a trial's group: its signal_at phase


class ResultsSink(tune.Callback):
    """Writes each trial's rows to Parquet when its final report arrives; failed or stopped trials
    that sent no rows get a row saying so. Writes are idempotent (one part file per trial id)."""

    def __init__(self, store: Store, spec: StudySpec) -> None:
        self.store, self.spec = store, spec
        self.written: set[str] = set()

    def write_payload(self, payload: dict, retries: int | None = None) -> None:
        """Write a trial's rows; ``retries``: how often its worker died and it restarted (Tune counts)."""
        if retries is not None:
            payload = {**payload, "trials": [{**r, "retries": retries} for r in payload.get("trials", [])]}
        device = next((r.get("device") for r in payload.get("trials", []) if r.get("device")), "unknown")
        self.written.update(write_trial(self.store, self.spec.name, payload, metadata_for(self.spec.hash, device)))

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        INTERRUPTS.on_tune_step()  # a stop asked for before Tune listened

    def _write_in_tune(self, payload: dict, retries: int) -> None:
        """Inside Tune's loop a full storage stops the study gracefully (nothing raised into Tune): the
        rows stay in Tune's record of the trial, and a resume writes them."""
        try:
            self.write_payload(payload, retries)
        except StorageFull as err:
            INTERRUPTS.fail(str(err))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        INTERRUPTS.fault_point(PHASE_OF_GROUP[group(trial.config)])
        if STOP_KEY in result:  # a trial found the storage full
            INTERRUPTS.fail(result[STOP_KEY])
        elif ROWS_KEY in result and not INTERRUPTS.failure:
            self._write_in_tune(json.loads(result[ROWS_KEY]), trial.num_failures)

    def _close(self, trial, status: str, error: str | None) -> None:
        key, kind = trial_key(trial), group(trial.config)
        # a base model has no rows (its failure ends the run); a pair's rows are of models: none to close
        no_rows = kind == BASE or (trial.config.get("job") or {}).get("role") in ("base", "control")
        if key in self.written or no_rows or INTERRUPTS.stopping:  # an interrupted trial resumes: nothing to close
            return
        search = kind == SEARCH
        row = {"trial_id": key, "role": "search" if search else "baseline", "status": status, "error": error,
               "method": self.spec.finetune.method if search else trial.config["job"].get("method")}
        history = []
        if search:  # its settings, and the epochs it trained (from its last epoch state)
            row.update(self._settings(trial.config))
            state = load_trial_state(self.store, trial_state_parts(self.spec.name, EXPERIMENT, trial.trial_id))
            history = (state or {}).get("history", [])
        self._write_in_tune({"trials": [row], "history": history}, trial.num_failures)

    def _settings(self, config: dict) -> dict:
        ft, seed, proportion = search_settings(config, self.spec)
        return {"method": ft.method, "epochs": total_epochs(ft), "base_seed": seed, "cue_proportion": proportion,
                **params_row(ft)}

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial, "pruned", None)  # stopped before its final report (a scheduler or a stop rule)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        error = trial.get_error()
        self._close(trial, "failed", str(error).strip().splitlines()[-1][:500] if error else "the trial's worker failed")


class LiveProgress(tune.Callback):
    """A live view: per group (base models, reference jobs, search) trials done out of all, the
    trials running and failed, the search's best objective values, elapsed and ETA."""

    def __init__(self, console: Console | None, title: str, totals: dict[str, int], objectives: list[tuple[str, str]],
                 done_before: Callable[[], dict[str, dict[str, bool]]]) -> None:
        self.console, self.title, self.totals, self.objectives = console, title, totals, objectives
        self.done_before = done_before  # per group, trials already in the results (id -> failed): a restored run counts them
        # per group, finished trials by the id their rows carry (id -> failed): a trial Tune reruns after a
        # killed driver (its rows were written) is the same id, counted once
        self.finished: dict[str, dict[str, bool]] = {name: {} for name in totals}
        self.running: set[str] = set()
        self.failed_now: set[str] = set()
        self.best: dict[str, float] = {}
        self.started = time.monotonic()
        self.finished_now = 0
        self.live: Live | None = None
        self.last_draw = 0.0

    def setup(self, **info) -> None:
        before = self.done_before()
        self.finished = {name: dict(before.get(name, {})) for name in self.totals}
        self.started = time.monotonic()
        console = self.console or Console(width=None if sys.stdout.isatty() else 160)  # logs: one line, as the runner's
        self.live = Live(self.render(), console=console, refresh_per_second=2, transient=False)
        self.live.start()

    def render(self) -> Group:
        elapsed = time.monotonic() - self.started
        done = {name: len(trials) for name, trials in self.finished.items()}
        failed = sum(sum(trials.values()) for trials in self.finished.values())
        left = sum(max(0, total - done[name]) for name, total in self.totals.items())
        if self.finished_now and left:
            eta = f"~{elapsed / self.finished_now * left:.0f} s left"  # wall time per finished trial so far
        else:
            eta = "estimating…" if left else "finishing"
        counts = " · ".join(f"{name} {done[name]}/{total}" for name, total in self.totals.items() if total)
        head = Text.assemble((f"{self.title}  ", "bold"), f"{counts} · {len(self.running)} running · ",
                             (f"{failed} failed", "red" if failed else ""), f" · {elapsed:.0f} s elapsed · {eta}")
        if not self.objectives:
            return Group(head)
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        table.add_column("objective (search)")
        table.add_column("best so far", justify="right")
        for metric, mode in self.objectives:
            value = self.best.get(metric)
            table.add_row(f"{metric} ({mode})", "—" if value is None else f"{value:.4f}")
        return Group(head, table)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.live and (force or now - self.last_draw > 0.5):
            self.live.update(self.render())
            self.last_draw = now

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.running.add(trial.trial_id)
        self._draw()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if ROWS_KEY in result and result.get("failed"):
            self.failed_now.add(trial.trial_id)
        if ROWS_KEY not in result or result.get("failed") or group(trial.config) != SEARCH:
            return
        for metric, mode in self.objectives:
            value = result.get(metric)
            if isinstance(value, (int, float)) and not math.isnan(value):
                old = self.best.get(metric)
                if old is None or (value > old if mode == "max" else value < old):
                    self.best[metric] = float(value)
        self._draw()

    def _finished(self, trial, failed: bool) -> None:
        self.running.discard(trial.trial_id)
        self.finished.setdefault(group(trial.config), {})[trial_key(trial)] = failed
        self.finished_now += 1
        self._draw(force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished(trial, trial.trial_id in self.failed_now)  # a failed row: it reported failure and ended

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished(trial, True)

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.live:
            self.live.update(self.render())
            self.live.stop()
            if not self.live.console.is_terminal:
                self.live.console.print()  # a non-terminal Live ends without a line break
            self.live = None

    def __getstate__(self) -> dict[str, Any]:  # callbacks are pickled into the experiment snapshot
        state = dict(self.__dict__)
        state["live"] = None
        state["console"] = None
        return state
