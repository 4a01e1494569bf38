"""A corpus of bad input: every malformed study file and command line exits 2 with one error line
naming the file or option and the key, creates nothing and starts no Ray.

All cases run in ONE fresh Python process (this file, run as a script, is the driver): it calls
``mmc_sweep.cli.main`` on each command line with stdout and stderr captured at the file-descriptor
level (so rich, argparse and anything written by C code are caught alike) and records the exit
code, the output, which watched paths exist afterwards and whether Ray was started.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import write_tiny_fashion_mnist
from study_files import TINY, search, space, write_study, write_text


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: list[str]  # substrings of the one error line: the file or option, and the key
    watch: list[str] = field(default_factory=list)  # paths that must not exist afterwards
    keep: list[str] = field(default_factory=list)  # folders whose contents must not change


# ---- the corpus -----------------------------------------------------------------------------------

def _cifar_roots(base: Path, good_root: str) -> dict[str, str]:
    """CIFAR-10 roots that are wrong in one way each (the good one is the shared tiny fixture)."""
    import shutil

    roots = {"good": good_root, "missing": str(base / "no_such_root")}
    (base / "root_file").write_text("not a folder")
    roots["file"] = str(base / "root_file")
    for name in ("garbage", "shape", "folder", "labels", "truncated"):
        root = base / f"cifar_{name}"
        shutil.copytree(Path(good_root) / "cifar-10-batches-py", root / "cifar-10-batches-py")
        roots[name] = str(root)
    batch = Path(roots["garbage"]) / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(b"this is not a pickle\n" * 10)
    with open(Path(roots["shape"]) / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": np.zeros((6, 100), dtype=np.uint8), "labels": [0] * 6}, f)
    folder = Path(roots["folder"]) / "cifar-10-batches-py" / "test_batch"
    folder.unlink()
    folder.mkdir()  # a folder where a batch file should be: unreadable as a file
    with open(Path(roots["labels"]) / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((6, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3, 4, 10]}, f)
    _cut_in_half(Path(roots["truncated"]) / "cifar-10-batches-py" / "data_batch_4")  # a copy that stopped half-way
    # the Dominoes' FashionMNIST idx files beside the good CIFAR-10 batches: one cut short, one of another format
    for name, damage in (("fashion_truncated", _cut_in_half), ("fashion_foreign", lambda p: p.write_bytes(b"PK\x03\x04zip"))):
        root = base / name
        shutil.copytree(Path(good_root) / "cifar-10-batches-py", root / "cifar-10-batches-py")
        write_tiny_fashion_mnist(root)
        damage(root / "FashionMNIST" / "raw" / ("t10k-images-idx3-ubyte" if name == "fashion_truncated" else "train-labels-idx1-ubyte"))
        roots[name] = str(root)
    return roots


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _existing_study(storage: Path, name: str = "clash") -> Path:
    """A study folder as a run leaves it before its first trial: the resolved spec in study.yaml."""
    from mmc_sweep.study.definition.spec import dump_study, parse_study

    folder = storage / name
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(dump_study(parse_study({**TINY, "name": name})))
    return folder


HELD = ("held", "held")  # under the corpus's folder: a study whose lock the test holds while the cases run


def _optuna_study_of_another_folder(db: Path, name: str) -> str:
    """A sqlite Optuna storage holding a study ``name`` that another study folder owns; its URL."""
    import optuna

    from mmc_sweep.study.search.record import STUDY_URI

    db.parent.mkdir(parents=True)
    url = f"sqlite:///{db}"
    optuna.create_study(study_name=name, storage=url).set_user_attr(STUDY_URI, "/elsewhere/studies/" + name)
    return url


def build_corpus(tmp: Path, cifar_root: str) -> list[Case]:
    files, stores = tmp / "files", tmp / "stores"
    files.mkdir()
    roots = _cifar_roots(tmp, cifar_root)
    study = _existing_study(tmp / "existing")
    good = write_study(files, "good")
    regular_file = tmp / "regular_file"
    regular_file.write_text("a file, not a folder")
    odd = tmp / "odd [bold]folder[red]"
    odd.mkdir()
    cases: list[Case] = []

    def study_case(case_id: str, expect: list[str], **changes) -> None:
        path = write_study(files, case_id, **changes)
        store = stores / case_id
        cases.append(Case(case_id, ["run", str(path), "--storage", str(store)], [str(path), *expect], [str(store)]))

    def text_case(case_id: str, text: str | bytes, expect: list[str]) -> None:
        path = write_text(files, f"{case_id}.yaml", text)
        store = stores / case_id
        cases.append(Case(case_id, ["run", str(path), "--storage", str(store)], [str(path), *expect], [str(store)]))

    def option_case(case_id: str, options: list[str], expect: list[str], watch: list[str] = ()) -> None:
        store = stores / case_id
        cases.append(Case(case_id, ["run", str(good), "--storage", str(store), *options], expect, [str(store), *watch]))

    def cifar(root: str, **changes) -> dict:
        return {"data": {"dataset": "cifar10", "root": root, **changes}}

    # unknown keys, at every level
    study_case("unknown_top_key", ["modle: unknown key", "did you mean 'model'"], modle={"arch": "small_cnn"})
    study_case("unknown_data_key", ["data.datset: unknown key", "did you mean 'dataset'"], data={"datset": "shapes"})
    study_case("unknown_finetune_key", ["finetune.lambda_barier: unknown key"], finetune={"lambda_barier": 1.0})
    study_case("unknown_search_key", ["search.num_sample: unknown key"], search=search(num_sample=3))
    study_case("unknown_param_key", ["search.space.lr.lowe: unknown key", "did you mean 'low'"],
               search=space(lr={"type": "float", "lowe": 0.01, "high": 0.1}))
    study_case("unknown_objective_key", ["search.objectives.weight: unknown key"],
               search=search(objectives=[{"metric": "acc_clean", "mode": "max", "weight": 1}]))
    study_case("unknown_bn_reset_key", ["paths.bn_reset.batchs: unknown key"], paths={"bn_reset": {"batchs": 2}})
    study_case("unknown_failure_key", ["failure.max_failure: unknown key", "did you mean 'max_failures'"],
               failure={"max_failure": 2})
    study_case("unknown_resources_key", ["resources.gpus: unknown key"], resources={"gpus": 1})
    # wrong types
    study_case("epochs_not_integer", ["finetune.epochs: expected an integer", "'ten'"], finetune={"epochs": "ten"})
    study_case("seeds_not_list", ["base.seeds: expected a list"], base={"seeds": 0})
    study_case("section_not_mapping", ["data: expected a mapping"], data="shapes")
    study_case("search_not_mapping", ["search: expected a mapping"], search=[1, 2])
    study_case("bool_not_bool", ["base.control_pair: expected true or false"], base={"control_pair": "yes"})
    study_case("space_entry_not_mapping", ["search.space.lr: expected a mapping"], search=space(lr=0.1))
    study_case("negative_sampler_seed", ["search.seed: expected an integer in [0, 2**32)"], search=search(seed=-1))
    # empty ranges
    study_case("empty_float_range", ["search.space.lr: expected low < high"],
               search=space(lr={"type": "float", "low": 0.1, "high": 0.01}))
    study_case("empty_int_range", ["search.space.n_clean: expected low < high"],
               search=space(n_clean={"type": "int", "low": 50, "high": 50}))
    study_case("empty_choices", ["search.space.t_distribution.choices: expected a non-empty list"],
               search=space(t_distribution={"type": "categorical", "choices": []}))
    # not YAML, or not a mapping
    text_case("yaml_syntax", "name: x\ndata: {dataset: shapes\n", ["not valid YAML"])
    text_case("yaml_duplicate_key", yaml.safe_dump({**TINY, "name": "dup"}, sort_keys=False) + "finetune: {epochs: 2}\n",
              ["not valid YAML", "duplicate key 'finetune'"])
    text_case("empty_file", "", ["expected a mapping at the top level", "got an empty file"])
    text_case("list_at_top", "- name: x\n- data: {}\n", ["expected a mapping at the top level", "got a list"])
    text_case("not_utf8", b"name: \xff\xfe\x00bad\n", ["cannot read the study file"])
    # objectives that no trial reports
    study_case("objective_typo", ["search.objectives.metric: unknown metric 'acc_rand_cu'", "did you mean 'acc_rand_cue'",
                                  "valid: acc_clean"],
               search=search(objectives=[{"metric": "acc_rand_cu", "mode": "max"}]))
    study_case("objective_view_not_measured", ["search.objectives.metric", "'barrier_loss_cue_to_ft_rand_img'", "_<clean|cue>"],
               paths={"views": ["clean", "cue"]},
               search=search(objectives=[{"metric": "barrier_loss_cue_to_ft_rand_img", "mode": "max"}]))
    study_case("objective_kind_not_measured", ["search.objectives.metric", "'barrier_loss_qmc_cue_to_ft_cue'"],
               search=search(objectives=[{"metric": "barrier_loss_qmc_cue_to_ft_cue", "mode": "max"}]))
    study_case("objective_path_of_method_none", ["search.objectives.metric", "'barrier_acc_cue_to_ft_cue'", "<ft_to_clean>"],
               search={**space(method={"type": "categorical", "choices": ["none", "naive_ft"]}),
                       "objectives": [{"metric": "barrier_acc_cue_to_ft_cue", "mode": "max"}]})
    study_case("objective_twice", ["search.objectives.metric: expected each metric once", "acc_clean"],
               search=search(objectives=[{"metric": "acc_clean", "mode": "max"}, {"metric": "acc_clean", "mode": "min"}]))
    study_case("objective_mode", ["search.objectives.mode: expected max or min", "'maximize'"],
               search=search(objectives=[{"metric": "acc_clean", "mode": "maximize"}]))
    # searched settings of the wrong type, steps the sampler would drop
    study_case("int_setting_searched_as_float", ["search.space.epochs.type: expected 'int' or 'categorical'", "'float'"],
               search=space(epochs={"type": "float", "low": 1, "high": 5}))
    study_case("float_setting_searched_as_int", ["search.space.lambda_barrier.type: expected 'float' or 'categorical'", "'int'"],
               search=space(lambda_barrier={"type": "int", "low": 1, "high": 5}))
    study_case("string_setting_searched_as_float", ["search.space.t_distribution.type: expected 'categorical'"],
               search=space(t_distribution={"type": "float", "low": 0, "high": 1}))
    study_case("choices_of_wrong_type", ["search.space.epochs.choices: expected integers", "[1.5, 2]"],
               search=space(epochs={"type": "categorical", "choices": [1.5, 2]}))
    study_case("string_choices_numbers", ["search.space.t_distribution.choices: expected strings"],
               search=space(t_distribution={"type": "categorical", "choices": [1, 2]}))
    study_case("step_with_log", ["search.space.lr.step: expected no step with log: true", "0.01"],
               search=space(lr={"type": "float", "low": 0.01, "high": 0.1, "log": True, "step": 0.01}))
    study_case("int_fractional_step", ["search.space.n_clean.step: expected an integer step", "2.5"],
               search=space(n_clean={"type": "int", "low": 40, "high": 100, "step": 2.5}))
    study_case("range_end_not_a_setting", ["search.space.lr.low: expected a number > 0", "0.0"],
               search=space(lr={"type": "float", "low": 0, "high": 0.1}))
    study_case("asha_on_an_unmeasured_metric", ["search.asha.metric: expected train_loss (epoch_metrics: loss", "acc_clean"],
               search=search(scheduler="asha", asha={"metric": "acc_clean"}), epoch_metrics="loss")
    study_case("epoch_metrics_unknown", ["epoch_metrics: expected one of views, loss", "all"], epoch_metrics="all")
    study_case("grid_without_step", ["search.space.lr: expected `step` or type categorical"], search=search(sampler="grid"))
    study_case("base_seed_not_trained", ["search.space.base_seed.choices: expected seeds listed in base.seeds"],
               search=space(base_seed={"type": "categorical", "choices": [0, 7]}))
    # clean images the pool cannot supply
    study_case("n_clean_above_pool", ["finetune.n_clean: expected at most data.n_train = 400"], finetune={"n_clean": 5000})
    study_case("searched_n_clean_above_pool", ["search.space.n_clean.high: expected at most data.n_train = 400"],
               search=space(n_clean={"type": "int", "low": 40, "high": 1000}))
    # --smoke shrinks a validated study: it never turns a bad file into a good one (100 clean images would fit)
    n_clean_bad = write_study(files, "smoke_of_bad", finetune={"n_clean": 5000})
    cases.append(Case("smoke_of_a_bad_file", ["run", str(n_clean_bad), "--smoke", "--storage", str(stores / "smoke")],
                      [str(n_clean_bad), "finetune.n_clean: expected at most data.n_train = 400"], [str(stores / "smoke")]))
    option_case("smoke_of_a_bad_set", ["--smoke", "--set", "finetune.n_clean=5000"],
                ["--set finetune.n_clean=5000", "finetune.n_clean: expected at most data.n_train = 400"])
    study_case("cifar_n_clean_above_pool", ["finetune.n_clean: expected at most", "smallest class", "got 80"], **cifar(roots["good"]))
    # CIFAR files that are missing or are not CIFAR batches
    study_case("cifar_root_missing", ["data.root: expected a folder holding cifar-10-batches-py", roots["missing"], "no such folder"],
               **cifar(roots["missing"]))
    study_case("cifar_root_is_file", ["data.root: expected a folder", roots["file"], "(a file)"], **cifar(roots["file"]))
    study_case("cifar_not_a_batch", ["data.root:", "data_batch_3 is not a CIFAR python-version batch"], **cifar(roots["garbage"]))
    study_case("cifar_batch_shape", ["data.root:", "data_batch_2 holds data of shape (6, 100)"], **cifar(roots["shape"]))
    study_case("cifar_batch_unreadable", ["data.root: expected the file", "test_batch", "a folder"], **cifar(roots["folder"]))
    study_case("cifar_truncated_batch", ["data.root:", "data_batch_4 is not a CIFAR python-version batch"],
               **cifar(roots["truncated"]))
    dominoes = {"dataset": "cifar10_dominoes", "cue": "dominoes"}
    study_case("fashion_truncated", ["data.root:", "t10k-images-idx3-ubyte", "is not a FashionMNIST idx file"],
               **cifar(roots["fashion_truncated"], **dominoes))
    study_case("fashion_foreign", ["data.root:", "train-images-idx3-ubyte (or its labels file) is not a FashionMNIST idx file"],
               **cifar(roots["fashion_foreign"], **dominoes))
    study_case("cifar_labels_out_of_range", ["data.root: expected labels in [0, 10)", "data_batch_1"], **cifar(roots["labels"]))
    # resources and retries in the file
    study_case("zero_cpus", ["resources.cpu: expected a number > 0"], resources={"cpu": 0})
    study_case("negative_gpus", ["resources.gpu: expected a number >= 0"], resources={"gpu": -1})
    study_case("negative_max_failures_in_file", ["failure.max_failures: expected an integer >= 0"], failure={"max_failures": -1})
    # a study of that name exists with another spec: refused, the folder left as it was
    clash = write_study(files, "clash", finetune={"epochs": 2})
    cases.append(Case("study_name_clash", ["run", str(clash), "--storage", str(study.parent)],
                      [str(study), "a study named 'clash' exists with another spec", "--name"], keep=[str(study.parent)]))
    # a path with rich markup in it prints verbatim
    odd_file = write_study(odd, "odd", modle={})
    cases.append(Case("markup_in_path", ["run", str(odd_file), "--storage", str(stores / "odd")], [str(odd_file), "modle"],
                      [str(stores / "odd")]))
    cases.append(Case("missing_study_file", ["run", str(files / "absent.yaml"), "--storage", str(stores / "absent")],
                      [str(files / "absent.yaml"), "no such study file"], [str(stores / "absent")]))
    # a study another driver is running: refused before Ray starts, its folder as it was
    held = _existing_study(tmp / HELD[0], HELD[1])
    held_file = write_study(files, HELD[1])
    cases.append(Case("second_driver", ["run", str(held_file), "--storage", str(held.parent)],
                      [str(held), "in use by another process"], keep=[str(held.parent)]))
    # an Optuna study of the same name that another study folder owns: refused before Ray starts
    owned = _optuna_study_of_another_folder(tmp / "optuna" / "shared.db", "good")
    option_case("optuna_study_owned_elsewhere", ["--optuna-storage", owned],
                [f"--optuna-storage {owned}", "belongs to /elsewhere/studies/good"], watch=[])
    cases[-1].keep.append(str(tmp / "optuna"))
    # command-line options
    option_case("address_without_port", ["--address", "headnode"], ["--address: expected 'auto', host:port", "'headnode'"])
    option_case("address_bad_port", ["--address", "10.0.0.1:99999"], ["--address: expected", "'10.0.0.1:99999'"])
    option_case("address_bad_scheme", ["--address", "http://10.0.0.1:6379"], ["--address: expected", "scheme 'http'"])
    option_case("zero_cpus_per_trial", ["--cpus-per-trial", "0"], ["--cpus-per-trial: expected a number > 0", "'0'"])
    option_case("negative_gpus_per_trial", ["--gpus-per-trial", "-1"], ["--gpus-per-trial: expected a number >= 0", "'-1'"])
    option_case("nan_cpus_per_trial", ["--cpus-per-trial", "nan"], ["--cpus-per-trial: expected a number > 0", "'nan'"])
    option_case("zero_num_samples", ["--num-samples", "0"], ["--num-samples: expected an integer >= 1", "'0'"])
    option_case("negative_seed", ["--seed", "-3"], ["--seed: expected an integer >= 0", "'-3'"])
    option_case("zero_connect_timeout", ["--connect-timeout", "0"], ["--connect-timeout: expected a number > 0"])
    option_case("negative_max_failures", ["--max-failures", "-1"], ["--max-failures: expected an integer >= 0", "'-1'"])
    option_case("name_with_slash", ["--name", "a/b"], ["--name: expected a folder name", "'a/b'"])
    option_case("unknown_option", ["--bogus", "1"], ["unrecognized arguments: --bogus"])
    under_file = str(regular_file / "store")
    cases.append(Case("storage_under_a_file", ["run", str(good), "--storage", under_file],
                      ["--storage: expected a folder that can be created and written", under_file, "is a file"], [under_file]))
    cases.append(Case("storage_unknown_uri", ["run", str(good), "--storage", "nosuch://bucket/studies"],
                      ["--storage: expected a folder or a pyarrow.fs URI", "nosuch://bucket/studies"]))
    option_case("optuna_storage_scheme", ["--optuna-storage", "redis://localhost:6379"],
                ["--optuna-storage: expected a database URL", "redis://localhost:6379"])
    option_case("optuna_storage_password_hidden", ["--optuna-storage", "ftp://user:secret@host/db"],
                ["--optuna-storage: expected a database URL", "ftp://user:***@host/db"])
    option_case("optuna_sqlite_under_file", ["--optuna-storage", f"sqlite:///{regular_file}/optuna.db"],
                ["--optuna-storage: expected a sqlite file whose folder can be created", "regular_file: a file"])
    option_case("optuna_sqlite_in_memory", ["--optuna-storage", "sqlite://"], ["--optuna-storage: expected sqlite:///FILE"])
    option_case("optuna_unknown_driver", ["--optuna-storage", "postgresql+nosuchdriver://host/db"],
                ["--optuna-storage: expected a valid SQLAlchemy URL", "postgresql+nosuchdriver://host/db"])
    # resume
    cases.append(Case("resume_not_a_study", ["resume", str(files)], [str(files), "not a study folder"], keep=[str(files)]))
    cases.append(Case("resume_negative_max_failures", ["resume", str(study), "--max-failures", "-1"], ["--max-failures"],
                      keep=[str(study.parent)]))
    cases.append(Case("resume_bad_optuna_storage", ["resume", str(study), "--optuna-storage", "mongodb://h/db"],
                      ["--optuna-storage: expected a database URL", "mongodb://h/db"], keep=[str(study.parent)]))
    cases.append(Case("resume_bad_address", ["resume", str(study), "--address", "auto:x"], ["--address: expected", "'auto:x'"],
                      keep=[str(study.parent)]))
    # the other commands print their InputError the same way
    for command in ("status", "analyze"):
        cases.append(Case(f"{command}_not_a_study", [command, str(files)], [str(files), "not a study folder"], keep=[str(files)]))
    cases.append(Case("compare_one_folder", ["compare", str(study)], ["compare: expected two or more study folders"]))
    cases.append(Case("analyze_bad_section", ["analyze", str(study), "--section", "bogus"], ["--section: invalid choice: 'bogus'"]))
    return cases


# ---- the driver (this file run as a script) ------------------------------------------------------

def _listing(folder: str) -> list[str]:
    """Every path under ``folder``, with a digest of each file's bytes: changes when anything is written."""
    import hashlib

    if not os.path.isdir(folder):
        return []
    return sorted(f"{p.relative_to(folder)} {hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else '/'}"
                  for p in Path(folder).rglob("*"))


