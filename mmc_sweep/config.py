"""Typed, frozen settings: the single source of every setting's name, default, help and checks.

Every spec validates itself on construction (``ValueError`` naming the key), converts to and from
plain dicts, and has a content hash (:func:`spec_hash`) that names the artifacts it produces.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1  # bump when a change makes old artifacts incompatible: it changes every hash

DATASETS = ("shapes", "dominoes", "cifar10", "cifar100")
CUES = ("box", "dominoes", "none")
VIEWS = ("clean", "cue", "rand_cue", "rand_img")
BN_RESET_MODES = ("none", "ema", "cumulative")
BN_RESET_DATA = ("clean", "cue", "view")
T_DISTRIBUTIONS = ("uniform", "beta", "midpoint")
ALIGN_METHODS = ("activation", "weight")
TRAIN_SOURCES = ("clean", "cue")  # training images: clean (no cue) or cue (every image carries its label's cue)
QMC_INITS = ("random", "linear")
SCHEDULES = ("cosine", "constant")
PATH_KINDS = ("linear", "lmcp", "qmc")  # the registry in mmc_sweep.paths.kinds, in this order (a test pins it)
BARRIER_TYPES = ("barrier_loss", "barrier_acc", "barrier_mid_loss", "barrier_mid_acc")
# the paths a study measures: cue_to_ft / ft_to_clean of fine-tuned models, cue_to_clean of the base
# pair, clean_to_clean of the control pair (clean references of two seeds)
PATH_NAMES = ("cue_to_ft", "ft_to_clean", "cue_to_clean", "clean_to_clean")
INVARIANCE_METRICS = ("cue_reliance", "pred_consistency", "rep_cosine")  # of a model, and of every point of a path
BASE_KINDS = ("cue", "clean")  # the cue model trains on the cue mixture; the clean reference on no cue


def _help(text: str, default: Any) -> Any:
    """A dataclass field with help text in its metadata (used by docs and error messages)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed")
    return field(default=default, metadata={"help": text})


def _check(cond: bool, key: str, expected: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"{key}: expected {expected}, got {value!r}")


def _check_sgd(section: str, spec: Any) -> None:
    """The settings every SGD run has: epochs, lr, momentum, weight decay, batch size."""
    _check(spec.epochs >= 1, f"{section}.epochs", "an integer >= 1", spec.epochs)
    _check(spec.lr > 0, f"{section}.lr", "a number > 0", spec.lr)
    _check(0 <= spec.momentum < 1, f"{section}.momentum", "a number in [0, 1)", spec.momentum)
    _check(spec.weight_decay >= 0, f"{section}.weight_decay", "a number >= 0", spec.weight_decay)
    _check(spec.batch_size >= 1, f"{section}.batch_size", "an integer >= 1", spec.batch_size)


def barrier_metric(barrier_type: str, kind: str, path: str, view: str) -> str:
    """Flat name of one barrier: ``barrier_loss_cue_to_ft_cue`` for the straight line (the name studies
    have always used), ``barrier_loss_lmcp_cue_to_ft_cue`` / ``..._qmc_...`` for the other kinds.
    Here, torch-free, so the analysis can name columns without importing the path code."""
    return f"{barrier_type}_{path}_{view}" if kind == "linear" else f"{barrier_type}_{kind}_{path}_{view}"


