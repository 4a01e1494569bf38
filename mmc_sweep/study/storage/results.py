"""The Parquet results of a study: fixed schemas, one part file per trial and table, atomic writes.

Part files are merged into compacted files when a stage ends (``mmc_sweep.study.storage.compaction``); the
readers here see both as one table (``mmc_sweep.results_layout``).

Every part file of a table has the same schema (every column, nulls where a row has no value), so
any reader — pandas, pyarrow datasets, duckdb — sees every column whatever file it opens first.

Commit protocol: a trial's ``paths`` and ``history`` files are written first and its ``trials``
file last; a trial counts as finished only once its ``trials`` file exists, so a driver that dies
between two writes leaves a trial that resume writes (or reruns) again, replacing its files.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import typing
from datetime import datetime, timezone

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mmc_sweep.config import (BARRIER_TYPES, INVARIANCE_METRICS, PATH_KINDS, PATH_NAMES, VIEWS, FinetuneSpec,
                              barrier_metric)
from mmc_sweep.costs import COST_METRICS
from mmc_sweep.errors import InputError, first_line
from mmc_sweep.revival import REVIVAL_METRICS
from mmc_sweep.results_layout import is_compacted, is_visible_parquet, live_folder, trial_ids_in
from mmc_sweep.study.faults import kill_if
from mmc_sweep.study.storage.store import Store, to_buffer

TABLES = ("paths", "history", "revival", "trials")  # in the order they are written: trials last (the commit)
# written by `run_study.py pairs`, a part per pair and path kind: layers first, pairs last (the commit)
PAIR_TABLES = ("layers", "pairs")
COMMIT_TABLES = (TABLES[-1], PAIR_TABLES[-1])  # a part there means its parts in the tables before it are final
VIEW_METRICS = tuple(f"{k}_{v}" for v in VIEWS for k in ("acc", "loss")) + INVARIANCE_METRICS
BARRIER_METRICS = tuple(barrier_metric(t, kind, p, v) for kind in PATH_KINDS for p in PATH_NAMES for v in VIEWS
                        for t in BARRIER_TYPES)
# how the base models a row uses were made: base.pairing, and the seeds of the cue model's and the clean
# reference's initialisation and batch order (clean_b_*: the control pair's second clean reference)
PAIRING_COLUMNS = ("pairing", "cue_init_seed", "cue_order_seed", "clean_init_seed", "clean_order_seed",
                   "clean_b_init_seed", "clean_b_order_seed")
_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
PARAM_TYPES = {f.name: _ARROW[t] for f, t in ((f, typing.get_type_hints(FinetuneSpec)[f.name]) for f in dataclasses.fields(FinetuneSpec)) if f.name != "method"}


def _trials_schema() -> pa.Schema:
    fields = [
        ("study", pa.string()), ("trial_id", pa.string()), ("role", pa.string()), ("status", pa.string()),
        ("method", pa.string()), ("base_seed", pa.int64()), ("cue_proportion", pa.float64()),
    ]
    fields += [(f"param_{name}", t) for name, t in PARAM_TYPES.items()]
    fields += [(m, pa.float64()) for m in VIEW_METRICS]
    fields += [(m, pa.float64()) for m in BARRIER_METRICS]
    fields += [(name, pa.string() if name == "pairing" else pa.int64()) for name in PAIRING_COLUMNS]
    fields += [
        ("start_epoch", pa.int64()), ("epochs", pa.int64()), ("error", pa.string()), ("device", pa.string()),
        *((name, pa.float64()) for name in REVIVAL_METRICS),
        ("gpu_peak_mb", pa.float64()), *((name, pa.float64()) for name in COST_METRICS),
        ("node", pa.string()), ("retries", pa.int64()), ("reused_from", pa.string()),
        ("duration_s", pa.float64()), ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
    return pa.schema(fields)


SCHEMAS = {
    "trials": _trials_schema(),
    "paths": pa.schema([
        ("study", pa.string()), ("trial_id", pa.string()), ("path", pa.string()), ("kind", pa.string()),
        ("bn_reset", pa.string()), ("views_cue", pa.string()), ("alpha", pa.float64()), ("view", pa.string()), ("loss", pa.float64()), ("acc", pa.float64()),
    ] + [(m, pa.float64()) for m in INVARIANCE_METRICS]),
    "history": pa.schema(
        [("study", pa.string()), ("trial_id", pa.string()), ("epoch", pa.int64()), ("train_loss", pa.float64())]
        + [(m, pa.float64()) for m in VIEW_METRICS]
    ),
    # run_study.py pairs: one row per pair of models, path kind and view (mmc_sweep.pair_matrix), and the
    # layer-wise barriers of a pair (mmc_sweep.paths.layers); a pair's files: layers first, pairs last (its commit)
    "pairs": pa.schema([("study", pa.string()), ("model_a", pa.string()), ("model_b", pa.string()), ("kind", pa.string()),
                        ("view", pa.string()), ("method_a", pa.string()), ("method_b", pa.string()),
                        ("cue_proportion_a", pa.float64()), ("cue_proportion_b", pa.float64())]
                       + [(c, pa.float64()) for c in BARRIER_TYPES + tuple(f"mid_{m}" for m in INVARIANCE_METRICS)]
                       + [("pair_key", pa.string()), ("reused", pa.bool_()), ("duration_s", pa.float64()),
                          ("finished_at", pa.timestamp("us", tz="UTC"))]),
    "layers": pa.schema([("study", pa.string()), ("model_a", pa.string()), ("model_b", pa.string()), ("kind", pa.string()),
                         ("layer", pa.string()), ("view", pa.string())]
                        + [(c, pa.float64()) for c in BARRIER_TYPES] + [("pair_key", pa.string())]),
    # a fine-tuned model re-trained on cue data: its cue reliance after each step count (mmc_sweep.revival)
    "revival": pa.schema([("study", pa.string()), ("trial_id", pa.string()), ("step", pa.int64()),
                          ("cue_reliance", pa.float64()), ("acc_clean", pa.float64())]),
}


def versions() -> dict[str, str]:
    import optuna
    import ray
    import torch

    import mmc_sweep

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "pyarrow": pa.__version__, "mmc_sweep": mmc_sweep.__version__}


def _table(name: str, rows: list[dict], metadata: dict[str, str]) -> pa.Table:
    schema = SCHEMAS[name]
    unknown = {k for r in rows for k in r} - set(schema.names)
    if unknown:
        raise ValueError(f"{name}: columns not in the schema: {sorted(unknown)}")
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema.with_metadata({f"mmc_sweep.{k}": v for k, v in metadata.items()}))


def write_trial(store: Store, study: str, payload: dict, metadata: dict[str, str]) -> list[str]:
    """Write one finished trial's rows: ``payload`` maps table name -> rows (each row has ``trial_id``).

    One part file per table and trial id, named ``<trial_id>.parquet``; ``trials`` is written last.
    A committed trial (its ``trials`` row written) is final: a trial Tune runs again after a driver
    died between this write and its own record is not written twice, so no row is ever counted
    twice, compacted or not. A torn trial (no ``trials`` row yet) has its files replaced. Returns
    the ids of the trials now committed.
    """
    now = datetime.now(timezone.utc)
    committed = finished_trials(store, study)
    written = sorted({r["trial_id"] for r in payload.get("trials", [])} & committed)
    for name in TABLES:
        by_trial: dict[str, list[dict]] = {}
        for row in payload.get(name, []):
            if row["trial_id"] in committed:
                continue
            row = {"study": study, **row}
            if name == "trials":
                row.setdefault("finished_at", now)
            by_trial.setdefault(row["trial_id"], []).append(row)
        for trial_id, rows in by_trial.items():
            table = _table(name, rows, metadata)
            store.write_bytes(to_buffer(lambda f: pq.write_table(table, f)), study, "results", name, f"{trial_id}.parquet")
            if payload.get("trials"):
                kill_if("kill_after_table", name)  # tests only: the driver dies between two table writes
            if name == "trials":
                written.append(trial_id)
    return written


def write_part(store: Store, study: str, table: str, name: str, rows: list[dict], metadata: dict[str, str]) -> None:
    """One part file ``results/<table>/<name>.parquet`` of a table outside the trial protocol (``pairs``,
    ``layers``), written atomically: it is there whole or not at all."""
    data = _table(table, [{"study": study, **r} for r in rows], metadata)
    store.write_bytes(to_buffer(lambda f: pq.write_table(data, f)), study, "results", table, f"{name}.parquet")


def _table_files(store: Store, study: str, table: str) -> tuple[str, list[str]]:
    """A table's folder and the visible Parquet files in it (part files and compacted files)."""
    if store.local_root is not None:  # mid-compaction on a file system without atomic exchange: the new folder
        folder = str(live_folder(Path(store.path(study, "results")), table))
    else:
        folder = store.path(study, "results", table)
    selector = pafs.FileSelector(folder, allow_not_found=True)
    return folder, sorted(i.base_name for i in store.fs.get_file_info(selector) if is_visible_parquet(i.base_name))


