"""Every registered operator keeps the slot's contract (timm-style: one test, all operators)."""

import pytest
import torch

from poolbench.errors import UsageError
from poolbench.pools import POOLS, build_pool, get_spec

NAMES = sorted(POOLS)
CHANNELS = 4


def make(name):
    torch.manual_seed(0)
    return build_pool({"name": name}, CHANNELS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [8, 9])
def test_output_shape(name, size):
    pool = make(name).eval()
    out = pool(torch.randn(2, CHANNELS, size, size))
    assert out.shape[:2] == (2, CHANNELS)
    if get_spec(name).local:
        assert 1 <= out.shape[-1] < size and out.shape[-2] == out.shape[-1]
    else:
        assert out.shape[-2:] == (size, size)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_input(name):
    pool = make(name).train()
    x = torch.randn(2, CHANNELS, 8, 8, requires_grad=True)
    pool(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic(name):
    pool = make(name).eval()
    x = torch.randn(3, CHANNELS, 10, 10)
    assert torch.equal(pool(x), pool(x))
    # and independent of what else is in the batch
    assert torch.allclose(pool(x)[:1], pool(x[:1]), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_gives_same_result(name):
    pool = make(name).eval()
    x = torch.randn(2, CHANNELS, 8, 8)
    assert torch.allclose(pool(x), pool(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)


def test_max_and_avg_give_the_articles_4x4_example():
    x = torch.tensor([[0, 0, 1, 5], [0, 1, 5, 1], [1, 5, 1, 0], [5, 1, 0, 0]], dtype=torch.float32).view(1, 1, 4, 4)
    assert build_pool({"name": "max"}, 1)(x).view(2, 2).tolist() == [[1, 5], [5, 1]]
    assert build_pool({"name": "avg"}, 1)(x).view(2, 2).tolist() == [[0.25, 3], [3, 0.25]]


def test_attention_starts_as_average_pooling():
    x = torch.randn(2, CHANNELS, 8, 8)
    assert torch.allclose(make("attention")(x), torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)


def test_fractional_trains_with_random_regions_and_evaluates_fixed():
    pool = make("fractional")
    x = torch.randn(2, CHANNELS, 16, 16)
    assert pool(x).shape[-1] == int(16 / 2**0.5)
    torch.manual_seed(1)
    first = pool.train()(x)
    torch.manual_seed(2)
    assert not torch.equal(first, pool(x))  # training draws new regions


def test_unknown_pool_names_the_valid_ones():
    with pytest.raises(UsageError, match="choose one of: .*max"):
        build_pool({"name": "nope"}, 4)


def test_bad_fractional_ratio_is_a_usage_error():
    with pytest.raises(UsageError, match="ratio"):
        build_pool({"name": "fractional", "ratio": 1.5}, 4)
