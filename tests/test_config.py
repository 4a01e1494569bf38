"""Specs validate themselves, and their content hash is stable."""
import dataclasses

import pytest

from mmc_sweep.config import (BaseModelSpec, BNResetSpec, DataSpec, FinetuneSpec, ModelSpec, PathSpec, QMCSpec, TrainSpec,
                              _help, legacy_values, spec_hash)


def test_hash_is_pinned():
    # If this fails, a spec's fields or defaults changed: every stored artifact's name changes with it.
    # Update the pin deliberately (and SCHEMA_VERSION if old artifacts are no longer valid).
    assert spec_hash(DataSpec(), ModelSpec(), TrainSpec()) == "2c7254dde5e190a0"


def test_hashes_of_stored_artifacts_survive_the_settings_added_since():
    # pinned before finetune.schedule, finetune.batching, paths.views_cue, paths.bn_reset.batches: all, the QMC
    # recipe settings and TrainSpec.stream existed: at their defaults (stream '' = the seed's own; batching at its
    # legacy value, ragged) nothing stored is renamed; even batches, the new default, are a new fine-tuning
    assert spec_hash(FinetuneSpec(batching="ragged")) == "9388abc159d0e29f"
    assert spec_hash(FinetuneSpec()) != "9388abc159d0e29f"
    assert spec_hash(PathSpec()) == "4d7d638c13bab637"
    assert spec_hash(BaseModelSpec("cue")) == "75890ebc4f8b72f3"
    assert spec_hash(BaseModelSpec("clean")) == "7cfbaaa04eb99423"
    assert spec_hash(BaseModelSpec("clean", train=TrainSpec(stream="clean"))) != "7cfbaaa04eb99423"
    for changed in (FinetuneSpec(schedule="constant", batching="ragged"),):
        assert spec_hash(changed) != "9388abc159d0e29f"
    for changed in (PathSpec(views_cue="full"), PathSpec(bn_reset=BNResetSpec(batches="all")),
                    PathSpec(qmc=QMCSpec(nesterov=False)), PathSpec(qmc=QMCSpec(bn_stats="init")),
                    PathSpec(qmc=QMCSpec(schedule="step", milestones=(10,)))):
        assert spec_hash(changed) != "4d7d638c13bab637", changed


def test_a_legacy_value_hashes_as_if_the_field_did_not_exist():
    @dataclasses.dataclass(frozen=True)
    class Before:
        x: int = _help("", 1)

    @dataclasses.dataclass(frozen=True)
    class After:  # a field added later whose default is a new behaviour; "old" is the behaviour from before
        x: int = _help("", 1)
        mode: str = _help("", "new", legacy="old")

    Before.__name__ = After.__name__ = "Spec"  # the class name is part of the hash
    assert spec_hash(After(mode="old")) == spec_hash(Before())
    assert spec_hash(After()) != spec_hash(Before())
    assert legacy_values(After) == {"mode": "old"} and legacy_values(Before) == {}
    with pytest.raises(TypeError):
        _help("", "new", added=True, legacy="old")


def test_hash_covers_every_field_including_defaults():
    other = {"dataset": "shapes_dominoes", "cue": "dominoes", "cue_proportion": 0.5, "seed": 1, "num_classes": 5,
             "image_size": 24, "n_train": 999, "n_test": 99, "root": "/data", "box_size": 3, "box_layout": "paper",
             "views_cue": "train", "max_files_train": 500, "max_files_test": 100}
    assert set(other) == {f.name for f in dataclasses.fields(DataSpec)}
    for name, value in other.items():
        start = DataSpec(cue="dominoes") if name == "dataset" else DataSpec()  # dominoes data needs its cue
        assert spec_hash(dataclasses.replace(start, **{name: value})) != spec_hash(start), name
    assert spec_hash(DataSpec(), TrainSpec()) != spec_hash(TrainSpec(), DataSpec())


def test_settings_added_later_change_the_hash_only_away_from_their_defaults():
    # the pin above holds with these fields at their defaults: stored artifacts keep their names
    step = TrainSpec(schedule="step", milestones=(40, 80))
    assert spec_hash(step) != spec_hash(TrainSpec())
    assert spec_hash(TrainSpec(nesterov=False)) != spec_hash(TrainSpec())
    assert spec_hash(FinetuneSpec(update="alternating")) != spec_hash(FinetuneSpec())
    # and at their defaults they leave the hash as it was pinned before they existed (test_hash_is_pinned,
    # test_hashes_of_stored_artifacts_survive_the_settings_added_since)


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: DataSpec(cue_proportion=1.5), "data.cue_proportion"),
        (lambda: DataSpec(dataset="mnist"), "data.dataset"),
        (lambda: DataSpec(dataset="cifar10"), "data.root"),
        (lambda: TrainSpec(lr=0), "train.lr"),
        (lambda: FinetuneSpec(warmup_epochs=6, epochs=6), "finetune.warmup_epochs"),
        (lambda: FinetuneSpec(t_distribution="gauss"), "finetune.t_distribution"),
        (lambda: BNResetSpec(mode="batch"), "paths.bn_reset.mode"),
        (lambda: PathSpec(views=("clean", "blurry")), "paths.views"),
        (lambda: PathSpec(alphas=1), "paths.alphas"),
        (lambda: ModelSpec(width=-1), "model.width"),
        (lambda: TrainSpec(stream="a b"), "train.stream"),
        (lambda: FinetuneSpec(schedule="step"), "finetune.schedule"),
        (lambda: PathSpec(views_cue="most"), "paths.views_cue"),
        (lambda: BNResetSpec(batches="every"), "paths.bn_reset.batches"),
        (lambda: QMCSpec(bn_stats="ema"), "paths.qmc.bn_stats"),
        (lambda: QMCSpec(schedule="step"), "paths.qmc.milestones"),
    ],
)
def test_bad_values_name_the_key(make, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make()


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DataSpec().seed = 3