def _trial_ids(store: Store, folder: str, name: str) -> list[str]:
    """Trials a file holds (a compacted file's footer is read, never its rows)."""
    return trial_ids_in(name, pq.read_schema(store.fs.open_input_file(f"{folder}/{name}")).metadata
                        if is_compacted(name) else None)


def part_ids(store: Store, study: str, table: str) -> set[str]:
    """What a table holds, by part: trial ids (pairs and layers: pair part names), from the part files'
    names and the compacted files' footers."""
    folder, names = _table_files(store, study, table)
    return {part for name in names for part in _trial_ids(store, folder, name)}


def finished_trials(store: Store, study: str) -> set[str]:
    """Ids of the trials whose row is written (and so every table of theirs: the commit)."""
    return part_ids(store, study, "trials")


def _damaged(store: Store, path: str, err: Exception) -> InputError:
    # named as the user would type it: a local path, or the file's URI (its query at the end)
    where = path if store.local_root is not None else store.uri_of(*path[len(store.root) + 1:].split("/"))
    return InputError(f"{where}: not a readable Parquet file ({first_line(err)}); mmc-sweep will not build on it: "
                      "restore it, or move it out of the study folder (its trial then counts as missing)")


def check_results_readable(store: Store, study: str) -> None:
    """Every results file of ``study`` has a readable Parquet footer; an :class:`InputError` names the
    first that has not (a run, ``pairs``, ``compact`` and ``status`` ask before they read or merge anything)."""
    for table in TABLES + PAIR_TABLES:
        folder, names = _table_files(store, study, table)
        for name in names:
            try:
                with store.fs.open_input_file(f"{folder}/{name}") as f:
                    pq.read_metadata(f)
            except (OSError, pa.ArrowException) as err:
                raise _damaged(store, f"{folder}/{name}", err) from None


