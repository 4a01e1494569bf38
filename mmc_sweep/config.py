"""Typed, frozen settings: the single source of every setting's name, default, help and checks.

Every spec validates itself on construction (``ValueError`` naming the key), converts to and from
plain dicts, and has a content hash (:func:`spec_hash`) that names the artifacts it produces.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1  # bump when a change makes old artifacts incompatible: it changes every hash

# shapes / shapes_dominoes are generated in memory; the others are read from data.root
DATASETS = ("shapes", "shapes_dominoes", "cifar10", "cifar100", "cifar10_dominoes")
DATASET_ALIASES = {"dominoes": "shapes_dominoes"}  # deprecated name -> current name: old study files still load
EMBEDDED_DATASETS = ("shapes", "shapes_dominoes")
DOMINOES_DATASETS = ("shapes_dominoes", "cifar10_dominoes")  # a simple image stacked above the real one
BOX_LAYOUTS = ("inset", "paper")  # where the box cue sits: mmc-sweep's inset grid | the reference's
VIEWS_CUE = ("full", "train")  # which test images of the cued views carry a cue: all | the training proportion
PATH_VIEWS_CUE = ("data",) + VIEWS_CUE  # paths.views_cue: data = as data.views_cue
CUES = ("box", "dominoes", "none")
VIEWS = ("clean", "cue", "rand_cue", "rand_img")
BN_RESET_MODES = ("none", "ema", "cumulative")
BN_RESET_DATA = ("clean", "cue", "view")
ALL_BATCHES = "all"  # paths.bn_reset.batches: every image of the re-estimation data, streamed
T_DISTRIBUTIONS = ("uniform", "beta", "midpoint", "paper")  # paper: 0.5 + 0.5 * clip(N(0, 1), -0.5, 0.5)
INVARIANCE_FORMS = ("norm_then_mean", "paper")  # cbft invariance loss, see FinetuneSpec.invariance_form
CBFT_UPDATES = ("joint", "alternating")
CBFT_WARMUPS = ("ce_only", "no_invariance")
CUE_POOLS = ("all_cued", "train_proportion")  # cbft cue images: FinetuneSpec.cue_data
SHARED = -1.0  # a per-stage weight decay of -1 means "the run's shared finetune.weight_decay"
ALIGN_METHODS = ("activation", "weight")
TRAIN_SOURCES = ("clean", "cue")  # training images: clean (no cue) or cue (every image carries its label's cue)
QMC_INITS = ("random", "linear")
QMC_BN_STATS = ("average", "init")  # theta's stored BatchNorm statistics: the endpoints' average | a fresh network's
SCHEDULES = ("cosine", "constant")
BATCHINGS = ("even", "ragged")  # fine-tuning batches of the clean subset: FinetuneSpec.batching
TRAIN_SCHEDULES = ("cosine", "step", "constant")  # base training: step = the reference's StepLR
PATH_KINDS = ("linear", "lmcp", "qmc")  # the registry in mmc_sweep.paths.kinds, in this order (a test pins it)
BARRIER_TYPES = ("barrier_loss", "barrier_acc", "barrier_mid_loss", "barrier_mid_acc")
# the paths a study measures: cue_to_ft / ft_to_clean of fine-tuned models, cue_to_clean of the base
# pair, clean_to_clean of the control pair (clean references of two seeds)
PATH_NAMES = ("cue_to_ft", "ft_to_clean", "cue_to_clean", "clean_to_clean")
INVARIANCE_METRICS = ("cue_reliance", "pred_consistency", "rep_cosine")  # of a model, and of every point of a path
BASE_KINDS = ("cue", "clean")  # the cue model trains on the cue mixture; the clean reference on no cue
# how a seed's clean reference relates to its cue models: its own initialisation and batch order | the same (twins)
PAIRINGS = ("independent", "shared")
CLEAN_STREAM = "clean"  # TrainSpec.stream of the clean reference under pairing independent


_NO_LEGACY = object()  # a field whose every value is hashed


def _help(text: str, default: Any, added: bool = False, legacy: Any = _NO_LEGACY) -> Any:
    """A dataclass field with help text in its metadata (used by docs and error messages).

    ``added``: a setting that did not exist when artifacts were first hashed. At its default it is
    left out of hashes, so stored base models, midpoints and studies keep their identity.

    ``legacy``: for a setting added later whose default is a *new* behaviour: the value that gives
    the behaviour from before the setting existed. That value (not the default) is left out of
    hashes, and a stored spec that lacks the key reads as it (:func:`legacy_values`), so what was
    stored keeps both its identity and its meaning.
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed")
    if added and legacy is not _NO_LEGACY:
        raise TypeError("a field is `added` (its default is the old behaviour) or has a `legacy` value, not both")
    metadata = {"help": text, "added": added} | ({} if legacy is _NO_LEGACY else {"legacy": legacy})
    return field(default=default, metadata=metadata)


