"""Where a study's Optuna record lives, and how it is brought back in line with the Parquet results.

* Default: an Optuna journal file that belongs to the study, ``<study>/optuna.journal``. On a local
  (or shared) folder Optuna writes it in place. On a ``pyarrow.fs`` URI Optuna works on a local copy
  (``~/.cache/mmc_sweep/journals/<hash of the study's URI>/``), fetched from the storage when a run
  starts and written back atomically after every trial that finishes: a resume on another machine
  reads it back, and two studies of one name in two buckets never share a record.
* ``--optuna-storage URL`` (``sqlite:///…``, ``postgresql://…``): any Optuna storage URL, for teams
  that keep studies in a database; the URL is remembered in ``<study>/optuna.json`` for ``resume``.

``optuna-dashboard`` reads either (the journal file, or the URL).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from mmc_sweep.errors import InputError, first_line
from mmc_sweep.study.definition.preflight import hide_password
from mmc_sweep.study.storage.store import Store

JOURNAL = "optuna.journal"
SETTINGS = "optuna.json"
TUNE_ID = "tune_trial_id"  # user attribute tying an Optuna trial to its Tune trial (and Parquet row)
STUDY_URI = "mmc_sweep_study"  # study user attribute: the study folder that owns this Optuna study


@dataclass(frozen=True)
class OptunaRecord:
    store: Store
    study: str  # the study's name: its folder under the store, and the Optuna study's name
    url: str | None = None  # an Optuna storage URL; None: the journal of the study

    @staticmethod
    def of(store: Store, study: str, url: str | None) -> "OptunaRecord":
        """The record of a study: ``url`` if given, else the URL a previous run remembered, else the journal."""
        if url is None and store.exists(study, SETTINGS):
            url = json.loads(store.read_bytes(study, SETTINGS)).get("storage")
        return OptunaRecord(store, study, url)

    def remember(self) -> None:
        if self.url is not None:
            self.store.write_bytes(json.dumps({"storage": self.url}).encode(), self.study, SETTINGS)

    @property
    def local_journal(self) -> Path:
        """The journal file Optuna writes (for URI storage: the local working copy)."""
        if self.store.local_root is not None:
            return self.store.local_root / self.study / JOURNAL
        key = hashlib.sha256(self.store.uri_of(self.study).encode()).hexdigest()[:16]
        return Path.home() / ".cache" / "mmc_sweep" / "journals" / key / JOURNAL

    @property
    def _copied(self) -> bool:
        return self.url is None and self.store.local_root is None

    def storage(self) -> BaseStorage:
        if self.url is not None:
            return RDBStorage(self.url)
        self.local_journal.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(self.local_journal)))

    def fetch(self) -> None:
        """URI storage: replace the local working copy by the stored journal (the stored one is the truth)."""
        if not self._copied:
            return
        path = self.local_journal
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.store.exists(self.study, JOURNAL):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(self.store.read_bytes(self.study, JOURNAL))
            tmp.replace(path)
        else:
            path.unlink(missing_ok=True)

    def push(self) -> None:
        """URI storage: write the working copy back to the study, atomically."""
        if self._copied and self.local_journal.exists():
            self.store.write_bytes(self.local_journal.read_bytes(), self.study, JOURNAL)

    def check_owner(self) -> None:
        """Refuse an Optuna study of this name in ``--optuna-storage`` that another study folder owns,
        without writing anything: a driver asks before Ray starts. (The journal lives in the study's
        own folder and has no other owner.)"""
        if self.url is None:
            return
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            return  # a database not yet created holds no study (and is not created here)
        try:
            storage = RDBStorage(self.url)
            owner = storage.get_study_user_attrs(storage.get_study_id_from_name(self.study)).get(STUDY_URI)
        except KeyError:  # no study of that name yet
            return
        except Exception as err:  # a database that refuses the connection
            raise InputError(f"--optuna-storage {hide_password(self.url)}: cannot open the Optuna storage: "
                             f"{first_line(err)}") from None
        if owner is not None and owner != self.store.uri_of(self.study):
            raise self._owned_by(owner)

    def _owned_by(self, owner: str) -> InputError:
        return InputError(f"--optuna-storage {hide_password(self.url)}: an Optuna study named {self.study!r} there belongs to "
                          f"{owner}; pick another --name or another --optuna-storage")

    def open_study(self, directions: list[str], sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        """The study's Optuna study, created on first use; one owned by another study folder is refused."""
        try:
            storage = self.storage()
            try:  # loaded when it exists: create_study(load_if_exists=True) appends a create record every run
                study = optuna.load_study(study_name=self.study, storage=storage, sampler=sampler)
            except KeyError:
                study = optuna.create_study(study_name=self.study, storage=storage, sampler=sampler, directions=directions)
        except Exception as err:  # a database that refuses the connection, a corrupt journal
            raise InputError(f"--optuna-storage {hide_password(self.url or str(self.local_journal))}: cannot open the Optuna study: "
                             f"{first_line(err)}") from None
        owner = study.user_attrs.get(STUDY_URI)
        if owner is None:
            study.set_user_attr(STUDY_URI, self.store.uri_of(self.study))
        elif owner != self.store.uri_of(self.study):
            raise self._owned_by(owner)
        return study


def row_id(trial: optuna.trial.FrozenTrial) -> str:
    """The Parquet trial id of an Optuna trial: its Tune trial's id, or (a driver killed between
    Optuna's ask and the tagging) one made from its number."""
    return trial.user_attrs.get(TUNE_ID) or f"optuna_{trial.number}"


def tell_once(study: optuna.Study, number: int, values: list[float] | None = None,
              state: TrialState = TrialState.COMPLETE) -> bool:
    """Tell Optuna how trial ``number`` ended, unless the record already says (an earlier driver told
    it before it died, and Tune ran the trial's end again): each trial is told once. Never
    ``skip_if_finished``: a second tell that got past this check would be a bug, and raises.
    Returns whether it told."""
    if number not in {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}:
        return False
    study.tell(number, values, state=state if values is None else TrialState.COMPLETE)
    return True


def finite_values(row: dict, objectives: list[str]) -> list[float] | None:
    values = [row.get(o) for o in objectives]
    return values if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) else None


def reconcile(study: optuna.Study, rows: list[dict], objectives: list[str]) -> list[str]:
    """Tell Optuna what the Parquet results say about every trial it still thinks is running (the
    driver died after a row was written but before Optuna heard, or before Tune recorded the trial).
    Only call once no Tune trial of the search can still finish. Returns the ids (:func:`row_id`) of
    Optuna trials that have no row at all (the caller writes a failed row for each, so both agree)."""
    by_id = {r["trial_id"]: r for r in rows}
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tune_id = row_id(trial)
        row = by_id.get(tune_id)
        values = finite_values(row, objectives) if row and row["status"] == "completed" else None
        if values is not None:
            tell_once(study, trial.number, values)
        elif row is not None and row["status"] == "pruned":
            tell_once(study, trial.number, state=TrialState.PRUNED)
        else:
            tell_once(study, trial.number, state=TrialState.FAIL)
            if row is None:
                orphans.append(tune_id)
    return orphans
