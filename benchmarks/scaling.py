#!/usr/bin/env python
"""Sizing on paper: what a paper-scale study costs in trials, GPU-hours, Parquet rows and bytes, and
driver memory.

The study: the paper preset ``search_spaces/paper/cifar10_box.yaml`` (reference VGG-13 and recipes,
3 base seeds, baselines naive_ft / llrt / lpft) with ``--set`` overrides for 5 cue proportions and
200 CBFT trials (``PAPER_SETS``: ``search.num_samples=200`` and categorical ``cue_proportion`` and
``base_seed`` in the search space, so the search draws from all 15 cue models). Every count below
comes from the project's own code on that spec: ``StudySpec.base_models``, ``jobs.reference_jobs``,
``jobs.search_samples``, ``spec.trial_paths``, ``finetune.total_epochs``.

* GPU-hours: counts x per-trial seconds measured on one NVIDIA H100 80GB (whole GPU) with
  ``benchmarks/paper_cost.py --device cuda`` (``H100_S``); naive FT, LPFT and the base-pair
  measurement were not measured and are bounded (``ASSUMED``). Packed: fine-tuning trials divided by
  the throughput gain ``benchmarks/gpu_packing.py`` measured with 4 trials per H100 (base models kept
  whole-GPU: their packing was not measured).
* Parquet rows and bytes: one payload per trial of the study, row for row as the harness builds it
  (``trials.py``: the same trial ids, columns, paths, kinds, alphas, views, epochs), values made up
  but shaped like real ones (float32 metrics widened to float64, smooth curves along alpha and the
  epochs, accuracies in steps of 1/10,000 test images). Written with ``results.write_trial`` into a
  temporary store, the reference rows first, then the search, then compacted once, as
  ``stages.run_stages`` does; bytes are summed file sizes. Compressed size depends on the values:
  the same generator is checked against the real rows of the tiny study run below (``calibration``).
* Driver memory: a real tiny study (shapes data, small_cnn width 8, CBFT 20 epochs, 88 path rows and
  20 history rows per trial as in the paper study, TPE) run twice through ``run_study.py run`` with
  ``--num-samples`` N1 and N2 (8 and 64); the driver's peak RSS (``ru_maxrss`` at exit, and ``VmHWM``
  polled) and the Ray processes' peak RSS (``gcs_server``, ``raylet``, the other daemons, the
  workers), polled from ``/proc`` every 0.3 s; during the search the driver's RSS is also sampled
  against the number of search part files written, and a line fitted. MiB per Tune trial: the larger
  of the fit's slope and the two peaks' difference over the two runs' Tune trials; the paper study's
  driver: the larger run's peak + that slope x the Tune trials it has more. MiB = 2**20 bytes
  (``*_mb`` in the last line too).

Last line:

    scaling: trials=<Tune trials> gpu_hours=<whole GPU> parquet_rows=<all tables> parquet_mb_parts=<a> parquet_mb_compacted=<b> driver_mb=<m>

Usage: python benchmarks/scaling.py [--quick]    (4-6 min on 2 shared cores; --quick about 2)
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import pyarrow.dataset as ds
import yaml

from mmc_sweep.config import BARRIER_TYPES, VIEWS, barrier_metric
from mmc_sweep.finetune import total_epochs
from mmc_sweep.study.definition.overrides import apply_sets
from mmc_sweep.study.definition.spec import StudySpec, trial_paths
from mmc_sweep.study.run.jobs import reference_jobs, search_samples
from mmc_sweep.study.run.trials import params_row, search_settings
from mmc_sweep.study.storage.compaction import compact_study
from mmc_sweep.study.storage.results import TABLES, VIEW_METRICS, metadata_for, write_trial
from mmc_sweep.study.storage.store import Store

PRESET = ROOT / "search_spaces" / "paper" / "cifar10_box.yaml"
PROPORTIONS = [0.2, 0.4, 0.6, 0.8, 1.0]  # 5 cue proportions; 0.8 (the preset's) among them
PAPER_SETS = [
    "search.num_samples=200",
    f"search.space.cue_proportion={{type: categorical, choices: {PROPORTIONS}}}",
    "search.space.base_seed={type: categorical, choices: [0, 1, 2]}",
]
# seconds per job on one NVIDIA H100 80GB, whole GPU (benchmarks/paper_cost.py --device cuda)
H100_S = {"base_model": 114.0, "cbft": 7.0, "llrt": 5.0}
# not measured: bounds (naive FT = CBFT without its extra passes; LPFT = LLRT's head training + a fine-tuning;
# the base pair = one path of the two a CBFT trial measures, and no training)
ASSUMED = {"naive_ft": H100_S["cbft"], "lpft": H100_S["llrt"] + H100_S["cbft"], "base_pair": H100_S["cbft"]}
PACKING = {"4 per GPU": 1.66, "4 per GPU, MPS": 2.38}  # benchmarks/gpu_packing.py on the H100
SEARCH_PART = re.compile(r"^[0-9a-f]{8}\.parquet$")  # a search trial's part file (Tune's trial ids)
DEVICE = "cuda:0 (NVIDIA H100 80GB HBM3)"
N_TEST = 10_000  # CIFAR-10 test images: accuracies come in steps of 1/N_TEST

TINY = {
    "name": "scaling_tiny",
    "data": {"dataset": "shapes", "cue": "box", "cue_proportion": 0.8, "seed": 0, "n_train": 400, "n_test": 100},
    "model": {"arch": "small_cnn", "width": 8},
    "base": {"epochs": 2, "lr": 0.05, "seeds": [0], "batch_size": 64},
    "finetune": {"method": "cbft", "epochs": 20, "n_clean": 80, "batch_size": 32, "cue_batch_size": 32},
    "baselines": [],
    "search": {
        "num_samples": 4, "sampler": "tpe", "seed": 0,
        "objectives": [{"metric": "acc_rand_cue", "mode": "max"}, {"metric": "cue_reliance", "mode": "min"}],
        "space": {
            "lambda_barrier": {"type": "float", "low": 0.1, "high": 10, "log": True},
            "lambda_invariance": {"type": "float", "low": 0.1, "high": 10, "log": True},
            "barrier_margin": {"type": "float", "low": 0.25, "high": 3.0},
            "lr": {"type": "float", "low": 1.0e-3, "high": 0.05, "log": True},
            "n_clean": {"type": "int", "low": 40, "high": 100, "log": True},
        },
    },
    "paths": {"kinds": ["linear"], "alphas": 11, "views": list(VIEWS),
              "bn_reset": {"mode": "cumulative", "batches": 2, "batch_size": 32, "data": "clean"}},
    "resources": {"cpu": 1, "gpu": 0},
}


def paper_spec() -> StudySpec:
    return apply_sets(yaml.safe_load(PRESET.read_text()), PAPER_SETS, str(PRESET))


# ---- payloads: the rows of every trial, as trials.py builds them ------------------------------------

def f32(x) -> float:
    """Metrics are float32 tensors widened to float64: so are these."""
    return float(np.float32(x))


class Rows:
    """Made-up values of real shape; ``n_test``: accuracies in steps of 1/n_test."""

    def __init__(self, spec: StudySpec, n_test: int, seed: int = 0) -> None:
        self.spec, self.n_test = spec, n_test
        self.rng = np.random.default_rng(seed)
        self.nodes = [self.rng.bytes(28).hex() for _ in range(4)]  # Ray node ids: 56 hex digits
        self.alphas = np.linspace(0.0, 1.0, spec.paths.alphas)

    def acc(self, x: float) -> float:
        return f32(round(float(np.clip(x, 0, 1)) * self.n_test) / self.n_test)

    def model(self) -> dict[str, float]:
        """View metrics and invariance metrics of one model."""
        r = self.rng
        out = {}
        for v in VIEWS:
            out[f"acc_{v}"] = self.acc(r.uniform(0.1, 0.95))
            out[f"loss_{v}"] = f32(r.uniform(0.2, 2.5))
        out.update(cue_reliance=f32(r.uniform(-0.05, 1)), pred_consistency=self.acc(r.uniform(0.3, 1)),
                   rep_cosine=f32(r.uniform(0.6, 1)))
        return out

    def straight(self, y: np.ndarray) -> np.ndarray:
        """The straight line between a curve's endpoints."""
        return y[0] + (y[-1] - y[0]) * self.alphas

    def path(self, name: str, a: dict, b: dict) -> tuple[dict[str, float], list[dict]]:
        """Rows of one path between models with metrics ``a`` and ``b``, and its barrier columns."""
        r, views = self.rng, [v for v in VIEWS if v in self.spec.paths.views]
        rows, barriers = [], {}
        for kind in self.spec.paths.kinds:
            bump = r.uniform(0, 2.0)
            curves = {}
            inv = {m: [f32(a[m] + (b[m] - a[m]) * t + r.normal(0, 0.02)) for t in self.alphas]
                   for m in ("cue_reliance", "pred_consistency", "rep_cosine")}
            for v in views:
                hump = 4 * self.alphas * (1 - self.alphas) * bump
                loss = a[f"loss_{v}"] + (b[f"loss_{v}"] - a[f"loss_{v}"]) * self.alphas + hump + r.normal(0, 0.01, len(self.alphas))
                acc = a[f"acc_{v}"] + (b[f"acc_{v}"] - a[f"acc_{v}"]) * self.alphas - 0.2 * hump + r.normal(0, 0.005, len(self.alphas))
                curves[v] = ([f32(x) for x in loss], [self.acc(x) for x in acc])
                lo, ac = np.array(curves[v][0]), np.array(curves[v][1])
                above, below, mid = lo - self.straight(lo), self.straight(ac) - ac, len(self.alphas) // 2
                values = {"barrier_loss": f32(max(0.0, above.max())), "barrier_acc": f32(max(0.0, below.max())),
                          "barrier_mid_loss": f32(above[mid]), "barrier_mid_acc": f32(below[mid])}
                barriers.update({barrier_metric(t, kind, name, v): values[t] for t in BARRIER_TYPES})
            for i, t in enumerate(self.alphas):
                for v in views:
                    rows.append({"path": name, "kind": kind, "bn_reset": self.spec.paths.bn_reset.label, "alpha": float(t),
                                 "view": v, "loss": curves[v][0][i], "acc": curves[v][1][i],
                                 **{m: inv[m][i] for m in inv}})
        return barriers, rows

    def history(self, trial_id: str, epochs: int) -> list[dict]:
        start, end = self.model(), self.model()
        out = []
        for e in range(1, epochs + 1):
            t = e / epochs
            row = {"trial_id": trial_id, "epoch": e, "train_loss": f32(2.3 * np.exp(-3 * t) + 0.1 + self.rng.normal(0, 0.02))}
            for m in VIEW_METRICS:
                x = start[m] + (end[m] - start[m]) * t + self.rng.normal(0, 0.01)
                row[m] = self.acc(x) if m.startswith("acc_") else f32(x)
            out.append(row)
        return out

    def base_pair(self, seed: int) -> dict:
        """A base job (``trials._base_pair``): rows of the cue model and the clean reference, the path between them."""
        spec = self.spec
        keys = {"cue": spec.base_model("cue", seed), "clean": spec.base_model("clean", seed)}
        models = {kind: self.model() for kind in keys}
        barriers, paths = self.path("cue_to_clean", models["cue"], models["clean"])
        trials = []
        for kind, key in keys.items():
            row = {"trial_id": f"base_{kind}_s{seed}", "role": "base", "status": "completed", "method": f"base_{kind}",
                   "base_seed": seed, "cue_proportion": key.data.cue_proportion, "epochs": key.train.epochs,
                   "start_epoch": 0, "device": DEVICE, "duration_s": float(self.rng.uniform(100, 130)), **models[kind]}
            if kind == "clean":
                row.update(barriers)
            trials.append(row)
        return {"trials": trials, "paths": [{"trial_id": f"base_clean_s{seed}", **r} for r in paths], "history": []}

    def finetuned(self, trial_id: str, role: str, ft, seed: int, proportion: float) -> dict:
        """A baseline or search trial (``trials._finetune``), completed."""
        cue, clean, final = self.model(), self.model(), self.model()
        pairs = {"cue_to_ft": (cue, final), "ft_to_clean": (final, clean)}
        barriers, paths = {}, []
        for name in trial_paths(self.spec) if role == "search" else [p for p in pairs if ft.method != "none" or p != "cue_to_ft"]:
            b, rows = self.path(name, *pairs[name])
            barriers.update(b)
            paths += rows
        row = {"trial_id": trial_id, "role": role, "method": ft.method, "base_seed": seed, "cue_proportion": proportion,
               "epochs": total_epochs(ft), "device": DEVICE, "node": self.nodes[int(self.rng.integers(len(self.nodes)))],
               **params_row(ft), "start_epoch": 0, "status": "completed", "duration_s": float(self.rng.uniform(5, 12)),
               "gpu_peak_mb": float(self.rng.uniform(800, 900)), "retries": 0, **final, **barriers}
        return {"trials": [row], "paths": [{"trial_id": trial_id, **r} for r in paths],
                "history": self.history(trial_id, total_epochs(ft))}

    def search_config(self) -> dict:
        """Values the search may propose for every searched setting (the Tune config of a trial)."""
        config = {}
        for p in self.spec.search.space:
            if p.type == "categorical":
                config[p.name] = p.choices[int(self.rng.integers(len(p.choices)))]
            elif p.log:
                x = float(np.exp(self.rng.uniform(np.log(p.low), np.log(p.high))))
                config[p.name] = int(round(x)) if p.type == "int" else x
            else:
                x = float(self.rng.uniform(p.low, p.high))
                config[p.name] = int(round(x)) if p.type == "int" else x
        return config


