"""--set KEY=VALUE and --smoke: overrides validated like the file, and the tiny version of a study."""
from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from mmc_sweep.cli import main
from mmc_sweep.study.definition.overrides import SMOKE_CLEAN, SMOKE_TRIALS, apply_sets, smoke
from mmc_sweep.study.definition.spec import dump_study, load_study, read_study_file
from study_files import write_study


def test_set_overrides_nested_keys_with_typed_values(tmp_path):
    path = write_study(tmp_path, "sets")
    spec = apply_sets(read_study_file(path), ["finetune.lr=0.01", "data.n_train=500", "base.seeds=[0, 1]",
                                              "search.space.lr.high=0.2", "paths.kinds=[linear, lmcp]"], str(path))
    assert spec.finetune.lr == 0.01 and spec.data.n_train == 500 and spec.base.seeds == (0, 1)
    assert next(p for p in spec.search.space if p.name == "lr").high == 0.2
    assert spec.paths.kinds == ("linear", "lmcp")
    resolved = yaml.safe_load(dump_study(spec))  # what study.yaml records
    assert resolved["finetune"]["lr"] == 0.01 and resolved["data"]["n_train"] == 500
    assert load_study(path).finetune.lr != 0.01  # the file itself is untouched


@pytest.mark.parametrize("item, named", [
    ("finetune.lr=abc", "finetune.lr: expected a number"),
    ("finetune.lrr=0.1", "finetune.lrr: unknown key"),
    ("finetune", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("data..root=x", "expected KEY=VALUE"),
    ("data.n_train=5", "data.n_train"),
    ("finetune.method=sgd", "finetune.method: unknown 'sgd'"),
    ("finetune.epochs.x=1", "finetune.epochs is 3, not a section"),
])
def test_bad_set_is_one_line_exit_2_and_writes_nothing(tmp_path, item, named):
    path = write_study(tmp_path, "bad_set")
    store = tmp_path / "store"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--storage", str(store), "--set", item])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err.getvalue()
    assert f"--set {item}" in lines[0] and named in lines[0], lines[0]
    assert not store.exists()


def test_smoke_shrinks_sizes_and_keeps_the_science(tmp_path):
    spec = load_study(write_study(tmp_path, "big", data={"n_train": 5000, "n_test": 1000}, base={"epochs": 9},
                                  finetune={"epochs": 7, "n_clean": 800, "warmup_epochs": 2},
                                  search={"num_samples": 40, "space": {"n_clean": {"type": "int", "low": 200, "high": 2000},
                                                                       "lr": {"type": "float", "low": 0.001, "high": 0.1}}}))
    small = smoke(spec)
    assert small.name == "big_smoke"
    assert (small.data.n_train, small.data.n_test) == (600, 200)
    assert small.base.epochs == 2 and small.finetune.epochs == 2 and small.finetune.warmup_epochs == 1
    assert small.finetune.n_clean == SMOKE_CLEAN and small.search.num_samples == SMOKE_TRIALS
    n_clean = next(p for p in small.search.space if p.name == "n_clean")
    assert n_clean.high == SMOKE_CLEAN and n_clean.low < n_clean.high
    assert next(p for p in small.search.space if p.name == "lr") == next(p for p in spec.search.space if p.name == "lr")
    for same in ("dataset", "cue", "cue_proportion"):
        assert getattr(small.data, same) == getattr(spec.data, same)
    assert small.model.arch == spec.model.arch and small.finetune.method == spec.finetune.method
    assert small.paths.kinds == spec.paths.kinds and small.search.objectives == spec.search.objectives


def test_smoke_of_every_preset_validates():
    """A searched warm-up (cbft.yaml searches warmup_epochs up to 2) is cut below the smoke's epochs."""
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("search_spaces/*.yaml")):
        small = smoke(load_study(path))
        warmups = [p for p in small.search.space if p.name == "warmup_epochs"]
        assert all(p.high < small.finetune.epochs for p in warmups), path
        if path.stem == "sample_efficiency":  # searched n_clean choices: those that fit the smoke's images
            assert next(p for p in small.search.space if p.name == "n_clean").choices == (64,)
