#!/usr/bin/env python
"""Cost of the paper presets' trials, measured on one device: the basis of the GPU-hour comments in
search_spaces/paper/*.yaml. CIFAR-sized stand-in data (50,000 training and 10,000 test images of
32 px, generated: the cost does not depend on the pixels), the reference VGG-13, the reference recipes.

Times one base-training epoch, then one whole CBFT trial (20 epochs, paper settings) and one whole
LLRT trial (200 head epochs), each with its end-of-trial measurement (4 views, linear paths cue_to_ft
and ft_to_clean at 11 alphas), on the whole device (a 0.25-GPU trial shares it four ways), then

    base_model_s=<100 epochs> cbft_trial_s=<20 epochs + measure> llrt_trial_s=<200 head epochs + measure>

Usage: python benchmarks/paper_cost.py [--device cuda] [--width 64]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, PathSpec, TrainSpec
from mmc_sweep.data import build_task
from mmc_sweep.experiment import finetune_and_measure, train_base


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--n-train", type=int, default=50000)
    args = p.parse_args()
    device = torch.device(args.device)
    task = build_task(DataSpec(image_size=32, n_train=args.n_train, n_test=10000, box_layout="paper"), device)
    model = ModelSpec(arch="vgg13_paper", width=args.width)
    recipe = TrainSpec(epochs=1, lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4, batch_size=256,
                       schedule="step", milestones=(40,), gamma=0.1)
    train_base(task, "cue", model, dataclasses.replace(recipe, seed=9), device)  # warm-up (cuDNN, allocator)
    epoch_s, cue = timed(lambda: train_base(task, "cue", model, recipe, device))
    clean = train_base(task, "clean", model, dataclasses.replace(recipe, seed=1), device)
    paper = FinetuneSpec(method="cbft", n_clean=min(2500, args.n_train // 2), epochs=1, lr=0.01, weight_decay=1e-4, batch_size=256,
                         cue_batch_size=256, nesterov=False, t_distribution="paper", invariance_form="paper",
                         update="alternating", warmup="no_invariance", n_cue=47500 * args.n_train // 50000,
                         cue_data="train_proportion")
    full = PathSpec(alphas=11, views=("clean", "cue", "rand_cue", "rand_img"))
    finetune_and_measure(task, cue, clean, dataclasses.replace(paper, epochs=1), full)  # warm-up
    cbft_s, _ = timed(lambda: finetune_and_measure(task, cue, clean, dataclasses.replace(paper, epochs=20), full))
    llrt = dataclasses.replace(paper, method="llrt", llrt_lr=30.0, llrt_epochs=200, llrt_weight_decay=0.0)
    llrt_s, _ = timed(lambda: finetune_and_measure(task, cue, clean, llrt, full))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {name}; base epoch {epoch_s:.1f} s; whole trials with their measurement (4 views, cue_to_ft "
          f"and ft_to_clean at 11 alphas): CBFT 20 epochs {cbft_s:.0f} s, LLRT 200 head epochs {llrt_s:.0f} s")
    print(f"base_model_s={100 * epoch_s:.0f} cbft_trial_s={cbft_s:.0f} llrt_trial_s={llrt_s:.0f}")


if __name__ == "__main__":
    main()
