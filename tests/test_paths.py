"""Interpolation paths: endpoints reproduce the models, a model has no barrier with itself, BN reset,
invariance metrics at every point, the registry of kinds."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmc_sweep import config
from mmc_sweep.config import BNResetSpec, PathSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.metrics import view_metrics
from mmc_sweep.models import create_model
from mmc_sweep.paths import (PATH_KINDS, PairContext, alpha_grid, barrier_metric, barriers, bn_batches, evaluate_path,
                             interpolate_state, measure_pair, path_kind, reset_bn)


def _model(seed):
    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=4, width=8)
    model.train()
    with torch.no_grad():  # give BN non-trivial running statistics
        for _ in range(3):
            model(torch.rand(32, 3, 16, 16) * (seed + 1))
    return model.eval()


def _images(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand(n, 3, 16, 16, generator=gen), torch.randint(4, (n,), generator=gen))


def test_alpha_grid():
    assert alpha_grid(11)[0] == 0.0 and alpha_grid(11)[-1] == 1.0 and len(alpha_grid(11)) == 11
    assert alpha_grid(11)[5] == 0.5


def _views(n=96):
    return {v: _images(n, seed=i) for i, v in enumerate(("clean", "cue", "rand_cue", "rand_img"))}


def _at(rows, alpha, view):
    return next(r for r in rows if r["view"] == view and r["alpha"] == alpha)


def test_endpoints_are_reproduced_exactly():
    a, b = _model(0), _model(1)
    sa, sb = a.state_dict(), b.state_dict()
    for alpha, ref in ((0.0, sa), (1.0, sb)):
        state = interpolate_state(sa, sb, alpha)
        assert all(torch.equal(state[k], ref[k]) for k in ref if ref[k].is_floating_point())
    views = _views()
    rows = evaluate_path(a, b, views, PathSpec(alphas=5, bn_reset=BNResetSpec(mode="none")))
    assert len(rows) == 5 * 4
    for alpha, model in ((0.0, a), (1.0, b)):
        # the same computation as the endpoint metrics: BN folded, the same batches
        expected = view_metrics(model, views)
        for view in views:
            row = _at(rows, alpha, view)
            assert (row["loss"], row["acc"]) == (expected[f"loss_{view}"], expected[f"acc_{view}"])
        for name in ("cue_reliance", "pred_consistency", "rep_cosine"):
            assert all(_at(rows, alpha, v)[name] == expected[name] for v in views), name


def _metrics_by_hand(model, views, num_classes=4) -> dict[str, float]:
    """A model's metrics written out from their definitions: BN not folded, each view in one batch."""
    with torch.no_grad():
        feats = {v: model.features(images.x) for v, images in views.items()}
        logits = {v: model.head(f) for v, f in feats.items()}
    out = {}
    for v, images in views.items():
        out[f"acc_{v}"] = (logits[v].argmax(1) == images.y).double().mean().item()
        out[f"loss_{v}"] = F.cross_entropy(logits[v].double(), images.y).item()
    chance = 1 / num_classes
    out["cue_reliance"] = (out["acc_rand_img"] - chance) / (1 - chance)
    out["pred_consistency"] = (logits["cue"].argmax(1) == logits["rand_cue"].argmax(1)).double().mean().item()
    out["rep_cosine"] = F.cosine_similarity(feats["cue"], feats["rand_cue"], dim=1).mean().item()
    return out


