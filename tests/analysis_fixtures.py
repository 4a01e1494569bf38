"""A hand-made study folder with known values, written with plain pyarrow (not the code under test).

Trials (all base seed 0):
  base_cue_0, base_clean_0 (base), naive_ft_0, llrt_0, lpft_0 (baseline),
  cbft_1 .. cbft_7 (search): cbft_5 failed, the rest completed.
Search values (acc_clean, acc_rand_cue, cue_reliance, n_clean):
  cbft_1 .85 .80 .10 1000 | cbft_2 .86 .82 .20 4000 | cbft_3 .84 .78 .05 200 | cbft_4 .70 .69 .01 100
  cbft_6 .60 .75 .15 2000 (dominated by cbft_1) | cbft_7 .65 .77 .12 150 (front only thanks to n_clean)
Best (2 pp of .86): cbft_3, cbft_1, cbft_2. Objectives: acc_rand_cue (max), cue_reliance (min).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

SPEC_HASH = "handmadehash0001"
VIEWS = ("clean", "cue", "rand_cue", "rand_img")
PATHS = ("cue_to_ft", "ft_to_clean", "cue_to_clean")
START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def spec(name: str = "handmade", num_samples: int = 7) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"dataset": "shapes", "cue": "box", "cue_proportion": 0.8, "seed": 0},
        "model": {"arch": "small_cnn", "width": 0},
        "base": {"epochs": 8, "lr": 0.05, "seeds": [0]},
        "finetune": {"method": "cbft", "epochs": 6, "lr": 0.01, "n_clean": 500},
        "baselines": ["naive_ft", "llrt", "lpft"],
        "search": {
            "num_samples": num_samples, "sampler": "nsga2", "seed": 0,
            "objectives": [{"metric": "acc_rand_cue", "mode": "max"}, {"metric": "cue_reliance", "mode": "min"}],
            "space": {
                "lr": {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True},
                "n_clean": {"type": "int", "low": 100, "high": 4000, "log": True},
                "lambda_barrier": {"type": "float", "low": 0.0, "high": 4.0},
            },
        },
        "paths": {"alphas": 3, "views": ["clean", "cue"],
                  "bn_reset": {"mode": "cumulative", "batches": 8, "data": "clean", "batch_size": 256}},
        "resources": {"cpu": 1, "gpu": 0},
    }


# trial_id: (role, method, status, acc (clean, cue, rand_cue, rand_img), cue_reliance, params, barriers)
# params: (lr, n_clean, lambda_barrier); barriers: {path: (cue view, clean view)} loss barriers, nats
TRIALS: dict[str, tuple] = {
    "base_cue_0": ("base", "base_cue", "completed", (0.50, 0.98, 0.20, 0.90), 0.88, None, {}),
    "base_clean_0": ("base", "base_clean", "completed", (0.90, 0.91, 0.89, 0.12), 0.02, None,
                     {"cue_to_clean": (2.0, 1.5)}),
    "naive_ft_0": ("baseline", "naive_ft", "completed", (0.70, 0.95, 0.40, 0.80), 0.78, (0.01, 500, 0.0),
                   {"cue_to_ft": (0.1, 0.05), "ft_to_clean": (1.8, 1.2)}),
    "llrt_0": ("baseline", "llrt", "completed", (0.65, 0.96, 0.30, 0.85), 0.83, (0.01, 500, 0.0),
               {"cue_to_ft": (0.0, 0.0), "ft_to_clean": (1.9, 1.3)}),
    "lpft_0": ("baseline", "lpft", "completed", (0.72, 0.94, 0.45, 0.75), 0.72, (0.01, 500, 0.0),
               {"cue_to_ft": (0.2, 0.1), "ft_to_clean": (1.7, 1.1)}),
    "cbft_1": ("search", "cbft", "completed", (0.85, 0.86, 0.80, 0.19), 0.10, (0.01, 1000, 1.0),
               {"cue_to_ft": (1.5, 1.0), "ft_to_clean": (0.3, 0.2)}),
    "cbft_2": ("search", "cbft", "completed", (0.86, 0.90, 0.82, 0.28), 0.20, (0.02, 4000, 0.5),
               {"cue_to_ft": (1.2, 0.8), "ft_to_clean": (0.4, 0.3)}),
    "cbft_3": ("search", "cbft", "completed", (0.84, 0.85, 0.78, 0.145), 0.05, (0.005, 200, 2.0),
               {"cue_to_ft": (1.9, 1.4), "ft_to_clean": (0.2, 0.1)}),
    "cbft_4": ("search", "cbft", "completed", (0.70, 0.70, 0.69, 0.109), 0.01, (0.001, 100, 4.0),
               {"cue_to_ft": (2.5, 2.0), "ft_to_clean": (0.1, 0.1)}),
    "cbft_5": ("search", "cbft", "failed", None, None, (0.1, 300, 3.0), {}),
    "cbft_6": ("search", "cbft", "completed", (0.60, 0.80, 0.75, 0.235), 0.15, (0.05, 2000, 1.5),
               {"cue_to_ft": (1.0, 0.7), "ft_to_clean": (0.5, 0.4)}),
    "cbft_7": ("search", "cbft", "completed", (0.65, 0.70, 0.77, 0.208), 0.12, (0.003, 150, 2.5),
               {"cue_to_ft": (1.1, 0.9), "ft_to_clean": (0.6, 0.5)}),
}


def _meta() -> dict[bytes, bytes]:
    return {b"mmc_sweep.spec_hash": SPEC_HASH.encode(), b"mmc_sweep.versions": b"{}", b"mmc_sweep.device": b"cpu"}


def trial_row(study: str, trial_id: str, order: int) -> dict[str, Any]:
    role, method, status, accs, reliance, params, barriers = TRIALS[trial_id]
    row: dict[str, Any] = {"study": study, "trial_id": trial_id, "role": role, "status": status, "method": method,
                           "base_seed": 0}
    if params is not None:  # base rows: no param_* columns at all (the reader must cope)
        row.update({"param_lr": params[0], "param_n_clean": params[1], "param_lambda_barrier": params[2]})
    for i, view in enumerate(VIEWS):
        row[f"acc_{view}"] = None if accs is None else accs[i]
        row[f"loss_{view}"] = None if accs is None else 1.0 - accs[i]
    row["cue_reliance"] = reliance
    for path in PATHS:
        for view in VIEWS:
            value = barriers.get(path, (None, None))[0 if view == "cue" else 1] if view in ("cue", "clean") else None
            row[f"barrier_loss_{path}_{view}"] = value
            row[f"barrier_acc_{path}_{view}"] = None
    row.update({"error": "RuntimeError: loss is nan" if status == "failed" else None, "device": "cpu",
                "duration_s": 10.0 * (order + 1), "finished_at": START + timedelta(minutes=order)})
    return row


def write_trial(folder: Path, study: str, trial_id: str, order: int) -> None:
    """Write the trial's trials and paths part files (atomically: temp name, then rename)."""
    row = trial_row(study, trial_id, order)
    table = pa.Table.from_pylist([row])
    if "finished_at" in table.column_names:
        idx = table.schema.get_field_index("finished_at")
        table = table.set_column(idx, "finished_at", table.column("finished_at").cast(pa.timestamp("us", tz="UTC")))
    _write(folder / "results" / "trials", trial_id, table)
    barriers = TRIALS[trial_id][6]
    keys = ("study", "trial_id", "path", "kind", "bn_reset", "alpha", "view", "loss", "acc")
    cols: dict[str, list] = {k: [] for k in keys}
    for path, (b_cue, b_clean) in barriers.items():
        for view, height in (("clean", b_clean), ("cue", b_cue)):
            for alpha in (0.0, 0.5, 1.0):
                bump = height if alpha == 0.5 else 0.0
                cols["study"].append(study)
                cols["trial_id"].append(trial_id)
                cols["path"].append(path)
                cols["kind"].append("linear")
                cols["bn_reset"].append("cumulative:8x256:clean")
                cols["alpha"].append(alpha)
                cols["view"].append(view)
                cols["loss"].append(0.5 + bump)
                cols["acc"].append(0.9 - bump / 4)
    if cols["trial_id"]:
        _write(folder / "results" / "paths", trial_id, pa.table(cols))


