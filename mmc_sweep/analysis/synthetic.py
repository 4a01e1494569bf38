"""A synthetic study folder that follows the README's results schema, for benchmarks, docs and demos.

Nothing is trained: metrics are smooth made-up functions of the parameters (more barrier weight,
less cue reliance; more clean images, higher clean accuracy) so that tables and figures look like
a real study's. One part file per trial in each dataset, as the harness writes them: the trials
rows carry the barrier columns of every path kind (null for kinds not measured), the path rows
the invariance metrics of every point. The output depends only on the arguments.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from mmc_sweep.analysis.columns import BARRIER_TYPES, KINDS, PATHS, VIEWS, barrier_column, barrier_columns
from mmc_sweep.config import INVARIANCE_METRICS

BASELINES = ("naive_ft", "llrt", "lpft")
NUM_CLASSES = 10
SPEC_HASH = "feedfacecafe0001"  # fixed: the synthetic spec never changes
# Aligning units (lmcp) or bending the path (qmc) lowers a barrier; made-up factors of the linear one.
KIND_SCALE = {"linear": 1.0, "lmcp": 0.5, "qmc": 0.2}
REVIVAL_STEPS = (1, 2, 4, 8, 16, 32)
# steps over which a method's cue comes back (made up): naive FT and LLRT only hide it, CBFT removes
# more of it the larger its barrier weight
REVIVAL_TAU = {"naive_ft": 2.0, "llrt": 1.0, "lpft": 3.0}


def synthetic_spec(name: str, n_trials: int, alphas: int, kinds: tuple[str, ...] = ("linear",)) -> dict:
    """The resolved study spec written as ``study.yaml``."""
    return {
        "name": name,
        "data": {"dataset": "shapes", "cue": "box", "cue_proportion": 0.8, "seed": 0},
        "model": {"arch": "small_cnn", "width": 0},
        "base": {"epochs": 8, "lr": 0.05, "seeds": [0]},
        "finetune": {"method": "cbft", "epochs": 6, "lr": 0.01, "n_clean": 500},
        "baselines": list(BASELINES),
        "revival": {"steps": list(REVIVAL_STEPS)},
        "search": {
            "num_samples": n_trials,
            "sampler": "nsga2",
            "seed": 0,
            "objectives": [{"metric": "acc_rand_cue", "mode": "max"}, {"metric": "cue_reliance", "mode": "min"}],
            "space": {
                "lr": {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True},
                "n_clean": {"type": "int", "low": 100, "high": 4000, "log": True},
                "lambda_barrier": {"type": "float", "low": 0.0, "high": 4.0},
                "lambda_invariance": {"type": "float", "low": 0.0, "high": 4.0},
                "t_distribution": {"type": "categorical", "choices": ["uniform", "beta", "midpoint"]},
            },
        },
        "paths": {"kinds": list(kinds), "alphas": alphas, "views": list(VIEWS),
                  "bn_reset": {"mode": "cumulative", "batches": 8, "data": "clean", "batch_size": 256}},
        "resources": {"cpu": 1, "gpu": 0},
    }


def _invariance(reliance: np.ndarray) -> dict[str, np.ndarray]:
    """Invariance metrics of models with the given cue reliance (the relation :func:`_metrics` uses)."""
    return {"cue_reliance": reliance, "pred_consistency": np.clip(1 - reliance * 0.8, 0, 1),
            "rep_cosine": np.clip(1 - reliance * 0.5, 0, 1)}


def _metrics(rng: np.random.Generator, reliance: float, clean: float) -> dict[str, float]:
    """Accuracies (fractions) and losses (nats) of a model with a given cue reliance and clean accuracy."""
    chance = 1.0 / NUM_CLASSES
    acc_rand_img = chance + reliance * (1 - chance)
    acc_cue = min(1.0, clean + reliance * (1 - clean))
    acc_rand_cue = max(chance, clean * (1 - 0.9 * reliance))
    accs = {"clean": clean, "cue": acc_cue, "rand_cue": acc_rand_cue, "rand_img": acc_rand_img}
    out: dict[str, float] = {}
    for view, acc in accs.items():
        acc = float(np.clip(acc + rng.normal(0, 0.005), 0.0, 1.0))
        out[f"acc_{view}"] = acc
        out[f"loss_{view}"] = float(-np.log(max(acc, 0.02)) + 0.1)
    invariance = _invariance(np.float64(reliance))
    out["cue_reliance"] = (out["acc_rand_img"] - chance) / (1 - chance)
    out["pred_consistency"] = float(invariance["pred_consistency"])
    out["rep_cosine"] = float(invariance["rep_cosine"])
    return out


def _scale(view: str) -> float:
    """Barriers are 30% higher on the cue view (the cue is what separates the basins)."""
    return 1.3 if view == "cue" else 1.0


def _path_rows(trial_id: str, path: str, alphas: np.ndarray, height: float, ends: tuple[float, float],
               kinds: tuple[str, ...], study: str) -> dict[str, list]:
    """Curves of one path for every kind on every view: a bump of ``height * KIND_SCALE[kind] *
    _scale(view)`` nats in the middle, so the barrier columns of the trials rows are what the curves
    show; cue reliance goes from ``ends[0]`` to ``ends[1]`` and dips in the barrier (mixed models
    predict near chance)."""
    n, bump = len(alphas), 4 * alphas * (1 - alphas)
    keys = ("study", "trial_id", "path", "kind", "bn_reset", "alpha", "view", "loss", "acc") + INVARIANCE_METRICS
    cols: dict[str, list] = {k: [] for k in keys}
    for kind in kinds:
        scale = KIND_SCALE.get(kind, 1.0)
        reliance = np.clip((1 - alphas) * ends[0] + alphas * ends[1] - 0.2 * height * scale * bump, 0, 1)
        invariance = _invariance(reliance)
        for i, view in enumerate(VIEWS):
            h = height * scale * _scale(view)
            loss = 0.3 + 0.2 * i + 0.4 * alphas + h * bump
            acc = np.clip(0.95 - 0.1 * i - 0.05 * alphas - 0.3 * h * bump, 0, 1)
            for key, value in (("study", study), ("trial_id", trial_id), ("path", path), ("kind", kind),
                               ("bn_reset", "cumulative:8x256:clean"), ("view", view)):
                cols[key] += [value] * n
            for key, values in (("alpha", alphas), ("loss", loss), ("acc", acc), *invariance.items()):
                cols[key] += values.tolist()
    return cols


def _barrier_values(barriers: dict[str, float], kinds: tuple[str, ...]) -> dict[str, float | None]:
    """The trials row's barrier columns: every kind, path, view and type; null where not measured."""
    out: dict[str, float | None] = dict.fromkeys(barrier_columns(KINDS, BARRIER_TYPES))
    for kind in kinds:
        for path, height in barriers.items():
            for view in VIEWS:
                loss = height * KIND_SCALE.get(kind, 1.0) * _scale(view)  # nats
                acc = 0.3 * height * KIND_SCALE.get(kind, 1.0) * _scale(view)  # fraction
                for barrier_type, value in zip(BARRIER_TYPES, (loss, acc, loss, acc)):
                    out[barrier_column(barrier_type, kind, path, view)] = value
    return out


