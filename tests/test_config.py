"""Specs validate themselves, and their content hash is stable."""
import dataclasses

import pytest

from mmc_sweep.config import BNResetSpec, DataSpec, FinetuneSpec, ModelSpec, PathSpec, TrainSpec, spec_hash


def test_hash_is_pinned():
    # If this fails, a spec's fields or defaults changed: every stored artifact's name changes with it.
    # Update the pin deliberately (and SCHEMA_VERSION if old artifacts are no longer valid).
    assert spec_hash(DataSpec(), ModelSpec(), TrainSpec()) == "2c7254dde5e190a0"


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
    assert spec_hash(dataclasses.replace(TrainSpec(), nesterov=True)) == spec_hash(TrainSpec())


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
    ],
)
def test_bad_values_name_the_key(make, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make()


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DataSpec().seed = 3
