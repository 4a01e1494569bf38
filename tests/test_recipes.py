"""The reference's training and fine-tuning recipes as settings (issue 9): each one does what it says,
and every default still trains exactly as before the settings existed."""
import dataclasses
import math

import pytest
import torch
import torch.optim.optimizer as torch_optimizer
from torch import nn

from mmc_sweep.config import DataSpec, FinetuneSpec, TrainSpec
from mmc_sweep.data import ImageSet, build_task
from mmc_sweep.finetune import (class_mean_distance, cue_pool, finetune, paper_class_mean_distance, sample_t,
                                total_epochs)
from mmc_sweep.models import create_model, model_names
from mmc_sweep.study.definition.spec import BaseSpec
from mmc_sweep.train import fit, lr_factor, train_model


def _images(n=48, seed=0, classes=4):
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand(n, 3, 16, 16, generator=gen), torch.randint(classes, (n,), generator=gen))


def _model():
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=4, width=8)


@pytest.fixture
def steps():
    """Every optimizer step taken while the test runs: (lr, weight_decay, nesterov, parameters stepped)."""
    seen = []

    def record(optimizer, args, kwargs):
        group = optimizer.param_groups[0]
        seen.append((group["lr"], group["weight_decay"], group["nesterov"], sum(len(g["params"]) for g in optimizer.param_groups)))

    handle = torch_optimizer.register_optimizer_step_pre_hook(record)
    yield seen
    handle.remove()


# ---- defaults are unchanged -----------------------------------------------------------------------

def _digest(model):
    with torch.no_grad():
        return [float(model.head.weight.sum()), float(sum(p.abs().sum() for p in model.parameters())),
                float(model.trunk[1].running_mean.sum())]


# Computed by the code before these settings existed (commit ffd97d7: Nesterov forced, cosine only, LLRT on
# the shared lr/epochs/weight decay, joint CBFT with the norm_then_mean invariance), with exactly the
# calls below: [head.weight.sum(), sum of |parameters|, first BatchNorm's running_mean.sum()].
PINNED = {
    "base": [1.8769701719284058, 346.3760070800781, -0.40888917446136475],
    "naive_ft": [1.8766636848449707, 346.4397888183594, -0.5604774951934814],
    "llrt": [-0.9079503417015076, 346.0995178222656, -0.40888917446136475],
    "lpft": [-0.9078019857406616, 346.1623229980469, -0.5487834215164185],
    "cbft": [1.8764737844467163, 346.4775695800781, -0.7037363648414612],
}


def test_default_recipes_train_exactly_as_before():
    base = train_model(_model(), _images(96, 0), TrainSpec(epochs=2, batch_size=32))
    got = {"base": _digest(base)}
    for method, extra in [("naive_ft", {}), ("llrt", {}), ("lpft", {"probe_epochs": 2}), ("cbft", {"warmup_epochs": 1, "epochs": 3})]:
        spec = FinetuneSpec(method=method, **{"epochs": 2, "batch_size": 32, "cue_batch_size": 16, "n_clean": 64, **extra})
        got[method] = _digest(finetune(base, _images(64, 1), spec, cue_data=_images(64, 2)))
    for name, values in PINNED.items():  # float rounding of thread counts stays far below 1e-6 relative
        assert got[name] == pytest.approx(values, rel=1e-6, abs=1e-6), name


# ---- base training: schedule and momentum ----------------------------------------------------------