def _captured(call) -> tuple[object, str, str]:
    """``call()``'s result (or exit code) and what it wrote to fd 1 and fd 2."""
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    sys.stdout.flush(), sys.stderr.flush()
    for fd, f in files.items():
        os.dup2(f.fileno(), fd)
    try:
        try:
            result = call()
        except SystemExit as exit_:
            result = exit_.code
        except BaseException as err:  # noqa: BLE001  (recorded, the test fails on it)
            import traceback

            result = f"raised {type(err).__name__}: {err}\n{traceback.format_exc()}"
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
    out = []
    for f in files.values():
        f.seek(0)
        out.append(f.read().decode(errors="replace"))
    return result, out[0], out[1]


def drive(cases_path: str, results_path: str) -> None:
    from mmc_sweep.cli import main

    results = {}
    for case in json.loads(Path(cases_path).read_text()):
        before = {k: _listing(k) for k in case["keep"]}
        cwd_before = _listing(os.getcwd())
        rc, out, err = _captured(lambda: main(case["argv"]))
        ray = sys.modules.get("ray")
        results[case["id"]] = {
            "rc": rc, "stdout": out, "stderr": err,
            "created": [p for p in case["watch"] if os.path.exists(p)],
            "changed": [k for k in case["keep"] if _listing(k) != before[k]] + (["cwd"] if _listing(os.getcwd()) != cwd_before else []),
            "ray_started": bool(ray is not None and ray.is_initialized()),
        }
        if results[case["id"]]["ray_started"]:
            ray.shutdown()  # keep the other cases honest
    Path(results_path).write_text(json.dumps(results))