def _write(folder: Path, trial_id: str, table: pa.Table) -> None:
    meta = {
        b"mmc_sweep.spec_hash": SPEC_HASH.encode(),
        b"mmc_sweep.versions": json.dumps({"mmc_sweep": "synthetic"}).encode(),
        b"mmc_sweep.device": b"cpu",
    }
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(meta), folder / f"{trial_id}.parquet")


def write_synthetic_study(folder: str | Path, n_trials: int = 40, alphas: int = 11, seed: int = 0,
                          name: str = "synthetic", kinds: tuple[str, ...] = ("linear",)) -> Path:
    """Write ``study.yaml`` and the trials/paths/history/revival datasets of a made-up finished study.

    Rows: 2 base models, 3 baselines and ``n_trials`` CBFT search trials; each non-base trial has
    ``cue_to_ft`` and ``ft_to_clean`` paths of ``alphas`` points on 4 views for each path kind in
    ``kinds``, the base pair one ``cue_to_clean`` path per kind. Path rows in all:
    ``(2 * (n_trials + 3) + 1) * alphas * 4 * len(kinds)``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = tuple(kinds)
    spec = synthetic_spec(name, n_trials, alphas, kinds)
    (folder / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, alphas)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows: list[tuple[str, str, str, dict, dict, dict]] = []  # (id, role, method, params, metrics, barriers)

    base_barrier = {"cue_to_clean": 1.2}
    rows.append(("base_cue_s0", "base", "base_cue", {}, _metrics(rng, 0.9, 0.55), {}))
    rows.append(("base_clean_s0", "base", "base_clean", {}, _metrics(rng, 0.02, 0.85), base_barrier))
    defaults = {"lr": 0.01, "n_clean": 500, "lambda_barrier": 0.0, "lambda_invariance": 0.0,
                "t_distribution": "uniform"}
    for method, reliance, clean, barrier, far in (("naive_ft", 0.7, 0.7, 0.05, 1.0), ("llrt", 0.8, 0.62, 0.0, 1.15),
                                                  ("lpft", 0.6, 0.72, 0.1, 0.9)):
        rows.append((f"{method}_s0", "baseline", method, dict(defaults),
                     _metrics(rng, reliance, clean), {"cue_to_ft": barrier, "ft_to_clean": far}))
    for i in range(n_trials):
        p = {"lr": float(10 ** rng.uniform(-3, -1)), "n_clean": int(round(10 ** rng.uniform(2, np.log10(4000)))),
             "lambda_barrier": float(rng.uniform(0, 4)), "lambda_invariance": float(rng.uniform(0, 4)),
             "t_distribution": str(rng.choice(["uniform", "beta", "midpoint"]))}
        reliance = float(np.clip(0.75 * np.exp(-0.8 * p["lambda_barrier"]) + rng.normal(0, 0.03), 0, 1))
        lr_fit = 1 - 0.15 * abs(np.log10(p["lr"]) + 2)  # best near lr = 1e-2
        # Relying on the cue costs clean accuracy: the best clean models are the cue-free ones.
        clean = (0.6 + 0.08 * np.log10(p["n_clean"])) * lr_fit - 0.2 * reliance
        clean = float(np.clip(clean + rng.normal(0, 0.01), 0, 1))
        barrier = float(0.1 + 0.4 * p["lambda_barrier"] * (1 - reliance))
        rows.append((f"cbft_{i:05d}", "search", "cbft", p, _metrics(rng, reliance, clean),
                     {"cue_to_ft": barrier, "ft_to_clean": max(0.05, 1.2 - barrier)}))

    param_names = list(defaults)
    schema = _trials_schema(param_names)
    cue, clean = rows[0][4]["cue_reliance"], rows[1][4]["cue_reliance"]  # the base models' cue reliance
    for k, (tid, role, method, params, metrics, barriers) in enumerate(rows):
        own = metrics["cue_reliance"]
        ends = {"cue_to_ft": (cue, own), "ft_to_clean": (own, clean), "cue_to_clean": (cue, clean)}
        row: dict = {"study": name, "trial_id": tid, "role": role, "status": "completed", "method": method,
                     "base_seed": 0}
        for p in param_names:
            row[f"param_{p}"] = params.get(p)
        row.update(metrics)
        row.update(_barrier_values(barriers, kinds))
        if role != "base":
            tau = REVIVAL_TAU.get(method, 4.0 + 16.0 * params.get("lambda_barrier", 0.0))
            curve = _revival_curve(metrics["cue_reliance"], cue, tau)
            _write(folder / "results" / "revival", tid, pa.Table.from_pylist(
                [{"study": name, "trial_id": tid, **p, "acc_clean": metrics["acc_clean"]} for p in curve]))
            reached = [p["step"] for p in curve if p["cue_reliance"] >= cue / 2]
            row.update(revival_steps=float(reached[0]) if reached else float("inf"),
                       revival_auc=float(np.mean([p["cue_reliance"] for p in curve])))
        row.update({"error": None, "device": "cpu", "duration_s": float(rng.uniform(20, 60)),
                    "finished_at": start + timedelta(minutes=k)})
        _write(folder / "results" / "trials", tid, pa.Table.from_pylist([row], schema=schema))
        paths: dict[str, list] = {}
        for path, height in barriers.items():
            for key, vals in _path_rows(tid, path, grid, height, ends[path], kinds, name).items():
                paths.setdefault(key, []).extend(vals)
        if paths:
            _write(folder / "results" / "paths", tid, pa.table(paths))
        epochs = np.arange(1, 7)
        hist = {"study": [name] * 6, "trial_id": [tid] * 6, "epoch": epochs.tolist(),
                "train_loss": (1.0 / epochs).tolist()}
        for key in ("acc_clean", "acc_cue", "acc_rand_cue", "acc_rand_img", "cue_reliance"):
            hist[key] = [metrics[key]] * 6
        _write(folder / "results" / "history", tid, pa.table(hist))
    return folder


def _revival_curve(start: float, cue: float, tau: float) -> list[dict]:
    """Cue reliance climbing from ``start`` towards the cue model's ``cue`` over about ``tau`` steps."""
    return [{"step": step, "cue_reliance": float(cue - (cue - start) * np.exp(-step / tau))} for step in (0, *REVIVAL_STEPS)]


def _trials_schema(param_names: list[str]) -> pa.Schema:
    fields = [("study", pa.string()), ("trial_id", pa.string()), ("role", pa.string()), ("status", pa.string()),
              ("method", pa.string()), ("base_seed", pa.int64())]
    for p in param_names:
        kind = pa.int64() if p == "n_clean" else pa.string() if p == "t_distribution" else pa.float64()
        fields.append((f"param_{p}", kind))
    for view in VIEWS:
        fields += [(f"acc_{view}", pa.float64()), (f"loss_{view}", pa.float64())]
    fields += [(m, pa.float64()) for m in INVARIANCE_METRICS]
    fields += [(c, pa.float64()) for c in barrier_columns(KINDS, BARRIER_TYPES, PATHS)]  # as the harness: all kinds
    fields += [("revival_steps", pa.float64()), ("revival_auc", pa.float64())]
    fields += [("error", pa.string()), ("device", pa.string()), ("duration_s", pa.float64()),
               ("finished_at", pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields)
