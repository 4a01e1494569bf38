"""The Parquet results of a study: fixed schemas, one part file per trial and table, atomic writes.

Every part file of a table has the same schema (every column, nulls where a row has no value), so
any reader — pandas, pyarrow datasets, duckdb — sees every column whatever file it opens first.

Commit protocol: a trial's ``paths`` and ``history`` files are written first and its ``trials``
file last; a trial counts as finished only once its ``trials`` file exists, so a driver that dies
between two writes leaves a trial that resume writes (or reruns) again, replacing its files.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import typing
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from mmc_sweep.config import (BARRIER_TYPES, INVARIANCE_METRICS, PATH_KINDS, PATH_NAMES, VIEWS, FinetuneSpec,
                              barrier_metric)
from mmc_sweep.study.store import Store, to_buffer

TABLES = ("paths", "history", "trials")  # in the order they are written: trials last (the commit)
# test-only fault injection: the driver kills itself right after writing this table of a trial
FAULT_ENV = "MMC_SWEEP_FAULT_KILL_AFTER_TABLE"
VIEW_METRICS = tuple(f"{k}_{v}" for v in VIEWS for k in ("acc", "loss")) + INVARIANCE_METRICS
BARRIER_METRICS = tuple(barrier_metric(t, kind, p, v) for kind in PATH_KINDS for p in PATH_NAMES for v in VIEWS
                        for t in BARRIER_TYPES)
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
    fields += [
        ("start_epoch", pa.int64()), ("epochs", pa.int64()), ("error", pa.string()), ("device", pa.string()),
        ("gpu_peak_mb", pa.float64()),
        ("node", pa.string()), ("retries", pa.int64()), ("reused_from", pa.string()),
        ("duration_s", pa.float64()), ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
    return pa.schema(fields)


SCHEMAS = {
    "trials": _trials_schema(),
    "paths": pa.schema([
        ("study", pa.string()), ("trial_id", pa.string()), ("path", pa.string()), ("kind", pa.string()),
        ("bn_reset", pa.string()), ("alpha", pa.float64()), ("view", pa.string()), ("loss", pa.float64()), ("acc", pa.float64()),
    ] + [(m, pa.float64()) for m in INVARIANCE_METRICS]),
    "history": pa.schema(
        [("study", pa.string()), ("trial_id", pa.string()), ("epoch", pa.int64()), ("train_loss", pa.float64())]
        + [(m, pa.float64()) for m in VIEW_METRICS]
    ),
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

    One part file per table and trial id, named ``<trial_id>.parquet``: writing a trial again
    replaces its files, never duplicates rows. ``trials`` is written last. Returns the trial ids written.
    """
    now = datetime.now(timezone.utc)
    fault = os.environ.get(FAULT_ENV)
    written = []
    for name in TABLES:
        by_trial: dict[str, list[dict]] = {}
        for row in payload.get(name, []):
            row = {"study": study, **row}
            if name == "trials":
                row.setdefault("finished_at", now)
            by_trial.setdefault(row["trial_id"], []).append(row)
        for trial_id, rows in by_trial.items():
            table = _table(name, rows, metadata)
            store.write_bytes(to_buffer(lambda f: pq.write_table(table, f)), study, "results", name, f"{trial_id}.parquet")
            if fault == name and payload.get("trials"):
                os.kill(os.getpid(), signal.SIGKILL)  # tests only: the driver dies between two table writes
            if name == "trials":
                written.append(trial_id)
    return written


def finished_trials(store: Store, study: str) -> set[str]:
    """Ids of the trials whose row is written (and so every table of theirs: the commit)."""
    return {n.removesuffix(".parquet") for n in store.list(study, "results", "trials") if n.endswith(".parquet")}


def read_trial(store: Store, study: str, trial_id: str) -> dict[str, list[dict]]:
    """One trial's rows in every table (empty lists where it has none)."""
    out = {}
    for name in TABLES:
        parts = ("results", name, f"{trial_id}.parquet")
        out[name] = pq.read_table(store.fs.open_input_file(store.path(study, *parts))).to_pylist() if store.exists(study, *parts) else []
    return out


def read_trials(store: Store, study: str) -> pa.Table:
    """All trial rows of a study (an empty table with the schema when there are none)."""
    parts = [pq.read_table(store.fs.open_input_file(store.path(study, "results", "trials", n)))
             for n in store.list(study, "results", "trials") if n.endswith(".parquet")]
    return pa.concat_tables(parts) if parts else SCHEMAS["trials"].empty_table()


def metadata_for(spec_hash: str, device: str) -> dict[str, str]:
    return {"spec_hash": spec_hash, "versions": json.dumps(versions()), "device": device}