# ---- the tests ------------------------------------------------------------------------------------




@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_cifar_root) -> tuple[dict[str, Case], dict]:
    tmp = tmp_path_factory.mktemp("bad_input")
    cases = build_corpus(tmp, tiny_cifar_root)
    assert len({c.id for c in cases}) == len(cases), "two cases share an id: one would hide the other's result"
    (tmp / "cases.json").write_text(json.dumps([asdict(c) for c in cases]))
    cwd = tmp / "cwd"  # a bare working folder: a default ./studies would show up here
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    from mmc_sweep.study.storage.lock import study_lock

    with study_lock(tmp / HELD[0] / HELD[1]):  # as a running driver holds it
        proc = subprocess.run([sys.executable, __file__, str(tmp / "cases.json"), str(tmp / "results.json")], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {c.id: c for c in cases}, json.loads((tmp / "results.json").read_text())


def _problems(case: Case, got: dict) -> list[str]:
    """What is wrong with one case's outcome (nothing: it is bad input handled as it should be)."""
    lines = got["stderr"].splitlines()
    if got["rc"] != 2:
        return [f"{case.id}: exit {got['rc']!r} (expected 2); stderr: {got['stderr']!r}"]
    out = []
    if len(lines) != 1 or not lines[0].startswith("error: "):
        out.append(f"{case.id}: expected one line 'error: ...' on stderr, got {lines}")
    missing = [s for s in case.expect if not any(s in line for line in lines)]
    if missing:
        out.append(f"{case.id}: {missing} not in {got['stderr']!r}")
    if got["stdout"]:
        out.append(f"{case.id}: printed {got['stdout']!r} on stdout")
    if got["created"] or got["changed"]:
        out.append(f"{case.id}: created {got['created']}, changed {got['changed']}")
    if got["ray_started"]:
        out.append(f"{case.id}: Ray was started")
    return out


def test_every_case_ran_once_in_the_driver(corpus):
    cases, results = corpus
    assert results.keys() == cases.keys()  # (ids are unique: the fixture checks)
    # the corpus reaches every command that reads input, not only `run`
    assert {c.argv[0] for c in cases.values()} == {"run", "resume", "status", "analyze", "compare"}


def test_bad_input_exits_2_with_one_line_naming_it_and_leaves_nothing(corpus):
    cases, results = corpus
    problems = [p for case in cases.values() for p in _problems(case, results[case.id])]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


if __name__ == "__main__":
    drive(sys.argv[1], sys.argv[2])


# ---- valid input passes the same checks --------------------------------------------------------

def test_valid_options_pass_preflight_and_create_nothing(tmp_path):
    from mmc_sweep.study.definition.options import RunOptions
    from mmc_sweep.study.definition.preflight import preflight
    from mmc_sweep.study.definition.spec import parse_study

    spec = parse_study({**TINY, "name": "fine"})
    for address in (None, "auto", "local", "localhost:6379", "ray://10.0.0.1:10001"):
        options = RunOptions(storage=str(tmp_path / "new" / "studies"), address=address,
                             optuna_storage=f"sqlite:///{tmp_path}/db/optuna.db")
        preflight(spec, options, source="fine.yaml")
    preflight(spec, RunOptions(storage=f"file://{tmp_path}/uri"), source="fine.yaml")
    assert list(tmp_path.iterdir()) == []  # checks only: the run creates what it needs


def test_cifar_roots_are_checked_without_building_the_task(tiny_cifar_root):
    from mmc_sweep.config import DataSpec
    from mmc_sweep.data import check_data_root
    from mmc_sweep.study.definition.preflight import check_data
    from mmc_sweep.study.definition.spec import parse_study

    counts = check_data_root(DataSpec(dataset="cifar100", root=tiny_cifar_root))
    assert counts.tolist() == [2] * 100  # 200 training images, every class twice
    assert check_data_root(DataSpec(dataset="cifar10", root=tiny_cifar_root)).sum() == 30
    fits = int(check_data_root(DataSpec(dataset="cifar10", root=tiny_cifar_root)).min()) * 10
    spec = parse_study({**TINY, "data": {"dataset": "cifar10", "root": tiny_cifar_root},
                        "finetune": {**TINY["finetune"], "n_clean": fits}, "search": space(n_clean=None)})
    check_data(spec, "cifar.yaml")


def test_max_failures_from_file_and_command_line_leave_the_hash(tmp_path):
    from mmc_sweep.cli import build_parser
    from mmc_sweep.study.cli import _overrides
    from mmc_sweep.study.definition.spec import load_study

    path = write_study(tmp_path, "retries", failure={"max_failures": 5})
    spec = load_study(path)
    assert spec.failure.max_failures == 5
    args = build_parser().parse_args(["run", str(path), "--max-failures", "0", "--optuna-storage", "sqlite:///x.db"])
    again = _overrides(args, spec)
    assert again.failure.max_failures == 0 and again.hash == spec.hash  # how a study runs is not what it computes
    assert args.optuna_storage == "sqlite:///x.db"


def test_searched_settings_keep_their_type(tmp_path):
    from mmc_sweep.study.definition.spec import load_study

    spec = load_study(write_study(tmp_path, "typed", search=space(
        lambda_barrier={"type": "categorical", "choices": [1, 10]},  # YAML integers for a float setting
        epochs={"type": "categorical", "choices": [2, 3]})))
    params = {p.name: p for p in spec.search.space}
    assert params["lambda_barrier"].choices == (1.0, 10.0) and all(type(v) is float for v in params["lambda_barrier"].choices)
    assert params["epochs"].choices == (2, 3) and all(type(v) is int for v in params["epochs"].choices)
