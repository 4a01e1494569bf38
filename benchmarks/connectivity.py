#!/usr/bin/env python
"""Benchmark: LMCP activation matching against the paper's per-layer loop, and the cost of a QMC epoch.

Two clean models are trained from different seeds on the embedded data (default: VGG-13 at width 32,
3 epochs each), then two things are measured, each as a ratio of times taken within this one run
(the machine is shared and noisy: every side is timed ``--repeats`` times, A/B interleaved, and the
best of each side is kept). Everything runs on the CPU with ``--threads`` torch threads (default 1:
what a study trial gets; with 2 threads on a 2-core machine any other busy process slows oneDNN
by 5-10x and the timings become meaningless).

1. ``align_speedup`` = naive alignment time / project alignment time, both from (A, B, the same
   ``--batches`` batches of 256 clean training images) to a permuted copy of B.

   * project: :func:`mmc_sweep.paths.align` with ``AlignSpec(method="activation")``: one forward pass
     of each model (BatchNorm folded, eval mode) per batch feeds every probed layer through hooks,
     correlation sums are accumulated over the batches, and each group gets ONE linear assignment.
   * naive reference (written here, as ``VGG_permute`` in the paper's ``find_permutation.py`` works;
     chain architectures only): for each group (layer) in order, for each batch, a fresh forward
     pass of both models from the input up to that layer (eval mode, BatchNorm not folded), the
     cosine similarity of the channel-centred activations, one ``linear_sum_assignment`` per batch,
     and the permutation applied to B's weights at once (the next batch and layer see permuted B).

   Quality: the LMCP loss barrier (clean view, 11 alphas, BN re-estimated on clean training images)
   of the project's alignment must be no worse than the naive one's + 0.02 nats (``quality_ok``).
   The naive loop's result is the assignment of its last batch alone, so the naive barrier is taken
   as the median over the choices of last batch (each batch matched alone); the figure for the
   given batch order is printed beside it.

2. ``qmc_epoch_ratio`` = one epoch of QMC midpoint training (``train_midpoint``) / one plain training
   epoch (``train_model`` on a fresh model of the same architecture); same images, batch size 128,
   same thread count. The floor is one forward and one backward pass per batch, i.e. about 1.0.

Last line:

    align_speedup=<naive s / project s> qmc_epoch_ratio=<QMC epoch s / plain epoch s>

Usage: ``python benchmarks/connectivity.py [--arch vgg13|small_cnn] [--width 32] [--batches 8] [--threads 1] [--device cpu|cuda]``
(``--cache DIR`` reuses trained endpoints between runs while iterating; by default they are trained).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from mmc_sweep.config import AlignSpec, DataSpec, ModelSpec, PathSpec, QMCSpec, TrainSpec
from mmc_sweep.data import ImageSet, build_task
from mmc_sweep.experiment import train_base
from mmc_sweep.metrics import view_metrics
from mmc_sweep.models import create_model, fold_batchnorm, permutation_groups
from mmc_sweep.paths import align, barriers, evaluate_path, fixed_batches, train_midpoint
from mmc_sweep.permutations import PermGroup, permute_state
from mmc_sweep.train import train_model

QUALITY_TOLERANCE = 0.02  # nats: the project's LMCP barrier may exceed the naive one by at most this
BATCH_SIZE = 128  # images per training step, both sides of the QMC comparison
ALIGN_SEED = 0  # which training images form the matching batches


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="vgg13", help="chain architecture: vgg13 | small_cnn")
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of each endpoint")
    p.add_argument("--batches", type=int, default=8, help="matching batches of 256 images, both sides")
    p.add_argument("--repeats", type=int, default=3, help="timings per side; the best is kept")
    p.add_argument("--qmc-images", type=int, default=5000, help="training images of the timed epochs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, everywhere (1: what a study trial gets; far less disturbed by other "
                        "processes on a shared 2-core machine than 2)")
    p.add_argument("--device", default="cpu", help="cpu | cuda: where models, images and both sides run "
                   "(the assignments run on the CPU either way, as scipy does)")
    p.add_argument("--cache", default="", help="folder for trained endpoints (development only)")
    return p.parse_args()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU work is asynchronous: time it to its end


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    _sync()
    start = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - start, out


def interleaved_best(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, object]]:
    """Run every side ``repeats`` times, round-robin; keep each side's fastest (seconds, result)."""
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeats):
        for name, fn in sides.items():
            run = timed(fn)
            if name not in best or run[0] < best[name][0]:
                best[name] = run
    return best


