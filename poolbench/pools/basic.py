"""The classic operators: max, average, strided convolution, global pooling, fractional max."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.pools.registry import number_option, register


@register(
    "max",
    description="max of each 2x2 window, stride 2",
    size_rule="floor(H/2)",
    reference="the baseline",
)
def _max(channels: int) -> nn.Module:
    return nn.MaxPool2d(2)


@register(
    "avg",
    description="mean of each 2x2 window, stride 2",
    size_rule="floor(H/2)",
    reference="the baseline's smooth sibling",
)
def _avg(channels: int) -> nn.Module:
    return nn.AvgPool2d(2)


@register(
    "strided",
    description="learned: conv 3x3 stride 2 + BatchNorm + ReLU",
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
    description="none in the stages; one global mean at the readout",
    size_rule="H (1 at the readout)",
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
        self.ratio = number_option("ratio", ratio, low=0, high=1, low_open=True, high_open=True)

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
    description="max over pseudo-random regions, size x ratio",
    size_rule="floor(H*ratio)",
    reference="Graham 2014",
)
def _fractional(channels: int, ratio: float = 1 / math.sqrt(2)) -> nn.Module:
    return FractionalMaxPool(ratio)
