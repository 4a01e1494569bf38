"""Study files are validated before anything starts: bad input exits 2 with one line naming file and key."""
from __future__ import annotations

import pytest
import yaml

from mmc_sweep.cli import main
from mmc_sweep.study.definition.spec import dump_study, load_study, parse_study
from study_files import TINY, write_study

REPO_PRESETS = ("quickstart", "cbft", "baselines", "connectivity")


def _run(path, capsys):
    code = main(["run", str(path), "--storage", str(path.parent / "store")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"finetune": {"epochs": 3, "lambda_barier": 1.0}}, "finetune.lambda_barier: unknown key (did you mean 'lambda_barrier'?)"),
        ({"finetune": {"method": "cbtf"}}, "finetune.method: unknown 'cbtf' (did you mean 'cbft'?)"),
        ({"search": {**TINY["search"], "sampler": "nsga3"}}, "search.sampler: unknown 'nsga3' (did you mean 'nsga2'?)"),
        ({"search": {**TINY["search"], "objectives": [{"metric": "acc_rand_cu", "mode": "max"}]}}, "did you mean 'acc_rand_cue'?"),
        ({"search": {**TINY["search"], "space": {"lr": {"type": "float", "low": 0.1, "high": 0.01}}}}, "search.space.lr: expected low < high"),
        ({"search": {**TINY["search"], "space": {"learning_rate": {"type": "float", "low": 0.1, "high": 1}}}}, "search.space.learning_rate: not a fine-tuning setting"),
        ({"search": {**TINY["search"], "num_samples": "many"}}, "search.num_samples: expected an integer"),
        ({"data": {"cue_proportion": 1.5}}, "data.cue_proportion: expected a number in [0, 1]"),
        ({"base": {"seeds": []}}, "base.seeds: expected a non-empty list"),
        ({"baselines": ["naive"]}, "baselines: unknown 'naive' (did you mean 'naive_ft'?)"),
        ({"resources": {"cpu": 0}}, "resources.cpu: expected a number > 0"),
        ({"modle": {"arch": "small_cnn"}}, "modle: unknown key (did you mean 'model'?)"),
        ({"finetune": {"n_clean": 5000}}, "finetune.n_clean: expected at most data.n_train"),
        ({"paths": {**TINY["paths"], "kinds": ["linear", "lmpc"]}}, "paths.kinds: unknown 'lmpc' (did you mean 'lmcp'?); valid: linear, lmcp, qmc"),
        ({"paths": {**TINY["paths"], "kinds": []}}, "paths.kinds: expected a non-empty list of distinct path kinds"),
        ({"paths": {**TINY["paths"], "align": {"method": "weights"}}}, "paths.align.method: expected one of ('activation', 'weight')"),
        ({"paths": {**TINY["paths"], "qmc": {"init": "zero"}}}, "paths.qmc.init: expected one of ('random', 'linear')"),
        ({"paths": {**TINY["paths"], "qmc": {"epochs": 2.5}}}, "paths.qmc.epochs: expected an integer"),
        ({"paths": {**TINY["paths"], "qmc": {"epoch": 2}}}, "paths.qmc.epoch: unknown key (did you mean 'epochs'?)"),
        ({"base": {"control_pair": True}}, "base.control_pair: expected at least two base.seeds"),
        ({"base": {"pairing": "twins"}}, "base.pairing: expected one of ('independent', 'shared')"),
        ({"finetune": {"schedule": "step"}}, "finetune.schedule: expected one of ('cosine', 'constant')"),
        ({"paths": {**TINY["paths"], "views_cue": "cued"}}, "paths.views_cue: expected one of ('data', 'full', 'train')"),
        ({"paths": {**TINY["paths"], "bn_reset": {"batches": "everything"}}}, "paths.bn_reset.batches: expected an integer >= 1 or 'all'"),
        ({"paths": {**TINY["paths"], "qmc": {"bn_stats": "reset"}}}, "paths.qmc.bn_stats: expected one of ('average', 'init')"),
        ({"paths": {**TINY["paths"], "qmc": {"schedule": "step"}}}, "paths.qmc.milestones: expected at least one epoch"),
        # a barrier of a kind the study does not measure is never reported: refused, with the close match
        ({"search": {**TINY["search"], "objectives": [{"metric": "barrier_loss_qmc_cue_to_ft_cue", "mode": "max"}]}},
         "unknown metric 'barrier_loss_qmc_cue_to_ft_cue' (did you mean 'barrier_loss_cue_to_ft_cue'?)"),
        ({"search": {**TINY["search"], "objectives": [{"metric": "barrier_loss_cue_to_ft_clen", "mode": "max"}]}},
         "did you mean 'barrier_loss_cue_to_ft_clean'?"),
        ({"search": {**TINY["search"], "objectives": [{"metric": "cost_gpu_s", "mode": "min"}]}},
         "search.objectives.metric: expected cost_gpu_s only with resources.gpu > 0"),
    ],
)
def test_bad_study_files_exit_2_naming_file_and_key(tmp_path, capsys, changes, expected):
    path = write_study(tmp_path, "bad", **changes)
    code, err = _run(path, capsys)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and str(path) in line and expected in line, line
    assert not (tmp_path / "store").exists()  # nothing was started or written


