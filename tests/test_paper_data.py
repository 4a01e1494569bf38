"""The reference's data as settings (issue 9): box geometry and colours, the paper's Dominoes
(FashionMNIST above CIFAR-10), views at the training cue proportion, CBFT's cue mixture, and the
embedded quickstart data left bit-identical.

Facts about the reference come from the authors' ``syndata.py`` (EkdeepSLubana/MMC) and are written
out here as plain tables, so that these tests do not share code with the implementation.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from extras import require
from mmc_sweep.config import DataSpec
from mmc_sweep.data import DataRootError, build_task, check_data_root, load_cifar, pair_by_class
from mmc_sweep.data.cues import DOMINO_BLANK, BoxCue, box_geometry, tenth_box
from mmc_sweep.errors import InputError
from mmc_sweep.models import create_model, model_names

# ---- the reference's box at 32 px (syndata.py: s = 3, rows/columns 0, (32 - 3) // 2, -3) -----------
# label % 10 -> (top row, left column); 9: none for CIFAR-10, "mid-upper-left" for CIFAR-100
PAPER_BOX_32 = {0: (0, 0), 1: (0, 14), 2: (0, 29), 3: (14, 0), 4: (14, 14), 5: (14, 29),
                6: (29, 0), 7: (29, 14), 8: (29, 29), 9: (6, 6)}
PAPER_SIDE_32 = 3
# hsv_to_rgb([l / 10, 1, 255])[[2, 0, 1]] / 255 for l = label // 10 (CIFAR-100); CIFAR-10 uses l = 10
PAPER_HUE_RGB = {0: (0, 1, 0), 1: (0, 1, 0.6), 2: (0, 0.8, 1), 3: (0, 0.2, 1), 4: (0.4, 0, 1),
                 5: (1, 0, 1), 6: (1, 0, 0.4), 7: (1, 0.2, 0), 8: (1, 0.8, 0), 9: (0.6, 1, 0), 10: (0, 1, 0)}


def hue(level: int) -> torch.Tensor:
    """(3, 1) float32 colour of the reference's box at hue level ``level`` (``PAPER_HUE_RGB``)."""
    return torch.tensor(PAPER_HUE_RGB[level], dtype=torch.float32).view(3, 1)


def box_region(top: int, left: int, side: int, size: int = 32) -> torch.Tensor:
    region = torch.zeros(size, size, dtype=torch.bool)
    region[top:top + side, left:left + side] = True
    return region