def study_payloads(spec: StudySpec, n_test: int, search_ids: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(reference-stage payloads, search payloads): one per Tune trial that writes rows."""
    gen = Rows(spec, n_test)
    reference = []
    for job in reference_jobs(spec):
        if job["role"] == "base":
            reference.append(gen.base_pair(job["seed"]))
        elif job["role"] == "baseline":
            ft = dataclasses.replace(spec.finetune, method=job["method"])
            reference.append(gen.finetuned(job["trial_id"], "baseline", ft, job["seed"], spec.data.cue_proportion))
        else:
            raise NotImplementedError("control pairs: not in the paper study")
    ids = search_ids or [gen.rng.bytes(4).hex() for _ in range(search_samples(spec))]  # Tune's 8-hex-digit ids
    search = []
    for trial_id in ids:
        ft, seed, proportion = search_settings(gen.search_config(), spec)
        search.append(gen.finetuned(trial_id, "search", ft, seed, proportion))
    return reference, search


# ---- bytes on disk --------------------------------------------------------------------------------

def _parquet_files(study_dir: Path) -> dict[str, list[Path]]:
    return {t: sorted(p for p in (study_dir / "results" / t).glob("*.parquet") if not p.name.startswith((".", "_")))
            for t in TABLES}


def write_study(spec: StudySpec, stages: list[list[dict]], folder: Path) -> dict:
    """Write every payload with ``write_trial``, reference rows first, then compact once, as the
    harness does when its experiment ends; return rows, part-file bytes/files per table and the compacted ones."""
    store = Store.open(str(folder))
    study_dir = folder / spec.name
    metadata = metadata_for(spec.hash, DEVICE)
    rows = defaultdict(int)
    part_bytes, part_files = defaultdict(int), defaultdict(int)
    for payloads in stages:
        for payload in payloads:
            write_trial(store, spec.name, payload, metadata)
            for table in TABLES:
                for trial_id in {r["trial_id"] for r in payload.get(table, [])}:
                    part_bytes[table] += (study_dir / "results" / table / f"{trial_id}.parquet").stat().st_size
                    part_files[table] += 1
                rows[table] += len(payload.get(table, []))
    compact_study(study_dir)
    files = _parquet_files(study_dir)
    return {"rows": dict(rows), "part_bytes": dict(part_bytes), "part_files": dict(part_files),
            "compacted_bytes": {t: sum(p.stat().st_size for p in files[t]) for t in TABLES},
            "compacted_files": {t: len(files[t]) for t in TABLES}}


def real_payloads(study_dir: Path) -> tuple[list[dict], list[dict], list[str]]:
    """A real study's rows regrouped into one payload per trial id (reference rows first)."""
    by_trial: dict[str, dict] = defaultdict(lambda: {t: [] for t in TABLES})
    for table in TABLES:
        for row in ds.dataset(study_dir / "results" / table, format="parquet").to_table().to_pylist():
            row.pop("study")
            by_trial[row["trial_id"]][table].append(row)
    roles = {p["trials"][0]["trial_id"]: p["trials"][0]["role"] for p in by_trial.values() if p["trials"]}
    reference = [p for t, p in by_trial.items() if roles.get(t) != "search"]
    search = [p for t, p in by_trial.items() if roles.get(t) == "search"]
    return reference, search, [t for t in by_trial if roles.get(t) == "search"]


# ---- driver memory --------------------------------------------------------------------------------

def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below ``root``."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children[int(fields[1])].append(int(entry))
            except (OSError, IndexError):
                pass
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        todo += children.get(pid, [])
    return out


def _category(cmdline: str) -> str:
    if "gcs_server" in cmdline:
        return "gcs_server"
    if "raylet" in cmdline.split(" ")[0]:
        return "raylet"
    if cmdline.split(" ")[0].endswith("Agent"):  # ray::DashboardAgent, ray::RuntimeEnvAgent
        return "other"
    if cmdline.startswith("ray::") or "default_worker.py" in cmdline:  # ray::IDLE, ray::ImplicitFunc...
        return "workers"
    return "other"  # log monitor, autoscaler monitor, dashboard process


def run_driver(num_samples: int, folder: Path) -> dict:
    """Run the tiny study through ``run_study.py run``; peak RSS (MiB) of the driver and of the Ray
    processes it started, and the Tune trials it ran."""
    folder.mkdir(parents=True, exist_ok=True)
    study_file = folder / "tiny.yaml"
    study_file.write_text(yaml.safe_dump(TINY, sort_keys=False))
    maxrss_file = folder / "driver_maxrss_kb"
    name = f"scaling_tiny_{num_samples}"
    argv = ["run_study.py", "run", str(study_file), "--storage", str(folder / "storage"),
            "--num-samples", str(num_samples), "--name", name]
    code = ("import atexit, resource, runpy, sys; "
            f"atexit.register(lambda: open({str(maxrss_file)!r}, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))); "
            f"sys.argv = {argv!r}; runpy.run_path('run_study.py', run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    hwm_kb, peaks, series = 0, defaultdict(int), []
    parts = folder / "storage" / name / "results" / "trials"
    while proc.poll() is None:
        hwm_kb = max(hwm_kb, _status_kb(proc.pid, "VmHWM"))
        done = sum(1 for p in parts.glob("*.parquet") if SEARCH_PART.match(p.name)) if parts.is_dir() else 0
        if done and (not series or series[-1][0] < num_samples):  # the search stage, until its last trial is written
            series.append((done, _status_kb(proc.pid, "VmRSS") / 1024))
        sums = defaultdict(int)
        for pid, cmdline in _descendants(proc.pid).items():
            sums[_category(cmdline)] += _status_kb(pid, "VmRSS")
        for key, kb in sums.items():
            peaks[key] = max(peaks[key], kb)
        time.sleep(0.3)
    output = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"the tiny study failed (exit {proc.returncode}):\n{output[-3000:]}")
    maxrss_kb = int(maxrss_file.read_text()) if maxrss_file.exists() else 0
    trials = ds.dataset(folder / "storage" / name / "results" / "trials", format="parquet").to_table().to_pylist()
    search = sum(r["role"] == "search" and r["status"] == "completed" for r in trials)
    assert search == num_samples, f"{search} of {num_samples} search trials completed"
    spec = apply_sets(TINY, [], "tiny")
    tune_trials = len(spec.base_models("cue")) + len(spec.base_models("clean")) + len(reference_jobs(spec)) + num_samples
    x, y = np.array(series).T if len(series) > 2 else (np.zeros(2), np.zeros(2))
    slope = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else float("nan")
    return {"driver_mb": max(hwm_kb, maxrss_kb) / 1024, "tune_trials": tune_trials, "wall_s": time.perf_counter() - start,
            "search_slope_mb": slope, "search_rss_mb": (float(y[0]), float(y[-1])),
            "study_dir": folder / "storage" / name, **{f"{k}_mb": v / 1024 for k, v in peaks.items()}}


def _mib(sizes: dict[str, int]) -> float:
    return sum(sizes.values()) / 2**20


# ---- the report -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description="Sizing on paper: trials, GPU-hours, Parquet rows and bytes, driver memory of a paper-scale study.")
    parser.add_argument("--quick", action="store_true", help="driver runs of 4 and 16 search trials instead of 8 and 64")
    args = parser.parse_args()
    sizes = (4, 16) if args.quick else (8, 64)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")

    spec = paper_spec()
    cue, clean = spec.base_models("cue"), spec.base_models("clean")
    ref = reference_jobs(spec)
    n_search = search_samples(spec)
    tune_trials = len(cue) + len(clean) + len(ref) + n_search
    by_method = defaultdict(int)
    for job in ref:
        by_method[job.get("method", "base_pair")] += 1
    print(f"paper-scale study: {PRESET.relative_to(ROOT)} + {PAPER_SETS}")
    print(f"  base models: {len(cue)} cue ({len(spec.base.seeds)} seeds x {len({k.data.cue_proportion for k in cue})} proportions) "
          f"+ {len(clean)} clean = {len(cue) + len(clean)}")
    print(f"  reference jobs: {len(ref)} ({dict(by_method)}); search trials: {n_search} ({spec.finetune.method}); "
          f"Tune trials in all: {tune_trials}")

    # GPU-hours
    seconds = {"base models": (len(cue) + len(clean)) * H100_S["base_model"],
               "reference": sum(n * H100_S.get(m, ASSUMED.get(m, 0.0)) for m, n in by_method.items()),
               "search": n_search * H100_S[spec.finetune.method]}
    whole_h = sum(seconds.values()) / 3600
    trials_s = seconds["reference"] + seconds["search"]
    packed_h = {k: (seconds["base models"] + trials_s / f) / 3600 for k, f in PACKING.items()}
    print("GPU-hours (H100, whole GPU): " + ", ".join(f"{k} {v / 3600:.3f}" for k, v in seconds.items()) + f"; total {whole_h:.2f}")
    print("  packed (fine-tuning trials / packing gain, base models whole-GPU): "
          + ", ".join(f"{k} {v:.2f}" for k, v in packed_h.items()))

    # Parquet rows and bytes
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        paper = write_study(spec, list(study_payloads(spec, N_TEST)), Path(folder))
    print(f"Parquet ({time.perf_counter() - start:.0f} s to write and compact):")
    for t in TABLES:
        print(f"  {t}: {paper['rows'][t]} rows; part files {paper['part_files'][t]} = {paper['part_bytes'][t] / 2**20:.2f} MiB; "
              f"compacted {paper['compacted_files'][t]} file(s) = {paper['compacted_bytes'][t] / 2**20:.3f} MiB")
    rows = sum(paper["rows"].values())
    print(f"  all: {rows} rows; {sum(paper['part_files'].values())} part files = {_mib(paper['part_bytes']):.2f} MiB; "
          f"{sum(paper['compacted_files'].values())} compacted files = {_mib(paper['compacted_bytes']):.3f} MiB")

    # driver memory, and the byte calibration on the tiny study's real rows
    with tempfile.TemporaryDirectory() as folder:
        runs = []
        for n in sizes:
            run = run_driver(n, Path(folder) / f"n{n}")
            runs.append(run)
            print(f"driver, tiny study, {n} search trials ({run['tune_trials']} Tune trials, {run['wall_s']:.0f} s): "
                  f"driver peak {run['driver_mb']:.0f} MiB; Ray head peak: gcs_server {run.get('gcs_server_mb', 0):.0f} MiB, "
                  f"raylet {run.get('raylet_mb', 0):.0f} MiB, other Ray daemons {run.get('other_mb', 0):.0f} MiB; "
                  f"workers (sum of RSS) {run.get('workers_mb', 0):.0f} MiB; driver RSS over the search "
                  f"{run['search_rss_mb'][0]:.0f} -> {run['search_rss_mb'][1]:.0f} MiB, fit {run['search_slope_mb'] * 1024:.0f} KiB "
                  f"per finished trial; load {os.getloadavg()[0]:.2f}")
        tiny = apply_sets(TINY, [], "tiny")
        ref_real, search_real, ids = real_payloads(runs[-1]["study_dir"])
        real = write_study(dataclasses.replace(tiny, name=runs[-1]["study_dir"].name), [ref_real, search_real], Path(folder) / "real")
        made_up = write_study(dataclasses.replace(tiny, name=runs[-1]["study_dir"].name),
                              list(study_payloads(tiny, TINY["data"]["n_test"], ids)), Path(folder) / "made_up")
    assert real["rows"] == made_up["rows"], (real["rows"], made_up["rows"])
    ratio_parts = _mib(real["part_bytes"]) / _mib(made_up["part_bytes"])
    ratio_compacted = _mib(real["compacted_bytes"]) / _mib(made_up["compacted_bytes"])
    print(f"calibration on the tiny study's {sum(real['rows'].values())} real rows ({real['rows']}): real / made-up bytes "
          f"= {ratio_parts:.3f} as part files, {ratio_compacted:.3f} compacted (row counts equal)")

    (small, big) = runs
    # per Tune trial: the larger of the two peaks' difference and the fit of the RSS over the big run's search
    peaks_slope = (big["driver_mb"] - small["driver_mb"]) / (big["tune_trials"] - small["tune_trials"])
    per_trial = max(peaks_slope, big["search_slope_mb"])
    driver_mb = big["driver_mb"] + per_trial * (tune_trials - big["tune_trials"])
    head = {k: big.get(f"{k}_mb", 0.0) for k in ("gcs_server", "raylet")}
    head_slope = {k: (big.get(f"{k}_mb", 0.0) - small.get(f"{k}_mb", 0.0)) / (big["tune_trials"] - small["tune_trials"])
                  for k in head}
    head_paper = {k: head[k] + head_slope[k] * (tune_trials - big["tune_trials"]) for k in head}
    print(f"driver memory: {per_trial * 1024:.0f} KiB per Tune trial (peaks {small['driver_mb']:.0f} -> {big['driver_mb']:.0f} MiB: "
          f"{peaks_slope * 1024:.0f} KiB per trial; RSS fit over the search: {big['search_slope_mb'] * 1024:.0f}); "
          f"at {tune_trials} Tune trials: {driver_mb:.0f} MiB (extrapolated); gcs_server {head_paper['gcs_server']:.0f} MiB, "
          f"raylet {head_paper['raylet']:.0f} MiB (slopes {head_slope['gcs_server'] * 1024:.0f} / {head_slope['raylet'] * 1024:.0f} KiB per trial)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"scaling: trials={tune_trials} gpu_hours={whole_h:.2f} parquet_rows={rows} parquet_mb_parts={_mib(paper['part_bytes']):.2f} "
          f"parquet_mb_compacted={_mib(paper['compacted_bytes']):.3f} driver_mb={driver_mb:.0f}")


if __name__ == "__main__":
    main()
