import pytest
import torch
from torch import nn

from poolbench.model import GlobalAveragePool, PoolMaker, SmallCNN, inference_copy
from poolbench.pools import POOLS


def test_global_average_pool_matches_adaptive_avg_pool_and_its_gradient():
    x = torch.randn(3, 4, 5, 6, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert torch.allclose(GlobalAveragePool()(x), nn.AdaptiveAvgPool2d(1)(x))
    assert torch.autograd.gradcheck(GlobalAveragePool(), (x,))


def test_global_average_pool_gradient_is_a_broadcast_view():
    # a dense NCHW gradient is what made ReLU's backward slow under channels_last
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    grad = torch.autograd.grad(GlobalAveragePool()(x).sum(), x)[0]
    assert grad.stride()[2:] == (0, 0)
    assert torch.allclose(grad, torch.full_like(x, 1 / 16))


def _trained_looking(pool: str) -> SmallCNN:
    """A SmallCNN whose BatchNorm layers hold non-trivial running statistics and affine terms."""
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 16, PoolMaker({"name": pool}), channels=[8, 16], readout="auto")
    model = model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 2.0)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    with torch.no_grad():
        model.train()(torch.randn(64, 1, 16, 16) * 3 + 1)
    return model.eval()


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_inference_copy_folds_batchnorm_and_computes_the_same_function(pool):
    model = _trained_looking(pool)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = inference_copy(model)
    x = torch.randn(32, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # every conv + BN pair of the stages is folded; the original model is untouched
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.features)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