def test_step_schedule_multiplies_the_lr_at_each_milestone(steps):
    spec = TrainSpec(epochs=5, lr=0.1, batch_size=16, schedule="step", milestones=(2, 4), gamma=0.1)
    train_model(_model(), _images(32), spec)  # 2 steps per epoch
    lrs = [lr for lr, *_ in steps]
    expected = [0.1] * 4 + [0.01] * 4 + [0.001] * 2
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_reference_step_schedule_matches_torch_step_lr():
    # trainer.py: StepLR(step_size=40, gamma=0.1) stepped once per epoch for 100 epochs
    factor = lr_factor("step", total=100 * 3, steps_per_epoch=3, milestones=(40, 80), gamma=0.1)
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=40, gamma=0.1)
    for epoch in range(100):
        for step in range(3 * epoch, 3 * epoch + 3):
            assert 0.1 * factor(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), epoch
        opt.step()
        sched.step()
    assert [factor(3 * e) for e in (0, 39, 40, 79, 80, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_reference_recipe_is_expressible():
    spec = BaseSpec(epochs=100, lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=256, nesterov=False,
                    schedule="step", milestones=[40, 80], gamma=0.1).train_spec(0)
    assert (spec.epochs, spec.lr, spec.momentum, spec.weight_decay, spec.batch_size) == (100, 0.1, 0.9, 1e-4, 256)
    assert (spec.nesterov, spec.schedule, spec.milestones, spec.gamma) == (False, "step", (40, 80), 0.1)


def test_base_spec_mirrors_train_spec():
    # seed and stream come from base.seeds and base.pairing (with the model's kind)
    mirrored = {f.name for f in dataclasses.fields(TrainSpec)} - {"seed", "stream"}
    assert mirrored == {f.name for f in dataclasses.fields(BaseSpec)} - {"seeds", "control_pair", "pairing"}
    changed = {"epochs": 3, "lr": 0.2, "momentum": 0.5, "weight_decay": 0.0, "batch_size": 7, "nesterov": False,
               "schedule": "step", "milestones": (1, 2), "gamma": 0.5}
    assert set(changed) == mirrored
    spec = BaseSpec(**changed).train_spec(5)
    assert {k: getattr(spec, k) for k in changed} == changed and spec.seed == 5
    streams = {(p, kind): BaseSpec(pairing=p).train_spec(5, kind).stream for p in ("independent", "shared")
               for kind in ("cue", "clean")}
    assert streams == {("independent", "cue"): "", ("independent", "clean"): "clean", ("shared", "cue"): "",
                       ("shared", "clean"): ""}


def test_nesterov_off_is_plain_momentum(steps):
    on = train_model(_model(), _images(32), TrainSpec(epochs=1, batch_size=16))
    off = train_model(_model(), _images(32), TrainSpec(epochs=1, batch_size=16, nesterov=False))
    assert [n for _, _, n, _ in steps] == [True, True, False, False]
    assert not torch.allclose(on.head.weight, off.head.weight)
    # plain momentum by hand on one weight: v1 = g1, v2 = m v1 + g2; the update is lr * v (no look-ahead)
    w = nn.Parameter(torch.tensor([1.0]))
    grads = []

    def step_loss(x, y, epoch, rng):
        loss = (w * x.mean()).pow(2).sum()
        grads.append(float(torch.autograd.grad(loss, w, retain_graph=True)[0]))
        return loss

    data = _images(2)
    fit(nn.Module(), [w], step_loss, data, epochs=2, lr=0.1, momentum=0.9, weight_decay=0.0, batch_size=2, seed=0,
        schedule="constant", nesterov=False)
    assert float(w.detach()) == pytest.approx(1.0 - 0.1 * grads[0] - 0.1 * (0.9 * grads[0] + grads[1]), rel=1e-6)


def test_bad_schedule_settings_name_the_key():
    for kwargs, key in [({"schedule": "poly"}, "train.schedule"), ({"schedule": "step"}, "train.milestones"),
                        ({"milestones": (4, 2)}, "train.milestones"), ({"gamma": 0.0}, "train.gamma")]:
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            TrainSpec(**kwargs)
    with pytest.raises(ValueError, match=r"^base\.milestones"):
        BaseSpec(schedule="step")


# ---- the reference's VGG-13 ------------------------------------------------------------------------

def test_reference_vgg13_layout():
    model = create_model("vgg13_paper", num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 10 and all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2, 1, 1]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 10
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert model.feature_dim == 512


def test_reference_vgg13_features_are_the_spatial_mean_of_64x32_inputs():
    model = create_model("vgg13_paper", num_classes=10, width=8).eval()
    x = torch.rand(2, 3, 64, 32)  # the paper's Dominoes: height 64, width 32
    last = {}
    relu = [m for m in model.trunk if isinstance(m, nn.ReLU)][-1]
    relu.register_forward_hook(lambda module, inputs, out: last.__setitem__("map", out))
    with torch.no_grad():
        feats = model.features(x)
        assert model(x).shape == (2, 10)
    assert last["map"].shape[2:] == (4, 2)  # four stride-2 convolutions: 64x32 -> 4x2
    assert torch.allclose(feats, last["map"].mean(dim=(2, 3)), atol=1e-6)


@pytest.mark.parametrize("name", model_names())
def test_every_architecture_takes_the_paper_dominoes_shape(name):
    model = create_model(name, num_classes=3, width=8).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 32)).shape == (2, 3)