def legacy_values(cls: type) -> dict[str, Any]:
    """The fields of spec class ``cls`` that have a legacy value, and that value."""
    return {f.name: f.metadata["legacy"] for f in dataclasses.fields(cls) if "legacy" in f.metadata}


def _left_out(f: dataclasses.Field, value: Any) -> bool:
    """A field value that hashes as if the field did not exist (see :func:`_help`)."""
    if f.metadata.get("added") and value == f.default:
        return True
    return "legacy" in f.metadata and value == f.metadata["legacy"]


def derive_seed(seed: int, tag: str) -> int:
    """A 63-bit seed for the stream ``tag`` of ``seed``: streams are independent, stable across runs."""
    digest = hashlib.sha256(f"{seed}:{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def stream_seed(seed: int, stream: str, purpose: str) -> int:
    """The seed of ``purpose`` (init | order) of a training run in stream ``stream`` of ``seed``: ``seed``
    itself for the seed's own stream (""), else the stream's derived seed cut to 31 bits, so
    ``epoch_generator``'s ``seed * 1_000_003 + epoch`` stays within a 64-bit generator seed."""
    return derive_seed(seed, f"{stream}:{purpose}") % 2**31 if stream else seed


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


def _check_schedule(section: str, spec: Any) -> None:
    """Base training's schedule: a step schedule has increasing positive milestones (epochs)."""
    object.__setattr__(spec, "milestones", tuple(spec.milestones))
    _check(spec.schedule in TRAIN_SCHEDULES, f"{section}.schedule", f"one of {TRAIN_SCHEDULES}", spec.schedule)
    ms = spec.milestones
    _check(all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in ms)
           and all(a < b for a, b in zip(ms, ms[1:])), f"{section}.milestones", "a list of increasing integers >= 1", list(ms))
    _check(spec.schedule != "step" or len(ms) > 0, f"{section}.milestones", "at least one epoch with schedule: step", list(ms))
    _check(spec.gamma > 0, f"{section}.gamma", "a number > 0", spec.gamma)


def barrier_metric(barrier_type: str, kind: str, path: str, view: str) -> str:
    """Flat name of one barrier: ``barrier_loss_cue_to_ft_cue`` for the straight line (the name studies
    have always used), ``barrier_loss_lmcp_cue_to_ft_cue`` / ``..._qmc_...`` for the other kinds.
    Here, torch-free, so the analysis can name columns without importing the path code."""
    return f"{barrier_type}_{path}_{view}" if kind == "linear" else f"{barrier_type}_{kind}_{path}_{view}"


