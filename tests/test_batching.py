"""finetune.batching: each epoch's clean batches are of even size (the default) or full batches and the
remainder (ragged: the split before the setting, and the reference's); the same images either way."""
from __future__ import annotations

import pytest
import torch

from mmc_sweep.config import FinetuneSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.data.imageset import batch_bounds
from mmc_sweep.finetune import finetune
from mmc_sweep.models import create_model


def test_even_batches_are_as_many_as_ragged_ones_and_within_one_image_of_each_other():
    assert batch_bounds(200, 64, even=True) == [(0, 50), (50, 100), (100, 150), (150, 200)]
    assert batch_bounds(200, 64) == [(0, 64), (64, 128), (128, 192), (192, 200)]
    assert batch_bounds(130, 64, even=True) == [(0, 44), (44, 87), (87, 130)]  # 44 + 43 + 43
    assert batch_bounds(3, 64, even=True) == [(0, 3)] and batch_bounds(0, 64, even=True) == []
    assert batch_bounds(192, 64, even=True) == batch_bounds(192, 64)  # whole batches: the same split


def test_even_batches_cut_the_same_shuffled_order():
    """One permutation per epoch either way, so every image once and the generator left where ragged
    batches leave it (CBFT draws its cue batches from it next)."""
    data = ImageSet(torch.rand(10, 3, 4, 4), torch.arange(10))
    rngs = {even: torch.Generator().manual_seed(5) for even in (False, True)}
    cut = {even: [y for _, y in data.batches(4, rngs[even], even=even)] for even in (False, True)}
    assert [len(y) for y in cut[False]] == [4, 4, 2] and [len(y) for y in cut[True]] == [4, 3, 3]
    assert torch.equal(torch.cat(cut[False]), torch.cat(cut[True]))
    assert sorted(torch.cat(cut[True]).tolist()) == list(range(10))
    assert torch.equal(torch.rand(3, generator=rngs[False]), torch.rand(3, generator=rngs[True]))


@pytest.mark.parametrize("method, epochs", [("naive_ft", 2), ("llrt", 2), ("lpft", 3)])  # lpft: 1 probe epoch + 2
@pytest.mark.parametrize("batching, sizes", [("even", [4, 3, 3]), ("ragged", [4, 4, 2])])
def test_every_stage_of_fine_tuning_steps_on_the_chosen_batches(method, epochs, batching, sizes):
    torch.manual_seed(0)
    cue_model = create_model("small_cnn", num_classes=4, width=8).eval()
    seen: list[int] = []  # images per training step, as the head sees them (the probe trains it on features)
    cue_model.head.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])) if torch.is_grad_enabled() else None)
    gen = torch.Generator().manual_seed(0)
    clean = ImageSet(torch.rand(10, 3, 16, 16, generator=gen), torch.randint(4, (10,), generator=gen))
    finetune(cue_model, clean, FinetuneSpec(method=method, epochs=2, probe_epochs=1, batch_size=4, n_clean=10, batching=batching))
    assert seen == sizes * epochs
