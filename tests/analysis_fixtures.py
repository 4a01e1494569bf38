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