@dataclass(frozen=True)
class DataSpec:
    """Which images, which cue, how often the training set carries it, and how the test views are cued."""

    dataset: str = _help(
        "shapes (embedded) | shapes_dominoes (embedded shapes under a synthetic class-coded top half; "
        "'dominoes' is its deprecated alias) | cifar10 | cifar100 | cifar10_dominoes (the paper's Dominoes: "
        "a FashionMNIST image above a CIFAR-10 image, 64x32 px, classes paired by index)", "shapes")
    cue: str = _help("box | dominoes | none; the dominoes datasets take 'dominoes' (their stacked image) or 'none'", "box")
    cue_proportion: float = _help("fraction of training images carrying their label's cue, [0, 1]", 0.8)
    seed: int = _help("seed of the generated images, the cue masks and the views", 0)
    num_classes: int = _help("classes of the embedded shapes data (2..10; cifar sets fix their own)", 10)
    image_size: int = _help("side of the embedded images, px", 16)
    n_train: int = _help("embedded training images", 20000)
    n_test: int = _help("embedded test images; cifar sets use their whole test split", 2000)
    root: str = _help("local folder holding cifar-10-batches-py/, cifar-100-python/ and, for cifar10_dominoes, "
                      "FashionMNIST/raw/ (nothing is downloaded)", "")
    box_size: int = _help("side of the box cue, px; 0 = automatic: inset 3 px per 16 px of image side (6 at 32), "
                          "paper 3 px per 32 px (the reference's 3 at 32)", 0, added=True)
    box_layout: str = _help(
        "placement of the box cue: inset (mmc-sweep's: a 3x3 grid 1 px per 16 px in from the border; label 9 "
        "no box; red, or PALETTE[label // 10] above 10 classes) | paper (the reference's: pressed against the "
        "border, rows/columns 0, (side - box) // 2, side - box; above 10 classes label % 10 == 9 gets a tenth "
        "position a quarter up-left of the centre and the hue encodes label // 10; otherwise class 9 has no box)",
        "inset", added=True)
    views_cue: str = _help(
        "test images of the cue, rand_cue and rand_img views that carry a cue: full (every one) | train "
        "(a cue_proportion fraction, the others none: the reference's test views)", "full", added=True)
    max_files_train: int = _help("datasets read from root: use at most this many training images (a seeded "
                                 "random subset; 0 = the whole split). --smoke sets it", 0, added=True)
    max_files_test: int = _help("datasets read from root: at most this many test images (0 = the whole split)", 0, added=True)

    def __post_init__(self) -> None:
        if self.dataset in DATASET_ALIASES:
            warnings.warn(f"data.dataset: {self.dataset!r} is deprecated, use {DATASET_ALIASES[self.dataset]!r}",
                          DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "dataset", DATASET_ALIASES[self.dataset])
        _check(self.dataset in DATASETS, "data.dataset", f"one of {DATASETS}", self.dataset)
        _check(self.cue in CUES, "data.cue", f"one of {CUES}", self.cue)
        _check(0.0 <= self.cue_proportion <= 1.0, "data.cue_proportion", "a number in [0, 1]", self.cue_proportion)
        _check(2 <= self.num_classes <= 10, "data.num_classes", "an integer in [2, 10]", self.num_classes)
        _check(8 <= self.image_size <= 64, "data.image_size", "an integer in [8, 64]", self.image_size)
        _check(self.n_train >= 10, "data.n_train", "an integer >= 10", self.n_train)
        _check(self.n_test >= 10, "data.n_test", "an integer >= 10", self.n_test)
        _check(self.box_layout in BOX_LAYOUTS, "data.box_layout", f"one of {BOX_LAYOUTS}", self.box_layout)
        limit = self.box_size_limit
        _check(0 <= self.box_size <= limit, "data.box_size",
               f"0 (automatic) or a side in px in [1, {limit}] for {self.image_side} px images with box_layout "
               f"{self.box_layout} (larger boxes overlap)", self.box_size)
        _check(self.views_cue in VIEWS_CUE, "data.views_cue", f"one of {VIEWS_CUE}", self.views_cue)
        _check(self.max_files_train == 0 or self.max_files_train >= 10, "data.max_files_train", "0 or an integer >= 10", self.max_files_train)
        _check(self.max_files_test == 0 or self.max_files_test >= 10, "data.max_files_test", "0 or an integer >= 10", self.max_files_test)
        if self.dataset in DOMINOES_DATASETS:
            _check(self.cue in ("dominoes", "none"), "data.cue", f"'dominoes' or 'none' for the {self.dataset} dataset", self.cue)
        if not self.embedded:
            _check(bool(self.root), "data.root", "the folder holding the cifar (and FashionMNIST) files", self.root)

    @property
    def embedded(self) -> bool:
        """Generated in memory (n_train, n_test, num_classes, image_size apply), not read from ``root``."""
        return self.dataset in EMBEDDED_DATASETS

    @property
    def effective_cue(self) -> str:
        """The cue actually painted: the dominoes datasets always use the dominoes cue."""
        return "dominoes" if self.dataset in DOMINOES_DATASETS and self.cue != "none" else self.cue

    @property
    def image_side(self) -> int:
        """Side of one (square) image, px: image_size for embedded sets, 32 for the cifar sets."""
        return self.image_size if self.embedded else 32

    @property
    def box_size_limit(self) -> int:
        """Largest box side (px) whose positions do not overlap: a quarter of the side, a sixth for the paper
        layout above 10 classes (its tenth position sits between the corner and the centre)."""
        many = self.dataset == "cifar100"
        return self.image_side // (6 if self.box_layout == "paper" and many else 4)

    @property
    def views_cue_proportion(self) -> float:
        """Nominal fraction of the cue / rand_cue / rand_img test images that carry a cue (for captions)."""
        return 1.0 if self.views_cue == "full" else self.cue_proportion


