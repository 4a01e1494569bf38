"""Every paper preset passes --smoke on tiny CIFAR-10, CIFAR-100 and FashionMNIST files written in
their real on-disk formats (python-pickle CIFAR batches, idx FashionMNIST)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import _write_batch, write_tiny_fashion_mnist
from drivers import REPO, table
from mmc_sweep.cli import main
from mmc_sweep.study.definition.spec import load_study

PRESETS = sorted((REPO / "search_spaces" / "paper").glob("*.yaml"))


@pytest.fixture(scope="module")
def paper_root(tmp_path_factory) -> Path:
    """200 training and 100 test images per set (--smoke reads at most 600 and 200): enough for its
    100 clean images on 100 classes (two per class), and a third of the work of every pass over all images."""
    root = tmp_path_factory.mktemp("paper_data")
    rng = np.random.default_rng(0)
    c10 = root / "cifar-10-batches-py"
    c10.mkdir()
    for i in range(1, 6):
        _write_batch(c10 / f"data_batch_{i}", rng.permutation(np.arange(40) % 10), "labels", rng)
    _write_batch(c10 / "test_batch", np.arange(100) % 10, "labels", rng)
    c100 = root / "cifar-100-python"
    c100.mkdir()
    _write_batch(c100 / "train", rng.permutation(np.arange(200) % 100), "fine_labels", rng)
    _write_batch(c100 / "test", np.arange(100) % 100, "fine_labels", rng)
    write_tiny_fashion_mnist(root, n_train=200, n_test=100)
    return root


def test_there_are_four_paper_presets():
    assert [p.stem for p in PRESETS] == ["cifar100_box", "cifar10_box", "connectivity", "dominoes"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_paper_preset_passes_smoke(ray_cluster, tmp_path, paper_root, preset):
    store = tmp_path / "store"
    # one search trial (--smoke's three are three proposals of the same code path): a cheaper suite
    code = main(["run", str(preset), "--smoke", "--set", f"data.root={paper_root}", "--num-samples", "1",
                 "--storage", str(store), "--address", ray_cluster.address])
    name = yaml.safe_load(preset.read_text())["name"] + "_smoke"
    assert code == 0
    resolved = yaml.safe_load((store / name / "study.yaml").read_text())
    assert resolved["data"]["root"] == str(paper_root)  # --set reached the resolved spec
    assert resolved["data"]["max_files_train"] == 600 and resolved["search"]["num_samples"] == 1
    rows = table(store / name, "trials")
    search = [r for r in rows if r["role"] == "search"]
    assert len(search) == 1 and all(r["status"] == "completed" for r in search), [(r["status"], r["error"]) for r in search]
    assert all(r["status"] == "completed" for r in rows), [(r["trial_id"], r["error"]) for r in rows if r["status"] != "completed"]


ALL_PRESETS = sorted((REPO / "search_spaces").glob("*.yaml")) + PRESETS


@pytest.mark.parametrize("preset", ALL_PRESETS, ids=lambda p: p.stem)
def test_every_preset_says_how_its_base_pairs_are_made(preset):
    raw = yaml.safe_load(preset.read_text())
    assert raw["base"]["pairing"] == "independent"  # written out, not left to the default


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_paper_presets_use_the_references_path_settings(preset):
    spec = load_study(preset)
    assert spec.paths.views_cue == "full" and spec.data.views_cue == "train"  # paths fully cued, tables at p
    assert spec.paths.bn_reset.batches == "all" and spec.paths.bn_reset.data == "clean"
    assert spec.finetune.schedule == "cosine"
    if "qmc" in spec.paths.kinds:  # mode_connect.py's midpoint recipe
        q = spec.paths.qmc
        assert (q.epochs, q.lr, q.momentum, q.nesterov, q.weight_decay) == (15, 0.1, 0.9, False, 1e-4)
        assert (q.schedule, q.milestones, q.gamma, q.scale_lr, q.batch_size) == ("step", (10,), 0.1, True, 128)
        assert (q.init, q.data, q.bn_stats) == ("random", "cue", "init")
