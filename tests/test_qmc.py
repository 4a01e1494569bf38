"""QMC: the Bezier curve's endpoints are exact, its midpoint training lowers the loss along it
(with the reference's update as an option), and a stored midpoint is reused, not retrained."""
import copy

import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from mmc_sweep.config import BaseModelSpec, BNResetSpec, DataSpec, PathSpec, QMCSpec, TrainSpec, spec_hash
from mmc_sweep.data import ImageSet
from mmc_sweep.experiment import Pair, measure_paths
from mmc_sweep.models import create_model
from mmc_sweep.paths import FolderMidpoints, bezier_state, evaluate_curve, init_midpoint, interpolate_state, train_midpoint
from mmc_sweep.paths.interpolate import bezier_curve, linear_curve
from mmc_sweep.paths.midpoint import midpoint_key_specs
from mmc_sweep.train import epoch_generator


def _model(seed):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=4, width=8).eval()


def _images(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand(n, 3, 16, 16, generator=gen), torch.randint(4, (n,), generator=gen))


def test_bezier_endpoints_are_exact_and_the_middle_is_the_weighted_sum():
    a, m, b = (_model(s).state_dict() for s in (0, 1, 2))
    for alpha, ref in ((0.0, a), (1.0, b)):
        state = bezier_state(a, m, b, alpha)
        assert all(torch.equal(state[k], ref[k]) for k in ref)
    half = bezier_state(a, m, b, 0.5)
    key = "trunk.0.weight"
    assert torch.allclose(half[key], (a[key] + 2 * m[key] + b[key]) / 4)
    quarter = bezier_state(a, m, b, 0.25)
    assert torch.allclose(quarter[key], 0.5625 * a[key] + 0.375 * m[key] + 0.0625 * b[key])


def test_linear_init_makes_the_curve_the_straight_line():
    a, b = _model(0), _model(1)
    theta = init_midpoint(a, b, QMCSpec(init="linear"))
    sa, sb, st = a.state_dict(), b.state_dict(), theta.state_dict()
    for alpha in (0.1, 0.5, 0.8):
        curve, line = bezier_state(sa, st, sb, alpha), interpolate_state(sa, sb, alpha)
        assert all(torch.allclose(curve[k].float(), line[k].float(), atol=1e-6) for k in sa)
    random = init_midpoint(a, b, QMCSpec(init="random", seed=3)).state_dict()
    assert not torch.allclose(random["trunk.0.weight"], st["trunk.0.weight"])
    assert torch.equal(random["trunk.1.running_mean"], st["trunk.1.running_mean"])  # statistics: the endpoints' mean


def test_one_step_matches_the_hand_computed_update_with_and_without_lr_scaling():
    a, b = _model(0), _model(1)
    data = _images(32)
    lr, wd = 0.1, 0.01
    for scale in (False, True):
        spec = QMCSpec(epochs=1, lr=lr, momentum=0.0, weight_decay=wd, schedule="constant", batch_size=32, init="linear",
                       scale_lr=scale, seed=5)
        theta0 = init_midpoint(a, b, spec)
        trained = train_midpoint(a, b, data, spec)
        rng = epoch_generator(spec.seed, 0)  # the one batch is the whole set, drawn first; then alpha
        order = torch.randperm(len(data), generator=rng)
        alpha = float(torch.rand((), generator=rng))
        c = 2 * alpha * (1 - alpha)
        # gradient at the curve point w (where the reference takes it), by autograd on w itself
        point = {n: ((1 - alpha) ** 2 * pa.detach() + c * pt.detach() + alpha**2 * dict(b.named_parameters())[n].detach()).requires_grad_(True)
                 for (n, pa), (_, pt) in zip(a.named_parameters(), theta0.named_parameters())}
        loss = F.cross_entropy(functional_call(copy.deepcopy(a).train(), point, (data.x[order],)), data.y[order])
        grads = torch.autograd.grad(loss, list(point.values()))
        for (name, p0), g in zip(theta0.named_parameters(), grads):
            # the true gradient w.r.t. theta is c·g; the reference's update is lr·c·(g + wd·theta)
            expected = p0 - lr * c * (g + wd * p0) if scale else p0 - lr * (c * g + wd * p0)
            assert torch.allclose(dict(trained.named_parameters())[name], expected, atol=1e-6), (scale, name)


def test_training_the_midpoint_lowers_the_worst_loss_along_the_path(trained_clean_pair):
    task, first, second = trained_clean_pair
    train = task.train_clean.subset(torch.arange(600))  # the curve's own training data
    spec = PathSpec(kinds=("qmc",), alphas=9, views=("clean",), bn_reset=BNResetSpec(batches=4, batch_size=128),
                    # lr 0.1 (the reference's): at 0.05 three epochs from a random theta lower the worst loss by
                    # only ~0.03 nats here (before theta had its own seed stream it started at `first`'s init)
                    qmc=QMCSpec(epochs=3, lr=0.1, data="clean", init="random"))
    theta = train_midpoint(first, second, task.train_clean, spec.qmc)
    sa, sb = first.state_dict(), second.state_dict()
    bn = {"clean": task.train_clean}
    curve = evaluate_curve(first, bezier_curve(sa, theta.state_dict(), sb), {"clean": train}, spec, bn)
    line = evaluate_curve(first, linear_curve(sa, sb), {"clean": train}, spec, bn)
    worst_curve, worst_line = max(r["loss"] for r in curve), max(r["loss"] for r in line)
    assert worst_curve < worst_line - 0.05
    for r in (curve[0], curve[-1]):  # same endpoints as the line
        same = next(x for x in line if x["alpha"] == r["alpha"])
        assert abs(r["loss"] - same["loss"]) < 1e-6


