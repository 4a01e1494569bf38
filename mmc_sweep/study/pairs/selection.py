"""Which models a ``pairs`` run measures: ``--models base,baselines,top:K,<trial id>,...`` resolved to
model references, each with the spec that content-addresses it (a base model's ``BaseModelSpec``, a
fine-tuned model's ``FinetunedSpec``). Every refusal here happens before Ray starts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mmc_sweep.config import BaseModelSpec, FinetunedSpec, spec_hash
from mmc_sweep.errors import InputError
from mmc_sweep.models import create_model
from mmc_sweep.paths import kind_names
from mmc_sweep.paths.layers import model_layers
from mmc_sweep.study.definition.spec import StudySpec
from mmc_sweep.study.storage.artifacts import has_base
from mmc_sweep.study.storage.results import PARAM_TYPES, read_trials
from mmc_sweep.study.storage.store import Store


@dataclass(frozen=True)
class ModelRef:
    """One model of the matrix: its id (as in ``trials``: ``base_cue_s0``, ``naive_ft_s0``, a search
    trial's id; ``base_cue_p<proportion>_s<seed>`` for a cue model of another proportion than the
    study's), its content key, and what it is (for the analysis of mechanism groups)."""

    id: str
    key: BaseModelSpec | FinetunedSpec
    method: str
    cue_proportion: float
    base_seed: int

    @property
    def hash(self) -> str:
        return spec_hash(self.key)


def base_refs(spec: StudySpec) -> list[ModelRef]:
    refs = []
    for key in spec.base_models("cue") + spec.base_models("clean"):
        seed, proportion = key.train.seed, key.data.cue_proportion
        own = key.kind == "clean" or proportion == spec.data.cue_proportion
        name = f"base_{key.kind}_s{seed}" if own else f"base_cue_p{proportion:g}_s{seed}"
        refs.append(ModelRef(name, key, f"base_{key.kind}", proportion, seed))
    return refs


def finetuned_ref(spec: StudySpec, row: dict) -> ModelRef:
    """A fine-tuned model as its trial row recorded it: the cue model it started from and every setting."""
    settings = {name: row[f"param_{name}"] for name in PARAM_TYPES if row.get(f"param_{name}") is not None}
    ft = dataclasses.replace(spec.finetune, **settings, method=row["method"])
    cue = spec.base_model("cue", int(row["base_seed"]), row["cue_proportion"])
    key = cue if ft.method == "none" else FinetunedSpec(cue, ft)  # `none`: the cue model itself
    return ModelRef(row["trial_id"], key, row["method"], row["cue_proportion"], int(row["base_seed"]))


def _top(rows: list[dict], k: int) -> list[dict]:
    """The k best completed search trials by the analysis' rule (:func:`~mmc_sweep.analysis.tables.rank_search`)."""
    import pandas as pd

    from mmc_sweep.analysis.tables import rank_search

    ranked = rank_search(pd.DataFrame(rows)) if rows else pd.DataFrame(columns=["trial_id"])
    best = set(ranked["trial_id"].head(k))
    return [r for r in rows if r["trial_id"] in best and r["role"] == "search"]


def select_models(spec: StudySpec, store: Store, selection: str) -> list[ModelRef]:
    """The models ``selection`` names, in its order, each once; ``InputError`` (exit 2, one line)
    for an unknown name, a trial that did not complete, a base model not stored, or fewer than two."""
    rows = read_trials(store, spec.name).to_pylist()
    done = {r["trial_id"]: r for r in rows if r["status"] == "completed" and r["role"] in ("baseline", "search")}
    bases = {ref.id: ref for ref in base_refs(spec)}
    chosen: dict[str, ModelRef] = {}
    for token in [t.strip() for t in selection.split(",") if t.strip()]:
        if token == "base":
            refs = list(bases.values())
        elif token in bases:
            refs = [bases[token]]
        elif token == "baselines":
            refs = [finetuned_ref(spec, r) for r in done.values() if r["role"] == "baseline"]
        elif token.startswith("top:"):
            k = token[4:]
            if not k.isdigit() or int(k) < 1:
                raise InputError(f"--models: {token!r}: expected top:K with K a whole number >= 1")
            refs = [finetuned_ref(spec, r) for r in _top(list(done.values()), int(k))]
        elif token in done:
            refs = [finetuned_ref(spec, done[token])]
        else:
            known = {r["trial_id"]: r["status"] for r in rows}
            why = f"trial {token!r} is {known[token]}, not completed" if token in known else f"no model or trial {token!r}"
            raise InputError(f"--models: {why}; expected base, baselines, top:K, base model ids ({', '.join(bases)}) "
                             f"or ids of completed fine-tuning trials")
        for ref in refs:
            chosen.setdefault(ref.id, ref)
    if len(chosen) < 2:
        raise InputError(f"--models: {selection!r} names {len(chosen)} model(s) of study {spec.name}; a matrix needs at least two")
    for ref in chosen.values():
        base = ref.key if isinstance(ref.key, BaseModelSpec) else ref.key.base
        if not has_base(store, base):
            raise InputError(f"--models: base model {base.kind} (seed {base.train.seed}, cue_proportion "
                             f"{base.data.cue_proportion:g}) of {ref.id} is not stored in {store.uri_of('models')}: "
                             f"run the study first (python run_study.py resume {store.uri_of(spec.name)})")
    return list(chosen.values())


def check_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in kind_names()]
    if not kinds or unknown:
        raise InputError(f"--kinds: unknown path kind(s) {unknown or [text]}; valid: {', '.join(kind_names())}")
    return kinds


def check_layers(spec: StudySpec, text: str | None) -> tuple[str, ...] | None:
    """None (no layer-wise barriers), or the layers ``--layers`` names (``all``: every layer)."""
    if text is None:
        return None
    names = tuple(model_layers(create_model(spec.model.arch, 10, width=spec.model.width)))  # class count: not a layer's name
    if text == "all":
        return names
    wanted = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in wanted if n not in names]
    if not wanted or unknown:
        raise InputError(f"--layers: unknown layer(s) {unknown or [text]} of {spec.model.arch}; valid: all, {', '.join(names)}")
    return wanted


def pair_list(models: list[ModelRef]) -> list[tuple[ModelRef, ModelRef]]:
    """Every unordered pair, A before B in selection order."""
    return [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]