def _write(folder: Path, trial_id: str, table: pa.Table) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{trial_id}.parquet.tmp"
    pq.write_table(table.replace_schema_metadata(_meta()), tmp)
    tmp.rename(folder / f"{trial_id}.parquet")


def write_study(folder: Path, trial_ids: list[str] | None = None, name: str = "handmade",
                num_samples: int = 7) -> Path:
    """The hand-made study (every trial of :data:`TRIALS` unless ``trial_ids`` picks some)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(yaml.safe_dump(spec(name, num_samples), sort_keys=False))
    for order, trial_id in enumerate(trial_ids if trial_ids is not None else list(TRIALS)):
        write_trial(folder, name, trial_id, order)
    return folder


# ------------------------------------------------------------------------------------------------
# A study of the three path kinds, written by the harness's own writer (mmc_sweep.study.storage.results),
# so every part file has the harness's schemas: barrier columns of every kind, path, view and type,
# invariance metrics on the path rows. Two base seeds and the control pair between their clean
# references. Barrier heights are made up so that every (trial, kind, path, view, type) differs:
# barrier_loss = HEIGHT * KIND_FACTOR[kind] * VIEW_FACTOR[view] (nats), barrier_acc = barrier_loss / 10
# (fraction), the mid-point variants 0.9 times those (they must not be shown in their place).
KINDS_SPEC_ORDER = ["linear", "qmc", "lmcp"]  # the study lists qmc before lmcp: tables must keep that order
KIND_FACTOR = {"linear": 1.0, "lmcp": 0.5, "qmc": 0.25}
VIEW_FACTOR = {"clean": 1.0, "cue": 2.0, "rand_cue": 3.0, "rand_img": 4.0}
# trial_id: (role, method, base_seed, (acc_clean, cue_reliance), n_clean, {path: HEIGHT})
KINDS_TRIALS: dict[str, tuple] = {
    "base_cue_s0": ("base", "base_cue", 0, (0.50, 0.90), None, {}),
    "base_clean_s0": ("base", "base_clean", 0, (0.90, 0.02), None, {"cue_to_clean": 1.0}),
    "base_cue_s1": ("base", "base_cue", 1, (0.52, 0.88), None, {}),
    "base_clean_s1": ("base", "base_clean", 1, (0.88, 0.04), None, {"cue_to_clean": 1.5}),
    "control_clean_s0_s1": ("base", "control_clean", 0, (None, None), None, {"clean_to_clean": 0.2}),
    "naive_ft_s0": ("baseline", "naive_ft", 0, (0.70, 0.78), 500, {"cue_to_ft": 0.1, "ft_to_clean": 0.8}),
    "naive_ft_s1": ("baseline", "naive_ft", 1, (0.72, 0.74), 500, {"cue_to_ft": 0.3, "ft_to_clean": 0.6}),
    "cbft_1": ("search", "cbft", 0, (0.85, 0.10), 1000, {"cue_to_ft": 1.2, "ft_to_clean": 0.3}),
    "cbft_2": ("search", "cbft", 0, (0.86, 0.20), 4000, {"cue_to_ft": 0.9, "ft_to_clean": 0.4}),
}


def kinds_barrier(trial_id: str, barrier_type: str, kind: str, path: str, view: str) -> float | None:
    height = KINDS_TRIALS[trial_id][5].get(path)
    if height is None:
        return None
    loss = height * KIND_FACTOR[kind] * VIEW_FACTOR[view]
    value = loss / 10 if barrier_type.endswith("_acc") else loss
    return 0.9 * value if "_mid_" in barrier_type else value


def kinds_reliance(kind: str, alpha: float) -> float:
    """Cue reliance at a point of any path: 0.9 -> 0.05 along alpha, dipping by kind at the middle."""
    return (1 - alpha) * 0.9 + alpha * 0.05 - (0.3 * KIND_FACTOR[kind] if alpha == 0.5 else 0.0)


def _kinds_rows(trial_id: str) -> tuple[dict, list[dict]]:
    from mmc_sweep.paths import BARRIER_TYPES, barrier_metric  # the harness's names

    role, method, seed, (acc_clean, reliance), n_clean, heights = KINDS_TRIALS[trial_id]
    row: dict[str, Any] = {"trial_id": trial_id, "role": role, "status": "completed", "method": method,
                           "base_seed": seed, "acc_clean": acc_clean, "cue_reliance": reliance,
                           "device": "cpu", "duration_s": 1.0}
    if n_clean is not None:
        row["param_n_clean"] = n_clean
    if acc_clean is not None:
        row.update({"acc_cue": 0.95, "acc_rand_cue": acc_clean - 0.1, "acc_rand_img": 0.1 + reliance})
    paths = []
    for path in heights:
        for kind in KIND_FACTOR:
            for view in VIEWS:
                for barrier_type in BARRIER_TYPES:
                    row[barrier_metric(barrier_type, kind, path, view)] = kinds_barrier(
                        trial_id, barrier_type, kind, path, view)
                for alpha in (0.0, 0.5, 1.0):
                    middle = alpha == 0.5
                    r = kinds_reliance(kind, alpha)
                    paths.append({
                        "trial_id": trial_id, "path": path, "kind": kind, "bn_reset": "cumulative:8x256:clean",
                        "alpha": alpha, "view": view,
                        "loss": 0.5 + (kinds_barrier(trial_id, "barrier_loss", kind, path, view) if middle else 0),
                        "acc": 0.9 - (kinds_barrier(trial_id, "barrier_acc", kind, path, view) if middle else 0),
                        "cue_reliance": r, "pred_consistency": 1 - r / 2, "rep_cosine": 1 - r / 4})
    return row, paths


def write_kinds_study(storage: Path, name: str = "kinds", changes: dict[str, dict] | None = None) -> Path:
    """The three-kinds study under ``storage/name`` (study.yaml plus every trial of :data:`KINDS_TRIALS`);
    ``changes``: trial id -> columns whose values replace the made-up ones."""
    from mmc_sweep.study.storage.results import write_trial
    from mmc_sweep.study.storage.store import Store

    folder = storage / name
    folder.mkdir(parents=True, exist_ok=True)
    study_spec = spec(name, num_samples=2)
    study_spec["base"] = {"epochs": 8, "lr": 0.05, "seeds": [0, 1], "control_pair": True}
    study_spec["baselines"] = ["naive_ft"]
    study_spec["paths"] = {"kinds": KINDS_SPEC_ORDER, "alphas": 3, "views": list(VIEWS),
                           "bn_reset": {"mode": "cumulative", "batches": 8, "data": "clean", "batch_size": 256}}
    (folder / "study.yaml").write_text(yaml.safe_dump(study_spec, sort_keys=False))
    store = Store.open(str(storage))
    metadata = {"spec_hash": SPEC_HASH, "versions": "{}", "device": "cpu"}
    for order, trial_id in enumerate(KINDS_TRIALS):
        row, paths = _kinds_rows(trial_id)
        row.update((changes or {}).get(trial_id, {}))
        row["finished_at"] = START + timedelta(minutes=order)
        write_trial(store, name, {"trials": [row], "paths": paths}, metadata)
    return folder