def test_a_stored_midpoint_is_reused_not_retrained(tmp_path, trained_clean_pair):
    task, first, second = trained_clean_pair
    spec = PathSpec(kinds=("qmc",), alphas=3, views=("clean",), bn_reset=BNResetSpec(batches=2, batch_size=64),
                    qmc=QMCSpec(epochs=1, batch_size=256, data="clean"))
    key = (TrainSpec(seed=0), TrainSpec(seed=1))  # any specs that identify the two endpoints
    store = FolderMidpoints(tmp_path)
    metrics, rows = measure_paths(task, {"p": Pair(first, second, key)}, spec, midpoints=store)
    files = list(tmp_path.glob("*/midpoint.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again, rows_again = measure_paths(task, {"p": Pair(first, second, key)}, spec, midpoints=store)
    assert files[0].stat().st_mtime_ns == stamp and len(list(tmp_path.glob("*/midpoint.pt"))) == 1
    assert again == metrics and rows_again == rows
    other = dict(spec.__dict__, qmc=QMCSpec(epochs=1, batch_size=256, data="clean", seed=1))
    measure_paths(task, {"p": Pair(first, second, key)}, PathSpec(**other), midpoints=store)
    assert len(list(tmp_path.glob("*/midpoint.pt"))) == 2  # other settings: another artifact


def test_a_random_midpoint_is_never_a_base_models_initialisation():
    a, b = _model(0), _model(1)
    for seed in range(3):
        theta = init_midpoint(a, b, QMCSpec(init="random", seed=seed)).state_dict()
        again = init_midpoint(a, b, QMCSpec(init="random", seed=seed)).state_dict()
        assert all(torch.equal(theta[k], again[k]) for k in theta)  # seeded: the same theta every time
        for base_seed in range(3):  # the base models of a seed start from torch.manual_seed(seed) (new_model)
            init = _model(base_seed).state_dict()
            assert not torch.allclose(theta["trunk.0.weight"], init["trunk.0.weight"]), (seed, base_seed)
            assert not torch.allclose(theta["head.weight"], init["head.weight"]), (seed, base_seed)


def test_bn_stats_init_keeps_a_fresh_networks_statistics():
    a, b = _model(0), _model(1)
    with torch.no_grad():  # endpoints with non-trivial statistics
        a.train()(torch.rand(16, 3, 16, 16) * 3)
    for init in ("random", "linear"):
        theta = init_midpoint(a.eval(), b, QMCSpec(init=init, bn_stats="init")).state_dict()
        assert torch.equal(theta["trunk.1.running_mean"], torch.zeros_like(theta["trunk.1.running_mean"]))
        assert torch.equal(theta["trunk.1.running_var"], torch.ones_like(theta["trunk.1.running_var"]))
        average = init_midpoint(a, b, QMCSpec(init=init)).state_dict()["trunk.1.running_mean"]
        assert not torch.allclose(average, torch.zeros_like(average))


def test_the_references_recipe_reaches_the_optimizer():
    a, b = _model(0), _model(1)
    spec = QMCSpec(epochs=3, lr=0.1, schedule="step", milestones=(2,), gamma=0.1, nesterov=False, momentum=0.9,
                   weight_decay=1e-4, batch_size=32, scale_lr=True, init="random")
    groups = []
    train_midpoint(a, b, _images(64), spec, on_epoch=lambda e, loss, m, ck: groups.append(ck()["optimizer"]["param_groups"][0]))
    # the lr after each epoch (the next epoch's): x0.1 from epoch 2 on; a step's 2a(1-a) scale is undone after it
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.01, 0.01], rel=1e-12)
    assert [g["nesterov"] for g in groups] == [False] * 3
    assert groups[0]["weight_decay"] == 1e-4 and groups[0]["momentum"] == 0.9


def test_midpoint_keys_change_only_where_the_content_does():
    ends = (BaseModelSpec("cue"), BaseModelSpec("clean"))
    # pinned before random midpoints got their own seed stream: a linear midpoint is the same artifact
    assert spec_hash(*ends, DataSpec(), *midpoint_key_specs(QMCSpec(init="linear"))) == "62abdc5344dd22f3"
    # a random one is not: its old key (seeded like the base models) must never be found again
    assert spec_hash(*ends, DataSpec(), *midpoint_key_specs(QMCSpec(init="random"))) != "57a2273187e1b600"
    assert spec_hash(*ends, DataSpec(), QMCSpec(init="random")) == "57a2273187e1b600"


def test_qmc_settings_are_validated():
    for bad, key in (({"schedule": "step"}, "paths.qmc.milestones"), ({"bn_stats": "ema"}, "paths.qmc.bn_stats"),
                     ({"schedule": "linear"}, "paths.qmc.schedule"), ({"gamma": 0}, "paths.qmc.gamma")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            QMCSpec(**bad)
