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
    description="2x2 softmax-weighted pooling with a learned 1x1-conv logit, LIP-style "
                "(not LIP's 3x3 windows and logit module)",
    size_rule="floor(H/2)",
    reference="LIP-style, after Gao et al. 2019",
)
class AttentionPool(nn.Module):
    """2x2 softmax-weighted pooling with a learned 1x1-conv logit, LIP-style.

    y = sum_w softmax(logit)_w * x_w within each 2x2 window, logit = conv1x1(x) (with bias).
    It borrows LIP's idea (Gao et al. 2019: weights exp(logit) learned from the input) but not
    its form: LIP pools 3x3 windows with stride 2 and its logit module is conv3x3 + InstanceNorm
    + 12 * sigmoid; that operator is pool=lip (pools/lip.py).
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
    sampled value per window; evaluation outputs the expectation sum_w p_w x_w (the paper's
    test-time rule), or, while evaluation averages over draws (`eval.draws`, see evaluate.py),
    one sample per window from uniforms seeded by `draw_seed`, the same for every image.
    """

    draw_seed: int | None = None  # set by evaluate.seeded_draw while evaluating one of K draws
    # eval.draws=auto: the expectation (K = 1) scored 99.12-99.18% on MNIST, 2-16 sampled draws no
    # better (98.98-99.18%) at 2-16 times the cost (benchmarks/eval_draws.py): the paper's rule stays
    default_draws = 1

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = even_crop(x)
        values = fp32(x)
        if self.training:
            out = self._sample(values)
        elif self.draw_seed is not None:
            window_shape = (1, *values.shape[1:-2], values.shape[-2] // 2, values.shape[-1] // 2)
            uniform = torch.rand(window_shape, generator=torch.Generator().manual_seed(self.draw_seed))
            out = self._sample(values, uniform.to(values.device))
        else:
            out = self._expectation(values)
        return out.to(x.dtype)

    @staticmethod
    def _sample(x: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """One value per window; `uniform` (broadcast over the batch) fixes the draw, else torch's generator."""
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
            u = (1 - (torch.rand_like(total) if uniform is None else uniform)) * total
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