@dataclass(frozen=True)
class ModelSpec:
    """Which architecture, and its width."""

    arch: str = _help("small_cnn | vgg13 (max-pool VGG-13) | vgg13_paper (the reference's VGG-13: stride-2 "
                      "downsampling, no max-pool) | resnet18", "small_cnn")
    width: int = _help("channels of the first stage (0 = the architecture's default)", 0)

    def __post_init__(self) -> None:
        _check(self.width >= 0, "model.width", "an integer >= 0", self.width)


@dataclass(frozen=True)
class TrainSpec:
    """Training from scratch: SGD + momentum, a learning-rate schedule, weight decay.

    The reference recipe (trainer.py): lr 0.1, momentum 0.9, nesterov false, weight_decay 1e-4,
    batch_size 256, epochs 100, schedule step, milestones [40, 80], gamma 0.1.
    """

    epochs: int = _help("passes over the training set", 8)
    lr: float = _help("initial (peak) learning rate", 0.05)
    momentum: float = _help("SGD momentum", 0.9)
    weight_decay: float = _help("L2 weight decay", 5e-4)
    batch_size: int = _help("images per step", 128)
    seed: int = _help("seed of initialisation and batch order", 0)
    nesterov: bool = _help("Nesterov momentum (true) or plain heavy-ball momentum (false: the reference's)", True, added=True)
    schedule: str = _help("learning-rate schedule: cosine (per step, from lr to 0) | step (lr times gamma at each "
                          "milestone: the reference's) | constant", "cosine", added=True)
    milestones: tuple[int, ...] = _help("step schedule: epochs after which the lr is multiplied by gamma (the "
                                        "reference: [40, 80]); milestones >= epochs never fire", (), added=True)
    gamma: float = _help("step schedule: factor applied at each milestone (the reference: 0.1)", 0.1, added=True)
    stream: str = _help("random stream of the run: '' (the seed's own: initialisation and batch order seeded by "
                        "`seed` itself) | a name (both drawn from seeds derived from (seed, name): a run that is "
                        "independent of the seed's other runs, e.g. the clean reference under base.pairing "
                        "independent)", "", added=True)

    def __post_init__(self) -> None:
        _check_sgd("train", self)
        _check_schedule("train", self)
        _check(self.stream == self.stream.strip() and " " not in self.stream, "train.stream",
               "'' or a name without spaces", self.stream)

    @property
    def init_seed(self) -> int:
        """Seed of the initial weights (torch's global generator before the model is built)."""
        return stream_seed(self.seed, self.stream, "init")

    @property
    def order_seed(self) -> int:
        """Seed of the batch order (``epoch_generator``) and of any other randomness during training."""
        return stream_seed(self.seed, self.stream, "order")


