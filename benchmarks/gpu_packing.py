#!/usr/bin/env python
"""Benchmark: what packing several small trials on one GPU buys.

The same small fine-tuning trials (CBFT on a CIFAR-sized stand-in set: generated 32 px images, the
reference VGG-13 at width 32, 4 epochs, then the four views and the linear paths at 11 alphas) run
with 1, 2 and 4 trials at a time on one GPU: 1, 2 or 4 worker processes, each with its CUDA memory
capped to its share (``mmc_sweep.gpu_share.claim_share(1/k)``), as 1-, 0.5- and 0.25-GPU Ray trials
are. This measures the GPU side of packing; the harness's own per-trial cost is what
``benchmarks/study_overhead.py`` measures. Last line:

    trials_per_hour_1=<a> trials_per_hour_4=<b> packing_speedup=<b/a>

Usage: python benchmarks/gpu_packing.py [--trials 8] [--epochs 4] [--threads 2] [--arch vgg13_paper --width 32]
(needs CUDA). ``--arch small_cnn --width 0`` packs the quickstart's own small model instead.

Processes share a GPU by time-slicing unless NVIDIA's Multi-Process Service (MPS) runs; start it
(``nvidia-cuda-mps-control -d``) to let their kernels run at the same time.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, PathSpec, TrainSpec

DATA = DataSpec(image_size=32, n_train=10000, n_test=2000)


def _worker(share: float, folder: str, jobs, done, epochs: int, threads: int, model_spec: ModelSpec) -> None:
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import finetune_and_measure
    from mmc_sweep.gpu_share import claim_share, peak_mb
    from mmc_sweep.models import create_model

    torch.set_num_threads(threads)  # a trial's CPUs, as Ray's resources.cpu sets them
    device = claim_share(share)
    task = build_task(DATA, device)
    models = []
    for kind in ("cue", "clean"):
        model = create_model(model_spec.arch, task.num_classes, width=model_spec.width)
        model.load_state_dict(torch.load(Path(folder) / f"{kind}.pt", weights_only=True))
        models.append(model.to(device).eval())
    done.put(("ready", None))
    while (seed := jobs.get()) is not None:
        spec = FinetuneSpec(method="cbft", epochs=epochs, n_clean=1000, batch_size=128, cue_batch_size=128, seed=seed)
        finetune_and_measure(task, *models, spec, PathSpec(alphas=11))
        done.put(("trial", peak_mb(device)))


def run(k: int, trials: int, epochs: int, folder: str, threads: int, model_spec: ModelSpec) -> tuple[float, float]:
    """(trials per hour, largest peak MiB of one trial) with ``k`` trials at a time."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    jobs, done = ctx.Queue(), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(1.0 / k, folder, jobs, done, epochs, threads, model_spec)) for _ in range(k)]
    for w in workers:
        w.start()
    for _ in workers:  # data built and models loaded everywhere: time the trials only
        done.get()
    start = time.perf_counter()
    for seed in range(trials):
        jobs.put(seed)
    for _ in workers:
        jobs.put(None)
    peaks = [done.get()[1] for _ in range(trials)]
    seconds = time.perf_counter() - start
    for w in workers:
        w.join()
    return trials / seconds * 3600, max(peaks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8, help="trials per setting (a multiple of 4)")
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per trial")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per trial (a trial's resources.cpu)")
    p.add_argument("--arch", default="vgg13_paper", help="architecture of the trials' models")
    p.add_argument("--width", type=int, default=32, help="its width (0 = the architecture's default)")
    args = p.parse_args()
    model_spec = ModelSpec(arch=args.arch, width=args.width)
    if not torch.cuda.is_available():
        sys.exit("gpu_packing: needs a CUDA GPU")
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import train_base

    device = torch.device("cuda")
    with tempfile.TemporaryDirectory() as folder:
        task = build_task(DATA, device)
        for kind in ("cue", "clean"):
            model = train_base(task, kind, model_spec, TrainSpec(epochs=3, batch_size=256), device)
            torch.save(model.state_dict(), Path(folder) / f"{kind}.pt")
        del task
        torch.cuda.empty_cache()
        rates = {}
        for k in (1, 2, 4):
            rates[k], peak = run(k, args.trials, args.epochs, folder, args.threads, model_spec)
            print(f"{k} trial(s) per GPU ({torch.cuda.get_device_name()}, {args.arch} width {args.width}): {rates[k]:.0f} trials/hour, "
                  f"peak {peak:.0f} MiB per trial", flush=True)
    print(f"trials_per_hour_1={rates[1]:.0f} trials_per_hour_4={rates[4]:.0f} packing_speedup={rates[4] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
