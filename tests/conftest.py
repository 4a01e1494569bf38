"""Shared pytest fixtures."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest


def _write_batch(path: Path, labels: np.ndarray, label_key: str, rng: np.random.Generator) -> None:
    """One pickled batch in the CIFAR python-version format: uint8 rows of 3072 (R, G, B planes)."""
    entry = {
        "batch_label": path.name,
        "data": rng.integers(0, 256, size=(len(labels), 3 * 32 * 32), dtype=np.uint8),
        label_key: [int(v) for v in labels],
        "filenames": [f"img_{i}.png" for i in range(len(labels))],
    }
    if label_key == "fine_labels":
        entry["coarse_labels"] = [int(v) // 5 for v in labels]
    with open(path, "wb") as f:
        pickle.dump(entry, f)


@pytest.fixture(scope="session")
def tiny_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder holding tiny cifar-10-batches-py/ and cifar-100-python/ in torchvision's on-disk format.

    cifar10: five training batches of 6 images and a test batch of 20; cifar100: 200 training and 300
    test images, every class present. The md5 sums differ from the real files, so these are read
    by :func:`mmc_sweep.data.load_cifar`, not through torchvision's integrity-checked classes.
    """
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    c10 = root / "cifar-10-batches-py"
    c10.mkdir()
    for i in range(1, 6):
        _write_batch(c10 / f"data_batch_{i}", rng.integers(0, 10, size=6), "labels", rng)
    _write_batch(c10 / "test_batch", np.arange(20) % 10, "labels", rng)
    with open(c10 / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class_{i}" for i in range(10)], "num_cases_per_batch": 6}, f)
    c100 = root / "cifar-100-python"
    c100.mkdir()
    _write_batch(c100 / "train", np.arange(200) % 100, "fine_labels", rng)
    _write_batch(c100 / "test", np.arange(300) % 100, "fine_labels", rng)
    with open(c100 / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine_{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse_{i}" for i in range(20)]}, f)
    return str(root)


def write_idx(path: Path, array: np.ndarray) -> None:
    """One file in the idx format of (Fashion)MNIST: a big-endian magic (0, 0, type 0x08 = uint8, number
    of dimensions), each dimension as a big-endian int32, then the uint8 data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_tiny_fashion_mnist(root: Path, n_train: int = 120, n_test: int = 30, seed: int = 1) -> None:
    """Tiny FashionMNIST files where torchvision's ``FashionMNIST(root, download=False)`` reads them:
    ``<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (un-gzipped idx).

    Random 28x28 images; every class equally often, in a shuffled order (so pairing by class rank is
    not the identity).
    """
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))


@pytest.fixture(scope="session")
def tiny_dominoes_root(tmp_path_factory: pytest.TempPathFactory, tiny_cifar_root: str) -> str:
    """A folder for the paper's Dominoes: a copy of the tiny cifar-10-batches-py/ and tiny FashionMNIST
    idx files (120 training and 30 test images, 12 and 3 per class) under FashionMNIST/raw/."""
    root = tmp_path_factory.mktemp("dominoes")
    shutil.copytree(Path(tiny_cifar_root) / "cifar-10-batches-py", root / "cifar-10-batches-py")
    write_tiny_fashion_mnist(root)
    return str(root)


@pytest.fixture(scope="session")
def trained_clean_pair():
    """A small embedded task and two clean small_cnn models trained from different seeds (~3 s)."""
    import torch

    from mmc_sweep.config import DataSpec, ModelSpec, TrainSpec
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import train_base

    task = build_task(DataSpec(n_train=3000, n_test=500))
    device = torch.device("cpu")
    first, second = (train_base(task, "clean", ModelSpec(width=16), TrainSpec(epochs=4, seed=s), device) for s in (0, 1))
    return task, first, second


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray for the whole session: a two-node local cluster; the head advertises one (fake) GPU.

    Two nodes let a study's trials land on both; ``num_gpus=1`` lets four 0.25-GPU trials schedule
    on a CPU machine (torch still sees no CUDA, so they compute on the CPU).
    """
    from object_store import FAKE_CREDENTIALS

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.update(FAKE_CREDENTIALS)  # the workers of a study on the tests' S3 server need them
    import ray
    from ray.cluster_utils import Cluster

    # a lost node (test_failures) is noticed by the head's health checks: every 0.5 s, four misses
    # (about 2 s, not Ray's ~15 s); a check waits for its answer, so a busy node is not taken for lost
    health_checks = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 4}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 1, "object_store_memory": 100 * 2**20, "include_dashboard": False,
                        "_system_config": health_checks},
    )
    # one CPU on each node, as many as the machine's cores: any two one-CPU trials running at once
    # use both nodes, and trials beyond two reuse a finished trial's worker process instead of
    # starting (and importing torch in) one more on cores that are all busy
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def first_study(ray_cluster, tmp_path_factory):
    """The TINY study (four random-search trials, one baseline) run once for the session, shared by
    the harness tests and the tests of the results' clients: ``(exit code, storage folder)``; the
    study is ``<storage>/first``. Tests add other studies to the storage but never change ``first``."""
    from mmc_sweep.cli import main
    from study_files import write_study

    root = tmp_path_factory.mktemp("studies")
    spec_file = write_study(root, "first", revival={"steps": [1, 4], "batch_size": 32})  # and every trial's cue revival
    code = main(["run", str(spec_file), "--storage", str(root / "store")])
    return code, root / "store"


