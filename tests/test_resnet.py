"""Every backbone with every operator: the network-level contract (timm-style, one test for all),
and what the ResNets promise about their downsampling points."""

import copy
import functools

import pytest
import torch
from test_model import loss_and_grads, relu_first
from torch import nn

from poolbench.config import compose_config
from poolbench.model import build_model, inference_copy
from poolbench.pools import POOLS

BACKBONES = ["small", "resnet20", "resnet18"]
SIZE = 16  # resnet18's four stages still end at 2x2
# resnet18's structure (4 stages of 2 blocks) at an eighth of its width: the same code paths, 60x cheaper
SLIM = {"resnet18": ["model.widths=[8,16,32,64]"]}


@functools.lru_cache(maxsize=None)
def composed(backbone, slim):
    overrides = [f"model={backbone}", "data=cifar10", f"data.image_size={SIZE}"]
    return compose_config(overrides + (SLIM.get(backbone, []) if slim else []), check=False)


def network(backbone, pool, slim=True):
    cfg = composed(backbone, slim).copy()
    cfg.pool = POOLS[pool].config()
    torch.manual_seed(0)
    return build_model(cfg)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("pool", sorted(POOLS))
def test_every_backbone_takes_every_operator(backbone, pool):
    model = network(backbone, pool).train()
    x = torch.randn(2, 3, SIZE, SIZE, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        probe = torch.randn(2, 3, SIZE, SIZE)
        first = model(probe)
        assert torch.equal(first, model(probe)), "eval must be deterministic"
        last = model.to(memory_format=torch.channels_last)(probe.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(first, last, atol=1e-4, rtol=1e-3)
        assert torch.allclose(first, inference_copy(model)(probe), atol=1e-4, rtol=1e-3)


def test_resnet_sizes_match_the_papers():
    params = {b: sum(p.numel() for p in network(b, "strided", slim=False).parameters())
              for b in ("resnet20", "resnet18")}
    assert 0.26e6 < params["resnet20"] < 0.28e6  # He et al. 2016: 0.27M
    assert 11.1e6 < params["resnet18"] < 11.25e6  # CIFAR ResNet-18: 11.2M


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_each_downsampling_point_takes_the_operator_in_both_paths():
    model = network("resnet20", "max")
    # two downsampling blocks (stages 2 and 3), each with the operator in the residual path and the shortcut
    assert count(model, nn.MaxPool2d) == 4
    assert not any(m.stride != (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))
    strided = network("resnet20", "strided")
    assert count(strided, nn.MaxPool2d) == 0
    assert sum(m.stride == (2, 2) for m in strided.modules() if isinstance(m, nn.Conv2d)) == 4
    flat = network("resnet20", "global")
    assert not any(m.stride != (1, 1) for m in flat.modules() if isinstance(m, nn.Conv2d))
    assert flat.features(torch.zeros(1, 3, SIZE, SIZE)).shape[-1] == SIZE  # downsamples nowhere


def test_a_users_backbone_gets_make_pool(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, in_channels, num_classes, image_size, make_pool, width=8):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), make_pool(width))\n"
        "        self.head = nn.Linear(width * (image_size // 2) ** 2, num_classes)\n"
        "    def forward(self, x):\n"
        "        return self.head(self.body(x).flatten(1))\n")
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(["data=shapes", "model=custom", "model._target_=mynets.Net", "+model.width=4", "pool=avg"])
    model = build_model(cfg)
    assert isinstance(model.body[1], nn.AvgPool2d) and model.body[0].out_channels == 4
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_model_padding_sets_every_3x3_convolution_of_the_resnets():
    from poolbench.errors import UsageError

    for pool in ("max", "strided"):  # the stride-1 convolutions before the operator, and the plain stride-2 ones
        cfg = composed("resnet20", True).copy()
        cfg.pool, cfg.model.padding = POOLS[pool].config(), "circular"
        convs = [m for m in build_model(cfg).modules() if isinstance(m, nn.Conv2d)]
        assert {m.padding_mode for m in convs if m.kernel_size == (3, 3)} == {"circular"}
        assert {m.padding_mode for m in network("resnet20", pool).modules() if isinstance(m, nn.Conv2d)} == {"zeros"}
    cfg.model.padding = "same"
    with pytest.raises(UsageError, match="model.padding must be zeros or circular, got 'same'"):
        build_model(cfg)


@pytest.mark.parametrize("pool", ["max", "fractional"])
def test_a_max_runs_before_the_residual_paths_relu_with_the_same_gradients(pool):
    model = network("resnet20", pool).to(memory_format=torch.channels_last)
    reference = relu_first(copy.deepcopy(model))
    swapped = [block.residual for block in model.modules() if hasattr(block, "residual")
               and any(getattr(layer, "commutes_with_relu", False) for layer in block.residual)]
    assert len(swapped) == 2 and all(isinstance(r[3], nn.ReLU) for r in swapped)  # stages 2 and 3 downsample
    x = torch.randn(4, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    (loss, grads), (expected_loss, expected_grads) = loss_and_grads(model, x), loss_and_grads(reference, x)
    assert torch.equal(loss, expected_loss) and all(torch.equal(a, b) for a, b in zip(grads, expected_grads))