@dataclass(frozen=True)
class FinetuneSpec:
    """One fine-tuning run of the cue model on ``n_clean`` clean images. Methods read what they use.

    The reference (mech_fine_tuning.py) values are in the help texts; every default is mmc-sweep's own.
    """

    method: str = _help("naive_ft | llrt | lpft | cbft", "cbft")
    n_clean: int = _help("class-balanced clean images the method may see (the reference: 2500)", 500)
    epochs: int = _help("passes over the clean subset (full fine-tuning; the head for llrt unless llrt_epochs is set)", 10)
    lr: float = _help("peak learning rate (see schedule; the reference: 0.01)", 0.05)
    momentum: float = _help("SGD momentum", 0.9)
    weight_decay: float = _help("L2 weight decay (the reference: 1e-4)", 5e-4)
    batch_size: int = _help("clean images per step (the reference: 256)", 64)
    seed: int = _help("seed of the clean subset, the cue subset, the new head and batch order", 0)
    probe_epochs: int = _help("lpft: epochs of the linear probe before full fine-tuning (the reference: 200)", 4)
    probe_lr: float = _help("lpft: learning rate of the linear probe (the reference: 30)", 0.05)
    lambda_barrier: float = _help("cbft: weight of the barrier loss (the reference: 1)", 1.0)
    lambda_invariance: float = _help("cbft: weight of the invariance loss (the reference: 1)", 1.0)
    barrier_margin: float = _help("cbft: target cross-entropy (nats) on cue data along the path (the reference: 1)", 1.0)
    warmup_epochs: int = _help("cbft: first epochs without the losses that `warmup` switches off (the reference: 1)", 0)
    t_distribution: str = _help("cbft: where on the path (0 = cue model, 1 = fine-tuned) the barrier is measured: "
                                "uniform | beta (2, 2) | midpoint | paper (0.5 + 0.5 clip(N(0, 1), -0.5, 0.5): "
                                "t in [0.25, 0.75], about 31 % of draws at each end)", "beta")
    cue_batch_size: int = _help("cbft: cue images per step for the barrier and invariance losses (the reference: 256)", 64)
    nesterov: bool = _help("Nesterov momentum (true) or plain heavy-ball momentum (false: the reference's), every stage", True, added=True)
    invariance_form: str = _help(
        "cbft: norm_then_mean (normalise each representation, then class means; mean squared distance over the "
        "classes in both batches) | paper (class means first, then normalised; squared distances summed over the "
        "classes in both batches and divided by the number of classes)", "norm_then_mean", added=True)
    update: str = _help("cbft: joint (one step on cross-entropy + barrier + invariance per batch) | alternating (the "
                        "reference: one step on the barrier loss, then one on cross-entropy + invariance, per batch)", "joint", added=True)
    warmup: str = _help("cbft: what the warm-up epochs train: ce_only (cross-entropy only) | no_invariance (barrier "
                        "loss on, invariance off: the reference)", "ce_only", added=True)
    n_cue: int = _help("cbft: cue images the method may use (0 = the whole pool of cue_data; the reference: 47500)", 0, added=True)
    cue_data: str = _help("cbft: pool of cue images: all_cued (every training image with its label's cue) | "
                          "train_proportion (training images cued at data.cue_proportion, as in the cue model's "
                          "training set: the reference)", "all_cued", added=True)
    llrt_lr: float = _help("llrt: learning rate of the new head (0 = finetune.lr; the reference: 30)", 0.0, added=True)
    llrt_epochs: int = _help("llrt: epochs of the new head (0 = finetune.epochs; the reference: 200)", 0, added=True)
    llrt_weight_decay: float = _help("llrt: weight decay of the new head (-1 = finetune.weight_decay; the reference: 0)", SHARED, added=True)
    probe_weight_decay: float = _help("lpft: weight decay of the linear probe (-1 = finetune.weight_decay; the reference: 0)", SHARED, added=True)
    schedule: str = _help(
        "learning-rate schedule of every method and stage (full fine-tuning, the LLRT head, the LPFT probe): cosine "
        "(per step from lr to 0: the reference's naive FT, LLRT and LPFT) | constant (lr throughout). The reference's "
        "CBFT differs between its commits: 0a73f40 never steps its scheduler (constant), b5ee81b steps it only from its "
        "third epoch on (epoch > warmup_epochs = 1: two epochs at lr, then the cosine, ending near 2.5 % of lr, not 0)", "cosine", added=True)
    batching: str = _help(
        "how each epoch splits the clean subset into batches, every method and stage: even (ceil(n_clean / batch_size) "
        "batches whose sizes differ by at most one: 200 images at 64 are four of 50) | ragged (full batches and the "
        "remainder: 64, 64, 64, 8; the reference's DataLoader, and every study from before this setting). A "
        "remainder of a few images is a step and a BatchNorm update on almost nothing: at 200 clean images ragged "
        "batches took naive FT's clean accuracy from 0.55 (192 images) to 0.18", "even", legacy="ragged")

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
        _check(self.invariance_form in INVARIANCE_FORMS, "finetune.invariance_form", f"one of {INVARIANCE_FORMS}", self.invariance_form)
        _check(self.update in CBFT_UPDATES, "finetune.update", f"one of {CBFT_UPDATES}", self.update)
        _check(self.warmup in CBFT_WARMUPS, "finetune.warmup", f"one of {CBFT_WARMUPS}", self.warmup)
        _check(self.n_cue >= 0, "finetune.n_cue", "an integer >= 0 (0 = the whole pool)", self.n_cue)
        _check(self.cue_data in CUE_POOLS, "finetune.cue_data", f"one of {CUE_POOLS}", self.cue_data)
        _check(self.llrt_lr >= 0, "finetune.llrt_lr", "a number > 0, or 0 for finetune.lr", self.llrt_lr)
        _check(self.llrt_epochs >= 0, "finetune.llrt_epochs", "an integer >= 1, or 0 for finetune.epochs", self.llrt_epochs)
        _check(self.schedule in SCHEDULES, "finetune.schedule", f"one of {SCHEDULES}", self.schedule)
        _check(self.batching in BATCHINGS, "finetune.batching", f"one of {BATCHINGS}", self.batching)
        for key in ("llrt_weight_decay", "probe_weight_decay"):
            value = getattr(self, key)
            _check(value >= 0 or value == SHARED, f"finetune.{key}", "a number >= 0, or -1 for finetune.weight_decay", value)

    def llrt_recipe(self) -> tuple[int, float, float]:
        """(epochs, lr, weight decay) of LLRT's head, its own settings where set, else the shared ones."""
        return (self.llrt_epochs or self.epochs, self.llrt_lr or self.lr,
                self.weight_decay if self.llrt_weight_decay == SHARED else self.llrt_weight_decay)

    def probe_recipe(self) -> tuple[int, float, float]:
        """(epochs, lr, weight decay) of LPFT's linear probe."""
        return (self.probe_epochs, self.probe_lr,
                self.weight_decay if self.probe_weight_decay == SHARED else self.probe_weight_decay)


