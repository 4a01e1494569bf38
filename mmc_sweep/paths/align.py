"""LMCP alignment: permute model B's hidden units to best match model A's, leaving B's function unchanged.

Two matching methods, over the permutation groups each architecture declares:

* ``activation`` (the paper's): the Pearson correlation between A's and B's channels of every probed
  activation, accumulated over fixed batches of training images. One forward pass of each model per
  batch feeds every layer at once (hooks), and each group gets one linear assignment on the summed
  correlations of its probes. Models run in eval mode with BatchNorm folded in.
* ``weight`` (Git Re-Basin, Ainsworth et al., ICLR 2023): coordinate ascent on the inner product of
  the two models' weights, one group at a time in a seeded random order, each step one linear
  assignment given the other groups' current permutations; stops after a pass that improves nothing.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from mmc_sweep.config import AlignSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.models import fold_batchnorm, permutation_groups
from mmc_sweep.paths.bn_reset import fixed_batches
from mmc_sweep.permutations import PermGroup, identity_permutations, permute_state


def _channels(out: Tensor) -> Tensor:
    """(N, C, H, W) or (N, C) activations as (C, N·H·W) float32 rows, one per channel."""
    return out.detach().float().transpose(0, 1).reshape(out.shape[1], -1)


class _Correlation:
    """Running sums for the correlation of A's channels with B's channels at one probe.

    Values are shifted by the first batch's channel means before summing (covariance does not change
    under a shift, and the shifted sums do not cancel catastrophically); sums are kept in float64.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: tuple[Tensor, Tensor] | None = None
        self.sums: list[Tensor] = []

    def add(self, a: Tensor, b: Tensor) -> None:
        if self.shift is None:
            self.shift = (a.mean(1, keepdim=True), b.mean(1, keepdim=True))
        a, b = a - self.shift[0], b - self.shift[1]
        batch = [a.sum(1), b.sum(1), (a * a).sum(1), (b * b).sum(1), a @ b.T]
        self.sums = [s.double() for s in batch] if not self.sums else [s + t.double() for s, t in zip(self.sums, batch)]
        self.n += a.shape[1]

    def matrix(self) -> Tensor:
        """(C_a, C_b) correlations; a channel that never varies (a dead unit) correlates 0 with all."""
        sa, sb, saa, sbb, sab = (s / self.n for s in self.sums)
        cov = sab - torch.outer(sa, sb)
        std_a = (saa - sa * sa).clamp_min(0).sqrt()
        std_b = (sbb - sb * sb).clamp_min(0).sqrt()
        return cov / torch.outer(std_a, std_b).clamp_min(1e-12)


def _assign(score: Tensor) -> Tensor:
    """The permutation maximising ``sum_i score[i, perm[i]]``."""
    from scipy.optimize import linear_sum_assignment  # here: 0.25 s of import for every trial's worker otherwise

    _, cols = linear_sum_assignment(score.cpu().numpy(), maximize=True)
    return torch.as_tensor(cols, dtype=torch.long)


@torch.inference_mode()
def match_activations(model_a: nn.Module, model_b: nn.Module, groups: tuple[PermGroup, ...],
                      batches: list[Tensor]) -> dict[str, Tensor]:
    """Permutations of B's groups maximising the summed activation correlations with A's."""
    folded_a, folded_b = fold_batchnorm(model_a), fold_batchnorm(model_b)  # eval mode, BN folded: fewer ops
    probes = sorted({p for g in groups for p in g.probes})
    stats = {p: _Correlation() for p in probes}
    seen: dict[str, Tensor] = {}  # A's activations of the current batch, consumed by B's hooks

    def keep(name):
        return lambda module, inputs, out: seen.__setitem__(name, _channels(out))

    def pair(name):
        return lambda module, inputs, out: stats[name].add(seen.pop(name), _channels(out))

    modules_a, modules_b = dict(folded_a.named_modules()), dict(folded_b.named_modules())
    handles = [modules_a[p].register_forward_hook(keep(p)) for p in probes]
    handles += [modules_b[p].register_forward_hook(pair(p)) for p in probes]
    try:
        for x in batches:
            folded_a(x)
            folded_b(x)
    finally:
        for h in handles:
            h.remove()
    return {g.name: _assign(sum(stats[p].matrix() for p in g.probes)) for g in groups}


@torch.no_grad()
def match_weights(model_a: nn.Module, model_b: nn.Module, groups: tuple[PermGroup, ...], max_iters: int = 100,
                  seed: int = 0) -> dict[str, Tensor]:
    """Permutations of B's groups maximising ``sum <W_a, permuted W_b>`` over all parameters
    (BatchNorm running statistics are data, not weights, and are left out)."""
    wa = {k: v.detach().double().cpu() for k, v in model_a.named_parameters()}
    wb = {k: v.detach().double().cpu() for k, v in model_b.named_parameters()}
    owners: dict[str, dict[int, str]] = {}  # parameter -> {axis: group permuting it}
    for g in groups:
        for key, axis in g.axes:
            if key in wa:
                owners.setdefault(key, {})[axis] = g.name
    perms = identity_permutations(groups)
    order = torch.Generator().manual_seed(seed)
    for _ in range(max_iters):
        improved = False
        for i in torch.randperm(len(groups), generator=order).tolist():
            g = groups[i]
            score = torch.zeros(g.size, g.size, dtype=torch.float64)
            for key, axis in g.axes:
                if key not in wa:
                    continue
                b = wb[key]
                for other_axis, other in owners[key].items():
                    if other_axis != axis:
                        b = b.index_select(other_axis, perms[other])
                score += wa[key].movedim(axis, 0).reshape(g.size, -1) @ b.movedim(axis, 0).reshape(g.size, -1).T
            best = _assign(score)
            rows = torch.arange(g.size)
            if score[rows, best].sum() > score[rows, perms[g.name]].sum() + 1e-12:
                perms[g.name] = best
                improved = True
        if not improved:
            break
    return perms


def find_permutations(model_a: nn.Module, model_b: nn.Module, spec: AlignSpec, data: ImageSet | None = None,
                      seed: int = 0, groups: tuple[PermGroup, ...] | None = None) -> dict[str, Tensor]:
    """Permutations of B's declared groups (or ``groups``) that align it to A (``data``: training
    images for ``activation``)."""
    groups = permutation_groups(model_b) if groups is None else groups
    if spec.method == "weight":
        return match_weights(model_a, model_b, groups, spec.max_iters, seed)
    if data is None:
        raise ValueError("paths.align.method: activation matching needs training images (data)")
    return match_activations(model_a, model_b, groups, fixed_batches(data, spec.batches, spec.batch_size, seed))


def align(model_a: nn.Module, model_b: nn.Module, spec: AlignSpec, data: ImageSet | None = None, seed: int = 0) -> nn.Module:
    """A copy of B with its hidden units permuted to match A's: the same function as B."""
    groups = permutation_groups(model_b)
    perms = find_permutations(model_a, model_b, spec, data, seed, groups)
    aligned = copy.deepcopy(model_b)
    aligned.load_state_dict(permute_state(model_b.state_dict(), groups, perms))
    return aligned.eval()
