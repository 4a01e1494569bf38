"""Permutation symmetry of hidden units: the groups of weight axes that one permutation reorders.

Reordering a group's channels everywhere they appear — the output axis of the layers that write
them, the affine parameters and running statistics of their BatchNorm, the input axis of every
layer that reads them — leaves the network's function unchanged. Each architecture declares its
groups once, beside its definition (:mod:`mmc_sweep.models`); alignment and tests take them from
there. A permutation ``perm`` of a group means: unit ``i`` of the permuted model is unit
``perm[i]`` of the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class PermGroup:
    """Channels that must be permuted together.

    ``axes``: (state-dict key, axis) pairs the permutation reorders. ``probes``: modules whose
    outputs carry exactly these channels (activation matching hooks them; several probes, e.g. every
    block output of a residual stream, share one permutation).
    """

    name: str
    size: int
    axes: tuple[tuple[str, int], ...]
    probes: tuple[str, ...]


def bn_axes(prefix: str) -> list[tuple[str, int]]:
    """The per-channel entries of the BatchNorm at ``prefix``."""
    return [(f"{prefix}.{key}", 0) for key in BN_KEYS]


def chain_groups(model: nn.Module) -> tuple[PermGroup, ...]:
    """Groups of a plain chain ``trunk = Sequential(conv, bn, relu, [pool], conv, ...)`` with a
    linear ``head``: one group per convolution, read by the next convolution (or the head)."""
    groups: list[PermGroup] = []
    modules = list(model.trunk.named_children())
    for i, (name, module) in enumerate(modules):
        if not isinstance(module, nn.Conv2d):
            continue
        axes = [(f"trunk.{name}.weight", 0)] + ([(f"trunk.{name}.bias", 0)] if module.bias is not None else [])
        probe = f"trunk.{name}"
        for later, m in modules[i + 1:]:
            if isinstance(m, nn.BatchNorm2d):
                axes += bn_axes(f"trunk.{later}")
            elif not isinstance(m, nn.ReLU):
                break
            probe = f"trunk.{later}"  # the last of conv-BN-ReLU: post-activation channels, as the paper matches them
        reader = next((f"trunk.{n}.weight" for n, m in modules[i + 1:] if isinstance(m, nn.Conv2d)), "head.weight")
        axes.append((reader, 1))
        groups.append(PermGroup(f"conv{len(groups)}", module.out_channels, tuple(axes), (probe,)))
    return tuple(groups)


def check_groups(model: nn.Module, groups: tuple[PermGroup, ...]) -> None:
    """Every declared axis exists and has the group's size; every probe is a module of the model."""
    state = model.state_dict()
    modules = dict(model.named_modules())
    for g in groups:
        for key, axis in g.axes:
            if key not in state:
                raise ValueError(f"permutation group {g.name}: no entry {key!r} in the model")
            if state[key].shape[axis] != g.size:
                raise ValueError(f"permutation group {g.name}: {key} has {state[key].shape[axis]} channels on axis {axis}, expected {g.size}")
        for probe in g.probes:
            if probe not in modules:
                raise ValueError(f"permutation group {g.name}: no module {probe!r} to probe")


def permute_state(state: dict[str, Tensor], groups: tuple[PermGroup, ...], perms: dict[str, Tensor]) -> dict[str, Tensor]:
    """A new state dict with every group's axes reordered by ``perms[group.name]``."""
    out = dict(state)
    for g in groups:
        perm = perms[g.name]
        for key, axis in g.axes:
            out[key] = out[key].index_select(axis, perm.to(out[key].device))
    return out


def identity_permutations(groups: tuple[PermGroup, ...]) -> dict[str, Tensor]:
    return {g.name: torch.arange(g.size) for g in groups}


def random_permutations(groups: tuple[PermGroup, ...], generator: torch.Generator) -> dict[str, Tensor]:
    return {g.name: torch.randperm(g.size, generator=generator) for g in groups}
