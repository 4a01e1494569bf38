"""Counterfactual accuracies and invariance metrics of one model on the views of a test set."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from mmc_sweep.data import ImageSet, cue_reliance
from mmc_sweep.models import CueModel, fold_batchnorm


@torch.inference_mode()
def _features_and_logits(model: CueModel, images: ImageSet, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.cat([model.features(x) for x, _ in images.batches(batch_size)])
    return feats, model.head(feats)


def view_metrics(model: CueModel, views: dict[str, ImageSet], batch_size: int = 256) -> dict[str, float]:
    """Metrics of ``model`` (in eval mode; the model itself is left as it is) on the views it is given:

    * ``acc_<view>`` (fraction) and ``loss_<view>`` (mean cross-entropy, nats) for every view;
    * ``cue_reliance`` from ``rand_img`` (0 = ignores the cue, 1 = follows it);
    * with ``cue`` and ``rand_cue``: ``pred_consistency``, the fraction of images predicted the same
      with their own cue and with a random one, and ``rep_cosine``, the mean cosine similarity of
      their penultimate features.
    """
    model = fold_batchnorm(model)  # an eval-mode copy, BN folded into the convolutions: half the cost
    out: dict[str, float] = {}
    feats: dict[str, torch.Tensor] = {}
    preds: dict[str, torch.Tensor] = {}
    for name, images in views.items():
        f, logits = _features_and_logits(model, images, batch_size)
        out[f"acc_{name}"] = float((logits.argmax(1) == images.y).float().mean())
        out[f"loss_{name}"] = float(F.cross_entropy(logits, images.y))
        if name in ("cue", "rand_cue"):
            feats[name], preds[name] = f, logits.argmax(1)
    if "rand_img" in views:
        out["cue_reliance"] = cue_reliance(out["acc_rand_img"], model.head.out_features)
    if len(feats) == 2:
        out["pred_consistency"] = float((preds["cue"] == preds["rand_cue"]).float().mean())
        out["rep_cosine"] = float(F.cosine_similarity(feats["cue"], feats["rand_cue"], dim=1).mean())
    return out
