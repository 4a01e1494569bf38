"""A study file (YAML) validated into typed, frozen dataclasses before anything starts.

Every problem becomes one ``InputError`` line naming the file and the key, with a close-match
suggestion for misspelt keys and names.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmc_sweep.config import (
    CLEAN_STREAM, INVARIANCE_METRICS, PAIRINGS, VIEWS, BaseModelSpec, DataSpec, FinetuneSpec, ModelSpec, PathSpec,
    RevivalSpec, TrainSpec, _check, _help, legacy_values, spec_hash, to_dict,
)
from mmc_sweep.costs import COST_METRICS
from mmc_sweep.errors import InputError
from mmc_sweep.finetune import METHODS
from mmc_sweep.models import model_names
from mmc_sweep.revival import REVIVAL_METRICS
from mmc_sweep.paths import BARRIER_TYPES, barrier_metric, kind_names

SAMPLER_NAMES = ("tpe", "nsga2", "random", "grid")  # built in study/search/samplers.py
PARAM_TYPES = ("float", "int", "categorical")
# metrics every search trial reports that an objective may name; barriers depend on the study (see barrier_objectives)
OBJECTIVE_METRICS = tuple(f"{k}_{v}" for k in ("acc", "loss") for v in VIEWS) + INVARIANCE_METRICS
TRIAL_PATHS = ("cue_to_ft", "ft_to_clean")  # the paths a search trial measures
# study-level settings a search may vary besides the fine-tuning ones (categorical only: the base
# models they need are trained before the search)
STUDY_PARAMS = ("base_seed", "cue_proportion")
SEARCHABLE = tuple(f.name for f in dataclasses.fields(FinetuneSpec)) + STUDY_PARAMS  # `method`: categorical
# the Python type of every searchable setting: a searched value must have it (the Parquet column of a
# setting is int64, float64 or string whatever the search proposes)
SETTING_TYPES: dict[str, type] = {**{k: t for k, t in typing.get_type_hints(FinetuneSpec).items() if t in (int, float, str, bool)},
                                   "base_seed": int, "cue_proportion": float}
_VALUE_WORDS = {int: "integers", float: "numbers", str: "strings", bool: "true or false values"}
_SETTING_WORDS = {int: "an integer", float: "a float", str: "a string", bool: "a true/false"}


def _like(cls: type, name: str) -> Any:
    """A field with the default, help and hashing of ``cls``'s field ``name`` (one declaration of each setting)."""
    source = cls.__dataclass_fields__[name]
    return dataclasses.field(default=source.default, metadata=source.metadata)


