"""Fine-tuning methods that start from the cue model and see a small clean subset.

Each method is ``method(cue_model, clean, spec, cue_data=None, on_epoch=None, resume=None) -> model``:
it returns a new model and never changes ``cue_model``. Registered in ``METHODS``. :func:`cue_pool`
picks the cue images CBFT may use from a task (``finetune.n_cue``, ``finetune.cue_data``).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from mmc_sweep.config import FinetuneSpec, derive_seed
from mmc_sweep.data import CueTask, ImageSet
from mmc_sweep.data.imageset import host_to
from mmc_sweep.models import CueModel
from mmc_sweep.train import EpochCallback, fit

Method = Callable[..., CueModel]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    def wrap(fn: Method) -> Method:
        METHODS[name] = fn
        return fn

    return wrap


def finetune(
    cue_model: CueModel,
    clean: ImageSet,
    spec: FinetuneSpec,
    cue_data: ImageSet | None = None,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
) -> CueModel:
    """Run ``spec.method``; unknown methods raise ``ValueError`` listing the valid ones."""
    if spec.method not in METHODS:
        raise ValueError(f"finetune.method: unknown method {spec.method!r}; valid: {', '.join(sorted(METHODS))}")
    return METHODS[spec.method](cue_model, clean, spec, cue_data=cue_data, on_epoch=on_epoch, resume=resume)


def total_epochs(spec: FinetuneSpec) -> int:
    """Epochs a method reports through ``on_epoch`` (lpft counts its probe epochs too; llrt its own; none has none)."""
    return {"lpft": spec.probe_epochs + spec.epochs, "llrt": spec.llrt_recipe()[0], "none": 0}.get(spec.method, spec.epochs)


def cue_pool(task: CueTask, spec: FinetuneSpec) -> ImageSet:
    """The cue images CBFT may use: ``spec.n_cue`` of them (0 = the whole pool) from ``spec.cue_data``.

    ``all_cued``: every training image carrying its label's cue (``task.train_cue``); a subset is
    drawn uniformly without replacement. ``train_proportion``: the cue model's own training images
    (``task.train``, the ``data.cue_proportion`` fraction cued); a subset keeps that fraction exactly
    (:meth:`CueTask.mixture_subset`). Subsets come from a stream of ``spec.seed`` of their own, not
    the clean subset's.
    """
    if spec.n_cue == 0:
        return task.train_cue if spec.cue_data == "all_cued" else task.train
    seed = derive_seed(spec.seed, "cue_subset")
    if spec.cue_data == "train_proportion":
        return task.mixture_subset(spec.n_cue, seed)
    if spec.n_cue > len(task.train_cue):
        raise ValueError(f"finetune.n_cue: expected at most the {len(task.train_cue)} training images, got {spec.n_cue}")
    return task.train_cue.random_subset(spec.n_cue, seed)


def _fresh_copy(cue_model: CueModel) -> CueModel:
    model = copy.deepcopy(cue_model)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _loop(spec: FinetuneSpec) -> dict:
    """What every stage's training loop takes from ``spec`` alike (full fine-tuning, the LLRT head, the LPFT probe)."""
    return {"momentum": spec.momentum, "batch_size": spec.batch_size, "seed": spec.seed, "schedule": spec.schedule,
            "nesterov": spec.nesterov, "even_batches": spec.batching == "even"}


def _fit_full(model: CueModel, step_loss, clean: ImageSet, spec: FinetuneSpec, on_epoch, resume) -> None:
    fit(
        model, model.parameters(), step_loss, clean,
        epochs=spec.epochs, lr=spec.lr, weight_decay=spec.weight_decay, **_loop(spec), on_epoch=on_epoch, resume=resume,
    )


@register("none")
def no_finetuning(cue_model, clean, spec, cue_data=None, on_epoch=None, resume=None) -> CueModel:
    """The cue model itself, unchanged: connectivity studies that measure base models only."""
    return _fresh_copy(cue_model).eval()


@register("naive_ft")
def naive_ft(cue_model, clean, spec, cue_data=None, on_epoch=None, resume=None) -> CueModel:
    """Fine-tune every weight with cross-entropy on the clean subset."""
    model = _fresh_copy(cue_model)
    _fit_full(model, lambda x, y, epoch, rng: F.cross_entropy(model(x), y), clean, spec, on_epoch, resume)
    return model.eval()


