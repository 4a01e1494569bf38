#!/usr/bin/env python
"""Benchmark: what the split of the clean subset into batches does to fine-tuning (finetune.batching).

On the embedded data, the quickstart's cue model of one seed (8 epochs) is fine-tuned with naive FT
and with CBFT at the quickstart's fixed settings (6 epochs, batch 64) on 192, 200, 208 and 130 clean
images, once with ``ragged`` batches (full batches and the remainder: 200 = 64 + 64 + 64 + 8, the split
before the setting existed and the reference's) and once with ``even`` ones (the default: 200 = four of
50). 192 is whole batches, where both splits are the same run. Last line, clean accuracy per method,
n_clean and split:

    naive_ft_200_ragged=<acc> naive_ft_200_even=<acc> ... cbft_130_even=<acc>

    python benchmarks/batching.py [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmc_sweep.config import BATCHINGS, DataSpec, FinetuneSpec, ModelSpec, TrainSpec  # noqa: E402
from mmc_sweep.data import build_task  # noqa: E402
from mmc_sweep.experiment import finetune_cue_model, train_base  # noqa: E402
from mmc_sweep.metrics import view_metrics  # noqa: E402

N_CLEAN = (192, 200, 208, 130)  # whole batches; 8, 16 and 2 images left over at 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start, cpu = time.perf_counter(), torch.device("cpu")
    data = build_task(DataSpec(dataset="shapes", cue="box", cue_proportion=0.8, seed=0, n_test=1000), cpu)
    cue = train_base(data, "cue", ModelSpec(arch="small_cnn"), TrainSpec(epochs=8, lr=0.05, seed=args.seed), cpu)
    figures = {}
    for method in ("naive_ft", "cbft"):
        for n_clean in N_CLEAN:
            for batching in BATCHINGS:
                spec = FinetuneSpec(method=method, epochs=6, n_clean=n_clean, batching=batching, seed=args.seed)
                metrics = view_metrics(finetune_cue_model(data, cue, spec), data.views)
                figures[f"{method}_{n_clean}_{batching}"] = metrics["acc_clean"]
                print(f"{method:9s} n_clean {n_clean:4d} {batching:6s}: acc_clean {metrics['acc_clean']:.3f} "
                      f"cue_reliance {metrics['cue_reliance']:.3f}", flush=True)
    print(f"{time.perf_counter() - start:.0f} s on the CPU")
    print(" ".join(f"{key}={value:.3f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