@dataclass(frozen=True)
class BaseSpec:
    """The cue model and the clean reference: trained once per seed and shared by every trial.

    The training settings mirror :class:`~mmc_sweep.config.TrainSpec` (one per seed: :meth:`train_spec`).
    The reference recipe: epochs 100, lr 0.1, momentum 0.9, nesterov false, weight_decay 1e-4,
    batch_size 256, schedule step, milestones [40, 80], gamma 0.1.
    """

    epochs: int = _like(TrainSpec, "epochs")
    lr: float = _like(TrainSpec, "lr")
    momentum: float = _like(TrainSpec, "momentum")
    weight_decay: float = _like(TrainSpec, "weight_decay")
    batch_size: int = _like(TrainSpec, "batch_size")
    seeds: tuple[int, ...] = _help("one cue model and one clean reference per seed", (0,))
    control_pair: bool = _help("also measure the paths between the clean references of consecutive seeds: a control "
                               "pair of two independently trained models with the same mechanism", False)
    nesterov: bool = _like(TrainSpec, "nesterov")
    schedule: str = _like(TrainSpec, "schedule")
    milestones: tuple[int, ...] = _like(TrainSpec, "milestones")
    gamma: float = _like(TrainSpec, "gamma")
    pairing: str = _help(
        "how a seed's clean reference relates to its cue models: independent (its own initialisation and its own "
        "batch order, drawn from the seed's stream 'clean': a cue->clean barrier then measures mechanism, not "
        "stability to SGD noise; the reference trains its no-cue model separately) | shared (the same "
        "initialisation and batch order as the cue models: twins that differ only by the cue, for the stability "
        "question; every study from before this setting). The seeds used are recorded in the trial rows",
        "independent", legacy="shared")

    def __post_init__(self) -> None:
        _check(self.pairing in PAIRINGS, "base.pairing", f"one of {PAIRINGS}", self.pairing)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "milestones", tuple(self.milestones))
        _check(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds), "base.seeds", "a non-empty list of distinct integers", list(self.seeds))
        _check(not self.control_pair or len(self.seeds) >= 2, "base.control_pair", "at least two base.seeds (the pair's two clean models)", list(self.seeds))
        try:
            self.train_spec(self.seeds[0])  # validates the training settings
        except ValueError as err:  # name the study file's key (base.lr), not TrainSpec's (train.lr)
            text = str(err)
            raise ValueError(f"base.{text[len('train.'):]}" if text.startswith("train.") else text) from None

    def train_spec(self, seed: int, kind: str = "cue") -> TrainSpec:
        """The training settings of the base model ``kind`` of ``seed``: the one conversion to a TrainSpec.
        Cue models use the seed's own stream; the clean reference its own stream under ``independent``."""
        stream = CLEAN_STREAM if kind == "clean" and self.pairing == "independent" else ""
        return TrainSpec(epochs=self.epochs, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                         batch_size=self.batch_size, seed=seed, nesterov=self.nesterov, schedule=self.schedule,
                         milestones=self.milestones, gamma=self.gamma, stream=stream)


@dataclass(frozen=True)
class ParamSpec:
    """One searched fine-tuning setting."""

    name: str = _help("a fine-tuning setting (a key of `finetune`)", "lr")
    type: str = _help("float | int | categorical", "float")
    low: float = _help("lower bound (float, int)", 0.0)
    high: float = _help("upper bound (float, int)", 1.0)
    log: bool = _help("sample on a log scale (float, int)", False)
    step: float = _help("grid step for int/float (0 = none; grid sampler needs choices or a step)", 0.0)
    choices: tuple = _help("values (categorical)", ())

    def __post_init__(self) -> None:
        key = f"search.space.{self.name}"
        object.__setattr__(self, "choices", tuple(self.choices))
        _check(self.type in PARAM_TYPES, f"{key}.type", f"one of {PARAM_TYPES}", self.type)
        setting = SETTING_TYPES.get(self.name)
        if self.type == "categorical":
            _check(len(self.choices) > 0, f"{key}.choices", "a non-empty list", list(self.choices))
            if setting is not None:
                object.__setattr__(self, "choices", _typed_choices(key, setting, self.choices))
            _check(len(set(self.choices)) == len(self.choices), f"{key}.choices", "distinct values", list(self.choices))
            return
        if setting is not None:  # a range of the wrong type fails in every trial (and breaks the column's type)
            allowed = "'int' or 'categorical'" if setting is int else "'float' or 'categorical'" if setting is float else "'categorical'"
            _check(self.type == {int: "int", float: "float"}.get(setting), f"{key}.type",
                   f"{allowed} ({self.name} is {_SETTING_WORDS[setting]} setting)", self.type)
        _check(self.low < self.high, key, "low < high (a non-empty range)", f"low={self.low}, high={self.high}")
        _check(not self.log or self.low > 0, f"{key}.low", "a number > 0 with log: true", self.low)
        _check(self.step >= 0, f"{key}.step", "a number >= 0", self.step)
        # Optuna has no stepped log scale: the step would be dropped without a word
        _check(not (self.step and self.log), f"{key}.step", "no step with log: true (a log scale has no step)", self.step)
        if self.type == "int":
            _check(float(self.low).is_integer() and float(self.high).is_integer(), key, "integer bounds", f"{self.low}, {self.high}")
            _check(float(self.step).is_integer(), f"{key}.step", "an integer step", self.step)

    def grid(self) -> list:
        """The values a grid search visits."""
        if self.type == "categorical":
            return list(self.choices)
        if not self.step:
            raise ValueError(f"search.space.{self.name}: expected `step` or type categorical for the grid sampler")
        count = int(round((self.high - self.low) / self.step)) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.type == "int" else values