def _probe(model: CueModel, clean: ImageSet, spec: FinetuneSpec, recipe: tuple[int, float, float], on_epoch, resume) -> None:
    """Re-initialise the head and train it on frozen features of the clean subset (BN in eval mode)
    with ``recipe`` = (epochs, lr, weight decay); momentum, batch size and seed are the run's."""
    epochs, lr, weight_decay = recipe
    if resume is None:
        gen = torch.Generator().manual_seed(spec.seed)
        bound = 1.0 / model.feature_dim**0.5  # nn.Linear's default init range
        with torch.no_grad():
            w = (torch.rand(model.head.weight.shape, generator=gen) * 2 - 1) * bound
            b = (torch.rand(model.head.bias.shape, generator=gen) * 2 - 1) * bound
            model.head.weight.copy_(w)
            model.head.bias.copy_(b)
    model.eval()
    with torch.no_grad():  # the trunk is frozen: its features are computed once, not every epoch
        feats = torch.cat([model.features(x) for x, _ in clean.batches(1024)])
    # features ride in an ImageSet as (N, D, 1, 1) "images" so the one training loop batches them
    fit(
        model, model.head.parameters(), lambda f, y, epoch, rng: F.cross_entropy(model.head(f.flatten(1)), y),
        ImageSet(feats[:, :, None, None], clean.y),
        epochs=epochs, lr=lr, weight_decay=weight_decay, **_loop(spec), on_epoch=on_epoch, resume=resume,
    )


@register("llrt")
def llrt(cue_model, clean, spec, cue_data=None, on_epoch=None, resume=None) -> CueModel:
    """Last-layer re-training: a new head on the cue model's frozen features (``spec.llrt_recipe()``)."""
    model = _fresh_copy(cue_model)
    _probe(model, clean, spec, spec.llrt_recipe(), on_epoch, resume)
    return model.eval()


def _staged(on_epoch: EpochCallback | None, stage: str, offset: int) -> EpochCallback | None:
    """Report epochs of one stage of a two-stage method with global epoch numbers."""
    if on_epoch is None:
        return None
    return lambda epoch, loss, model, ckpt: on_epoch(epoch + offset, loss, model, lambda: {**ckpt(), "stage": stage})


@register("lpft")
def lpft(cue_model, clean, spec, cue_data=None, on_epoch=None, resume=None) -> CueModel:
    """A linear probe (``spec.probe_recipe()``), then full fine-tuning for ``epochs`` at ``lr``."""
    model = _fresh_copy(cue_model)
    stage = resume.get("stage", "probe") if resume else "probe"
    if stage == "probe":
        _probe(model, clean, spec, spec.probe_recipe(), _staged(on_epoch, "probe", 0), resume)
        resume = None
    step = lambda x, y, epoch, rng: F.cross_entropy(model(x), y)  # noqa: E731
    _fit_full(model, step, clean, spec, _staged(on_epoch, "full", spec.probe_epochs), resume)
    return model.eval()


def sample_t(distribution: str, rng: torch.Generator) -> float:
    """Where on the path (0 = cue model, 1 = fine-tuned model) the barrier loss is measured."""
    if distribution == "uniform":
        return float(torch.rand((), generator=rng))
    if distribution == "beta":  # Beta(2, 2), favouring the middle: the median of three uniforms
        return float(torch.rand(3, generator=rng).median())
    if distribution == "midpoint":
        return 0.5
    # the reference's: t in [0.25, 0.75], P(Z > 0.5) = 30.9 % of draws at each end. Its t weights the cue
    # model, ours the fine-tuned one: the same distribution, as it is symmetric about 0.5
    if distribution == "paper":
        return 0.5 + 0.5 * float(torch.randn((), generator=rng).clamp(-0.5, 0.5))
    raise ValueError(f"finetune.t_distribution: unknown {distribution!r}")


def interpolated_state(start: nn.Module, end: nn.Module, t: float) -> dict[str, torch.Tensor]:
    """Parameters and buffers of ``(1-t)·start + t·end``; gradients flow to ``end``'s parameters.

    Integer buffers (BatchNorm's batch counter) are copied from ``end``.
    """
    state = {}
    fixed = dict(start.named_parameters()) | dict(start.named_buffers())
    for name, value in list(end.named_parameters()) + list(end.named_buffers()):
        if value.is_floating_point():
            state[name] = (1 - t) * fixed[name].detach() + t * value
        else:
            state[name] = value.clone()
    return state


