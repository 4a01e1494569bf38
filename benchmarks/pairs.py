#!/usr/bin/env python
"""Benchmark: what a connectivity matrix costs against its pairs measured one at a time.

On the embedded data (the quickstart's data, paths and resources; base models trained for 3 epochs,
since only their count matters here), a study with four base seeds holds N = 8 base models. Then,
on the same running Ray:

* one pair measured alone: ``run_study.py pairs STUDY --models base_cue_s0,base_clean_s0``;
* the matrix: ``run_study.py pairs STUDY --models base`` (N(N-1)/2 = 28 pairs);

each from an empty record of pairs (nothing reused). A matrix shares a worker's task, loaded models and
endpoint rows across its pairs, and runs as many pairs at once as the machine has trial slots. Last line:

    pairs_per_minute=<28 / matrix minutes> cost_ratio=<matrix seconds / (28 x one pair's seconds)>

(wall seconds, both including what a ``pairs`` run costs before its first pair: a Tune run, worker
start-up, the task). The line before it gives the ratio per trial slot (matrix seconds x slots), the
saving that does not come from running pairs side by side.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmc_sweep.cli import main  # noqa: E402

N_SEEDS = 4  # a cue model and a clean reference each: N = 8


def study_file(folder: Path) -> Path:
    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml").read_text())
    spec.update(name="pairs_bench", baselines=[])
    spec["base"].update(seeds=list(range(N_SEEDS)), epochs=3)
    spec["search"].update(num_samples=1, sampler="random")
    path = folder / "pairs_bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed_pairs(study: Path, models: str) -> float:
    shutil.rmtree(study / "results" / "pairs", ignore_errors=True)  # nothing written before ...
    shutil.rmtree(study.parent / "pairs", ignore_errors=True)  # ... and nothing measured before
    started = time.perf_counter()
    if main(["pairs", str(study), "--models", models]) != 0:
        raise SystemExit(f"pairs --models {models} failed")
    return time.perf_counter() - started


def main_benchmark() -> None:
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if main(["run", str(study_file(root)), "--storage", str(root / "store")]) not in (0, 1):
            raise SystemExit("the study did not run")
        study = root / "store" / "pairs_bench"
        alone = timed_pairs(study, "base_cue_s0,base_clean_s0")
        matrix = timed_pairs(study, "base")
        slots = int(ray.cluster_resources().get("CPU", 1))
    pairs = 2 * N_SEEDS * (2 * N_SEEDS - 1) // 2
    print(f"one pair alone: {alone:.1f} s; the matrix of {pairs} pairs: {matrix:.1f} s on {slots} trial slots")
    print(f"cost ratio per trial slot (matrix seconds x {slots} slots / ({pairs} x one pair)): "
          f"{matrix * slots / (pairs * alone):.3f}")
    print(f"pairs_per_minute={pairs / matrix * 60:.1f} cost_ratio={matrix / (pairs * alone):.3f}")


if __name__ == "__main__":
    main_benchmark()