def _typed_choices(key: str, setting: type, choices: tuple) -> tuple:
    """``choices`` checked against the setting's type; ints of a float setting become floats, so
    that its column stays float64."""
    def fits(value: Any) -> bool:
        if isinstance(value, bool) or setting is bool:
            return isinstance(value, bool) and setting is bool
        return isinstance(value, (int, float)) if setting is float else isinstance(value, setting)

    name = key.rsplit(".", 1)[1]
    _check(all(fits(v) for v in choices), f"{key}.choices", f"{_VALUE_WORDS[setting]} ({name} is {_SETTING_WORDS[setting]} setting)",
           list(choices))
    return tuple(float(v) for v in choices) if setting is float else choices


@dataclass(frozen=True)
class ObjectiveSpec:
    metric: str = _help("a trial metric, e.g. acc_rand_cue, cue_reliance, barrier_loss_cue_to_ft_cue, cost_paths_s (seconds)",
                        "acc_rand_cue")
    mode: str = _help("max | min", "max")

    def __post_init__(self) -> None:
        _check(self.mode in ("max", "min"), "search.objectives.mode", "max or min", self.mode)


SCHEDULERS = ("none", "asha")
EPOCH_METRICS = ("train_loss",) + OBJECTIVE_METRICS  # what a fine-tuning trial reports after every epoch


@dataclass(frozen=True)
class AshaSpec:
    """Tune's asynchronous successive halving: at every rung (grace_period, x reduction_factor, ...
    epochs) a trial continues only if its metric is in the best 1/reduction_factor seen there."""

    metric: str = _help("a metric every fine-tuning epoch reports (train_loss, acc_<view>, loss_<view>, "
                        "cue_reliance, pred_consistency, rep_cosine)", "acc_clean")
    mode: str = _help("max | min", "max")
    grace_period: int = _help("epochs every trial runs before it can be stopped", 1)
    reduction_factor: int = _help("a rung keeps the best 1/reduction_factor of the trials that reached it", 3)

    def __post_init__(self) -> None:
        _check(self.metric in EPOCH_METRICS, "search.asha.metric", f"one of {', '.join(EPOCH_METRICS)}", self.metric)
        _check(self.mode in ("max", "min"), "search.asha.mode", "max or min", self.mode)
        _check(self.grace_period >= 1, "search.asha.grace_period", "an integer >= 1", self.grace_period)
        _check(self.reduction_factor >= 2, "search.asha.reduction_factor", "an integer >= 2", self.reduction_factor)


@dataclass(frozen=True)
class SearchSpec:
    """What Optuna searches and how many trials Ray Tune runs."""

    num_samples: int = _help("fine-tuning trials of the search", 12)
    sampler: str = _help("tpe | nsga2 | random | grid", "tpe")
    seed: int = _help("seed of the sampler", 0)
    max_concurrent: int = _help("trials running at once (0 = as many as resources allow)", 0)
    objectives: tuple[ObjectiveSpec, ...] = _help("metrics to optimise", (ObjectiveSpec("acc_rand_cue", "max"), ObjectiveSpec("cue_reliance", "min")))
    space: tuple[ParamSpec, ...] = _help("searched fine-tuning settings", ())
    scheduler: str = _help("early stopping of hopeless trials: none | asha (see `asha`); a stopped trial is "
                           "`pruned`, with its history, and Optuna is told PRUNED", "none", added=True)
    asha: AshaSpec = _help("the ASHA scheduler's settings (scheduler: asha)", AshaSpec(), added=True)

    def __post_init__(self) -> None:
        _check(self.scheduler in SCHEDULERS, "search.scheduler", f"one of {', '.join(SCHEDULERS)}", self.scheduler)
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "space", tuple(self.space))
        _check(self.num_samples >= 1, "search.num_samples", "an integer >= 1", self.num_samples)
        _check(0 <= self.seed < 2**32, "search.seed", "an integer in [0, 2**32) (numpy seeds the samplers)", self.seed)
        _check(self.max_concurrent >= 0, "search.max_concurrent", "an integer >= 0", self.max_concurrent)
        _check(len(self.objectives) > 0, "search.objectives", "a non-empty list", [])
        if self.sampler == "grid":
            for p in self.space:
                p.grid()