# ---- CBFT ------------------------------------------------------------------------------------------

def test_paper_t_distribution_range_and_point_masses():
    gen = torch.Generator().manual_seed(0)
    n = 20000
    t = torch.tensor([sample_t("paper", gen) for _ in range(n)])
    assert float(t.min()) == 0.25 and float(t.max()) == 0.75
    end_mass = 0.5 * (1 - math.erf(0.5 / math.sqrt(2)))  # P(Z > 0.5) for Z ~ N(0, 1): 0.3085
    tolerance = 4 * math.sqrt(end_mass * (1 - end_mass) / n)  # four standard errors
    assert abs(float((t == 0.25).float().mean()) - end_mass) < tolerance
    assert abs(float((t == 0.75).float().mean()) - end_mass) < tolerance
    inside = t[(t > 0.25) & (t < 0.75)]
    assert abs(float(inside.mean()) - 0.5) < 0.01  # symmetric about the midpoint


def test_paper_invariance_form_by_hand():
    a = torch.tensor([[3.0, 0.0], [1.0, 2.0], [0.0, 1.0], [2.0, 2.0]])
    ya = torch.tensor([0, 0, 1, 2])
    b = torch.tensor([[0.0, 2.0], [1.0, 1.0], [5.0, 5.0]])
    yb = torch.tensor([0, 1, 1])
    # class 0: mean a = (2, 1) -> (2, 1)/sqrt5; mean b = (0, 2) -> (0, 1);
    #          |.|^2 = (2/sqrt5)^2 + (1/sqrt5 - 1)^2 = 2 - 2/sqrt5
    # class 1: mean a = (0, 1) -> (0, 1); mean b = (3, 3) -> (1, 1)/sqrt2;
    #          |.|^2 = (1/sqrt2)^2 + (1 - 1/sqrt2)^2 = 2 - sqrt2
    # class 2: only in a, left out; the sum is divided by all 3 classes
    expected = ((2 - 2 / math.sqrt(5)) + (2 - math.sqrt(2))) / 3
    assert float(paper_class_mean_distance(a, ya, b, yb, 3)) == pytest.approx(expected, rel=1e-6)
    # today's form normalises each row first and averages over the 2 shared classes: another number
    assert float(class_mean_distance(a, ya, b, yb, 3)) != pytest.approx(expected, rel=1e-3)
    # no class in both batches: zero
    assert float(paper_class_mean_distance(a, ya, b, torch.tensor([3, 3, 3]), 4)) == 0.0


def _cbft(**kwargs):
    spec = FinetuneSpec(**{"method": "cbft", "epochs": 2, "batch_size": 16, "cue_batch_size": 8, "n_clean": 48, **kwargs})
    return finetune(_model().eval(), _images(48), spec, cue_data=_images(48, seed=1))


@pytest.mark.parametrize("update, warmup, expected", [
    ("joint", "ce_only", 2 * 3),                   # one step per batch, 3 batches per epoch
    ("alternating", "ce_only", 3 + 2 * 3),         # warm-up epoch: cross-entropy only, one step per batch
    ("alternating", "no_invariance", 2 * 2 * 3),   # the barrier step stays on during warm-up
])
def test_alternating_takes_two_optimizer_steps_per_batch(steps, update, warmup, expected):
    _cbft(update=update, warmup=warmup, warmup_epochs=1)
    assert len(steps) == expected


def test_every_cbft_setting_changes_training():
    default = _cbft().state_dict()
    for change in ({"update": "alternating"}, {"invariance_form": "paper"}, {"t_distribution": "paper"},
                   {"warmup": "no_invariance", "warmup_epochs": 1}, {"nesterov": False}):
        other = _cbft(**change).state_dict()
        assert any(not torch.equal(default[k], other[k]) for k in default), change


def test_a_stage_loss_is_computed_after_the_previous_step():
    w = nn.Parameter(torch.tensor([1.0]))
    seen = []

    def two_stages(x, y, epoch, rng):
        for _ in range(2):
            seen.append(float(w.detach()))
            yield (w - 3).pow(2).sum()

    fit(nn.Module(), [w], two_stages, _images(2), epochs=1, lr=0.1, momentum=0.0, weight_decay=0.0, batch_size=2, seed=0)
    assert seen == pytest.approx([1.0, 1.4])  # 1 - 0.1 * 2 * (1 - 3) = 1.4: the second loss saw the first step