@dataclass(frozen=True)
class DataSpec:
    """Which images, which cue, and how often the training set carries it."""

    dataset: str = _help("shapes | dominoes (shapes + dominoes cue) | cifar10 | cifar100", "shapes")
    cue: str = _help("box | dominoes | none; 'dominoes' dataset implies the dominoes cue", "box")
    cue_proportion: float = _help("fraction of training images carrying their label's cue, [0, 1]", 0.8)
    seed: int = _help("seed of the generated images, the cue mask and the views", 0)
    num_classes: int = _help("classes of the embedded shapes data (2..10; cifar sets fix their own)", 10)
    image_size: int = _help("side of the embedded images, px", 16)
    n_train: int = _help("embedded training images", 20000)
    n_test: int = _help("embedded test images; cifar sets use their whole test split", 2000)
    root: str = _help("local folder holding the cifar files (nothing is downloaded)", "")

    def __post_init__(self) -> None:
        _check(self.dataset in DATASETS, "data.dataset", f"one of {DATASETS}", self.dataset)
        _check(self.cue in CUES, "data.cue", f"one of {CUES}", self.cue)
        _check(0.0 <= self.cue_proportion <= 1.0, "data.cue_proportion", "a number in [0, 1]", self.cue_proportion)
        _check(2 <= self.num_classes <= 10, "data.num_classes", "an integer in [2, 10]", self.num_classes)
        _check(8 <= self.image_size <= 64, "data.image_size", "an integer in [8, 64]", self.image_size)
        _check(self.n_train >= 10, "data.n_train", "an integer >= 10", self.n_train)
        _check(self.n_test >= 10, "data.n_test", "an integer >= 10", self.n_test)
        if self.dataset == "dominoes":
            _check(self.cue in ("dominoes", "none"), "data.cue", "'dominoes' or 'none' for the dominoes dataset", self.cue)
        if self.dataset.startswith("cifar"):
            _check(bool(self.root), "data.root", "the folder holding the cifar files", self.root)

    @property
    def effective_cue(self) -> str:
        """The cue actually painted: the dominoes dataset always uses the dominoes cue."""
        return "dominoes" if self.dataset == "dominoes" and self.cue != "none" else self.cue


@dataclass(frozen=True)
class ModelSpec:
    """Which architecture, and its width."""

    arch: str = _help("small_cnn | vgg13 | resnet18", "small_cnn")
    width: int = _help("channels of the first stage (0 = the architecture's default)", 0)

    def __post_init__(self) -> None:
        _check(self.width >= 0, "model.width", "an integer >= 0", self.width)


@dataclass(frozen=True)
class TrainSpec:
    """Training from scratch: SGD + momentum, cosine learning-rate schedule, weight decay."""

    epochs: int = _help("passes over the training set", 8)
    lr: float = _help("peak learning rate of the cosine schedule", 0.05)
    momentum: float = _help("SGD momentum", 0.9)
    weight_decay: float = _help("L2 weight decay", 5e-4)
    batch_size: int = _help("images per step", 128)
    seed: int = _help("seed of initialisation and batch order", 0)

    def __post_init__(self) -> None:
        _check_sgd("train", self)


@dataclass(frozen=True)
class FinetuneSpec:
    """One fine-tuning run of the cue model on ``n_clean`` clean images. Methods read what they use."""

    method: str = _help("naive_ft | llrt | lpft | cbft", "cbft")
    n_clean: int = _help("class-balanced clean images the method may see", 500)
    epochs: int = _help("passes over the clean subset (full fine-tuning; the head for llrt)", 10)
    lr: float = _help("peak learning rate (cosine schedule)", 0.05)
    momentum: float = _help("SGD momentum", 0.9)
    weight_decay: float = _help("L2 weight decay", 5e-4)
    batch_size: int = _help("clean images per step", 64)
    seed: int = _help("seed of the clean subset, the new head and batch order", 0)
    probe_epochs: int = _help("lpft: epochs of the linear probe before full fine-tuning", 4)
    probe_lr: float = _help("lpft: learning rate of the linear probe", 0.05)
    lambda_barrier: float = _help("cbft: weight of the barrier loss", 1.0)
    lambda_invariance: float = _help("cbft: weight of the invariance loss", 1.0)
    barrier_margin: float = _help("cbft: target cross-entropy (nats) on cue data along the path", 1.0)
    warmup_epochs: int = _help("cbft: first epochs with plain cross-entropy only", 0)
    t_distribution: str = _help("cbft: where on the path the barrier is measured: uniform | beta (2, 2) | midpoint", "beta")
    cue_batch_size: int = _help("cbft: cue images per step for the barrier and invariance losses", 64)

    def __post_init__(self) -> None:
        _check(self.n_clean >= 1, "finetune.n_clean", "an integer >= 1", self.n_clean)
        _check_sgd("finetune", self)
        _check(self.probe_epochs >= 1, "finetune.probe_epochs", "an integer >= 1", self.probe_epochs)
        _check(self.probe_lr > 0, "finetune.probe_lr", "a number > 0", self.probe_lr)
        _check(self.lambda_barrier >= 0, "finetune.lambda_barrier", "a number >= 0", self.lambda_barrier)
        _check(self.lambda_invariance >= 0, "finetune.lambda_invariance", "a number >= 0", self.lambda_invariance)
        _check(self.barrier_margin >= 0, "finetune.barrier_margin", "a number >= 0", self.barrier_margin)
        _check(0 <= self.warmup_epochs < self.epochs, "finetune.warmup_epochs", "an integer in [0, epochs)", self.warmup_epochs)
        _check(self.t_distribution in T_DISTRIBUTIONS, "finetune.t_distribution", f"one of {T_DISTRIBUTIONS}", self.t_distribution)
        _check(self.cue_batch_size >= 1, "finetune.cue_batch_size", "an integer >= 1", self.cue_batch_size)


