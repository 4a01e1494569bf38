"""Every registered architecture runs forward and backward on CPU and splits features from head."""
import pytest
import torch

from mmc_sweep.models import create_model, fold_batchnorm, model_names


@pytest.mark.parametrize("name", model_names())
def test_forward_backward_on_cpu(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, width=8)
    x = torch.rand(4, 3, 16, 16)
    logits = model(x)
    assert logits.shape == (4, 7)
    feats = model.features(x)
    assert feats.shape == (4, model.feature_dim)
    assert torch.allclose(model.head(feats), logits, atol=1e-6)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", model_names())
def test_non_square_input(name):
    # the dominoes cue stacks two images: the canvas is twice as tall as wide
    model = create_model(name, num_classes=3, width=8)
    assert model(torch.rand(2, 3, 32, 16)).shape == (2, 3)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="small_cnn") as err:
        create_model("resnet1000", num_classes=10)
    assert "resnet1000" in str(err.value)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        create_model("small_cnn", num_classes=1)


@pytest.mark.parametrize("name", model_names())
def test_folding_batchnorm_keeps_the_function(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, width=8)
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.rand(16, 3, 16, 16) * 2)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)
        assert torch.allclose(folded.features(x), model.features(x), atol=1e-4)
    # every architecture puts each BatchNorm right after a convolution: all of them are folded away
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is unchanged