@dataclass(frozen=True)
class ResourceSpec:
    """Per trial. ``gpu`` may be a fraction (0.25: four trials share one GPU)."""

    cpu: float = _help("CPUs per trial (also torch's thread count)", 1.0)
    gpu: float = _help("GPUs per trial, may be fractional", 0.0)

    def __post_init__(self) -> None:
        _check(self.cpu > 0, "resources.cpu", "a number > 0", self.cpu)
        _check(self.gpu >= 0, "resources.gpu", "a number >= 0", self.gpu)


@dataclass(frozen=True)
class FailureSpec:
    """What happens when a trial's worker dies (out of memory, lost node, preempted machine)."""

    max_failures: int = _help("times a trial is restarted from its last epoch checkpoint after its worker died "
                              "(0: a dead worker fails the trial)", 3)

    def __post_init__(self) -> None:
        _check(self.max_failures >= 0, "failure.max_failures", "an integer >= 0", self.max_failures)


EPOCH_MEASUREMENTS = ("views", "loss")
RUN_ONLY = ("failure",)  # how a study runs, not what it computes: left out of its hash


@dataclass(frozen=True)
class StudySpec:
    name: str = _help("study name: its folder under the storage root", "study")
    data: DataSpec = _help("dataset and cue", DataSpec())
    model: ModelSpec = _help("architecture", ModelSpec())
    base: BaseSpec = _help("base models", BaseSpec())
    finetune: FinetuneSpec = _help("fixed fine-tuning settings of every trial", FinetuneSpec())
    baselines: tuple[str, ...] = _help("methods run once each with the fixed `finetune` settings (method replaced), as reference rows", ())
    search: SearchSpec = _help("the search", SearchSpec())
    paths: PathSpec = _help("interpolation paths", PathSpec())
    resources: ResourceSpec = _help("per-trial resources", ResourceSpec())
    failure: FailureSpec = _help("retries of trials whose worker died", FailureSpec())
    revival: RevivalSpec = _help("cue revival of every fine-tuned model (off by default: revival.steps [])",
                                 RevivalSpec(), added=True)
    epoch_metrics: str = _help("what a fine-tuning trial measures after every epoch, into the history table: views "
                               "(training loss and every view's metrics) | loss (training loss only: a trial skips "
                               "evaluating every view once per epoch)", "views", added=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        _check(self.epoch_metrics in EPOCH_MEASUREMENTS, "epoch_metrics", f"one of {', '.join(EPOCH_MEASUREMENTS)}", self.epoch_metrics)
        if self.search.scheduler == "asha" and self.epoch_metrics == "loss":
            _check(self.search.asha.metric == "train_loss", "search.asha.metric",
                   "train_loss (epoch_metrics: loss measures no view after an epoch)", self.search.asha.metric)
        _check(bool(self.name) and "/" not in self.name and not self.name.startswith("."), "name", "a folder name (no '/')", self.name)

    @property
    def hash(self) -> str:
        return spec_hash(self, leave_out=RUN_ONLY)

    def finetune_spec(self, params: dict[str, Any]) -> FinetuneSpec:
        """The fine-tuning settings of one trial: the fixed ones with the searched ``params`` on top."""
        return dataclasses.replace(self.finetune, **{k: v for k, v in params.items() if k not in STUDY_PARAMS})

    def base_models(self, kind: str) -> list[BaseModelSpec]:
        """Every base model of ``kind`` the study needs: all seeds, and for cue models every cue
        proportion the search may pick."""
        proportions = [self.data.cue_proportion] if kind == "cue" else [0.0]
        for p in self.search.space:
            if p.name == "cue_proportion" and kind == "cue":
                proportions = sorted(set(proportions) | set(p.choices))
        return [self.base_model(kind, seed, prop) for seed in self.base.seeds for prop in proportions]

    def base_model(self, kind: str, seed: int, cue_proportion: float | None = None) -> BaseModelSpec:
        proportion = self.data.cue_proportion if cue_proportion is None else cue_proportion
        return BaseModelSpec(kind, dataclasses.replace(self.data, cue_proportion=proportion), self.model,
                             self.base.train_spec(seed, kind))


# ---- loading ---------------------------------------------------------------------------------

def _suggest(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(value: Any, hint: Any, key: str, stored: bool = False) -> Any:
    """Check ``value`` against the type ``hint`` and convert it (lists to tuples, mappings to specs)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, stored)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return tuple(_convert(v, item, _item_key(key, v)) for v in value)
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _item_key(key: str, item: Any) -> str:
    """The key of a list item in messages: a searched setting by its name (search.space.lr)."""
    named = isinstance(item, dict) and isinstance(item.get("name"), str)
    return f"{key}.{item['name']}" if named and key == "search.space" else key


def _build(cls: type, raw: Any, key: str, stored: bool = False) -> Any:
    """Construct spec ``cls`` from a mapping: unknown keys and wrong types are errors naming the key.

    ``stored``: ``raw`` is a study's stored ``study.yaml`` (every setting resolved when it was written):
    a key it lacks is a setting added since, and a setting with a legacy value takes that value, so
    the stored study keeps its meaning (a new study file gets the default).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{key}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {name: value for name, value in legacy_values(cls).items() if stored and name not in raw}
    for name, value in raw.items():
        full = f"{key}.{name}" if key else str(name)
        if name not in names:
            raise ValueError(f"{full}: unknown key{_suggest(str(name), names)}; valid: {', '.join(names)}")
        kwargs[name] = _convert(value, hints[name], full, stored)
    if stored:  # sections the stored file lacks entirely still get their legacy values
        kwargs |= {f.name: _build(hints[f.name], {}, f"{key}.{f.name}" if key else f.name, stored)
                   for f in dataclasses.fields(cls) if f.name not in kwargs and dataclasses.is_dataclass(hints[f.name])}
    return cls(**kwargs)


def _space(raw: Any) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ValueError(f"search.space: expected a mapping of setting -> range, got {raw!r}")
    out = []
    for name, body in raw.items():
        if name not in SEARCHABLE:
            raise ValueError(f"search.space.{name}: not a fine-tuning setting{_suggest(str(name), SEARCHABLE)}")
        if not isinstance(body, dict):
            raise ValueError(f"search.space.{name}: expected a mapping like {{type: float, low: ..., high: ...}}, got {body!r}")
        out.append({"name": name, **body})
    return out


def _objectives(raw: Any) -> list:
    if raw is None:
        return list(to_dict(o) for o in SearchSpec().objectives)
    if not isinstance(raw, list):
        raise ValueError(f"search.objectives: expected a list of {{metric, mode}}, got {raw!r}")
    return raw


def _check_names(spec: StudySpec) -> None:
    methods = sorted(METHODS)
    _check_one(spec.finetune.method, methods, "finetune.method")
    for b in spec.baselines:
        _check_one(b, methods, "baselines")
    _check_one(spec.model.arch, model_names(), "model.arch")
    _check_one(spec.search.sampler, SAMPLER_NAMES, "search.sampler")
    for kind in spec.paths.kinds:
        _check_one(kind, kind_names(), "paths.kinds")
    _check_objectives(spec)
    if spec.data.embedded:  # cifar pool sizes are known once the files are read (preflight)
        for key, largest in n_clean_bounds(spec):
            _check(largest <= spec.data.n_train, key, f"at most data.n_train = {spec.data.n_train} clean images", largest)
    if spec.search.sampler != "grid" and len(spec.search.space) == 0:
        raise ValueError("search.space: expected at least one searched setting (or sampler: grid)")
    for p in spec.search.space:
        if p.name in STUDY_PARAMS:
            _check(p.type == "categorical", f"search.space.{p.name}.type", "categorical (base models are trained before the search)", p.type)
            if p.name == "base_seed":
                _check(set(p.choices) <= set(spec.base.seeds), "search.space.base_seed.choices", f"seeds listed in base.seeds {list(spec.base.seeds)}", list(p.choices))
            else:
                for value in p.choices:
                    dataclasses.replace(spec.data, cue_proportion=value)  # validates each proportion
            continue
        if p.name == "method":
            _check(p.type == "categorical", "search.space.method.type", "categorical", p.type)
            for value in p.choices:
                _check_one(value, sorted(METHODS), "search.space.method.choices")
            continue
        _check_ends(spec, p)


def _check_ends(spec: StudySpec, p: ParamSpec) -> None:
    """Every value the search may propose is a valid fine-tuning setting (checked at each end of a range)."""
    ends = [("choices", v) for v in p.grid()] if p.type == "categorical" or p.step else [("low", p.low), ("high", p.high)]
    for where, value in ends:
        try:
            spec.finetune_spec({p.name: int(value) if p.type == "int" else value})
        except ValueError as err:  # name the searched key, not the fixed one the message was written for
            own = f"finetune.{p.name}: "
            text = str(err)
            raise ValueError(f"search.space.{p.name}.{where}: {text[len(own):]}" if text.startswith(own)
                             else f"search.space.{p.name}.{where} = {value!r}: {text}") from None


def _check_objectives(spec: StudySpec) -> None:
    """Each objective is a metric every search trial of ``spec`` reports, named once."""
    valid = OBJECTIVE_METRICS + COST_METRICS + REVIVAL_METRICS + barrier_objectives(spec)
    metrics = [o.metric for o in spec.search.objectives]
    for metric in metrics:
        if metric not in valid:
            raise ValueError(f"search.objectives.metric: unknown metric {metric!r}{_suggest(metric, valid)}; valid: "
                             f"{', '.join(OBJECTIVE_METRICS + COST_METRICS + REVIVAL_METRICS)}, or a barrier this study measures: "
                             f"{_barrier_pattern(spec)}")
    _check(not set(REVIVAL_METRICS) & set(metrics) or bool(spec.revival.steps), "search.objectives.metric",
           "revival_steps or revival_auc only with revival.steps set (no revival is measured)", metrics)
    _check("cost_gpu_s" not in metrics or spec.resources.gpu > 0, "search.objectives.metric",
           "cost_gpu_s only with resources.gpu > 0 (it is null off a GPU)", "cost_gpu_s")
    duplicates = sorted({m for m in metrics if metrics.count(m) > 1})
    _check(not duplicates, "search.objectives.metric", "each metric once", duplicates)


def trial_paths(spec: StudySpec) -> tuple[str, ...]:
    """The paths every search trial measures: method ``none`` has no path from the cue model to itself,
    so when the search may pick it, no trial can be sure to report ``cue_to_ft``."""
    methods = {spec.finetune.method}
    for p in spec.search.space:
        if p.name == "method":
            methods = set(p.choices)
    return tuple(path for path in TRIAL_PATHS if not (path == "cue_to_ft" and "none" in methods))


def n_clean_bounds(spec: StudySpec) -> list[tuple[str, int]]:
    """(key, the largest n_clean it may give): the fixed setting (baselines use it) and a searched one."""
    out = [("finetune.n_clean", spec.finetune.n_clean)]
    for p in spec.search.space:
        if p.name == "n_clean":
            out.append(("search.space.n_clean.choices", max(p.choices)) if p.type == "categorical"
                       else ("search.space.n_clean.high", int(p.high)))
    return out


def barrier_objectives(spec: StudySpec) -> tuple[str, ...]:
    """Every barrier a search trial of ``spec`` reports: each kind, trial path, evaluated view and barrier type."""
    return tuple(barrier_metric(t, kind, path, view) for kind in spec.paths.kinds for path in trial_paths(spec)
                 for view in spec.paths.views for t in BARRIER_TYPES)


def _barrier_pattern(spec: StudySpec) -> str:
    """The barrier names of ``spec`` as one pattern, e.g. ``<barrier_loss|...>_[lmcp_]<ft_to_clean>_<clean|cue>``."""
    prefixes = ["" if kind == "linear" else f"{kind}_" for kind in spec.paths.kinds]
    kinds = f"[{'|'.join(p for p in prefixes if p)}]" if "" in prefixes else f"<{'|'.join(prefixes)}>"
    return (f"<{'|'.join(BARRIER_TYPES)}>_{kinds if kinds not in ('[]', '<>') else ''}"
            f"<{'|'.join(trial_paths(spec))}>_<{'|'.join(spec.paths.views)}>")


def _check_one(value: str, valid: list[str] | tuple[str, ...], key: str) -> None:
    if value not in valid:
        raise ValueError(f"{key}: unknown {value!r}{_suggest(value, valid)}; valid: {', '.join(valid)}")


def parse_study(raw: Any, source: str = "<study>", stored: bool = False) -> StudySpec:
    """Validate a loaded YAML mapping into a :class:`StudySpec`; errors are ``InputError`` naming ``source``.

    ``stored``: ``raw`` is an existing study's ``study.yaml``: settings it lacks that have a legacy value
    (``base.pairing``) take it, so a study from before them resumes with its old meaning and hash.
    """
    try:
        if not isinstance(raw, dict):
            got = "an empty file" if raw is None else f"a {type(raw).__name__}"
            sections = ", ".join(f.name for f in dataclasses.fields(StudySpec))
            raise ValueError(f"expected a mapping at the top level (keys: {sections}), got {got}")
        raw = dict(raw)
        search = raw.get("search") or {}
        if not isinstance(search, dict):
            raise ValueError(f"search: expected a mapping, got {search!r}")
        search = dict(search)
        search["space"] = _space(search.get("space"))
        search["objectives"] = _objectives(search.get("objectives"))
        raw["search"] = search
        spec = _build(StudySpec, raw, "", stored)
        _check_names(spec)
        return spec
    except (ValueError, TypeError) as err:
        raise InputError(f"{source}: {err}") from None


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the safe loader's own message follows
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_study(path: str | Path, stored: bool = False) -> StudySpec:
    """Read and validate a study file (safe YAML loader, no duplicate keys); ``stored``: an existing
    study's ``study.yaml`` (see :func:`parse_study`)."""
    return parse_study(read_study_file(path), str(path), stored)


def read_study_file(path: str | Path) -> Any:
    """The YAML content of a study file, not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such study file (see search_spaces/ for examples)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the study file ({type(err).__name__}: {err})") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    return raw


def dump_study(spec: StudySpec) -> str:
    """The resolved spec (every default filled in) as YAML, readable by :func:`parse_study`."""
    raw = to_dict(spec)
    raw["search"]["space"] = {p.pop("name"): p for p in raw["search"]["space"]}
    return yaml.safe_dump(raw, sort_keys=False)
