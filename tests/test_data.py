"""Data layer: the shapes set, cues, counterfactual views, clean subsets and local CIFAR files."""
from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch

from mmc_sweep import config
from mmc_sweep.config import DataSpec
from mmc_sweep.data import (
    CUES, BoxCue, DominoesCue, ImageSet, build_task, cue_reliance, generate_shapes, load_cifar, make_cue, make_views,
)
from mmc_sweep.data.cues import DOMINO_BLANK, NO_BOX, PALETTE, box_geometry
from mmc_sweep.errors import InputError

RED = torch.tensor(PALETTE[0])


# ---- helpers that read cues back from pixels ----------------------------------------------------

def box_found(x: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(N, 9) bool: grid position p of image i is a solid box of colour ``colours[i]`` (exact match)."""
    side, rows, cols = box_geometry(x.shape[2], x.shape[3])
    found = []
    for p in range(9):
        patch = x[:, :, rows[p // 3]:rows[p // 3] + side, cols[p % 3]:cols[p % 3] + side]
        found.append((patch == colours.view(-1, 3, 1, 1)).all(dim=(1, 2, 3)))
    return torch.stack(found, dim=1)


def box_position(x: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Decoded box position per image: 0..8, 9 for no box, -1 for several boxes."""
    found = box_found(x, colours)
    pos = torch.where(found.any(1), found.float().argmax(1), torch.full((len(x),), NO_BOX))
    return torch.where(found.sum(1) > 1, torch.full_like(pos, -1), pos)


def outside_boxes(x: torch.Tensor) -> torch.Tensor:
    """(N, D) pixels outside every grid position of the box cue."""
    side, rows, cols = box_geometry(x.shape[2], x.shape[3])
    keep = torch.ones(x.shape[2], x.shape[3], dtype=torch.bool)
    for r in rows:
        for c in cols:
            keep[r:r + side, c:c + side] = False
    return x[:, :, keep].flatten(1)


def match_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """For each row of ``a``, the index of the identical row of ``b`` (asserts one exists).

    Rows are matched by an exact integer fingerprint of their float32 bits, then compared in full.
    """
    weights = torch.randint(1, 2**31, (a.shape[1],), generator=torch.Generator().manual_seed(0))

    def fingerprint(t: torch.Tensor) -> torch.Tensor:
        return (t.contiguous().view(torch.int32).long() * weights).sum(1)

    fb = fingerprint(b)
    order = fb.argsort()
    index = order[torch.searchsorted(fb[order], fingerprint(a)).clamp(max=len(b) - 1)]
    assert torch.equal(a, b[index]), "some rows of a have no identical row in b"
    return index


def domino_class(top: torch.Tensor, cue: DominoesCue, num_classes: int) -> torch.Tensor:
    """Class whose simple image equals each top half exactly; -1 when none does."""
    refs = cue.simple_image(torch.arange(num_classes), top.shape[2], top.shape[3]).flatten(1)
    eq = (top.flatten(1).unsqueeze(1) == refs.unsqueeze(0)).all(2)   # (N, C)
    return torch.where(eq.any(1), eq.float().argmax(1), torch.full((len(top),), -1))


@pytest.fixture(scope="module")
def box_task():
    return build_task(DataSpec(n_train=400, n_test=2000, cue_proportion=0.5, seed=3))


@pytest.fixture(scope="module")
def dominoes_task():
    return build_task(DataSpec(dataset="shapes_dominoes", cue="dominoes", n_train=200, n_test=2000, seed=4))


def all_tensors(task) -> list[torch.Tensor]:
    out = [task.train.x, task.train.y, task.train_cue_mask, task.train_clean.x, task.train_cue.x]
    for view in task.views.values():
        out += [view.x, view.y]
    return out


# ---- shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [8, 16, 64])
def test_shapes_format(size):
    data = generate_shapes(300, 10, size, seed=0)
    assert data.x.shape == (300, 3, size, size) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    assert torch.bincount(data.y, minlength=10).tolist() == [30] * 10


def test_shapes_same_seed_same_tensors_other_seed_other_tensors():
    a, b, c = (generate_shapes(500, 7, 16, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x) and not torch.equal(a.y, c.y)


def test_shapes_mean_colour_does_not_tell_the_class():
    data = generate_shapes(4000, 10, 16, seed=1)
    feat = data.x.mean(dim=(2, 3))                          # (N, 3) mean colour
    train, test = slice(0, 2000), slice(2000, 4000)
    centroids = torch.stack([feat[train][data.y[train] == c].mean(0) for c in range(10)])
    pred = torch.cdist(feat[test], centroids).argmin(1)
    assert (pred == data.y[test]).float().mean() < 0.2    # chance is 0.1


def test_train_and_test_are_different_draws(box_task):
    train = outside_boxes(box_task.train_clean.x)
    test = outside_boxes(box_task.views["clean"].x)
    dist = torch.cdist(test, train)
    assert dist.min() > 0


# ---- cues -----------------------------------------------------------------------------------------

def test_registry_matches_config_and_unknown_name_lists_valid_ones():
    assert set(CUES) == set(config.CUES)
    with pytest.raises(ValueError) as err:
        make_cue("boxx", 10)
    for name in config.CUES:
        assert name in str(err.value)


@pytest.mark.parametrize("name", sorted(CUES))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_paint_is_batched_pure_and_in_range(name, num_classes):
    cue = make_cue(name, num_classes)
    images = generate_shapes(64, 10, 16, seed=0).x
    canvas = cue.canvas(images)
    labels = torch.randint(0, num_classes, (64,), generator=torch.Generator().manual_seed(0))
    before = canvas.clone()
    painted = cue.paint(canvas, labels)
    assert torch.equal(canvas, before)                       # input untouched
    assert painted.shape == canvas.shape and painted.dtype == torch.float32
    assert 0.0 <= painted.min() and painted.max() <= 1.0
    halves = torch.cat([cue.paint(canvas[:20], labels[:20]), cue.paint(canvas[20:], labels[20:])])
    assert torch.equal(painted, halves)                       # no leakage between images
    if name == "none":
        assert torch.equal(painted, canvas)


def test_box_paints_the_label_position_and_only_there():
    images = generate_shapes(40, 10, 16, seed=2).x
    labels = torch.arange(40) % 10
    cue = BoxCue(10)
    painted = cue.paint(images, labels)
    assert torch.equal(box_position(painted, RED.expand(40, 3)), labels)
    changed = (painted != images).any(1, keepdim=True)
    assert not (changed & ~cue.box_mask(labels, 16, 16)).any()
    assert not changed[labels == NO_BOX].any()


@pytest.mark.parametrize("size", [8, 32, 64])
def test_box_positions_are_distinct_at_every_size(size):
    side, rows, cols = box_geometry(size, size)
    assert side >= 2 and rows[0] < rows[1] < rows[2] and rows[2] + side <= size
    masks = BoxCue(10).box_mask(torch.arange(9), size, size).flatten(1)
    assert (masks.float() @ masks.float().T).fill_diagonal_(0).max() == 0   # no two positions overlap


def test_dominoes_simple_images_are_distinct_for_100_classes():
    refs = DominoesCue(100).simple_image(torch.arange(100), 16, 16).flatten(1)
    assert torch.unique(refs, dim=0).shape[0] == 100
    refs10 = DominoesCue(10).simple_image(torch.arange(10), 8, 8).flatten(1)
    assert torch.unique(refs10, dim=0).shape[0] == 10


# ---- tasks and views: box ---------------------------------------------------------------------------

def test_build_task_same_seed_same_tensors_other_seed_other_tensors():
    spec = DataSpec(n_train=300, n_test=300, seed=7)
    a, b = build_task(spec), build_task(spec)
    for ta, tb in zip(all_tensors(a), all_tensors(b)):
        assert torch.equal(ta, tb)
    c = build_task(DataSpec(n_train=300, n_test=300, seed=8))
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.views["rand_img"].x, c.views["rand_img"].x)
    assert not torch.equal(a.train_cue_mask, c.train_cue_mask)


def test_views_share_labels_and_keys(box_task):
    assert tuple(box_task.views) == config.VIEWS
    y = box_task.views["clean"].y
    for view in box_task.views.values():
        assert torch.equal(view.y, y) and view.x.shape == box_task.views["clean"].x.shape


def test_clean_view_has_no_cue(box_task):
    x = box_task.views["clean"].x
    assert not box_found(x, RED.expand(len(x), 3)).any()
    assert not box_found(box_task.train_clean.x, RED.expand(len(box_task.train_clean), 3)).any()


def test_cue_view_paints_the_label_position(box_task):
    clean, cue = box_task.views["clean"], box_task.views["cue"]
    assert torch.equal(box_position(cue.x, RED.expand(len(cue), 3)), cue.y % 10)
    changed = (cue.x != clean.x).any(1, keepdim=True)
    assert not (changed & ~box_task.cue.box_mask(cue.y, 16, 16)).any()


def test_rand_cue_view_is_independent_of_the_label(box_task):
    clean, view = box_task.views["clean"], box_task.views["rand_cue"]
    pos = box_position(view.x, RED.expand(len(view), 3))
    assert (pos >= 0).all()
    agree = (pos == view.y % 10).float().mean().item()
    assert 0.06 < agree < 0.14                                       # 1/C = 0.1, n = 2000
    assert torch.bincount(pos, minlength=10).min() > 100              # every position occurs
    assert torch.equal(outside_boxes(view.x), outside_boxes(clean.x))  # image content untouched


def test_rand_img_view_keeps_the_label_cue_on_another_image(box_task):
    clean, view = box_task.views["clean"], box_task.views["rand_img"]
    assert torch.equal(box_position(view.x, RED.expand(len(view), 3)), view.y % 10)
    source = match_rows(outside_boxes(view.x), outside_boxes(clean.x))
    assert torch.equal(source.sort().values, torch.arange(len(view)))   # a permutation
    assert (source != torch.arange(len(view))).all()                    # never the image itself
    assert (clean.y[source] == view.y).float().mean() < 0.2            # content's class is unrelated


def test_make_views_is_fixed_by_its_seed(box_task):
    clean = box_task.views["clean"]
    a, b, c = (make_views(box_task.cue, clean, 10, seed=s) for s in (1, 1, 2))
    assert torch.equal(a["rand_img"].x, b["rand_img"].x) and torch.equal(a["rand_cue"].x, b["rand_cue"].x)
    assert not torch.equal(a["rand_img"].x, c["rand_img"].x)


@pytest.mark.parametrize("proportion", [0.0, 0.5, 1.0])
def test_cue_proportion_sets_the_cued_fraction(proportion):
    task = build_task(DataSpec(n_train=200, n_test=20, cue_proportion=proportion))
    mask = task.train_cue_mask
    assert mask.dtype == torch.bool and int(mask.sum()) == round(proportion * 200)
    assert torch.equal(task.train.x[mask], task.train_cue.x[mask])
    assert torch.equal(task.train.x[~mask], task.train_clean.x[~mask])
    pos = box_position(task.train.x, RED.expand(200, 3))
    assert torch.equal(pos[mask], task.train.y[mask] % 10)
    assert (pos[~mask] == NO_BOX).all()


def test_cue_mask_is_fixed_by_the_seed():
    a, b = (build_task(DataSpec(n_train=200, n_test=20, seed=s)).train_cue_mask for s in (0, 1))
    assert not torch.equal(a, b)


# ---- clean subsets ------------------------------------------------------------------------------------

def test_clean_subset_is_class_balanced_clean_and_seeded(box_task):
    sub = box_task.clean_subset(53, seed=0)
    assert len(sub) == 53
    assert sorted(torch.bincount(sub.y, minlength=10).tolist()) == [5] * 7 + [6] * 3
    source = match_rows(sub.x.flatten(1), box_task.train_clean.x.flatten(1))
    assert torch.equal(box_task.train.y[source], sub.y)
    assert torch.equal(box_task.clean_subset(53, seed=0).x, sub.x)
    assert not torch.equal(box_task.clean_subset(53, seed=1).x, sub.x)


def test_clean_subset_too_large_raises(box_task):
    pool = len(box_task.train)
    with pytest.raises(ValueError, match="finetune.n_clean") as err:
        box_task.clean_subset(pool + 1, seed=0)
    assert str(pool + 1) in str(err.value) and str(pool) in str(err.value)
    assert len(box_task.clean_subset(pool, seed=0)) == pool  # the whole (balanced) pool is allowed


def test_clean_subset_exists_even_when_every_training_image_is_cued():
    task = build_task(DataSpec(n_train=100, n_test=20, cue_proportion=1.0))
    sub = task.clean_subset(10, seed=0)
    assert torch.equal(torch.bincount(sub.y, minlength=10), torch.ones(10, dtype=torch.long))
    assert torch.equal(task.cue.paint(sub.x, sub.y).ne(sub.x).flatten(1).any(1), sub.y != 9)  # no box yet


# ---- dominoes -------------------------------------------------------------------------------------------

def test_dominoes_canvas_and_views(dominoes_task):
    views, cue, h = dominoes_task.views, dominoes_task.cue, 16
    assert isinstance(cue, DominoesCue)
    assert dominoes_task.input_shape == (3, 2 * h, h)
    for view in views.values():
        assert view.x.shape == (2000, 3, 2 * h, h)
    clean = views["clean"].x
    y = views["clean"].y
    assert (clean[:, :, :h] == DOMINO_BLANK).all()
    assert (dominoes_task.train_clean.x[:, :, :h] == DOMINO_BLANK).all()
    assert torch.equal(domino_class(views["cue"].x[:, :, :h], cue, 10), y)
    assert torch.equal(views["cue"].x[:, :, h:], clean[:, :, h:])
    rand = domino_class(views["rand_cue"].x[:, :, :h], cue, 10)
    assert (rand >= 0).all() and 0.06 < (rand == y).float().mean() < 0.14
    assert torch.bincount(rand, minlength=10).min() > 100
    assert torch.equal(views["rand_cue"].x[:, :, h:], clean[:, :, h:])
    assert torch.equal(domino_class(views["rand_img"].x[:, :, :h], cue, 10), y)
    source = match_rows(views["rand_img"].x[:, :, h:].flatten(1), clean[:, :, h:].flatten(1))
    assert (source != torch.arange(2000)).all() and torch.equal(source.sort().values, torch.arange(2000))


def test_dominoes_training_set(dominoes_task):
    mask, h = dominoes_task.train_cue_mask, 16
    assert int(mask.sum()) == round(0.8 * 200)
    top = dominoes_task.train.x[:, :, :h]
    assert torch.equal(domino_class(top[mask], dominoes_task.cue, 10), dominoes_task.train.y[mask])
    assert (top[~mask] == DOMINO_BLANK).all()


# ---- cifar ----------------------------------------------------------------------------------------------

def test_load_cifar10_reads_the_batches(tiny_cifar_root):
    train = load_cifar("cifar10", tiny_cifar_root, train=True)
    test = load_cifar("cifar10", tiny_cifar_root, train=False)
    assert train.x.shape == (30, 3, 32, 32) and test.x.shape == (20, 3, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    with open(os.path.join(tiny_cifar_root, "cifar-10-batches-py", "data_batch_2"), "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    expected = torch.from_numpy(entry["data"][0].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(train.x[6], expected) and train.y[6] == entry["labels"][0]
    assert torch.equal(test.y, torch.arange(20) % 10)


def test_cifar100_box_colour_encodes_the_label(tiny_cifar_root):
    task = build_task(DataSpec(dataset="cifar100", root=tiny_cifar_root, cue="box", cue_proportion=0.5))
    assert task.num_classes == 100 and len(task.train) == 200 and len(task.views["clean"]) == 300
    palette = torch.tensor(PALETTE)
    for name in ("cue", "rand_img"):
        view = task.views[name]
        assert torch.equal(box_position(view.x, palette[view.y // 10]), view.y % 10)
    clean = task.views["clean"].x
    for code in range(10):
        assert not box_found(clean, palette[code].expand(len(clean), 3)).any()


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_folder_names_the_folder(tmp_path, name, folder):
    with pytest.raises(InputError) as err:
        build_task(DataSpec(dataset=name, root=str(tmp_path)))
    message = str(err.value)
    assert folder in message and "\n" not in message and "python" in message


def test_corrupt_cifar_file_is_an_input_error(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="train"):
        load_cifar("cifar100", str(tmp_path), train=True)


# ---- small pieces -------------------------------------------------------------------------------------------

def test_cue_reliance():
    assert cue_reliance(0.1, 10) == pytest.approx(0.0)
    assert cue_reliance(1.0, 10) == pytest.approx(1.0)
    assert cue_reliance(0.55, 10) == pytest.approx(0.5)
    assert cue_reliance(0.5, 2) == pytest.approx(0.0)


def test_imageset_batches():
    data = ImageSet(torch.rand(10, 3, 4, 4), torch.arange(10))
    assert [y.tolist() for _, y in data.batches(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(y) for _, y in data.batches(4, drop_last=True)] == [4, 4]
    shuffled = [y for _, y in data.batches(3, torch.Generator().manual_seed(0))]
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10))
    again = [y for _, y in data.batches(3, torch.Generator().manual_seed(0))]
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again))
    assert len(data.subset(torch.tensor([1, 3]))) == 2
    with pytest.raises(ValueError):
        ImageSet(torch.rand(3, 3, 4, 4), torch.arange(4))


def _tensors_of(task) -> dict[str, torch.Tensor]:
    """Every tensor the task's fields hold (image sets and dicts opened), by where it sits."""
    found: dict[str, torch.Tensor] = {}

    def walk(name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            found[name] = value
        elif isinstance(value, ImageSet):
            walk(f"{name}.x", value.x), walk(f"{name}.y", value.y)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{name}[{key}]", item)

    for field in dataclasses.fields(task):
        walk(field.name, getattr(task, field.name))
    return found


def test_task_to_device_moves_every_tensor_it_holds():
    # "meta" is a second device on any machine: a field `to` forgot would stay on the CPU. Fields are
    # enumerated from the dataclass, so a tensor field added later is checked too.
    task = build_task(DataSpec(n_train=50, n_test=20), device="cpu")
    before, after = _tensors_of(task), _tensors_of(task.to("meta"))
    assert after.keys() == before.keys()
    assert {"train_cue_mask", "views_cue_mask", "train_clean.y", "views[rand_img].x"} <= after.keys()
    for name, moved in after.items():
        assert moved.device.type == "meta", name
        assert (moved.shape, moved.dtype) == (before[name].shape, before[name].dtype), name