@pytest.fixture
def seeded_store(first_study, tmp_path) -> Path:
    """``<tmp_path>/store`` holding a copy of the TINY base models the session's first study trained
    (content-addressed: a TINY study there skips its base stage). For tests whose subject is a later
    stage: the base stage itself runs in ``first_study`` and the tests that change data or model."""
    _, shared = first_study
    store = tmp_path / "store"
    shutil.copytree(shared / "models", store / "models")
    return store


# Tests that start Ray (the session cluster, or a study on it) are `slow`; `pytest -m "not slow"`
# is the inner loop. Tests that start a driver or a cluster of their own carry the mark themselves.
_RAY_FIXTURES = {"ray_cluster", "first_study", "seeded_store"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# The paper-effect test measures half a minute of pure training (tests/paper_effect.py). When a session
# will run it, it starts at once in a background process, on one thread, scheduled only on a core
# that would otherwise be idle (Linux SCHED_IDLE; with `nice 19` instead the suite took 245-254 s
# against 238 s here, the Ray tests slower): the Ray tests leave about a fifth of the two cores idle
# (waits on start-ups, health checks, polls), which it fills.
PAPER_EFFECT_TEST = "tests/test_paper_effect.py::test_the_papers_claims_hold_on_the_embedded_data"
_PAPER_EFFECT: dict = {}


def _start_paper_effect() -> None:
    out = Path(tempfile.mkdtemp(prefix="mmc-paper-effect-")) / "rows.json"
    log = open(out.with_suffix(".log"), "w")
    _PAPER_EFFECT.update(out=out, log=log, proc=subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("paper_effect.py")), str(out)],
        cwd=Path(__file__).parents[1], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_idle_priority))


def _idle_priority() -> None:
    """In the background process, before it starts: run only when a core is idle (SCHED_IDLE where
    the platform has it, else the lowest nice)."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


def pytest_collection_finish(session):
    if any(item.nodeid == PAPER_EFFECT_TEST for item in session.items):
        _start_paper_effect()


def pytest_sessionfinish(session, exitstatus):
    proc = _PAPER_EFFECT.get("proc")
    if proc is not None and proc.poll() is None:  # the test was not reached (-x, Ctrl-C)
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def paper_effect_rows() -> list[dict[str, float]]:
    """The rows of ``paper_effect.measure(SEEDS)``, from the background process (started now if the
    session did not start it)."""
    if "proc" not in _PAPER_EFFECT:
        _start_paper_effect()
    proc, out = _PAPER_EFFECT["proc"], _PAPER_EFFECT["out"]
    proc.wait(timeout=900)
    _PAPER_EFFECT["log"].close()
    assert proc.returncode == 0 and out.exists(), out.with_suffix(".log").read_text()[-3000:]
    return json.loads(out.read_text())
