"""Registry of architectures. Every model exposes ``features(x)`` (penultimate representation) and a
final linear layer ``head``; ``forward(x) == head(features(x))``. LLRT and the invariance loss use the split.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_REGISTRY: dict[str, Callable[..., "CueModel"]] = {}


def register(name: str) -> Callable:
    def wrap(builder: Callable[..., "CueModel"]) -> Callable[..., "CueModel"]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return wrap


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs) -> "CueModel":
    """Build a registered architecture; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"model.arch: unknown architecture {name!r}; valid: {', '.join(model_names())}")
    if num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    # channels-last: oneDNN (CPU) and cuDNN run these convolutions 1.5-3x faster in that layout
    return _REGISTRY[name](num_classes=num_classes, **kwargs).to(memory_format=torch.channels_last)


class CueModel(nn.Module):
    """A trunk producing penultimate features and a linear head on top of them."""

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x.contiguous(memory_format=torch.channels_last))  # no copy when already so

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register("small_cnn")
def small_cnn(num_classes: int, width: int = 0) -> CueModel:
    """Three conv-BN-ReLU layers, two poolings, global average pool: the fast CPU default
    (about 2.6 M multiply-adds per 16x16 image at width 32)."""
    w = width or 32
    trunk = nn.Sequential(
        *_conv_bn(3, w),
        nn.MaxPool2d(2),
        *_conv_bn(w, 2 * w),
        nn.MaxPool2d(2),
        *_conv_bn(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return CueModel(trunk, 4 * w, num_classes)


@register("vgg13")
def vgg13(num_classes: int, width: int = 0) -> CueModel:
    """CIFAR-style VGG-13 with BatchNorm (channels 64-128-256-512-512 at width 64)."""
    w = width or 64
    stages = [(w, 2), (2 * w, 2), (4 * w, 2), (8 * w, 2), (8 * w, 2)]
    layers: list[nn.Module] = []
    cin = 3
    for cout, convs in stages:
        for _ in range(convs):
            layers += _conv_bn(cin, cout)
            cin = cout
        layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: small images keep a 1x1 map
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return CueModel(nn.Sequential(*layers), cin, num_classes)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


@register("resnet18")
def resnet18(num_classes: int, width: int = 0) -> CueModel:
    """CIFAR-style ResNet-18: 3x3 stem without max-pool, four stages of two basic blocks."""
    w = width or 64
    layers: list[nn.Module] = [*_conv_bn(3, w)]
    cin = w
    for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
        for j in range(2):
            layers.append(_BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return CueModel(nn.Sequential(*layers), cin, num_classes)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BatchNorm that follows a convolution folded into its weights.

    Same function (to float rounding) at about half the cost on CPU: evaluation along a path runs
    the folded copy. The original model is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return folded