# ---------------------------------------------------------------- endpoints

def endpoints(task, spec: ModelSpec, epochs: int, cache: str, device: torch.device) -> tuple[nn.Module, nn.Module, float]:
    """Two clean models trained from seeds 0 and 1, and the seconds their training took (0 if cached)."""
    models, seconds = [], 0.0
    for seed in (0, 1):
        file = Path(cache) / f"{spec.arch}_w{spec.width}_e{epochs}_s{seed}.pt" if cache else None
        if file is not None and file.is_file():
            model = create_model(spec.arch, task.num_classes, width=spec.width)
            model.load_state_dict(torch.load(file, weights_only=True))
            models.append(model.to(device).eval())
            continue
        train = TrainSpec(epochs=epochs, seed=seed)
        s, model = timed(lambda: train_base(task, "clean", spec, train, device))
        seconds += s
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), file)
        models.append(model)
    return models[0], models[1], seconds


# ---------------------------------------------------------------- naive reference (the paper's loop)

def centred_unit_rows(z: Tensor) -> Tensor:
    """(N, C, H, W) activations -> (C, N·H·W) rows, centred per channel and scaled to unit norm."""
    rows = z.transpose(0, 1).reshape(z.shape[1], -1)
    rows = rows - rows.mean(1, keepdim=True)
    return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-8)


def probe_index(group: PermGroup) -> int:
    """Position in ``model.trunk`` of the group's only probe (``trunk.K`` -> K)."""
    if len(group.probes) != 1 or not group.probes[0].startswith("trunk.") or not group.name.startswith("conv"):
        raise ValueError(f"naive reference: chain architectures only, got group {group}")
    return int(group.probes[0].split(".")[1])


@torch.no_grad()
def naive_align(model_a: nn.Module, model_b: nn.Module, groups: tuple[PermGroup, ...],
                batches: list[Tensor]) -> tuple[nn.Module, dict[str, float]]:
    """A permuted copy of B, matched layer by layer and batch by batch, as the paper's code does;
    also the seconds spent in each part (forward passes, correlations, assignments, permuting B)."""
    a, b = model_a.eval(), copy.deepcopy(model_b).eval()
    parts = dict.fromkeys(("forward", "correlation", "assignment", "permute"), 0.0)
    clock = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        parts[part] += now - clock
        clock = now

    for group in groups:
        stop = probe_index(group) + 1
        for x in batches:
            za, zb = a.trunk[:stop](x), b.trunk[:stop](x)  # a fresh pass from the input, both models
            lap("forward")
            corr = centred_unit_rows(za) @ centred_unit_rows(zb).T  # (C_a, C_b) cosine similarities
            lap("correlation")
            _, cols = linear_sum_assignment(corr.cpu().numpy(), maximize=True)
            lap("assignment")
            perm = torch.as_tensor(cols, dtype=torch.long, device=x.device)
            b.load_state_dict(permute_state(b.state_dict(), (group,), {group.name: perm}))  # at once
            lap("permute")
    return b, parts


# ---------------------------------------------------------------- part 1: alignment

def project_align(model_a: nn.Module, model_b: nn.Module, data: ImageSet, batches: int) -> nn.Module:
    return align(model_a, model_b, AlignSpec(method="activation", data="clean", batches=batches, batch_size=256),
                 data, seed=ALIGN_SEED)


def lmcp_barrier(task, model_a: nn.Module, model_b: nn.Module) -> float:
    """Loss barrier (nats) of the straight line from A to B on the clean view."""
    rows = evaluate_path(model_a, model_b, task.views, PathSpec(views=("clean",), alphas=11),
                         bn_data={"clean": task.train_clean}, seed=0)
    return barriers(rows)["clean"]["barrier_loss"]


def conv_macs(model: nn.Module, x: Tensor) -> list[int]:
    """Multiply-adds of every trunk module for a batch ``x`` (convolutions only; 0 for the rest)."""
    macs: list[int] = []

    def count(module, inputs, out):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs.append(out.numel() * k)
        else:
            macs.append(0)

    handles = [m.register_forward_hook(count) for m in model.trunk]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return macs