def test_cue_pool_sizes_and_proportion():
    task = build_task(DataSpec(n_train=200, n_test=20, cue_proportion=0.8))
    assert len(cue_pool(task, FinetuneSpec())) == 200  # default: today's whole all-cued pool
    assert cue_pool(task, FinetuneSpec()) is task.train_cue
    assert len(cue_pool(task, FinetuneSpec(n_cue=50))) == 50
    mixture = cue_pool(task, FinetuneSpec(n_cue=50, cue_data="train_proportion"))
    cued = (mixture.x == task.train_cue.x.unsqueeze(1)).flatten(2).all(2).any(0)  # which chosen images are cued
    assert len(mixture) == 50 and int(cued.sum()) == 40
    with pytest.raises(ValueError, match="finetune.n_cue"):
        cue_pool(task, FinetuneSpec(n_cue=201))


# ---- LLRT and LPFT's probe with their own settings -------------------------------------------------

def _head_after(spec):
    clean = _images(16)  # one batch: one step per epoch
    return finetune(_model().eval(), clean, spec).head.weight.detach()


def test_llrt_uses_its_own_lr():
    one_step = dict(method="llrt", epochs=1, batch_size=16, n_clean=16, lr=0.05, weight_decay=0.0)
    start = _head_after(FinetuneSpec(**one_step, llrt_lr=1e-20))  # the seeded new head, unmoved
    shared = _head_after(FinetuneSpec(**one_step)) - start
    own = _head_after(FinetuneSpec(**one_step, llrt_lr=0.5)) - start
    assert shared.abs().sum() > 0
    assert torch.allclose(own, 10 * shared, rtol=1e-3, atol=1e-7)  # first step: update proportional to lr


def test_llrt_and_probe_settings_reach_the_optimizer(steps):
    spec = FinetuneSpec(method="llrt", epochs=2, batch_size=16, n_clean=16, llrt_lr=30.0, llrt_epochs=3, llrt_weight_decay=0.0)
    epochs = []
    finetune(_model().eval(), _images(16), spec, on_epoch=lambda e, loss, m, ck: epochs.append(e))
    assert epochs == [1, 2, 3] and total_epochs(spec) == 3
    # the head alone (weight and bias), at its own lr on a cosine over its own 3 epochs, without decay
    assert [(lr, wd, n) for lr, wd, _, n in steps] == [(30.0, 0.0, 2), (pytest.approx(30.0 * 0.75), 0.0, 2),
                                                       (pytest.approx(30.0 * 0.25), 0.0, 2)]
    steps.clear()
    lpft = FinetuneSpec(method="lpft", epochs=1, probe_epochs=2, batch_size=16, n_clean=16, probe_weight_decay=0.0)
    finetune(_model().eval(), _images(16), lpft)
    assert [wd for _, wd, _, _ in steps] == [0.0, 0.0, 5e-4]  # the probe's own decay, then the shared one
    assert [n for *_, n in steps][:2] == [2, 2]


def test_shared_settings_by_default():
    spec = FinetuneSpec(method="llrt", epochs=7, lr=0.3, weight_decay=1e-3)
    assert spec.llrt_recipe() == (7, 0.3, 1e-3) and total_epochs(spec) == 7
    assert FinetuneSpec(probe_epochs=5, probe_lr=0.2, weight_decay=1e-3).probe_recipe() == (5, 0.2, 1e-3)
    assert FinetuneSpec(llrt_weight_decay=0.0).llrt_recipe()[2] == 0.0  # 0 is a value, -1 means shared


@pytest.mark.parametrize("kwargs, key", [
    ({"t_distribution": "normal"}, "finetune.t_distribution"),
    ({"invariance_form": "mse"}, "finetune.invariance_form"),
    ({"update": "both"}, "finetune.update"),
    ({"warmup": "none"}, "finetune.warmup"),
    ({"n_cue": -1}, "finetune.n_cue"),
    ({"cue_data": "cued"}, "finetune.cue_data"),
    ({"llrt_lr": -1.0}, "finetune.llrt_lr"),
    ({"llrt_epochs": -2}, "finetune.llrt_epochs"),
    ({"llrt_weight_decay": -0.5}, "finetune.llrt_weight_decay"),
    ({"probe_weight_decay": -2.0}, "finetune.probe_weight_decay"),
])
def test_bad_finetune_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as err:
        FinetuneSpec(**kwargs)
    assert "\n" not in str(err.value)
