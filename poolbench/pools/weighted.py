"""Operators that weight the four values of each 2x2 window: attention (learned logits),
softpool (the activations are their own logits) and stochastic (weights = the activations).

All share two tricks. Window sums come from avg_pool2d (one fast kernel) instead of unfolding
windows into a last dimension of 4, which is slow on CPU. Weights are computed in fp32 and
the result cast back, so fp16/bf16 inputs cannot overflow or lose the small weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.pools.registry import register


def even_crop(x: torch.Tensor) -> torch.Tensor:
    """Drop a trailing odd row/column, as a 2x2 stride-2 pool does (floor(H/2))."""
    return x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]


def fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def softmax_weighted_mean(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_w softmax(logits)_w * values_w within each 2x2 window (inputs of even size, fp32).

    The window's largest logit is subtracted before exp (so exp <= 1 and cannot overflow) and
    detached: softmax does not depend on it, so the gradient stays exact.
    """
    peak = F.max_pool2d(logits.detach(), 2)
    weights = torch.exp(logits - F.interpolate(peak, scale_factor=2, mode="nearest"))
    return F.avg_pool2d(weights * values, 2) / F.avg_pool2d(weights, 2)


@register(
    "attention",
    description="window mean weighted by softmax(learned 1x1-conv logits)",
    size_rule="floor(H/2)",
    reference="Gao et al. 2019 (LIP)",
)
class AttentionPool(nn.Module):
    """Softmax-weighted 2x2 pooling, weights from a learned 1x1-conv logit map (LIP family).

    y = sum_w softmax(logit)_w * x_w within each window.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.logit = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.logit.weight)  # starts as average pooling
        nn.init.zeros_(self.logit.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = even_crop(x)
        return softmax_weighted_mean(fp32(x), fp32(self.logit(x))).to(x.dtype)



@register(
    "softpool",
    description="sum softmax(x)*x per 2x2 window: a smooth max",
    size_rule="floor(H/2)",
    reference="Stergiou et al. 2021 (SoftPool)",
)
class SoftPool(nn.Module):
    """SoftPool (Stergiou et al. 2021): y = sum_w e^{x_w} x_w / sum_w e^{x_w} in each window.

    Between average (all equal) and max (one dominant value); no parameters.
    """

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = even_crop(x)
        values = fp32(x)
        return softmax_weighted_mean(values, values).to(x.dtype)



@register(
    "stochastic",
    description="train: one x per window, drawn with p ~ x; eval: sum p*x",
    size_rule="floor(H/2)",
    reference="Zeiler & Fergus 2013",
)
class StochasticPool(nn.Module):
    """Stochastic pooling (Zeiler & Fergus 2013).

    Probabilities p_w = a_w / sum a over each 2x2 window, a = max(x, 0) (the paper pools ReLU
    outputs; a window with no positive value gets uniform probabilities). Training outputs one
    sampled value per window; evaluation outputs the expectation sum_w p_w x_w.
    """

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = even_crop(x)
        values = fp32(x)
        out = self._sample(values) if self.training else self._expectation(values)
        return out.to(x.dtype)

    @staticmethod
    def _sample(x: torch.Tensor) -> torch.Tensor:
        # Choose without autograd, then y = 4 * avg_pool(x * one_hot): its backward is one mul
        # and one pool, far cheaper than gathering (or nested torch.where) through autograd.
        with torch.no_grad():
            weights = [x[..., i::2, j::2].clamp_min(0) for i in (0, 1) for j in (0, 1)]
            total = weights[0] + weights[1] + weights[2] + weights[3]
            if not bool((total > 0).all()):  # windows without a positive value: uniform
                weights = [torch.where(total > 0, w, 1.0) for w in weights]
                total = torch.where(total > 0, total, 4.0)
            # u in (0, total]: the first value whose cumulative weight reaches u is chosen; a
            # zero-weight value never is, since the one before it reached u already.
            u = (1 - torch.rand_like(total)) * total
            chosen = torch.empty_like(x)
            reached_before = torch.zeros_like(u, dtype=torch.bool)
            cumulative = torch.zeros_like(u)
            for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
                cumulative = cumulative + weights[k]
                reached = (u <= cumulative) if k < 3 else torch.ones_like(reached_before)
                chosen[..., i::2, j::2] = reached & ~reached_before
                reached_before = reached
        return F.avg_pool2d(x * chosen, 2) * 4

    @staticmethod
    def _expectation(x: torch.Tensor) -> torch.Tensor:
        weights = x.clamp_min(0)
        weight_sum = F.avg_pool2d(weights, 2)
        positive = weight_sum > 0
        expectation = F.avg_pool2d(weights * x, 2) / torch.where(positive, weight_sum, 1.0)
        return torch.where(positive, expectation, F.avg_pool2d(x, 2))