def _read_table(store: Store, folder: str, name: str, trial_ids: list[str] | None = None) -> pa.Table:
    try:
        table = pq.read_table(store.fs.open_input_file(f"{folder}/{name}"))
    except (OSError, pa.ArrowException) as err:  # a damage the footer did not show
        raise _damaged(store, f"{folder}/{name}", err) from None
    if trial_ids is not None:
        table = table.filter(pc.is_in(table.column("trial_id"), pa.array(trial_ids, pa.string())))
    return table


def read_trial(store: Store, study: str, trial_id: str) -> dict[str, list[dict]]:
    """One trial's rows in every table (empty lists where it has none): its part file, else the
    compacted file that names it."""
    out = {}
    for name in TABLES:
        folder, names = _table_files(store, study, name)
        part = f"{trial_id}.parquet"
        if part in names:
            out[name] = _read_table(store, folder, part).to_pylist()
            continue
        holders = [n for n in names if is_compacted(n) and trial_id in _trial_ids(store, folder, n)]
        out[name] = [r for n in holders for r in _read_table(store, folder, n, [trial_id]).to_pylist()]
    return out


def read_trials(store: Store, study: str) -> pa.Table:
    """All trial rows of a study (an empty table with the schema when there are none)."""
    folder, names = _table_files(store, study, "trials")
    tables = [_read_table(store, folder, n) for n in names]
    return pa.concat_tables(tables, promote_options="permissive") if tables else SCHEMAS["trials"].empty_table()


def metadata_for(spec_hash: str, device: str) -> dict[str, str]:
    return {"spec_hash": spec_hash, "versions": json.dumps(versions()), "device": device}