@dataclass(frozen=True)
class BNResetSpec:
    """How BatchNorm statistics of an interpolated model are re-estimated before it is evaluated."""

    mode: str = _help(
        "none (keep interpolated stats) | ema (momentum 0.1 from reset stats: keeps 0.9^batches of the reset "
        "mean 0 / var 1, so it needs many batches) | cumulative (exact average over the images of the batches, "
        "each batch weighted by its images)",
        "cumulative",
    )
    batches: int | str = _help(
        "training-mode batches used to re-estimate the statistics: an integer (that many batches of images drawn "
        "once by the seed) | all (every image of `data`, streamed one batch of batch_size at a time: the reference "
        "re-estimates on its whole clean training set)", 8)
    data: str = _help("clean (clean train) | cue (cue train) | view (the evaluated view itself)", "clean")
    batch_size: int = _help("images per re-estimation batch", 256)

    def __post_init__(self) -> None:
        _check(self.mode in BN_RESET_MODES, "paths.bn_reset.mode", f"one of {BN_RESET_MODES}", self.mode)
        counted = isinstance(self.batches, int) and not isinstance(self.batches, bool) and self.batches >= 1
        _check(counted or self.batches == ALL_BATCHES, "paths.bn_reset.batches",
               f"an integer >= 1 or {ALL_BATCHES!r}", self.batches)
        _check(self.data in BN_RESET_DATA, "paths.bn_reset.data", f"one of {BN_RESET_DATA}", self.data)
        _check(self.batch_size >= 2, "paths.bn_reset.batch_size", "an integer >= 2", self.batch_size)

    @property
    def label(self) -> str:
        """Short, recorded description, e.g. ``cumulative:8x256:clean`` or ``cumulative:allx256:clean``."""
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
class RevivalSpec:
    """Cue revival: a copy of a fine-tuned model re-trained on cue data (every training image cued),
    its cue reliance measured after each of a few step counts. A model whose fine-tuning removed the
    cue mechanism should need more steps to lean on the cue again than one whose fine-tuning only hid it."""

    steps: tuple[int, ...] = _help("step counts after which cue reliance is measured, increasing (e.g. [1, 2, 4, 8, 16, 32]); "
                                   "[]: no revival is measured", ())
    lr: float = _help("SGD learning rate of the re-training (plain momentum 0.9, no weight decay)", 0.01)
    batch_size: int = _help("cue images per step", 64)
    seed: int = _help("seed of the batch order (a stream of its own, derived from it)", 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        _check(all(isinstance(s, int) and s >= 1 for s in self.steps) and list(self.steps) == sorted(set(self.steps)),
               "revival.steps", "increasing whole numbers >= 1", list(self.steps))
        _check(self.lr > 0, "revival.lr", "a number > 0", self.lr)
        _check(self.batch_size >= 1, "revival.batch_size", "an integer >= 1", self.batch_size)


@dataclass(frozen=True)
class QMCSpec:
    """Training of the midpoint theta of the quadratic Bezier path ``(1-a)^2 A + 2a(1-a) theta + a^2 B``.

    The reference recipe (mode_connect.py): epochs 15, lr 0.1, momentum 0.9, nesterov false,
    weight_decay 1e-4, schedule step, milestones [10], gamma 0.1, batch_size 128, scale_lr true,
    init random, data cue, bn_stats init.
    """

    epochs: int = _help("passes over the training images; each step samples a ~ U(0, 1) (the reference: 15)", 4)
    lr: float = _help("initial (peak) learning rate (the reference: 0.1)", 0.05)
    momentum: float = _help("SGD momentum (the reference: 0.9)", 0.9)
    weight_decay: float = _help("L2 weight decay on theta, BatchNorm weights included (the reference: 1e-4)", 5e-4)
    schedule: str = _help("learning-rate schedule: cosine (per step, to 0 over all steps) | step (lr times gamma at "
                          "each milestone: the reference's x0.1 every 10 epochs) | constant", "cosine")
    batch_size: int = _help("images per step (the reference: 128)", 128)
    data: str = _help("training images: cue (every image cued, as in the paper) | clean", "cue")
    init: str = _help("random (a fresh initialisation, as the reference code, from theta's own seed stream: never "
                      "a base model's initialisation) | linear (the straight-line midpoint (A+B)/2)", "random")
    scale_lr: bool = _help(
        "the reference's update: the gradient taken at the curve point (not through the 2a(1-a) factor) "
        "and the learning rate scaled by 2a(1-a) instead", False)
    seed: int = _help("seed of theta's random initialisation (a stream of its own, derived from it) and of the "
                      "batch order and a samples", 0)
    nesterov: bool = _help("Nesterov momentum (true) or plain heavy-ball momentum (false: the reference's)", True, added=True)
    milestones: tuple[int, ...] = _help("step schedule: epochs after which the lr is multiplied by gamma (the "
                                        "reference: [10], i.e. every 10 epochs of its 15)", (), added=True)
    gamma: float = _help("step schedule: factor applied at each milestone (the reference: 0.1)", 0.1, added=True)
    bn_stats: str = _help(
        "theta's stored BatchNorm running statistics: average (the endpoints' average) | init (a fresh network's, "
        "mean 0 and variance 1: the reference never updates its midpoint's statistics). Either way every curve "
        "point trains in training mode (batch statistics, as the reference), and the statistics matter to path "
        "evaluation only with paths.bn_reset.mode none (ema and cumulative reset them first)", "average", added=True)

    def __post_init__(self) -> None:
        _check_sgd("paths.qmc", self)
        _check_schedule("paths.qmc", self)
        _check(self.data in TRAIN_SOURCES, "paths.qmc.data", f"one of {TRAIN_SOURCES}", self.data)
        _check(self.init in QMC_INITS, "paths.qmc.init", f"one of {QMC_INITS}", self.init)
        _check(self.bn_stats in QMC_BN_STATS, "paths.qmc.bn_stats", f"one of {QMC_BN_STATS}", self.bn_stats)


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
    views_cue: str = _help(
        "test images of the cue, rand_cue and rand_img views that carry a cue along paths: data (as data.views_cue, "
        "the views of the tables) | full (every one: the reference evaluates its paths on fully cued views, "
        "mode_connect.py cue_proportion=1.0) | train (the training proportion)", "data", added=True)

    def __post_init__(self) -> None:
        _check(self.views_cue in PATH_VIEWS_CUE, "paths.views_cue", f"one of {PATH_VIEWS_CUE}", self.views_cue)
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


def _hashed(value: Any) -> Any:
    """``to_dict`` of a spec without its ``added`` fields at their defaults and its ``legacy`` fields at
    their legacy values."""
    if dataclasses.is_dataclass(value):
        return {f.name: _hashed(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not _left_out(f, getattr(value, f.name))}
    if isinstance(value, (list, tuple)):
        return [_hashed(v) for v in value]
    return value


def spec_hash(*specs: Any, length: int = 16, leave_out: tuple[str, ...] = ()) -> str:
    """Content hash of complete specs (every field, defaults included, except top-level ``leave_out``)
    plus the schema version."""
    payload = [SCHEMA_VERSION] + [[type(s).__name__, {k: v for k, v in _hashed(s).items() if k not in leave_out}]
                                  for s in specs]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


