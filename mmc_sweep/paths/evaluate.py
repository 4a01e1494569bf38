"""Evaluate a path: at every point, re-estimate BatchNorm by the recorded policy, then measure loss,
accuracy and the invariance metrics on each view.

A path table is tidy: one dict per (alpha, view) with ``alpha``, ``view``, ``loss`` (mean
cross-entropy, nats), ``acc`` (fraction correct) and the invariance metrics of that point
(``cue_reliance``, ``pred_consistency``, ``rep_cosine``; the same on every view row of the point,
None when the views they need are not evaluated).
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

from mmc_sweep.config import PathSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.metrics import INVARIANCE_METRICS, features_and_logits, outputs_metrics
from mmc_sweep.models import fold_batchnorm
from mmc_sweep.paths.bn_reset import bn_batches, reset_bn
from mmc_sweep.paths.interpolate import Curve, alpha_grid, linear_curve


def evaluate_curve(
    template: nn.Module,
    curve: Curve,
    views: dict[str, ImageSet],
    spec: PathSpec,
    bn_data: dict[str, ImageSet] | None = None,
    seed: int = 0,
    known: dict[float, list[dict]] | None = None,
) -> list[dict]:
    """Rows of ``curve`` (a model of ``template``'s architecture at each alpha) at ``spec.alphas``
    points on ``spec.views``. ``known``: rows of some alphas measured before (an endpoint another path
    ended at), used as they are instead of measured again.

    ``bn_data`` maps ``clean``/``cue`` to the training images used for BN re-estimation when
    ``spec.bn_reset.data`` names one of them; ``view`` re-estimates on each evaluated view (each
    view's outputs then come from the model reset on that view).
    """
    missing = [v for v in spec.views if v not in views]
    if missing:
        raise ValueError(f"paths.views: no images for view(s) {missing}; available: {sorted(views)}")
    reset = spec.bn_reset
    shared: Iterable[torch.Tensor] = []
    if reset.mode != "none" and reset.data != "view":
        if not bn_data or reset.data not in bn_data:
            raise ValueError(f"paths.bn_reset.data: {reset.data!r} needs bn_data[{reset.data!r}] (training images)")
        shared = bn_batches(bn_data[reset.data], reset, seed)
    per_view = {v: bn_batches(views[v], reset, seed) for v in spec.views} if reset.data == "view" else {}
    evaluated = {v: views[v] for v in spec.views}
    num_classes = template.head.out_features

    work = copy.deepcopy(template)
    rows = []
    for alpha in alpha_grid(spec.alphas):
        if known and alpha in known:
            rows += [{**r, "alpha": alpha} for r in known[alpha]]
            continue
        work.load_state_dict(curve(alpha))
        outputs = {}
        if reset.data != "view":
            reset_bn(work, reset, shared)
            folded = fold_batchnorm(work)  # evaluation runs with BN folded into the convolutions
            outputs = {v: features_and_logits(folded, images, spec.eval_batch_size) for v, images in evaluated.items()}
        else:
            for v, images in evaluated.items():
                reset_bn(work, reset, per_view[v])
                outputs[v] = features_and_logits(fold_batchnorm(work), images, spec.eval_batch_size)
        metrics = outputs_metrics(outputs, evaluated, num_classes)
        invariance = {name: metrics.get(name) for name in INVARIANCE_METRICS}
        rows += [{"alpha": alpha, "view": v, "loss": metrics[f"loss_{v}"], "acc": metrics[f"acc_{v}"], **invariance}
                 for v in spec.views]
    return rows


class EndpointRows:
    """Rows of path endpoints by content key, the most recent ``capacity`` kept.

    A path's endpoint is its model itself (a straight or Bezier path reaches B exactly: weights 0 and
    1), re-estimated and evaluated as on every other path that ends there; the key names the model
    and everything its rows depend on (data, views, BN re-estimation, seed). So a trial's two paths
    share the fine-tuned model's rows, and a worker's trials share the cue and clean models' rows.
    """

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[str, list[dict]] = OrderedDict()

    def get(self, key: str | None) -> list[dict] | None:
        if key is None or key not in self._rows:
            return None
        self._rows.move_to_end(key)
        return self._rows[key]

    def put(self, key: str | None, rows: list[dict]) -> None:
        if key is None:
            return
        self._rows[key] = [{k: v for k, v in r.items() if k != "alpha"} for r in rows]
        self._rows.move_to_end(key)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)


def evaluate_path(
    model_a: nn.Module,
    model_b: nn.Module,
    views: dict[str, ImageSet],
    spec: PathSpec,
    bn_data: dict[str, ImageSet] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Rows of the straight line ``(1-alpha)·A + alpha·B`` (see :func:`evaluate_curve`)."""
    return evaluate_curve(model_a, linear_curve(model_a.state_dict(), model_b.state_dict()), views, spec, bn_data, seed)
