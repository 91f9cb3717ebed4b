"""Mixed and gated max-average pooling (Lee, Gallagher & Tu 2016): learn how much of max and how
much of average each slot uses. Both start halfway, y = (max + avg) / 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.pools.registry import bool_option, number_option, register
from poolbench.pools.window_max import max_2x2


@register(
    "mixed",
    description="a*max + (1-a)*avg, share a learned",
    size_rule="floor(H/2)",
    reference="Lee et al. 2016",
    options={"alpha": "starting share of max, in (0, 1); learned from there",
             "per_channel": "true: one learned share per channel instead of one per slot"},
)
class MixedPool(nn.Module):
    """y = a * max + (1 - a) * avg, a = sigmoid(learned logit): one per slot, or per channel.

    The sigmoid keeps a in (0, 1) without clipping (the paper learns a in [0, 1] directly).
    """

    def __init__(self, channels: int, alpha: float = 0.5, per_channel: bool = False):
        super().__init__()
        alpha = number_option("alpha", alpha, low=0, high=1, low_open=True, high_open=True)
        count = channels if bool_option("per_channel", per_channel) else 1
        self.mix_logit = nn.Parameter(torch.full((count,), math.log(alpha / (1 - alpha))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.mix_logit).to(x.dtype).view(1, -1, 1, 1)
        return a * max_2x2(x) + (1 - a) * F.avg_pool2d(x, 2)


@register(
    "gated",
    description="g*max + (1-g)*avg, g = sigmoid(learned mask . window)",
    size_rule="floor(H/2)",
    reference="Lee et al. 2016",
    options={"per_channel": "true: one learned 2x2 gate mask per channel instead of one per slot"},
)
class GatedPool(nn.Module):
    """y = g * max + (1 - g) * avg, g = sigmoid(w . window): the gate reads each window's values.

    w is a learned 2x2 mask shared by all channels (or one per channel); zero at the start, so
    g = 1/2 everywhere until training says otherwise.
    """

    def __init__(self, channels: int, per_channel: bool = False):
        super().__init__()
        count = channels if bool_option("per_channel", per_channel) else 1
        self.gate = nn.Parameter(torch.zeros(count, 1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.gate.expand(x.shape[1], 1, 2, 2)
        g = torch.sigmoid(F.conv2d(x, mask.to(x.dtype), stride=2, groups=x.shape[1]))
        return g * max_2x2(x) + (1 - g) * F.avg_pool2d(x, 2)