def test_invalid_yaml_and_missing_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ndata: {dataset: shapes\n")
    code, err = _run(path, capsys)
    assert code == 2 and "not valid YAML" in err and str(path) in err
    code, err = _run(tmp_path / "absent.yaml", capsys)
    assert code == 2 and "no such study file" in err


def test_yaml_is_loaded_safely(tmp_path, capsys):
    path = tmp_path / "unsafe.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    code, err = _run(path, capsys)
    assert code == 2 and "not valid YAML" in err


def test_bad_command_line_values_exit_2(tmp_path, capsys):
    path = write_study(tmp_path, "ok")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--gpus-per-trial", "-1"])
    assert exit_info.value.code == 2


def test_not_a_study_folder(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err


def test_what_a_trial_costs_is_a_valid_objective():
    raw = {**TINY, "resources": {"cpu": 1, "gpu": 0.5},
           "search": {**TINY["search"], "objectives": [{"metric": "cost_paths_s", "mode": "min"},
                                                      {"metric": "cost_gpu_s", "mode": "min"}]}}
    assert [o.metric for o in parse_study(raw).search.objectives] == ["cost_paths_s", "cost_gpu_s"]


def test_barriers_of_every_measured_kind_are_valid_objectives():
    raw = {**TINY, "paths": {**TINY["paths"], "kinds": ["linear", "lmcp", "qmc"]},
           "search": {**TINY["search"], "objectives": [{"metric": "barrier_loss_qmc_cue_to_ft_cue", "mode": "max"},
                                                      {"metric": "barrier_mid_acc_lmcp_ft_to_clean_rand_img", "mode": "min"},
                                                      {"metric": "barrier_acc_ft_to_clean_clean", "mode": "min"}]}}
    spec = parse_study(raw)
    assert spec.paths.kinds == ("linear", "lmcp", "qmc") and spec.paths.qmc.epochs == 4  # defaults filled in


@pytest.mark.parametrize("preset", REPO_PRESETS)
def test_presets_are_valid_and_round_trip(preset):
    spec = load_study(f"search_spaces/{preset}.yaml")
    assert parse_study(yaml.safe_load(dump_study(spec))).hash == spec.hash


def test_an_address_where_no_ray_listens_exits_2(tmp_path, capsys):
    path = write_study(tmp_path, "nowhere")
    code = main(["run", str(path), "--storage", str(tmp_path / "store"), "--address", "127.0.0.1:1", "--connect-timeout", "5"])
    assert code == 2
    assert "--address 127.0.0.1:1: no Ray cluster listens there" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()