def matched_correlation(model_a: nn.Module, model_b: nn.Module, groups: tuple[PermGroup, ...], x: Tensor) -> float:
    """Mean over groups of the mean correlation of A's unit i with B's unit i on images ``x``:
    the quantity activation matching maximises, measured on images neither side matched on."""
    seen: dict[str, list[Tensor]] = {}

    def keep(name):
        return lambda module, inputs, out: seen.setdefault(name, []).append(centred_unit_rows(out))

    handles = []
    for tag, model in (("a", model_a), ("b", model_b)):
        modules = dict(model.named_modules())
        handles += [modules[g.probes[0]].register_forward_hook(keep(tag + g.name)) for g in groups]
    try:
        with torch.no_grad():
            model_a.eval()(x)
            model_b.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return sum(float((seen["a" + g.name][0] * seen["b" + g.name][0]).sum(1).mean()) for g in groups) / len(groups)


def same_function(model: nn.Module, permuted: nn.Module, x: Tensor) -> float:
    """Largest absolute logit difference between a model and its permuted copy (should be ~1e-5)."""
    with torch.no_grad():
        return float((model.eval()(x) - permuted.eval()(x)).abs().max())


def bare_passes(model_a: nn.Module, model_b: nn.Module, batches: list[Tensor]) -> None:
    """The floor of the project's method: one forward pass of each BN-folded model per batch, no hooks."""
    folded_a, folded_b = fold_batchnorm(model_a), fold_batchnorm(model_b)
    with torch.inference_mode():
        for x in batches:
            folded_a(x)
            folded_b(x)


def explain_work(model: nn.Module, groups: tuple[PermGroup, ...], batches: list[Tensor]) -> None:
    """Print what each side computes: forward passes, convolution multiply-adds, assignments."""
    macs = conv_macs(model, batches[0])  # per batch of 256, per trunk module
    full = sum(macs)
    prefixes = [sum(macs[:probe_index(g) + 1]) for g in groups]
    n, k = len(batches), len(groups)
    print(f"  per model: project {n} full passes = {n * full / 1e9:.2f} G conv multiply-adds (BN folded), "
          f"{k} assignments (one per group, on correlations summed over the batches)")
    print(f"  per model: naive {n * k} passes from the input to the group's layer = {n * sum(prefixes) / 1e9:.2f} G "
          f"conv multiply-adds (BN not folded), {n * k} assignments (one per group and batch)")
    print(f"  -> multiply-add ratio naive / project = {sum(prefixes) / full:.2f} (= sum over the {k} layers of the "
          f"prefix cost / full cost); both sides compute the same {n * k} correlation matrices")