def assert_box(painted: torch.Tensor, clean: torch.Tensor, label: int, cifar100: bool) -> None:
    """One painted image (3, 32, 32) carries the reference's box of ``label`` and is unchanged elsewhere."""
    pos = label % 10
    if pos == 9 and not cifar100:
        assert torch.equal(painted, clean), "CIFAR-10 class 9 has no box"
        return
    region = box_region(*PAPER_BOX_32[pos], PAPER_SIDE_32)
    colour = hue(label // 10 if cifar100 else 10)
    assert torch.allclose(painted[:, region], colour.expand(3, int(region.sum())), atol=1e-6), f"label {label}"
    assert torch.equal(painted[:, ~region], clean[:, ~region])


# ---- box cue -------------------------------------------------------------------------------------

def test_paper_hue_table_is_the_reference_formula():
    # the table above, recomputed the reference's way (matplotlib is a declared dependency)
    from matplotlib.colors import hsv_to_rgb

    for level, rgb in PAPER_HUE_RGB.items():
        assert np.allclose(hsv_to_rgb([level / 10, 1, 255])[[2, 0, 1]] / 255, rgb, atol=1e-12)


def test_paper_box_cifar10(tiny_cifar_root):
    task = build_task(DataSpec(dataset="cifar10", root=tiny_cifar_root, box_layout="paper"))
    clean, cue = task.views["clean"], task.views["cue"]
    assert sorted(set(cue.y.tolist())) == list(range(10))
    for i in range(len(cue)):
        assert_box(cue.x[i], clean.x[i], int(cue.y[i]), cifar100=False)
    # the training images that carry the cue carry the same box
    mask = task.train_cue_mask
    for i in mask.nonzero().flatten().tolist():
        assert_box(task.train.x[i], task.train_clean.x[i], int(task.train.y[i]), cifar100=False)
    assert torch.equal(task.train.x[~mask], task.train_clean.x[~mask])


def test_paper_box_cifar100_has_ten_positions_and_hue_by_label_over_10(tiny_cifar_root):
    task = build_task(DataSpec(dataset="cifar100", root=tiny_cifar_root, box_layout="paper"))
    clean, cue, rand_img = task.views["clean"], task.views["cue"], task.views["rand_img"]
    assert sorted(set(cue.y.tolist())) == list(range(100))
    for i in range(len(cue)):
        assert_box(cue.x[i], clean.x[i], int(cue.y[i]), cifar100=True)
    # rand_img keeps the box of the image's own label
    painted_at = lambda y: box_region(*PAPER_BOX_32[y % 10], PAPER_SIDE_32)   # noqa: E731
    for i in range(len(rand_img)):
        y = int(rand_img.y[i])
        assert torch.allclose(rand_img.x[i][:, painted_at(y)], hue(y // 10).expand(3, 9), atol=1e-6)


def test_paper_rand_cue_draws_a_reference_box_of_a_random_class(tiny_cifar_root):
    task = build_task(DataSpec(dataset="cifar100", root=tiny_cifar_root, box_layout="paper"))
    clean, rand = task.views["clean"], task.views["rand_cue"]
    agree = 0
    for i in range(len(rand)):
        changed = (rand.x[i] != clean.x[i]).any(0)
        hits = [(p, lvl) for p in range(10) for lvl in range(10)
                if torch.equal(changed, box_region(*PAPER_BOX_32[p], 3))
                and torch.allclose(rand.x[i][:, changed], hue(lvl).expand(3, 9), atol=1e-6)]
        assert len(hits) == 1, f"image {i}: not exactly one reference box"
        agree += hits[0] == (int(rand.y[i]) % 10, int(rand.y[i]) // 10)
    assert agree < 0.1 * len(rand)   # 1/100 expected: the cue is independent of the label


def test_box_size_and_layout_settings():
    spec = DataSpec(n_train=50, n_test=20, image_size=16, box_size=4, box_layout="paper", cue_proportion=1.0)
    task = build_task(spec)
    y = task.views["cue"].y
    changed = (task.views["cue"].x != task.views["clean"].x).any(1)   # (N, 16, 16)
    corners = {0: (0, 0), 1: (0, 6), 2: (0, 12), 3: (6, 0), 4: (6, 6), 5: (6, 12), 6: (12, 0), 7: (12, 6), 8: (12, 12)}
    green = torch.tensor([0.0, 1.0, 0.0]).view(3, 1)
    for i in range(len(y)):
        label = int(y[i])
        if label == 9:
            assert not changed[i].any()
            continue
        region = box_region(*corners[label], 4, size=16)
        assert torch.equal(changed[i], region)
        assert torch.equal(task.views["cue"].x[i][:, region], green.expand(3, 16))
    # the inset default: 6 px at 32 px, 2 px in from the border (today's box)
    assert box_geometry(32, 32) == (6, (2, 13, 24), (2, 13, 24))
    assert box_geometry(32, 32, layout="paper") == (3, (0, 14, 29), (0, 14, 29))
    assert tenth_box(32, 32, 3) == (6, 6)


def overlapping(cue: BoxCue, side: int) -> list[tuple[int, int]]:
    """Pairs of drawn box positions whose squares share a pixel, and (p, -1) for squares off the image."""
    size, tops, lefts, drawn = cue.slots(side, side)
    boxes = [(p, tops[p], lefts[p]) for p in range(10) if drawn[p]]
    bad = [(p, -1) for p, t, l in boxes if min(t, l) < 0 or max(t, l) + size > side]
    return bad + [(p, q) for i, (p, t, l) in enumerate(boxes) for q, u, m in boxes[i + 1:]
                  if abs(t - u) < size and abs(l - m) < size]


@pytest.mark.parametrize("layout", ["inset", "paper"])
def test_every_allowed_box_size_keeps_the_positions_apart(layout):
    for side in range(8, 65):
        spec = DataSpec(image_size=side, box_layout=layout)
        for size in range(0, spec.box_size_limit + 1):
            cue = BoxCue(10, size=size, layout=layout)
            assert sum(cue.slots(side, side)[3]) == 9 and not overlapping(cue, side), (side, size)
    # cifar100 + paper: the tenth box stays clear of the corner box up to the limit, not beyond
    limit = DataSpec(dataset="cifar100", root="/x", box_layout="paper").box_size_limit
    assert not overlapping(BoxCue(100, size=limit, layout="paper"), 32)
    assert overlapping(BoxCue(100, size=limit + 2, layout="paper"), 32)
    assert overlapping(BoxCue(10, size=11, layout="paper"), 32)   # the check can fail


@pytest.mark.parametrize("changes, key", [
    ({"box_size": 9}, "data.box_size"),
    ({"box_size": -1}, "data.box_size"),
    ({"dataset": "cifar100", "root": "/x", "box_layout": "paper", "box_size": 6}, "data.box_size"),
    ({"box_layout": "corner"}, "data.box_layout"),
    ({"views_cue": "half"}, "data.views_cue"),
    ({"dataset": "cifar10_dominoes", "cue": "dominoes"}, "data.root"),
    ({"dataset": "cifar10_dominoes", "root": "/x", "cue": "box"}, "data.cue"),
])
def test_new_settings_are_validated(changes, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as err:
        DataSpec(image_size=32, **changes)
    assert "\n" not in str(err.value)


# ---- the paper's Dominoes ------------------------------------------------------------------------

def read_idx(path: str) -> np.ndarray:
    """An idx file read with numpy (independently of torchvision)."""
    raw = Path(path).read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def reference_fashion(root: str, train: bool) -> tuple[torch.Tensor, list[int]]:
    """FashionMNIST as the reference feeds it: PIL grey -> RGB -> Resize((32, 32)) -> ToTensor."""
    image_module = require("PIL.Image")
    prefix = "train" if train else "t10k"
    raw = os.path.join(root, "FashionMNIST", "raw")
    images = read_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte")).tolist()
    out = []
    for img in images:
        rgb = image_module.fromarray(img, mode="L").convert("RGB").resize((32, 32), image_module.BILINEAR)
        out.append(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out), labels


def reference_partners(cifar_labels: list[int], fashion_labels: list[int]) -> list[int]:
    """The k-th CIFAR image of class c takes the k-th FashionMNIST image of class c."""
    of_class = {c: [i for i, label in enumerate(fashion_labels) if label == c] for c in range(10)}
    seen: Counter = Counter()
    partners = []
    for label in cifar_labels:
        partners.append(of_class[label][seen[label]])
        seen[label] += 1
    return partners


@pytest.fixture(scope="module")
def paper_dominoes(tiny_dominoes_root):
    spec = DataSpec(dataset="cifar10_dominoes", cue="dominoes", root=tiny_dominoes_root, cue_proportion=0.5, seed=2)
    return build_task(spec), tiny_dominoes_root


def test_dominoes_input_is_fashion_above_cifar_paired_by_class(paper_dominoes):
    task, root = paper_dominoes
    assert task.input_shape == (3, 64, 32)
    cifar = load_cifar("cifar10", root, train=False)
    fashion, fashion_labels = reference_fashion(root, train=False)
    partners = reference_partners(cifar.y.tolist(), fashion_labels)
    cue, clean = task.views["cue"], task.views["clean"]
    for i in range(len(cue)):
        assert torch.equal(cue.x[i, :, :32], fashion[partners[i]]), f"top of test image {i}"
        assert fashion_labels[partners[i]] == int(cue.y[i])                      # paired by class
        assert torch.equal(cue.x[i, :, 32:], cifar.x[i])                          # CIFAR below
        assert torch.equal(clean.x[i, :, 32:], cifar.x[i])
    assert (clean.x[:, :, :32] == 0).all()                                        # black top, no cue
    assert len(set(partners)) == len(partners)                                    # one partner each


def test_dominoes_training_set_cues_its_proportion_with_partners(paper_dominoes):
    task, root = paper_dominoes
    cifar = load_cifar("cifar10", root, train=True)
    fashion, fashion_labels = reference_fashion(root, train=True)
    partners = reference_partners(cifar.y.tolist(), fashion_labels)
    mask = task.train_cue_mask
    assert int(mask.sum()) == round(0.5 * len(cifar))
    for i in range(len(cifar)):
        top = task.train.x[i, :, :32]
        assert torch.equal(top, fashion[partners[i]]) if mask[i] else bool((top == 0).all())
        assert torch.equal(task.train_cue.x[i, :, :32], fashion[partners[i]])
        assert torch.equal(task.train.x[i, :, 32:], cifar.x[i])


def test_dominoes_rand_cue_and_rand_img(paper_dominoes):
    task, root = paper_dominoes
    cifar = load_cifar("cifar10", root, train=False)
    fashion, fashion_labels = reference_fashion(root, train=False)
    partners = reference_partners(cifar.y.tolist(), fashion_labels)
    rand, rand_img = task.views["rand_cue"], task.views["rand_img"]
    flat = fashion.flatten(1)
    classes = []
    for i in range(len(rand)):
        hits = (flat == rand.x[i, :, :32].flatten()).all(1).nonzero().flatten().tolist()
        assert hits, f"rand_cue top of image {i} is no FashionMNIST test image"
        classes.append(fashion_labels[hits[0]])
        assert torch.equal(rand.x[i, :, 32:], cifar.x[i])
        # rand_img: the image's own partner on top, another CIFAR image below
        assert torch.equal(rand_img.x[i, :, :32], fashion[partners[i]])
        below = [j for j in range(len(cifar)) if torch.equal(rand_img.x[i, :, 32:], cifar.x[j])]
        assert below and below[0] != i
    assert sum(c == int(y) for c, y in zip(classes, rand.y)) < len(rand) // 2   # random classes, not the label
    assert len(set(classes)) > 3


def test_models_take_the_dominoes_input():
    for name in model_names():
        model = create_model(name, num_classes=10, width=4)
        assert model(torch.rand(2, 3, 64, 32)).shape == (2, 10), name


def test_pair_by_class_matches_the_reference_and_wraps():
    labels = torch.tensor([1, 0, 1, 1, 0])
    partner_labels = torch.tensor([0, 1, 1, 0, 2])
    # class 1 items take partners 1, 2, then wrap to 1; class 0 items take 0, 3
    assert pair_by_class(labels, partner_labels).tolist() == [1, 0, 2, 1, 3]
    with pytest.raises(ValueError, match="class"):
        pair_by_class(torch.tensor([3]), partner_labels)


def test_missing_fashion_mnist_is_one_line_naming_root_and_files(tiny_cifar_root, tmp_path):
    spec = DataSpec(dataset="cifar10_dominoes", cue="dominoes", root=tiny_cifar_root)   # CIFAR there, no FashionMNIST
    expected = os.path.join(tiny_cifar_root, "FashionMNIST", "raw")
    for attempt in (lambda: build_task(spec), lambda: check_data_root(spec)):
        with pytest.raises(DataRootError) as err:
            attempt()
        message = str(err.value)
        assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
        assert "\n" not in message and message.startswith("data.root:")
        assert expected in message
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            assert name in message
    # gzipped files only: the message says to gunzip them
    root = tmp_path / "zipped"
    shutil.copytree(Path(tiny_cifar_root) / "cifar-10-batches-py", root / "cifar-10-batches-py")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / f"{name}.gz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(DataRootError, match="gunzip"):
        build_task(DataSpec(dataset="cifar10_dominoes", cue="dominoes", root=str(root)))


def test_corrupt_fashion_file_is_one_line(tiny_dominoes_root, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(tiny_dominoes_root, root)
    (root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DataRootError, match="t10k-images-idx3-ubyte") as err:
        build_task(DataSpec(dataset="cifar10_dominoes", cue="dominoes", root=str(root)))
    assert "\n" not in str(err.value)


# ---- views at the training proportion --------------------------------------------------------------

@pytest.mark.parametrize("proportion", [0.8, 0.3])
def test_views_at_the_training_proportion_cue_exactly_that_fraction(proportion):
    n = 500
    spec = DataSpec(dataset="shapes_dominoes", cue="dominoes", n_train=100, n_test=n, cue_proportion=proportion, views_cue="train")
    task = build_task(spec)
    cued = round(proportion * n)
    blank = lambda x: (x[:, :, :16] == DOMINO_BLANK).flatten(1).all(1)   # noqa: E731  (no cue on top)
    clean = task.views["clean"].x
    for name in ("cue", "rand_cue", "rand_img"):
        has_cue = ~blank(task.views[name].x)
        assert int(has_cue.sum()) == cued, name
        assert torch.equal(has_cue, task.views_cue_mask), name                # the same images in every view
    assert torch.equal(task.views["cue"].x[~task.views_cue_mask], clean[~task.views_cue_mask])
    assert task.views_cue == "train" and task.views_cue_fraction == cued / n
    assert spec.views_cue_proportion == proportion
    # the default cues every image, and the training set does not depend on the views' convention
    full = build_task(DataSpec(dataset="shapes_dominoes", cue="dominoes", n_train=100, n_test=n, cue_proportion=proportion))
    assert full.views_cue == "full" and full.views_cue_fraction == 1.0 and bool(full.views_cue_mask.all())
    assert int((~blank(full.views["rand_img"].x)).sum()) == n
    assert torch.equal(full.train.x, task.train.x) and torch.equal(full.views["clean"].x, clean)


def test_paper_dominoes_views_at_the_training_proportion(tiny_dominoes_root):
    task = build_task(DataSpec(dataset="cifar10_dominoes", cue="dominoes", root=tiny_dominoes_root, views_cue="train"))
    for name in ("cue", "rand_cue", "rand_img"):
        assert int((task.views[name].x[:, :, :32] != 0).flatten(1).any(1).sum()) == round(0.8 * 20), name


# ---- CBFT's cue data: the training mixture --------------------------------------------------------

def test_mixture_subset_is_drawn_at_the_training_proportion():
    task = build_task(DataSpec(n_train=400, n_test=20, cue_proportion=0.8, seed=5))
    index = task.mixture_index(100, seed=0)
    assert index.numel() == 100 and index.unique().numel() == 100
    assert int(task.train_cue_mask[index].sum()) == 80                         # 80 % cued, as in training
    subset = task.mixture_subset(100, seed=0)
    assert torch.equal(subset.x, task.train.x[index]) and torch.equal(subset.y, task.train.y[index])
    assert torch.equal(task.mixture_index(100, seed=0), index)
    assert not torch.equal(task.mixture_index(100, seed=1), index)
    assert torch.equal(task.mixture_index(400, seed=3), torch.arange(400))      # the whole training set
    with pytest.raises(ValueError, match=r"finetune\.n_cue"):
        task.mixture_index(401, seed=0)


# ---- the embedded quickstart data do not change ---------------------------------------------------------

def task_fingerprint(task) -> tuple[str, list[tuple[float, float]]]:
    """What identifies a task's data: sha256 of its integer tensors (train labels, cue mask, each view's
    labels by name), and for each float image tensor (train, clean, cue, then each view by name) its sum
    and a position-weighted sum, in float64.

    Not a digest of the images' bits: those depend on the CPU (torch draws Gaussian noise with
    vectorised log/sin/cos when the CPU has them), so a bit-level pin fails on another machine while the
    data are the same. Any real change (a draw, an order, a shape, a cue) moves these sums by far more
    than the tolerance; rounding differences of one ulp per pixel move them by ~1e-11 relative."""
    digest = hashlib.sha256()
    for t in [task.train.y, task.train_cue_mask] + [task.views[n].y for n in sorted(task.views)]:
        digest.update(t.contiguous().cpu().numpy().tobytes())
    sums = []
    for t in [task.train.x, task.train_clean.x, task.train_cue.x] + [task.views[n].x for n in sorted(task.views)]:
        x = t.double().flatten().cpu()
        weight = (torch.arange(x.numel(), dtype=torch.float64) % 101) / 101  # a moved pixel changes this
        sums.append((x.sum().item(), (x * weight).sum().item()))
    return digest.hexdigest(), sums


# Computed on this project's 2-core x86-64 machine, where the code of commit ffd97d7 (before issue 9,
# when the shapes dominoes were called "dominoes") gives tensors bit-identical to today's: a change
# here means the embedded data changed.
BEFORE_ISSUE_9 = [
    # search_spaces/quickstart.yaml's data section (n_train at its default, 20000)
    ({"dataset": "shapes", "cue": "box", "cue_proportion": 0.8, "seed": 0, "n_test": 1000},
     "e056348ce3651f36b17fe41f26521c02b82d444a9edfe10c1fef5355b2935dd6",
     [(7612755.160522, 3769142.14532), (7676857.588693, 3800743.179992), (7596558.281219, 3761156.994908),
      (383852.334229, 189766.107665), (379925.715567, 187824.083258), (379728.657334, 187727.819015),
      (379772.737504, 187883.19317)]),
    ({"dataset": "shapes_dominoes", "cue": "dominoes", "cue_proportion": 0.8, "seed": 0, "n_train": 2000, "n_test": 500},
     "7f01cf30d976f235dd81620f5aeb8c1a7662d3b47ff599ec81902be62092fc3b",
     [(1531844.32773, 758067.303576), (1534212.32773, 759059.169913), (1534212.32773, 759400.471893),
      (380891.980652, 188529.071027), (380891.980652, 188531.660136), (377595.980652, 186885.264097),
      (380891.980652, 188503.466407)]),
    ({"dataset": "shapes", "cue": "box", "cue_proportion": 0.5, "seed": 1, "n_train": 1000, "n_test": 300,
      "image_size": 32, "num_classes": 7},
     "7d64c3875caa43d198f63e2ea7e34e0a7159147503369a5c1daa3ff164ca4390",
     [(1523434.563957, 754471.018432), (1532362.719987, 758852.71634), (1514820.466868, 750180.001722),
      (455316.696645, 225453.538417), (450142.880449, 222874.447714), (450025.885361, 222782.522074),
      (450114.649842, 222922.434676)]),
]


@pytest.mark.parametrize("settings, labels, sums", BEFORE_ISSUE_9)
def test_embedded_data_are_unchanged(settings, labels, sums):
    got_labels, got_sums = task_fingerprint(build_task(DataSpec(**settings)))
    assert got_labels == labels
    assert got_sums == [pytest.approx(pair, rel=1e-9, abs=1e-4) for pair in sums]


def test_dominoes_is_a_deprecated_alias_of_shapes_dominoes():
    with pytest.warns(DeprecationWarning, match="shapes_dominoes"):
        old = DataSpec(dataset="dominoes", cue="dominoes")
    assert old == DataSpec(dataset="shapes_dominoes", cue="dominoes") and old.dataset == "shapes_dominoes"
