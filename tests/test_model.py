import torch
from torch import nn

from poolbench.model import GlobalAveragePool


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