def test_every_point_of_a_path_is_the_interpolated_model_with_its_bn_re_estimated():
    a, b = _model(0), _model(1)
    views = _views()
    # one BN batch of every image: the re-estimated statistics are the mean and unbiased variance over all
    # of them, whatever order they are drawn in
    reset = BNResetSpec(mode="cumulative", batches="all", batch_size=128, data="clean")
    bn_images = _images(128, seed=9)
    rows = evaluate_path(a, b, views, PathSpec(alphas=5, bn_reset=reset), bn_data={"clean": bn_images}, seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    counted = 1e-6  # fractions of 96 images, the harness's in float32: the same counts
    for alpha in (0.0, 0.25, 0.5, 1.0):
        point = create_model("small_cnn", num_classes=4, width=8)
        point.load_state_dict({k: (1 - alpha) * sa[k] + alpha * sb[k] if sa[k].is_floating_point() else sa[k] for k in sa})
        for bn in (m for m in point.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average; of one batch: that batch's statistics
        with torch.no_grad():
            point.train()(bn_images.x)
        expected = _metrics_by_hand(point.eval(), views)
        for view in views:
            row = _at(rows, alpha, view)
            assert row["loss"] == pytest.approx(expected[f"loss_{view}"], abs=1e-5), (alpha, view)
            assert abs(row["acc"] - expected[f"acc_{view}"]) <= counted, (alpha, view)
        cue_row = _at(rows, alpha, "cue")
        assert cue_row["rep_cosine"] == pytest.approx(expected["rep_cosine"], abs=1e-5), alpha
        assert abs(cue_row["pred_consistency"] - expected["pred_consistency"]) <= counted, alpha
        assert abs(cue_row["cue_reliance"] - expected["cue_reliance"]) <= counted, alpha
    # the interior points are measured, not copied from an endpoint
    assert len({round(_at(rows, alpha, "cue")["rep_cosine"], 6) for alpha in (0.0, 0.25, 1.0)}) == 3


def test_invariance_metrics_need_their_views():
    a = _model(0)
    rows = evaluate_path(a, a, {"clean": _images()}, PathSpec(alphas=2, views=("clean",), bn_reset=BNResetSpec(mode="none")))
    assert all(r["cue_reliance"] is None and r["pred_consistency"] is None for r in rows)


def test_unknown_path_kind_lists_the_valid_ones():
    assert tuple(PATH_KINDS) == config.PATH_KINDS == ("linear", "lmcp", "qmc")  # registry and config agree
    with pytest.raises(ValueError, match="linear, lmcp, qmc"):
        path_kind("cubic")
    a = _model(0)
    with pytest.raises(ValueError, match="paths.kinds: unknown path kind 'cubic'"):
        measure_pair(a, a, {"clean": _images()}, PairContext(PathSpec(kinds=("cubic",), views=("clean",)), {}))


def test_barrier_metric_names():
    assert barrier_metric("barrier_loss", "linear", "cue_to_ft", "cue") == "barrier_loss_cue_to_ft_cue"
    assert barrier_metric("barrier_acc", "lmcp", "ft_to_clean", "rand_img") == "barrier_acc_lmcp_ft_to_clean_rand_img"


def test_barrier_of_a_model_with_itself_is_zero():
    a = _model(0)
    views = {"clean": _images()}
    for reset in (BNResetSpec(mode="none"), BNResetSpec(mode="cumulative", batches=2, batch_size=16, data="view")):
        rows = evaluate_path(a, a, views, PathSpec(alphas=7, views=("clean",), bn_reset=reset))
        got = barriers(rows)["clean"]
        assert abs(got["barrier_loss"]) < 1e-6 and abs(got["barrier_acc"]) < 1e-9
        assert abs(got["barrier_mid_loss"]) < 1e-6


def test_barrier_definitions_on_known_curve():
    alphas = alpha_grid(5)  # 0, .25, .5, .75, 1
    loss = [1.0, 2.0, 3.5, 2.0, 2.0]
    acc = [0.9, 0.5, 0.4, 0.8, 0.7]
    rows = [{"alpha": a, "view": "cue", "loss": l, "acc": c} for a, l, c in zip(alphas, loss, acc)]
    got = barriers(rows)["cue"]
    assert abs(got["barrier_loss"] - 2.0) < 1e-12  # 3.5 - 1.5 at alpha 0.5
    assert abs(got["barrier_mid_loss"] - 2.0) < 1e-12
    assert abs(got["barrier_acc"] - 0.4) < 1e-12  # line 0.85 - 0.5 = 0.35 at .25; 0.8 - 0.4 = 0.4 at .5
    assert abs(got["barrier_mid_acc"] - 0.4) < 1e-12


def test_cumulative_reset_gives_exact_batch_average():
    model = _model(0)
    data = _images(64)
    spec = BNResetSpec(mode="cumulative", batches=4, batch_size=16)
    batches = bn_batches(data, spec, seed=3)
    assert len(batches) == 4 and all(len(b) == 16 for b in batches)
    reset_bn(model, spec, batches)
    first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    conv = model.trunk[0]
    means = torch.stack([conv(b).mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(first_bn.running_mean, means.detach(), atol=1e-5)
    assert first_bn.momentum == 0.1  # restored after the reset
    assert not model.training


def test_bn_reset_data_must_be_given():
    a = _model(0)
    try:
        evaluate_path(a, a, {"clean": _images()}, PathSpec(alphas=2, views=("clean",), bn_reset=BNResetSpec(data="cue")))
    except ValueError as err:
        assert "paths.bn_reset.data" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_mismatched_architectures_are_rejected():
    a = _model(0)
    b = create_model("small_cnn", num_classes=4, width=16)
    try:
        interpolate_state(a.state_dict(), b.state_dict(), 0.5)
    except ValueError as err:
        assert "architecture" in str(err)
    else:
        raise AssertionError("expected ValueError")


def test_bn_reset_on_all_images_is_the_cumulative_average_over_every_image():
    model = _model(0)
    data = _images(100)  # 100 = 6 batches of 16 and one of 4: a smaller last batch counts for its images only
    spec = BNResetSpec(mode="cumulative", batches="all", batch_size=16)
    assert spec.label == "cumulative:allx16:clean"
    batches = bn_batches(data, spec, seed=3)
    assert not isinstance(batches, list)  # streamed: one batch gathered at a time
    seen = list(batches)
    assert [len(b) for b in seen] == [16] * 6 + [4] and len(batches) == 7
    assert torch.allclose(torch.cat(seen).sum(0), data.x.sum(0), atol=1e-4)  # every image once
    assert all(torch.equal(a, b) for a, b in zip(seen, batches))  # the same images in every pass
    reset_bn(model, spec, batches)
    first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        out = model.trunk[0](data.x)  # the first BN layer's input for every image at once
        # per batch torch records the mean and the unbiased variance; averaged with weights n_batch / N
        stats = [(model.trunk[0](b).mean(dim=(0, 2, 3)), model.trunk[0](b).var(dim=(0, 2, 3), unbiased=True), len(b))
                 for b in seen]
    manual_var = sum(v * n for _, v, n in stats) / len(data)
    assert torch.allclose(first_bn.running_mean, out.mean(dim=(0, 2, 3)), atol=1e-5)  # the mean over every image
    assert torch.allclose(first_bn.running_var, manual_var, atol=1e-5)
    equal_weights = torch.stack([m for m, _, _ in stats]).mean(0)  # a per-batch average would be off
    assert not torch.allclose(first_bn.running_mean, equal_weights, atol=1e-5)
    assert not model.training and first_bn.momentum == 0.1


def test_bn_reset_batches_are_validated():
    for bad in (0, "most", True):
        with pytest.raises(ValueError, match=r"paths\.bn_reset\.batches"):
            BNResetSpec(batches=bad)


def test_paths_on_fully_cued_views_while_the_tables_use_the_training_proportion():
    from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, TrainSpec
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import finetune_and_measure, train_base

    # 4 classes: every class has a box (the inset layout leaves class 9 without one)
    task = build_task(DataSpec(n_train=200, n_test=120, num_classes=4, cue_proportion=0.5, views_cue="train"))
    full = task.path_views("full")
    assert task.path_views("data") is task.views and task.path_views("train") is task.views
    clean = task.views["clean"].x
    for view in ("cue", "rand_img"):  # rand_img: another image's content under the original label's cue
        assert not (task.views[view].x == clean).flatten(1).all(1).all()
    cued_now = ~(full["cue"].x == clean).flatten(1).all(1)
    cued_in_tables = ~(task.views["cue"].x == clean).flatten(1).all(1)
    assert bool(cued_now.all())  # every image of the path's cue view carries its cue
    assert abs(float(cued_in_tables.double().mean()) - 0.5) < 1e-9  # the tables' views: the training proportion
    for view in ("cue", "rand_cue", "rand_img"):  # the cued images are the same images as in the tables
        assert torch.equal(full[view].x[task.views_cue_mask], task.views[view].x[task.views_cue_mask])

    # a cue model that leans on the box, so that views cued differently give clearly different losses
    cue_model = train_base(task, "cue", ModelSpec(width=8), TrainSpec(epochs=3, lr=0.1, batch_size=32), torch.device("cpu"))
    clean_model = _model(1)
    paths = PathSpec(alphas=2, views=config.VIEWS, bn_reset=BNResetSpec(mode="none"), views_cue="full")
    final, rows, _ = finetune_and_measure(task, cue_model, clean_model, FinetuneSpec(method="none", n_clean=40), paths)
    assert {r["views_cue"] for r in rows} == {"full"}
    at_cue_model = {r["view"]: r["loss"] for r in rows if r["alpha"] == 0.0}  # method none: the cue model itself
    on_full, on_train = view_metrics(cue_model, full), view_metrics(cue_model, task.views)
    for view in ("cue", "rand_cue", "rand_img"):
        assert abs(at_cue_model[view] - on_full[f"loss_{view}"]) < 1e-5, view
        assert abs(at_cue_model[view] - on_train[f"loss_{view}"]) > 5e-3, view  # here 0.05, 0.012, 0.046 nats
        assert final[f"loss_{view}"] == pytest.approx(on_train[f"loss_{view}"], abs=1e-6)  # the trial's table metrics


def test_paths_views_cue_is_validated():
    with pytest.raises(ValueError, match=r"paths\.views_cue"):
        PathSpec(views_cue="half")


def test_epoch_metrics_loss_skips_the_views_and_trains_the_same_model():
    """Without epoch views a trial's history has the training loss only; evaluating the views after
    every epoch draws no random number, so both ways fine-tune the same model and measure the same."""
    from mmc_sweep.config import DataSpec, FinetuneSpec, ModelSpec, TrainSpec
    from mmc_sweep.data import build_task
    from mmc_sweep.experiment import finetune_and_measure, train_base

    task = build_task(DataSpec(n_train=200, n_test=60, num_classes=4))
    cue_model = train_base(task, "cue", ModelSpec(width=8), TrainSpec(epochs=1, batch_size=32), torch.device("cpu"))
    paths = PathSpec(alphas=3, bn_reset=BNResetSpec(mode="none"))
    ft = FinetuneSpec(method="cbft", epochs=2, n_clean=40, batch_size=16, cue_batch_size=16)
    runs = {}
    for views in (True, False):
        history = []
        runs[views] = finetune_and_measure(task, cue_model, _model(1), ft, paths, epoch_views=views,
                                           on_epoch=lambda epoch, metrics, checkpoint: history.append(metrics)), history
    (final_views, rows_views, _), history_views = runs[True]
    (final_loss, rows_loss, _), history_loss = runs[False]
    assert [set(m) for m in history_loss] == [{"train_loss"}] * 2
    assert {"train_loss", "acc_rand_cue", "cue_reliance", "rep_cosine"} <= set(history_views[0])
    assert [m["train_loss"] for m in history_loss] == [m["train_loss"] for m in history_views]
    assert final_loss == final_views and rows_loss == rows_views


def test_paths_that_share_an_endpoint_measure_it_once_with_the_same_rows(trained_clean_pair):
    """A trial's two paths meet at the fine-tuned model, and every trial's paths start or end at the
    same base models: with keys, an endpoint's rows are measured once and reused, and every row equals
    what measuring each path on its own gives (lmcp ends at B aligned to A: its end is measured)."""
    from mmc_sweep.config import BaseModelSpec, TrainSpec
    from mmc_sweep.experiment import Pair, endpoint_key, measure_paths
    from mmc_sweep.paths import EndpointRows

    task, cue, clean = trained_clean_pair
    ft = copy.deepcopy(cue)
    with torch.no_grad():
        for p in ft.parameters():
            p.mul_(0.9)
    keys = {name: BaseModelSpec(train=TrainSpec(seed=i)) for i, name in enumerate(("cue", "ft", "clean"))}
    paths = PathSpec(kinds=("linear", "lmcp"), alphas=3, bn_reset=BNResetSpec(mode="cumulative", batches=2))
    models = {"cue": cue, "ft": ft, "clean": clean}

    def pairs(keyed: bool) -> dict:
        return {name: Pair(models[a], models[b], (keys[a], keys[b]) if keyed else ())
                for name, (a, b) in {"cue_to_ft": ("cue", "ft"), "ft_to_clean": ("ft", "clean")}.items()}

    alone = measure_paths(task, pairs(False), paths)
    shared = EndpointRows()
    assert measure_paths(task, pairs(True), paths, endpoints=shared) == alone
    # the fine-tuned model ended cue_to_ft and started ft_to_clean; lmcp's aligned end is not an endpoint
    assert len(shared._rows) == 3
    # a later call with the same cache takes the cue model's rows from it (poisoned here to show it)
    cue_key = endpoint_key(task, keys["cue"], paths, seed=0)
    assert cue_key in shared._rows
    shared._rows[cue_key] = [{**r, "loss": -1.0} for r in shared._rows[cue_key]]
    _, again = measure_paths(task, {"cue_to_clean": Pair(cue, clean, (keys["cue"], keys["clean"]))}, paths, endpoints=shared)
    assert {r["loss"] for r in again if r["alpha"] == 0.0} == {-1.0}
    assert all(r["loss"] > 0 for r in again if r["alpha"] > 0.0)
