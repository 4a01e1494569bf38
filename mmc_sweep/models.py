"""Registry of architectures. Every model exposes ``features(x)`` (penultimate representation) and a
final linear layer ``head``; ``forward(x) == head(features(x))``. LLRT and the invariance loss use the split.

Each architecture is registered with its permutation groups (:mod:`mmc_sweep.permutations`),
declared here beside its definition: alignment (LMCP paths) reads them with :func:`permutation_groups`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mmc_sweep.permutations import PermGroup, bn_axes, chain_groups

GroupsOf = Callable[[nn.Module], tuple[PermGroup, ...]]


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., "CueModel"]
    groups: GroupsOf  # the model's permutation groups, computed from a built model


_REGISTRY: dict[str, Architecture] = {}


def register(name: str, groups: GroupsOf) -> Callable:
    def wrap(builder: Callable[..., "CueModel"]) -> Callable[..., "CueModel"]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = Architecture(builder, groups)
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
    model = _REGISTRY[name].build(num_classes=num_classes, **kwargs)
    model.arch = name  # permutation_groups() finds the declaration by it
    # channels-last: oneDNN (CPU) and cuDNN run these convolutions 1.5-3x faster in that layout
    return model.to(memory_format=torch.channels_last)


def permutation_groups(model: "CueModel") -> tuple[PermGroup, ...]:
    """The declared permutation groups of a model built by :func:`create_model`."""
    arch = getattr(model, "arch", None)
    if arch not in _REGISTRY:
        raise ValueError(f"model of architecture {arch!r} has no declared permutation groups; registered: {', '.join(model_names())}")
    return _REGISTRY[arch].groups(model)


class CueModel(nn.Module):
    """A trunk producing penultimate features and a linear head on top of them."""

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.arch = ""  # set by create_model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x.contiguous(memory_format=torch.channels_last))  # no copy when already so

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register("small_cnn", groups=chain_groups)
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


@register("vgg13", groups=chain_groups)
def vgg13(num_classes: int, width: int = 0) -> CueModel:
    """Max-pool VGG-13 with BatchNorm: five stages of two stride-1 convolutions, each stage closed by a
    2x2 max-pool (channels 64-128-256-512-512 at width 64). Not the reference's: see ``vgg13_paper``."""
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


@register("vgg13_paper", groups=chain_groups)
def vgg13_paper(num_classes: int, width: int = 0) -> CueModel:
    """The reference code's VGG-13 (its models.py): ten 3x3 conv-BN-ReLU layers, no max-pool. Four
    stages of two convolutions downsample by the stride-2 second convolution; a fifth pair keeps the
    resolution. Channels 64,64 / 128,128 / 256,256 / 512,512 / 512,512 at width 64; features = the
    spatial mean of the last layer, so any input size works (16 px: 1x1 after the fourth stage;
    64x32 dominoes: 4x2)."""
    w = width or 64
    plan = [(w, 1), (w, 2), (2 * w, 1), (2 * w, 2), (4 * w, 1), (4 * w, 2), (8 * w, 1), (8 * w, 2), (8 * w, 1), (8 * w, 1)]
    layers: list[nn.Module] = []
    cin = 3
    for cout, stride in plan:
        layers += _conv_bn(cin, cout, stride)
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # the spatial mean
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


def resnet_groups(model: CueModel) -> tuple[PermGroup, ...]:
    """A ResNet's groups: one per block's inner channels, and one per residual stream.

    Everything added into the stream — the stem, each block's second convolution, each projection
    shortcut — and everything reading it shares one permutation: a stream starts at the stem or at a
    projection shortcut and runs until the next projection. Its probes are the stem activation and
    every block output in it.
    """
    groups: list[PermGroup] = []
    stream_axes: list[tuple[str, int]] = [("trunk.0.weight", 0), *bn_axes("trunk.1")]
    stream_probes = ["trunk.2"]
    width = model.trunk[0].out_channels

    def close_stream(readers: list[tuple[str, int]]) -> None:
        groups.append(PermGroup(f"stream{sum(g.name.startswith('stream') for g in groups)}", width,
                                tuple(stream_axes + readers), tuple(stream_probes)))

    for name, block in model.trunk.named_children():
        if not isinstance(block, _BasicBlock):
            continue
        p = f"trunk.{name}"
        readers = [(f"{p}.body.0.weight", 1)]
        if isinstance(block.shortcut, nn.Sequential):  # projection: this block starts a new stream
            close_stream(readers + [(f"{p}.shortcut.0.weight", 1)])
            width = block.body[3].out_channels
            stream_axes = [(f"{p}.shortcut.0.weight", 0), *bn_axes(f"{p}.shortcut.1")]
            stream_probes = []
        else:
            stream_axes += readers
        stream_axes += [(f"{p}.body.3.weight", 0), *bn_axes(f"{p}.body.4")]
        stream_probes.append(p)
        inner = block.body[0].out_channels
        groups.append(PermGroup(f"block{name}", inner, ((f"{p}.body.0.weight", 0), *bn_axes(f"{p}.body.1"),
                                                        (f"{p}.body.3.weight", 1)), (f"{p}.body.2",)))
    close_stream([("head.weight", 1)])
    return tuple(groups)


@register("resnet18", groups=resnet_groups)
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