def bench_align(task, model_a: nn.Module, model_b: nn.Module, args) -> float:
    groups = permutation_groups(model_b)
    batches = fixed_batches(task.train_clean, args.batches, 256, ALIGN_SEED)  # the images align() draws
    # warm-up of every code path on one batch (allocator, oneDNN primitive caches)
    project_align(model_a, model_b, task.train_clean, 1)
    naive_align(model_a, model_b, groups, batches[:1])
    bare_passes(model_a, model_b, batches[:1])
    best = interleaved_best({
        "project": lambda: project_align(model_a, model_b, task.train_clean, args.batches),
        "naive": lambda: naive_align(model_a, model_b, groups, batches),
        "floor": lambda: bare_passes(model_a, model_b, batches),
    }, args.repeats)
    (project_s, ours), (naive_s, (theirs, parts)), floor_s = best["project"], best["naive"], best["floor"][0]

    probe = task.views["clean"].x[:256]
    print(f"permuted copies compute B's logits: project max |diff| {same_function(model_b, ours, probe):.1e}, "
          f"naive {same_function(model_b, theirs, probe):.1e}")
    linear, ours_b, naive_b = (lmcp_barrier(task, model_a, m) for m in (model_b, ours, theirs))
    held_out = task.views["clean"].x[:1024]
    corr = [matched_correlation(model_a, m, groups, held_out) for m in (model_b, ours, theirs)]
    print(f"mean correlation of matched units on 1024 clean test images (what matching maximises): "
          f"unaligned {corr[0]:.4f}, project {corr[1]:.4f}, naive {corr[2]:.4f}")
    # The naive result is the matching of whichever batch comes last (checked below), so "the naive
    # barrier" is a draw from a spread; quality is judged against the spread's median, not one draw.
    spread = sorted(lmcp_barrier(task, model_a, naive_align(model_a, model_b, groups, [x])[0]) for x in batches)
    median = spread[len(spread) // 2]
    print(f"clean-view loss barrier (nats): linear (unaligned) {linear:.4f}, LMCP project {ours_b:.4f}, "
          f"LMCP naive {naive_b:.4f} in this batch order; naive with each of the {len(spread)} batches last: "
          f"min {spread[0]:.4f}, median {median:.4f}, max {spread[-1]:.4f}")
    print(f"quality_ok={ours_b <= median + QUALITY_TOLERANCE} (project <= naive median + {QUALITY_TOLERANCE})")

    print(f"alignment, {len(groups)} groups, {len(batches)} batches of 256 clean training images, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}: project {project_s:.3f} s, "
          f"naive {naive_s:.3f} s; "
          f"bare folded forward passes {floor_s:.3f} s (project / bare = {project_s / floor_s:.2f})")
    explain_work(model_b, groups, batches)
    print("  naive time by part (s): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    # each batch's assignment is solved afresh on the already-permuted B, so the composed result is the
    # optimal assignment of the LAST batch alone: the paper's loop pays N times for one batch's evidence
    last_only, _ = naive_align(model_a, model_b, groups, batches[-1:])
    same = all(torch.equal(u, v) for u, v in zip(theirs.state_dict().values(), last_only.state_dict().values()))
    print(f"  naive result over {len(batches)} batches == naive result on the last batch alone: {same}")
    return naive_s / project_s


# ---------------------------------------------------------------- part 2: QMC epoch

def bench_qmc(task, model_a: nn.Module, model_b: nn.Module, spec: ModelSpec, args) -> float:
    data = task.train_clean.subset(torch.arange(min(args.qmc_images, len(task.train_clean))))

    def plain_epoch():
        torch.manual_seed(0)
        model = create_model(spec.arch, task.num_classes, width=spec.width).to(data.x.device)
        return train_model(model, data, TrainSpec(epochs=1, batch_size=BATCH_SIZE))

    def qmc_epoch():
        return train_midpoint(model_a, model_b, data, QMCSpec(epochs=1, batch_size=BATCH_SIZE))

    warm = task.train_clean.subset(torch.arange(1024))  # warm-up: 8 steps of each (allocator, oneDNN caches)
    train_model(create_model(spec.arch, task.num_classes, width=spec.width).to(warm.x.device), warm,
                TrainSpec(epochs=1, batch_size=BATCH_SIZE))
    train_midpoint(model_a, model_b, warm, QMCSpec(epochs=1, batch_size=BATCH_SIZE))
    best = interleaved_best({"plain": plain_epoch, "qmc": qmc_epoch}, args.repeats)
    plain_s, qmc_s = best["plain"][0], best["qmc"][0]
    print(f"one epoch on {len(data)} images, batch {BATCH_SIZE}, {torch.get_num_threads()} threads: "
          f"plain {plain_s:.2f} s, QMC midpoint {qmc_s:.2f} s (best of {args.repeats})")
    return qmc_s / plain_s


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)  # training and every timed comparison, both sides
    start = time.perf_counter()
    spec = ModelSpec(arch=args.arch, width=args.width)
    device = torch.device(args.device)
    task = build_task(DataSpec()).to(device)
    model_a, model_b, train_s = endpoints(task, spec, args.epochs, args.cache, device)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    print(f"{args.arch} width {args.width}: two clean endpoints ({args.epochs} epochs, seeds 0 and 1) "
          + (f"trained in {train_s:.1f} s ({torch.get_num_threads()} threads)" if train_s else "loaded from the cache"))
    accs = [view_metrics(m, {"clean": task.views["clean"]})["acc_clean"] for m in (model_a, model_b)]
    print(f"  clean test accuracy: A {accs[0]:.3f}, B {accs[1]:.3f}")
    align_speedup = bench_align(task, model_a, model_b, args)
    qmc_ratio = bench_qmc(task, model_a, model_b, spec, args)
    print(f"total wall time {time.perf_counter() - start:.1f} s")
    print(f"align_speedup={align_speedup:.2f} qmc_epoch_ratio={qmc_ratio:.3f}")


if __name__ == "__main__":
    main()
