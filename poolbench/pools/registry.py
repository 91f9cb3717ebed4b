"""Every downsampling operator, and the registry that builds one by name.

Each operator fills the same slot of the network: (N, C, H, W) -> (N, C, H', W').
An operator is registered with the facts `poolbench list` shows; `build_pool` turns a
`pool` config (name plus the operator's options) into a module for a given channel count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.errors import UsageError


@dataclass(frozen=True)
class PoolSpec:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    size_rule: str
    reference: str
    local: bool = True  # False: no local downsampling, the readout's global pool does it all


POOLS: dict[str, PoolSpec] = {}


def register(name: str, *, description: str, size_rule: str, reference: str, local: bool = True):
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        POOLS[name] = PoolSpec(name, factory, description, size_rule, reference, local)
        return factory

    return add


def pool_names() -> list[str]:
    return sorted(POOLS)


def get_spec(name: str) -> PoolSpec:
    if name not in POOLS:
        raise UsageError(f"Unknown pool '{name}'; choose one of: {', '.join(pool_names())}.")
    return POOLS[name]


def build_pool(pool_cfg, channels: int) -> nn.Module:
    """Build the operator named by `pool_cfg.name` with the options in `pool_cfg`."""
    options = {k: v for k, v in dict(pool_cfg).items() if k != "name"}
    spec = get_spec(pool_cfg["name"])
    try:
        return spec.factory(channels, **options)
    except TypeError as err:
        raise UsageError(f"Bad option for pool '{spec.name}': {err}.") from None


@register(
    "max",
    description="y = max over each 2x2 window, stride 2",
    size_rule="floor(H/2)",
    reference="the baseline",
)
def _max(channels: int) -> nn.Module:
    return nn.MaxPool2d(2)


@register(
    "avg",
    description="y = mean over each 2x2 window, stride 2",
    size_rule="floor(H/2)",
    reference="the baseline's smooth sibling",
)
def _avg(channels: int) -> nn.Module:
    return nn.AvgPool2d(2)


@register(
    "strided",
    description="learned downsampling: conv 3x3 stride 2 + BatchNorm + ReLU",
    size_rule="ceil(H/2)",
    reference="Springenberg et al. 2014",
)
def _strided(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


@register(
    "global",
    description="no local downsampling; one global average pool before the classifier",
    size_rule="H (then 1 at the readout)",
    reference="Lin et al. 2013",
    local=False,
)
def _global(channels: int) -> nn.Module:
    return nn.Identity()


class FractionalMaxPool(nn.Module):
    """Fractional max pooling (Graham 2014) whose evaluation is deterministic.

    torch draws new pooling regions on every forward, evaluation included; in eval mode we
    pass fixed region offsets (u = 0.5) so the same input always gives the same output.
    """

    def __init__(self, ratio: float):
        super().__init__()
        if not 0.0 < float(ratio) < 1.0:
            raise UsageError(f"pool.ratio must lie strictly between 0 and 1, got {ratio}.")
        self.ratio = float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_size = (max(1, int(x.shape[-2] * self.ratio)), max(1, int(x.shape[-1] * self.ratio)))
        samples = None
        if not self.training:
            samples = torch.full((x.shape[0], x.shape[1], 2), 0.5, dtype=x.dtype, device=x.device)
        return F.fractional_max_pool2d(x, 2, output_size=out_size, _random_samples=samples)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:.4f}"


@register(
    "fractional",
    description="max over pseudo-random 2x2 regions, output = input x ratio (1/sqrt 2)",
    size_rule="floor(H*ratio)",
    reference="Graham 2014",
)
def _fractional(channels: int, ratio: float = 1 / math.sqrt(2)) -> nn.Module:
    return FractionalMaxPool(ratio)


class AttentionPool(nn.Module):
    """Softmax-weighted 2x2 pooling, weights from a learned 1x1-conv logit map (LIP family).

    y = sum_w softmax(logit)_w * x_w within each window. softmax subtracts the window's
    largest logit first, so fp16/bf16 logits cannot overflow.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.logit = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.logit.weight)  # starts as average pooling
        nn.init.zeros_(self.logit.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        logits = self.logit(x)
        windows = _windows(x)
        weights = torch.softmax(_windows(logits).float(), dim=-1).to(x.dtype)
        return (windows * weights).sum(-1)


def _windows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 2h, 2w) -> (N, C, h, w, 4): the four values of every 2x2 window."""
    return x.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)


@register(
    "attention",
    description="softmax(1x1-conv logits)-weighted mean over each 2x2 window",
    size_rule="floor(H/2)",
    reference="Gao et al. 2019 (LIP)",
)
def _attention(channels: int) -> nn.Module:
    return AttentionPool(channels)