def _class_means(a: torch.Tensor, ya: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, D) class means of the rows of ``a`` (zeros for absent classes) and (C,) class counts."""
    one = (ya[:, None] == torch.arange(num_classes, device=ya.device)).to(a.dtype)  # (N, C) one-hot: batched class sums
    count = one.sum(0)
    return one.T @ a / count.clamp(min=1).unsqueeze(1), count


# Both invariance forms weight classes by a 0/1 mask of the classes present in both sets instead of
# selecting them: a boolean index or an ``if mask.any()`` makes the host wait for the GPU every step.

def class_mean_distance(a: torch.Tensor, ya: torch.Tensor, b: torch.Tensor, yb: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Invariance form ``norm_then_mean``: mean squared distance between class means of L2-normalised
    features, over classes in both sets (0 when there is none)."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    mean_a, count_a = _class_means(a, ya, num_classes)
    mean_b, count_b = _class_means(b, yb, num_classes)
    shared = ((count_a > 0) & (count_b > 0)).to(a.dtype)
    return ((mean_a - mean_b).pow(2).sum(1) * shared).sum() / shared.sum().clamp(min=1)


def paper_class_mean_distance(a: torch.Tensor, ya: torch.Tensor, b: torch.Tensor, yb: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Invariance form ``paper`` (the reference's): class means of the raw features, each normalised;
    squared distances summed over the classes in both sets and divided by ``num_classes`` (all
    classes, present or not)."""
    mean_a, count_a = _class_means(a, ya, num_classes)
    mean_b, count_b = _class_means(b, yb, num_classes)
    shared = ((count_a > 0) & (count_b > 0)).to(a.dtype)
    gap = F.normalize(mean_a, dim=1) - F.normalize(mean_b, dim=1)
    return (gap.pow(2).sum(1) * shared).sum() / num_classes


INVARIANCE_LOSSES = {"norm_then_mean": class_mean_distance, "paper": paper_class_mean_distance}


@register("cbft")
def cbft(cue_model, clean, spec, cue_data=None, on_epoch=None, resume=None) -> CueModel:
    """Connectivity-based fine-tuning: cross-entropy on clean data, plus

    * barrier loss ``|margin - CE|`` of the interpolated model ``(1-t)·cue + t·ft`` on cue data, with
      gradients reaching the fine-tuned weights through the interpolation (``functional_call``);
    * invariance loss pulling together class means of normalised features of clean and cue images
      (``spec.invariance_form``).

    ``spec.update``: ``joint`` takes one step on the weighted sum per batch; ``alternating`` (the
    reference) one step on the barrier loss, then one on cross-entropy + invariance, both on the same
    cue batch and through the same optimizer (shared momentum). During the first ``warmup_epochs``,
    ``spec.warmup`` switches off both cue losses (``ce_only``) or the invariance loss only (``no_invariance``).
    """
    if cue_data is None:
        raise ValueError("cbft needs cue_data: images carrying the cue (e.g. CueTask.train_cue)")
    model = _fresh_copy(cue_model)
    start = copy.deepcopy(cue_model).requires_grad_(False)
    num_classes = model.head.out_features
    invariance = INVARIANCE_LOSSES[spec.invariance_form]

    def cue_batch(rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = host_to(torch.randint(len(cue_data), (spec.cue_batch_size,), generator=rng), cue_data.x.device)
        return cue_data.x[pick], cue_data.y[pick]

    def barrier(xc: torch.Tensor, yc: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        path_logits = functional_call(model, interpolated_state(start, model, sample_t(spec.t_distribution, rng)), (xc,))
        return spec.lambda_barrier * (spec.barrier_margin - F.cross_entropy(path_logits, yc)).abs()

    def phase(epoch: int) -> tuple[bool, bool]:
        """(barrier on, invariance on) in ``epoch``."""
        warm = epoch < spec.warmup_epochs
        return (spec.lambda_barrier > 0 and not (warm and spec.warmup == "ce_only"),
                spec.lambda_invariance > 0 and not warm)

    def joint(x: torch.Tensor, y: torch.Tensor, epoch: int, rng: torch.Generator) -> torch.Tensor:
        feats = model.features(x)
        loss = F.cross_entropy(model.head(feats), y)
        if epoch < spec.warmup_epochs and spec.warmup == "ce_only":
            return loss  # no cue batch drawn
        use_barrier, use_invariance = phase(epoch)
        xc, yc = cue_batch(rng)
        if use_barrier:
            loss = loss + barrier(xc, yc, rng)
        if use_invariance:
            loss = loss + spec.lambda_invariance * invariance(feats, y, model.features(xc), yc, num_classes)
        return loss

    def alternating(x: torch.Tensor, y: torch.Tensor, epoch: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
        use_barrier, use_invariance = phase(epoch)
        xc, yc = cue_batch(rng) if use_barrier or use_invariance else (None, None)
        if use_barrier:
            yield barrier(xc, yc, rng)  # fit steps here; the next loss sees the updated weights
        feats = model.features(x)
        loss = F.cross_entropy(model.head(feats), y)
        if use_invariance:
            loss = loss + spec.lambda_invariance * invariance(feats, y, model.features(xc), yc, num_classes)
        yield loss

    _fit_full(model, joint if spec.update == "joint" else alternating, clean, spec, on_epoch, resume)
    return model.eval()
