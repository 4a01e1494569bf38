"""LMCP: declared permutation groups keep the function; alignment undoes a permutation; it lowers
the barrier between two independently trained models."""
import copy

import pytest
import torch

from mmc_sweep.config import AlignSpec, BNResetSpec, PathSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.models import create_model, model_names, permutation_groups
from mmc_sweep.paths import PairContext, barriers, find_permutations, match_weights, measure_pair
from mmc_sweep.permutations import check_groups, identity_permutations, permute_state, random_permutations


def _images(n=64, seed=0, classes=5):
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand(n, 3, 16, 16, generator=gen), torch.randint(classes, (n,), generator=gen))


def _model(name, seed=0):
    torch.manual_seed(seed)
    model = create_model(name, num_classes=5, width=8)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # exact averages: eval-mode units then fire about as often as in training, none dead
    model.train()
    with torch.no_grad():
        for i in range(4):
            model(_images(32, seed=100 + i).x)
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def _permuted(model, seed=1):
    groups = permutation_groups(model)
    perms = random_permutations(groups, torch.Generator().manual_seed(seed))
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(permute_state(model.state_dict(), groups, perms))
    return copy_, perms


@pytest.mark.parametrize("name", model_names())
def test_permuted_copy_computes_the_same_logits(name):
    model = _model(name)
    groups = permutation_groups(model)
    check_groups(model, groups)
    permuted, perms = _permuted(model)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    assert not torch.equal(permuted.trunk[0].weight, model.trunk[0].weight)  # the weights did move
    x = _images(8, seed=5).x
    with torch.no_grad():
        assert torch.allclose(permuted(x), model(x), atol=1e-5)
        assert not torch.allclose(permuted.features(x), model.features(x))  # features are permuted ...
        assert torch.allclose(permuted.features(x).sort(1).values, model.features(x).sort(1).values, atol=1e-5)  # ... not changed


def test_groups_cover_every_hidden_channel_of_resnet18_once():
    model = create_model("resnet18", num_classes=5, width=8)
    groups = permutation_groups(model)
    outputs = [(key, axis) for g in groups for key, axis in g.axes if axis == 0 and key.endswith(".weight")]
    convs = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(k for k, _ in outputs if k in convs) == sorted(convs)  # every conv's output is permuted, once
    assert sum(g.name.startswith("stream") for g in groups) == 4  # the stem's stream and one per projection
    assert sum(g.name.startswith("block") for g in groups) == 8


@pytest.mark.parametrize("method", ["activation", "weight"])
@pytest.mark.parametrize("name", model_names())
def test_aligning_a_permuted_copy_undoes_the_permutation(name, method):
    model = _model(name)
    permuted, perms = _permuted(model)
    found = find_permutations(model, permuted, AlignSpec(method=method, batches=2, batch_size=32), _images(64, seed=7))
    for group, perm in perms.items():  # unit i of the aligned copy must be unit i of the model
        assert torch.equal(perm[found[group]], torch.arange(len(perm))), group
    views = {v: _images(48, seed=i) for i, v in enumerate(("clean", "cue", "rand_cue", "rand_img"))}
    spec = PathSpec(kinds=("linear", "lmcp"), alphas=5, align=AlignSpec(method=method, batches=2, batch_size=32),
                    bn_reset=BNResetSpec(mode="cumulative", batches=2, batch_size=16, data="clean"))
    rows = measure_pair(model, permuted, views, PairContext(spec, {"clean": _images(64, seed=9)}))
    aligned = barriers([r for r in rows if r["kind"] == "lmcp"])
    for view in views:
        assert abs(aligned[view]["barrier_loss"]) < 1e-4, view
        assert aligned[view]["barrier_acc"] < 1e-9, view
    unaligned = barriers([r for r in rows if r["kind"] == "linear"])
    assert max(unaligned[v]["barrier_loss"] for v in views) > 1e-3  # unaligned, the copy is elsewhere


def test_weight_matching_never_lowers_the_weight_inner_product():
    a, b = _model("resnet18", 0), _model("resnet18", 1)
    groups = permutation_groups(b)

    @torch.no_grad()
    def inner(perms):
        state = permute_state(b.state_dict(), groups, perms)
        return sum(float((v * state[k]).sum()) for k, v in a.named_parameters())

    found = match_weights(a, b, groups, max_iters=20, seed=0)
    assert inner(found) > inner(identity_permutations(groups)) + 1e-3


def test_alignment_lowers_the_barrier_between_two_trained_models(trained_clean_pair):
    task, first, second = trained_clean_pair
    spec = PathSpec(kinds=("linear", "lmcp"), alphas=5, views=("clean",), bn_reset=BNResetSpec(batches=4))
    ctx = PairContext(spec, {"clean": task.train_clean, "cue": task.train_cue})
    rows = measure_pair(first, second, task.views, ctx)
    mid = {r["kind"]: r["loss"] for r in rows if r["alpha"] == 0.5}
    ends = [r["loss"] for r in rows if r["kind"] == "linear" and r["alpha"] in (0.0, 1.0)]
    linear, aligned = mid["linear"] - sum(ends) / 2, mid["lmcp"] - sum(ends) / 2
    assert linear > 0.1  # two seeds: not linearly connected as they are
    assert aligned < 0.6 * linear  # the permutation explained most of the barrier
    weight = PathSpec(kinds=("lmcp",), alphas=5, views=("clean",), align=AlignSpec(method="weight"), bn_reset=BNResetSpec(batches=4))
    by_weight = next(r["loss"] for r in measure_pair(first, second, task.views, PairContext(weight, ctx.train)) if r["alpha"] == 0.5)
    assert by_weight - sum(ends) / 2 < linear
