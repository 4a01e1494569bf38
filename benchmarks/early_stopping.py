#!/usr/bin/env python
"""Benchmark: does ASHA early stopping help on these studies?

The same CBFT search (TPE, seed 0, the embedded data) runs twice on a local Ray, without a scheduler
and with ``search.scheduler: asha`` (on acc_clean per epoch, grace 1 epoch, reduction factor 3).
Compute is counted in fine-tuning epochs trained (the history rows; the end-of-trial measurement a
pruned trial skips is not counted, so the saving is a lower bound). Last line:

    compute_saved=<1 - epochs with ASHA / epochs without> best_delta=<best acc_rand_cue with ASHA - without>

Usage: python benchmarks/early_stopping.py [--trials 16] [--epochs 6]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.dataset as ds
import yaml

STUDY = {
    "data": {"dataset": "shapes", "n_train": 2000, "n_test": 500},
    "model": {"arch": "small_cnn", "width": 16},
    "base": {"epochs": 4, "seeds": [0]},
    "finetune": {"method": "cbft", "n_clean": 200},
    "search": {"sampler": "tpe", "seed": 0, "max_concurrent": 2,
               "objectives": [{"metric": "acc_rand_cue", "mode": "max"}],
               "space": {"lr": {"type": "float", "low": 1.0e-3, "high": 0.3, "log": True},
                         "lambda_barrier": {"type": "float", "low": 0.1, "high": 10, "log": True},
                         "lambda_invariance": {"type": "float", "low": 0.1, "high": 10, "log": True}}},
    "paths": {"alphas": 5, "views": ["clean", "cue"]},
}
ASHA = {"metric": "acc_clean", "mode": "max", "grace_period": 1, "reduction_factor": 3}


def run_search(folder: Path, name: str, trials: int, epochs: int, scheduler: str) -> tuple[int, float, dict]:
    """(epochs trained, best acc_rand_cue of a completed trial, trials by status) of one search."""
    from mmc_sweep.study.definition.options import RunOptions
    from mmc_sweep.study.definition.spec import parse_study
    from mmc_sweep.study.run.runner import run

    raw = yaml.safe_load(yaml.safe_dump(STUDY))
    raw["name"] = name
    raw["finetune"]["epochs"] = epochs
    raw["search"].update(num_samples=trials, scheduler=scheduler, asha=ASHA)
    outcome = run(parse_study(raw, name), RunOptions(storage=str(folder)))
    assert outcome.exit_code == 0, outcome
    rows = [r for r in ds.dataset(str(folder / name / "results" / "trials")).to_table().to_pylist() if r["role"] == "search"]
    ids = {r["trial_id"] for r in rows}
    history = [h for h in ds.dataset(str(folder / name / "results" / "history")).to_table().to_pylist() if h["trial_id"] in ids]
    best = max(r["acc_rand_cue"] for r in rows if r["status"] == "completed")
    statuses = {s: sum(r["status"] == s for r in rows) for s in ("completed", "pruned", "failed")}
    return len(history), best, statuses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        plain = run_search(Path(folder), "fifo", args.trials, args.epochs, "none")
        asha = run_search(Path(folder), "asha", args.trials, args.epochs, "asha")
    for label, (epochs, best, statuses) in (("no scheduler", plain), ("asha", asha)):
        print(f"{label}: {epochs} fine-tuning epochs trained, best acc_rand_cue {best:.4f}, trials {statuses}")
    print(f"compute_saved={1 - asha[0] / plain[0]:.3f} best_delta={asha[1] - plain[1]:+.4f}")


if __name__ == "__main__":
    main()
