"""Counterfactual accuracies and invariance metrics of one model on the views of a test set.

:func:`outputs_metrics` is the one definition of every metric; :func:`view_metrics` applies it to
a model, and path evaluation applies it at every point of a path.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmc_sweep.config import INVARIANCE_METRICS  # noqa: F401  (re-exported: the names outputs_metrics gives)
from mmc_sweep.data import ImageSet, cue_reliance
from mmc_sweep.models import CueModel, fold_batchnorm


@torch.inference_mode()
def features_and_logits(model: nn.Module, images: ImageSet, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Penultimate features and logits of ``model`` (in its current mode) on every image."""
    feats = torch.cat([model.features(x) for x, _ in images.batches(batch_size)])
    return feats, model.head(feats)


def outputs_metrics(outputs: dict[str, tuple[Tensor, Tensor]], views: dict[str, ImageSet], num_classes: int) -> dict[str, float]:
    """Metrics from the (features, logits) of one model on each view:

    * ``acc_<view>`` (fraction) and ``loss_<view>`` (mean cross-entropy, nats) for every view;
    * ``cue_reliance`` from ``rand_img`` (0 = ignores the cue, 1 = follows it);
    * with ``cue`` and ``rand_cue``: ``pred_consistency``, the fraction of images predicted the same
      with their own cue and with a random one, and ``rep_cosine``, the mean cosine similarity of
      their penultimate features.
    """
    # every metric stays a 0-d tensor until one host transfer at the end: each float() of a CUDA
    # tensor waits for the GPU, and a trial sharing its GPU would wait for its neighbours' work too
    out: dict[str, Tensor] = {}
    for name, (_, logits) in outputs.items():
        y = views[name].y
        out[f"acc_{name}"] = (logits.argmax(1) == y).float().mean()
        out[f"loss_{name}"] = F.cross_entropy(logits, y)
    if "cue" in outputs and "rand_cue" in outputs:
        (f_cue, l_cue), (f_rand, l_rand) = outputs["cue"], outputs["rand_cue"]
        out["pred_consistency"] = (l_cue.argmax(1) == l_rand.argmax(1)).float().mean()
        out["rep_cosine"] = F.cosine_similarity(f_cue, f_rand, dim=1).mean()
    # float64 holds every float32 value exactly: the same numbers float() gave
    values = dict(zip(out, torch.stack([v.double() for v in out.values()]).tolist())) if out else {}
    if "rand_img" in outputs:
        values["cue_reliance"] = cue_reliance(values["acc_rand_img"], num_classes)
    return values


def view_metrics(model: CueModel, views: dict[str, ImageSet], batch_size: int = 256) -> dict[str, float]:
    """:func:`outputs_metrics` of ``model`` (in eval mode; the model itself is left as it is)."""
    folded = fold_batchnorm(model)  # an eval-mode copy, BN folded into the convolutions
    outputs = {name: features_and_logits(folded, images, batch_size) for name, images in views.items()}
    return outputs_metrics(outputs, views, model.head.out_features)