@dataclass(frozen=True)
class BNResetSpec:
    """How BatchNorm statistics of an interpolated model are re-estimated before it is evaluated."""

    mode: str = _help(
        "none (keep interpolated stats) | ema (momentum 0.1 from reset stats: keeps 0.9^batches of the reset "
        "mean 0 / var 1, so it needs many batches) | cumulative (exact average over the batches)",
        "cumulative",
    )
    batches: int = _help("training-mode batches used to re-estimate the statistics", 8)
    data: str = _help("clean (clean train) | cue (cue train) | view (the evaluated view itself)", "clean")
    batch_size: int = _help("images per re-estimation batch", 256)

    def __post_init__(self) -> None:
        _check(self.mode in BN_RESET_MODES, "paths.bn_reset.mode", f"one of {BN_RESET_MODES}", self.mode)
        _check(self.batches >= 1, "paths.bn_reset.batches", "an integer >= 1", self.batches)
        _check(self.data in BN_RESET_DATA, "paths.bn_reset.data", f"one of {BN_RESET_DATA}", self.data)
        _check(self.batch_size >= 2, "paths.bn_reset.batch_size", "an integer >= 2", self.batch_size)

    @property
    def label(self) -> str:
        """Short, recorded description, e.g. ``cumulative:8x256:clean``."""
        return "none" if self.mode == "none" else f"{self.mode}:{self.batches}x{self.batch_size}:{self.data}"


@dataclass(frozen=True)
class AlignSpec:
    """How LMCP matches model B's hidden units to model A's before interpolating."""

    method: str = _help(
        "activation (the paper's: correlation of centred per-channel activations, one assignment per "
        "permutation group) | weight (Git Re-Basin's weight matching, no data)", "activation")
    data: str = _help("activation matching: clean (paper) or cue training images", "clean")
    batches: int = _help("activation matching: batches of training images the correlations are summed over", 8)
    batch_size: int = _help("activation matching: images per batch", 256)
    max_iters: int = _help("weight matching: at most this many passes over the groups (stops when none improves)", 100)

    def __post_init__(self) -> None:
        _check(self.method in ALIGN_METHODS, "paths.align.method", f"one of {ALIGN_METHODS}", self.method)
        _check(self.data in TRAIN_SOURCES, "paths.align.data", f"one of {TRAIN_SOURCES}", self.data)
        _check(self.batches >= 1, "paths.align.batches", "an integer >= 1", self.batches)
        _check(self.batch_size >= 2, "paths.align.batch_size", "an integer >= 2", self.batch_size)
        _check(self.max_iters >= 1, "paths.align.max_iters", "an integer >= 1", self.max_iters)


