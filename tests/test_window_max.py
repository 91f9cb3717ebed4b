"""max_2x2: torch's max_pool2d values, by a faster form where no gradient is needed."""

import pytest
import torch
import torch.nn.functional as F

from poolbench.pools import build_pool
from poolbench.pools.basic import MaxPool
from poolbench.pools.window_max import max_2x2
from poolbench.speed import count_flops


def no_torch_kernel(monkeypatch):
    """From here on torch's max_pool2d fails: a result must come from the fast form."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch's max_pool2d ran")
    monkeypatch.setattr(F, "max_pool2d", refuse)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", [(3, 16, 28, 28), (2, 5, 9, 7), (1, 3, 2, 3), (4, 7, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fast_form_gives_torchs_values(monkeypatch, stride, shape, channels_last, dtype):
    x = torch.randn(shape).to(dtype)
    x[..., :3, :] = 0.25  # ties, as a blank background gives
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.max_pool2d(x, 2, stride=stride)
    no_torch_kernel(monkeypatch)
    ours = max_2x2(x, stride=stride)
    assert ours.dtype == dtype and torch.equal(ours, expected)
    if channels_last and x.dim() == 4:
        assert ours.is_contiguous(memory_format=torch.channels_last)  # the next layer's layout is kept


@pytest.mark.parametrize("stride", [1, 2])
def test_a_nan_stays_in_its_windows(monkeypatch, stride):
    x = torch.randn(2, 3, 6, 6)
    x[0, 1, 2, 3] = float("nan")
    expected = F.max_pool2d(x, 2, stride=stride)
    no_torch_kernel(monkeypatch)
    ours = max_2x2(x, stride=stride)
    assert torch.equal(ours.isnan(), expected.isnan()) and expected.isnan().any()
    assert torch.equal(ours.nan_to_num(), expected.nan_to_num())


@pytest.mark.parametrize("stride", [1, 2])
def test_with_a_gradient_torchs_kernel_runs_and_ties_go_to_the_first_maximum(stride):
    base = torch.randn(2, 3, 7, 7)
    base[:, :, :4] = 0.5
    ours_x, torch_x = base.clone().requires_grad_(), base.clone().requires_grad_()
    grad = torch.randn_like(F.max_pool2d(base, 2, stride=stride))
    max_2x2(ours_x, stride=stride).backward(grad)
    F.max_pool2d(torch_x, 2, stride=stride).backward(grad)
    assert torch.equal(ours_x.grad, torch_x.grad)


def test_other_strides_are_refused():
    with pytest.raises(ValueError, match="stride 1 or 2"):
        max_2x2(torch.randn(1, 1, 6, 6), stride=3)


@pytest.mark.parametrize("name", ["max", "blur", "fractional", "mixed", "gated", "lp"])
def test_the_flop_counter_still_sees_max_pool2d(name):
    # under the counter the max runs as torch's op, so pooling FLOPs do not depend on the form
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), build_pool({"name": name}, 4))
    _, uncounted = count_flops(model, (1, 12, 12))
    assert "aten.maximum" not in uncounted and uncounted == []


def test_max_pool_module_in_evaluation_uses_the_fast_form(monkeypatch):
    pool = build_pool({"name": "max"}, 4).eval()
    x = torch.randn(2, 4, 9, 9).contiguous(memory_format=torch.channels_last)
    expected = torch.nn.MaxPool2d(2)(x)
    no_torch_kernel(monkeypatch)
    with torch.inference_mode():
        assert torch.equal(pool(x), expected)


def test_max_pool_built_otherwise_keeps_torchs_module():
    pool = MaxPool(3, stride=2, padding=1)
    x = torch.randn(1, 2, 8, 8)
    assert not pool.plain_2x2() and torch.equal(pool(x), F.max_pool2d(x, 3, 2, 1))


def test_fractional_flops_do_not_depend_on_the_layout():
    # evaluation's channels_last index_select computes its indices differently; the counter sees the gather's
    counts = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), build_pool({"name": "fractional"}, 16))
        counts.append(count_flops(model.to(memory_format=layout), (1, 28, 28))[0])
    assert counts[0] == counts[1]
