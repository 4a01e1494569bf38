"""base.pairing: a seed's clean reference is the cue models' twin only when a study asks for twins;
old studies and stored base models keep their hashes and their meaning."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, spec_hash, stream_seed
from mmc_sweep.data import build_task
from mmc_sweep.errors import InputError
from mmc_sweep.experiment import new_model, train_base
from mmc_sweep.study.definition.folder import check_study_name, load_resumable
from mmc_sweep.study.definition.spec import BaseSpec, StudySpec, dump_study, parse_study
from mmc_sweep.study.storage.store import Store
from mmc_sweep.train import epoch_generator
from study_files import TINY

CPU = torch.device("cpu")
# pinned before base.pairing and finetune.batching existed (twins and ragged batches: every study till then)
OLD_TINY_STUDY, OLD_TINY_CLEAN, OLD_TINY_CUE = "de18f2b2f7216bf9", "9571788b16930d9f", "902a745319a21cda"


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("pairing", ["shared", "independent"])
def test_the_clean_reference_is_a_twin_only_when_shared(pairing):
    # no cue in the training set: both base models train on the very same images, so only the
    # initialisation and the batch order can tell them apart
    study = StudySpec(data=DataSpec(n_train=200, n_test=50, cue_proportion=0.0), model=ModelSpec(width=8),
                      base=BaseSpec(epochs=1, batch_size=32, pairing=pairing))
    keys = {kind: study.base_model(kind, 0) for kind in ("cue", "clean")}
    task = build_task(keys["cue"].data)
    twins = pairing == "shared"
    init = {kind: new_model(task, k.model, k.train.init_seed, CPU).state_dict() for kind, k in keys.items()}
    assert _same(init["cue"], init["clean"]) == twins  # the weights train_base starts from
    order = {kind: [torch.randperm(len(task.train), generator=epoch_generator(k.train.order_seed, e)) for e in range(2)]
             for kind, k in keys.items()}
    assert all(torch.equal(a, b) for a, b in zip(order["cue"], order["clean"])) == twins  # the batches fit draws
    trained = {kind: train_base(task, kind, k.model, k.train, CPU).state_dict() for kind, k in keys.items()}
    assert _same(trained["cue"], trained["clean"]) == twins
    if not twins:  # derived from (seed, stream 'clean'), recorded in the trial rows and the models' info.json
        clean = keys["clean"].train
        assert (clean.stream, clean.init_seed, clean.order_seed) == \
            ("clean", stream_seed(0, "clean", "init"), stream_seed(0, "clean", "order"))
        assert len({clean.init_seed, clean.order_seed, 0}) == 3


def _before() -> dict:
    """TINY as it was before base.pairing and finetune.batching: their legacy values."""
    return {**TINY, "base": {**TINY["base"], "pairing": "shared"}, "finetune": {**TINY["finetune"], "batching": "ragged"}}


def test_cue_models_and_shared_clean_references_keep_their_hashes():
    shared = parse_study(_before())
    independent = parse_study(TINY)  # the default for a new study
    assert independent.base.pairing == "independent"
    assert shared.hash == OLD_TINY_STUDY and independent.hash != OLD_TINY_STUDY
    for spec in (shared, independent):
        assert spec_hash(spec.base_model("cue", 0)) == OLD_TINY_CUE  # cue models never changed
    assert spec_hash(shared.base_model("clean", 0)) == OLD_TINY_CLEAN
    assert spec_hash(independent.base_model("clean", 0)) != OLD_TINY_CLEAN  # another model: never the twin's file
    # the default spec, pinned before base.pairing existed
    assert StudySpec(base=BaseSpec(pairing="shared"), finetune=FinetuneSpec(batching="ragged")).hash == "0563a70473646d15"


def _old_study_folder(tmp_path) -> tuple[Store, StudySpec]:
    """A study.yaml as written before base.pairing and finetune.batching existed (the resolved spec without them)."""
    spec = parse_study(_before())
    raw = yaml.safe_load(dump_study(spec))
    del raw["base"]["pairing"], raw["finetune"]["batching"]
    folder = tmp_path / spec.name
    folder.mkdir()
    (folder / "study.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return Store.open(str(tmp_path)), spec


def test_a_study_from_before_pairing_resumes_as_shared(tmp_path):
    store, old = _old_study_folder(tmp_path)
    resumed, options = load_resumable(str(tmp_path / old.name))
    assert resumed.base.pairing == "shared" and resumed.finetune.batching == "ragged" and resumed.hash == OLD_TINY_STUDY
    assert spec_hash(resumed.base_model("clean", 0)) == OLD_TINY_CLEAN  # it finds its stored base models
    check_study_name(store, resumed)  # the same study: it resumes
    raw = yaml.safe_load((tmp_path / old.name / "study.yaml").read_text())
    new = parse_study(raw)  # the same file as a *new* study file: the new defaults
    assert (new.base.pairing, new.finetune.batching) == ("independent", "even")
    with pytest.raises(InputError, match="exists with another spec"):  # running it again under the old name
        check_study_name(store, parse_study(raw))


def test_a_new_study_yaml_records_its_pairing(tmp_path):
    spec = parse_study(TINY)
    assert yaml.safe_load(dump_study(spec))["base"]["pairing"] == "independent"
    back = parse_study(yaml.safe_load(dump_study(spec)), stored=True)
    assert back.base.pairing == "independent" and back.hash == spec.hash
    other = dataclasses.replace(spec, base=dataclasses.replace(spec.base, pairing="shared"))
    assert other.hash != spec.hash