@dataclass(frozen=True)
class QMCSpec:
    """Training of the midpoint theta of the quadratic Bezier path ``(1-a)^2 A + 2a(1-a) theta + a^2 B``."""

    epochs: int = _help("passes over the training images; each step samples a ~ U(0, 1)", 4)
    lr: float = _help("peak learning rate", 0.05)
    momentum: float = _help("SGD momentum", 0.9)
    weight_decay: float = _help("L2 weight decay on theta", 5e-4)
    schedule: str = _help("learning-rate schedule: cosine (to 0 over all steps) | constant", "cosine")
    batch_size: int = _help("images per step", 128)
    data: str = _help("training images: cue (every image cued, as in the paper) | clean", "cue")
    init: str = _help("random (a fresh initialisation, as the reference code) | linear (the straight-line midpoint (A+B)/2)", "random")
    scale_lr: bool = _help(
        "the reference's update: the gradient taken at the curve point (not through the 2a(1-a) factor) "
        "and the learning rate scaled by 2a(1-a) instead", False)
    seed: int = _help("seed of theta's initialisation and of the batch order and a samples", 0)

    def __post_init__(self) -> None:
        _check_sgd("paths.qmc", self)
        _check(self.schedule in SCHEDULES, "paths.qmc.schedule", f"one of {SCHEDULES}", self.schedule)
        _check(self.data in TRAIN_SOURCES, "paths.qmc.data", f"one of {TRAIN_SOURCES}", self.data)
        _check(self.init in QMC_INITS, "paths.qmc.init", f"one of {QMC_INITS}", self.init)


@dataclass(frozen=True)
class PathSpec:
    """Which paths between two models are measured, at which points, on which views."""

    kinds: tuple[str, ...] = _help("path kinds: linear (LMC) | lmcp (linear after aligning B's units to A's) | qmc (quadratic Bezier through a trained midpoint)", ("linear",))
    alphas: int = _help("evenly spaced interpolation points, endpoints included", 11)
    views: tuple[str, ...] = _help("counterfactual views evaluated at every point", VIEWS)
    bn_reset: BNResetSpec = _help("BatchNorm re-estimation policy, the same for every kind", BNResetSpec())
    align: AlignSpec = _help("lmcp: how B's hidden units are matched to A's", AlignSpec())
    qmc: QMCSpec = _help("qmc: how the midpoint is trained", QMCSpec())
    eval_batch_size: int = _help("images per evaluation batch (256 is fastest on CPU)", 256)

    def __post_init__(self) -> None:
        kinds = tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        _check(len(kinds) > 0 and len(set(kinds)) == len(kinds), "paths.kinds", "a non-empty list of distinct path kinds", list(kinds))
        _check(self.alphas >= 2, "paths.alphas", "an integer >= 2", self.alphas)
        views = tuple(self.views)
        object.__setattr__(self, "views", views)
        _check(len(views) > 0 and all(v in VIEWS for v in views), "paths.views", f"a non-empty list of {VIEWS}", list(views))
        _check(self.eval_batch_size >= 1, "paths.eval_batch_size", "an integer >= 1", self.eval_batch_size)


@dataclass(frozen=True)
class BaseModelSpec:
    """Everything that determines a trained base model: its hash names the stored artifact."""

    kind: str = _help("cue (trained on the cue mixture) | clean (trained without any cue)", "cue")
    data: DataSpec = _help("data; for the clean reference cue_proportion is 0", DataSpec())
    model: ModelSpec = _help("architecture", ModelSpec())
    train: TrainSpec = _help("training settings, seed included", TrainSpec())

    def __post_init__(self) -> None:
        _check(self.kind in BASE_KINDS, "kind", f"one of {BASE_KINDS}", self.kind)
        if self.kind == "clean" and self.data.cue_proportion != 0.0:  # one clean reference for every proportion
            object.__setattr__(self, "data", dataclasses.replace(self.data, cue_proportion=0.0))


@dataclass(frozen=True)
class FinetunedSpec:
    """Everything that determines a fine-tuned model: the base model it started from and the run."""

    base: BaseModelSpec = _help("the cue model fine-tuning started from", BaseModelSpec())
    finetune: FinetuneSpec = _help("the fine-tuning run, seed included", FinetuneSpec())


def to_dict(spec: Any) -> dict[str, Any]:
    """Plain, JSON-able dict of a spec (nested specs become dicts, tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(spec), default=list))


def spec_hash(*specs: Any, length: int = 16, leave_out: tuple[str, ...] = ()) -> str:
    """Content hash of complete specs (every field, defaults included, except top-level ``leave_out``)
    plus the schema version."""
    payload = [SCHEMA_VERSION] + [[type(s).__name__, {k: v for k, v in to_dict(s).items() if k not in leave_out}]
                                  for s in specs]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def field_help(cls: type) -> dict[str, str]:
    """Help text of every field of a spec class."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
