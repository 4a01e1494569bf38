"""Fine-tuning methods: CBFT's barrier gradient flows through the interpolation; resume is exact."""
import dataclasses

import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from mmc_sweep.config import FinetuneSpec
from mmc_sweep.data import ImageSet
from mmc_sweep.finetune import METHODS, class_mean_distance, finetune, interpolated_state, total_epochs
from mmc_sweep.models import create_model


def _images(n=48, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand(n, 3, 16, 16, generator=gen), torch.randint(4, (n,), generator=gen))


def _cue_model():
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=4, width=8).eval()


def test_barrier_gradient_reaches_finetuned_weights_through_interpolation():
    start = _cue_model().requires_grad_(False)
    model = _cue_model()
    with torch.no_grad():  # move the fine-tuned model away from the start so the path is non-trivial
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    data = _images()
    logits = functional_call(model, interpolated_state(start, model, 0.5), (data.x,))
    (1.5 - F.cross_entropy(logits, data.y)).abs().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0
    assert all(p.grad is None for p in start.parameters())
    assert float(model.trunk[0].weight.grad.abs().sum()) > 0  # reaches the first layer, not just the head


def test_interpolated_state_endpoints():
    a, b = _cue_model(), create_model("small_cnn", num_classes=4, width=8)
    state = interpolated_state(a, b, 1.0)
    assert all(torch.equal(state[n], p) for n, p in b.named_parameters())


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"none"}))
def test_every_method_trains_and_leaves_cue_model_alone(method):
    cue_model = _cue_model()
    before = {k: v.clone() for k, v in cue_model.state_dict().items()}
    spec = FinetuneSpec(method=method, epochs=2, probe_epochs=1, batch_size=16, cue_batch_size=8, n_clean=48)
    epochs = []
    model = finetune(cue_model, _images(), spec, cue_data=_images(seed=1), on_epoch=lambda e, loss, m, ck: epochs.append((e, loss)))
    assert epochs and [e for e, _ in epochs] == list(range(1, total_epochs(spec) + 1))
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in epochs)
    assert all(torch.equal(before[k], v) for k, v in cue_model.state_dict().items())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert changed
    if method == "llrt":
        assert all(k.startswith("head.") for k in changed)  # the trunk is frozen


# the reference's CBFT recipe: two optimizer steps per batch, barrier on during the warm-up
PAPER_CBFT = {"update": "alternating", "warmup": "no_invariance", "warmup_epochs": 1, "invariance_form": "paper",
              "t_distribution": "paper", "nesterov": False}


@pytest.mark.parametrize("method, extra", [("cbft", {}), ("lpft", {}), ("cbft", PAPER_CBFT)])
def test_resume_from_epoch_checkpoint_is_exact(method, extra):
    spec = FinetuneSpec(method=method, epochs=3, probe_epochs=2, batch_size=16, cue_batch_size=8, n_clean=48, **extra)
    clean, cue = _images(), _images(seed=1)
    full = finetune(_cue_model(), clean, spec, cue_data=cue)
    checkpoints = {}
    finetune(_cue_model(), clean, spec, cue_data=cue, on_epoch=lambda e, loss, m, ck: checkpoints.__setitem__(e, ck()))
    for cut in (1, total_epochs(spec) - 1):  # lpft: cut inside the probe stage and inside full fine-tuning
        resumed = finetune(_cue_model(), clean, spec, cue_data=cue, resume=checkpoints[cut])
        for k, v in full.state_dict().items():
            assert torch.allclose(resumed.state_dict()[k].float(), v.float(), atol=1e-6), (cut, k)


def test_none_returns_an_unchanged_copy():
    cue_model = _cue_model()
    model = finetune(cue_model, _images(), FinetuneSpec(method="none"))
    assert model is not cue_model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), cue_model.state_dict().values()))


def test_class_mean_distance():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ya = torch.tensor([0, 0, 1])
    assert float(class_mean_distance(a, ya, a, ya, 3)) == 0.0
    b = torch.tensor([[0.0, 1.0]])
    assert abs(float(class_mean_distance(a, ya, b, torch.tensor([0]), 3)) - 2.0) < 1e-6  # only class 0 shared


def test_bad_arguments():
    with pytest.raises(ValueError, match="naive_ft"):
        finetune(_cue_model(), _images(), FinetuneSpec(method="sgd"))
    with pytest.raises(ValueError, match="cue_data"):
        finetune(_cue_model(), _images(), FinetuneSpec(method="cbft", epochs=1))
    with pytest.raises(ValueError, match="finetune.lr"):
        FinetuneSpec(lr=-1)


def _lrs_after_each_epoch(spec: FinetuneSpec) -> list[float]:
    """The optimizer's learning rate after every epoch (from the epoch checkpoints)."""
    lrs = []
    finetune(_cue_model(), _images(), spec, cue_data=_images(seed=1),
             on_epoch=lambda e, loss, m, ck: lrs.append(ck()["optimizer"]["param_groups"][0]["lr"]))
    return lrs


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"none"}))
def test_constant_schedule_keeps_the_lr_of_every_stage_fixed(method):
    spec = FinetuneSpec(method=method, epochs=3, probe_epochs=2, batch_size=16, cue_batch_size=8, n_clean=48,
                        lr=0.03, probe_lr=0.07, llrt_lr=0.11, schedule="constant")
    # the lr each epoch's stage starts from: lpft's probe epochs use probe_lr, llrt its own head lr
    stage_lr = {"llrt": [0.11] * 3, "lpft": [0.07] * 2 + [0.03] * 3}.get(method, [0.03] * 3)
    assert _lrs_after_each_epoch(spec) == pytest.approx(stage_lr, rel=1e-12)
    cosine = _lrs_after_each_epoch(dataclasses.replace(spec, schedule="cosine"))  # today's: decays to 0 per stage
    assert cosine[-1] == pytest.approx(0.0, abs=1e-12) and cosine[0] < stage_lr[0]


def test_schedule_is_validated():
    with pytest.raises(ValueError, match=r"finetune\.schedule"):
        FinetuneSpec(schedule="step")
