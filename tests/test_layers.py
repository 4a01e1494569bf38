"""Layer-wise connectivity: a model's layers, and a barrier found in the one layer two models differ in."""
import copy
import math

import pytest
import torch

from mmc_sweep.config import BNResetSpec, PathSpec
from mmc_sweep.models import create_model
from mmc_sweep.paths import PairContext, layer_barriers, measure_layers, model_layers
from mmc_sweep.paths import layers as layers_module


@pytest.mark.parametrize("arch", ["small_cnn", "resnet18"])
def test_every_state_key_is_in_exactly_one_layer_and_a_conv_owns_its_batchnorm(arch):
    model = create_model(arch, num_classes=4, width=4)
    layers = model_layers(model)
    owned = [k for keys in layers.values() for k in keys]
    assert sorted(owned) == sorted(model.state_dict()) and len(owned) == len(set(owned))
    assert list(layers)[0] == "trunk.0" and list(layers)[-1] == "head"
    assert layers["trunk.0"] == ("trunk.0.weight", "trunk.1.weight", "trunk.1.bias", "trunk.1.running_mean",
                                 "trunk.1.running_var", "trunk.1.num_batches_tracked")
    assert layers["head"] == ("head.weight", "head.bias")
    if arch == "small_cnn":
        assert list(layers) == ["trunk.0", "trunk.4", "trunk.8", "head"]
    else:  # stem, two convs per block, three projection shortcuts (each with its BN), head
        assert len(layers) == 1 + 2 * 8 + 3 + 1
        assert "trunk.5.shortcut.0" in layers and "trunk.5.shortcut.1.running_var" in layers["trunk.5.shortcut.0"]
        assert list(layers).index("trunk.5.body.3") < list(layers).index("trunk.5.shortcut.0") < list(layers).index("trunk.6.body.0")


def _sign_flipped(model, conv, bn):
    """A twin computing the same function: conv -W and BN -gamma, -running_mean (BN(-y) with -gamma, -mean
    = gamma (y - mean) / std + beta); it differs from ``model`` only in the layer of ``conv``."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for name in (f"{conv}.weight", f"{bn}.weight", f"{bn}.running_mean"):
            twin.state_dict()[name].neg_()
    return twin


FLIPPED = "trunk.4"  # small_cnn's second conv (its BN is trunk.5)


@pytest.fixture(scope="module")
def flipped_pair(trained_clean_pair):
    task, model, _ = trained_clean_pair
    twin = _sign_flipped(model, FLIPPED, "trunk.5")
    x = task.views["clean"].x[:200]
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), twin.eval()(x), atol=1e-4)
    return task, model, twin


def _ctx(task, spec):
    return PairContext(spec, {"clean": task.train_clean, "cue": task.train_cue})


def test_a_pair_differing_in_one_layer_has_a_barrier_in_that_layer_alone(flipped_pair, monkeypatch):
    task, model, twin = flipped_pair
    # the default BN reset policy (cumulative on clean training images; 2 batches, not 8, for speed)
    # re-estimates every point's running statistics, so the flipped layer's interpolated running_mean
    # plays no part and its barrier comes from conv weight and gamma alone: at alpha 0.5 both are 0, the
    # layer outputs its BN bias, a constant, and the model predicts at chance (elsewhere the reset
    # undoes their shrinking, so the barrier is at 0.5 only; with mode none it is wider). The other
    # layers' curves, A at every alpha, are re-estimated on the same images as A itself.
    spec = PathSpec(kinds=("linear",), alphas=5, views=("clean", "rand_img"), bn_reset=BNResetSpec(batches=2))
    calls = []
    evaluate = layers_module.evaluate_curve
    monkeypatch.setattr(layers_module, "evaluate_curve", lambda *a: calls.append(0.0 in a[-1]) or evaluate(*a))
    rows = measure_layers(model, twin, {v: task.views[v] for v in spec.views}, _ctx(task, spec))
    assert calls == [False, True, True, True]  # alpha 0 (A itself) measured by the first layer only
    assert [(r["layer"], r["alpha"], r["view"]) for r in rows][:2] == [("trunk.0", 0.0, "clean"), ("trunk.0", 0.0, "rand_img")]
    start = [{k: v for k, v in r.items() if k != "layer"} for r in rows if r["alpha"] == 0.0]
    assert all(r == start[i % 2] for i, r in enumerate(start))

    found = {(b["layer"], b["view"]): b for b in layer_barriers(rows)}
    assert set(found) == {(layer, view) for layer in model_layers(model) for view in spec.views}
    chance = 1 / task.num_classes
    start_clean, mid = (next(r for r in rows if (r["layer"], r["alpha"], r["view"]) == (FLIPPED, a, "clean")) for a in (0.0, 0.5))
    assert mid["acc"] <= 1.5 * chance and mid["loss"] > math.log(task.num_classes) - 0.05  # a constant prediction
    # the fixture's clean models are weak (loss ~2 nats of log 10 = 2.3): the barrier is what chance adds
    room_loss, room_acc = math.log(task.num_classes) - start_clean["loss"], start_clean["acc"] - chance
    assert room_loss > 0.1 and room_acc > 0.1
    flipped = found[(FLIPPED, "clean")]
    assert flipped["barrier_loss"] == flipped["barrier_mid_loss"] > 0.8 * room_loss
    assert flipped["barrier_acc"] == flipped["barrier_mid_acc"] > 0.8 * room_acc
    for (layer, view), b in found.items():
        if layer != FLIPPED:  # A at every alpha, to the rounding of (1-a)·w + a·w
            assert abs(b["barrier_loss"]) < 1e-5 and abs(b["barrier_mid_loss"]) < 1e-5, (layer, view, b)
            assert b["barrier_acc"] == 0.0 and b["barrier_mid_acc"] == 0.0, (layer, view, b)


def test_unknown_layers_are_refused_naming_the_valid_ones(flipped_pair):
    task, model, twin = flipped_pair
    spec = PathSpec(kinds=("linear",), alphas=2, views=("clean",))
    with pytest.raises(ValueError, match=r"layers: unknown layer\(s\) \['trunk.1', 'tail'\]; valid: trunk.0, trunk.4"):
        measure_layers(model, twin, task.views, _ctx(task, spec), layers=["trunk.0", "trunk.1", "tail"])
    rows = measure_layers(model, twin, task.views, _ctx(task, spec), layers=["head"])
    assert {r["layer"] for r in rows} == {"head"} and len(rows) == 2
