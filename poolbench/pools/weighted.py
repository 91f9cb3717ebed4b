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
from poolbench.pools.window_max import max_2x2, shapes_only


def even_crop(x: torch.Tensor) -> torch.Tensor:
    """Drop a trailing odd row/column, as a 2x2 stride-2 pool does (floor(H/2))."""
    return x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]


def fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def upsample_like(small: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsample of a pooled map, in `full`'s memory layout (channels_last in training)
    even when `small` arrives in another one (the gradient of a sum is an expanded tensor), so
    the element-wise ops that follow run on matching layouts."""
    channels_last = torch.channels_last
    if full.is_contiguous(memory_format=channels_last) and not small.is_contiguous(memory_format=channels_last):
        small = small.contiguous(memory_format=channels_last)
    return F.interpolate(small, scale_factor=2, mode="nearest")


EXP_SAFE = 60.0  # |logit| below this everywhere: e^logit and e^logit * value stay far inside float32


def window_exp(logits: torch.Tensor) -> torch.Tensor:
    """exp(logits - c), c constant within each 2x2 window, so that no window's weights overflow
    or all underflow: c = 0 when every logit lies in (-EXP_SAFE, EXP_SAFE) (one exp pass, the
    common case), else the window's largest logit (exp <= 1). Softmax does not depend on c.
    The range test reads two numbers on the host: free on the CPU, a stall of every training step
    on a GPU, so there the shifted form always runs, as it does under the FLOP counter (shapes_only),
    so the counted FLOPs do not depend on the values."""
    if (logits.device.type == "cpu" and not shapes_only(logits)
            and bool((logits.amax() < EXP_SAFE) & (logits.amin() > -EXP_SAFE))):
        return torch.exp(logits)
    peak = F.interpolate(max_2x2(logits), scale_factor=2, mode="nearest")
    shifted = torch.sub(logits, peak)
    return torch.exp(shifted, out=shifted)  # out=, not exp_: the FLOP counter knows aten.exp


class _SoftmaxPool(torch.autograd.Function):
    """y = sum_w e_w v_w / sum_w e_w per 2x2 window, e = window_exp(logits), with an analytic
    backward that saves v, e and two pooled maps (autograd would save every intermediate):

        w = e / sum e,  dy/dv_w = w_w,  dy/dl_w = w_w (v_w - y)

    `shared` (softpool: logits = values) returns one gradient, w (1 + v - y)."""

    @staticmethod
    def forward(ctx, values, logits, shared: bool):
        e = window_exp(logits)
        denominator = F.avg_pool2d(e, 2)
        numerator = F.avg_pool2d(e * values, 2)
        y = torch.div(numerator, denominator, out=numerator)
        ctx.shared = shared
        ctx.save_for_backward(values, e, denominator, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        values, e, denominator, y = ctx.saved_tensors
        up = lambda t: upsample_like(t, e)  # noqa: E731
        grad_weights = up(grad / denominator.mul(4)).mul_(e)  # dL/dv = w * up(grad)
        centred = up(y - 1) if ctx.shared else up(y)
        centred = torch.sub(values, centred, out=centred).mul_(grad_weights)  # in place: no new full-size buffer
        return (centred, None, None) if ctx.shared else (grad_weights, centred, None)


def softmax_weighted_mean(values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """sum_w softmax(logits)_w * values_w within each 2x2 window (inputs of even size, fp32).

    Window sums come from avg_pool2d; exp is shifted by a per-window constant only when a logit
    is large enough to overflow (window_exp); the backward is analytic (_SoftmaxPool).
    """
    return _SoftmaxPool.apply(values, logits, values is logits)


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
        # Choose without autograd, then y = sum of x * one_hot per window position (_Picked: at the
        # pooled resolution, analytic backward), far cheaper than gathering or torch.where.
        with torch.no_grad():
            weights = [x[..., i::2, j::2].clamp_min(0) for i in (0, 1) for j in (0, 1)]
            total = weights[0] + weights[1] + weights[2] + weights[3]
            # amin, not (total > 0).all(): one float reduction, about 7x cheaper; NaN fails it too
            if total.numel() and not bool(total.amin() > 0):  # windows without a positive value: uniform
                empty = torch.gt(total, 0, out=torch.empty_like(total)).neg_().add_(1)  # 1 there (and at NaN), else 0
                weights = [w.add_(empty) for w in weights]
                total = total.add_(empty, alpha=4.0)
            # u in (0, total]: the first value whose cumulative weight reaches u is chosen; a
            # zero-weight value never is, since the one before it reached u already.
            u = (1 - (torch.rand_like(total) if uniform is None else uniform)) * total
            # reached_k = [u <= cumulative weight up to k], written as 1.0 / 0.0 straight into x's
            # dtype (a float out= costs a fifth of a bool result converted). Cumulative sums of
            # non-negative weights never decrease, so reached is monotone and the one-hot mask of
            # position k is reached_k - reached_{k-1}: positions (0, 0), (0, 1), (1, 0), (1, 1)
            cumulative = weights[0]
            reached = [torch.le(u, cumulative, out=torch.empty_like(total))]  # x's dtype, whatever u's
            for k in (1, 2):
                cumulative = cumulative + weights[k]
                reached.append(torch.le(u, cumulative, out=torch.empty_like(total)))
            masks = [reached[0], reached[1] - reached[0], reached[2] - reached[1], 1 - reached[2]]
        return _Picked.apply(x, *masks)

    @staticmethod
    def _expectation(x: torch.Tensor) -> torch.Tensor:
        weights = x.clamp_min(0)
        weight_sum = F.avg_pool2d(weights, 2)
        positive = weight_sum > 0
        expectation = F.avg_pool2d(weights * x, 2) / torch.where(positive, weight_sum, 1.0)
        return torch.where(positive, expectation, F.avg_pool2d(x, 2))


class _Picked(torch.autograd.Function):
    """y = sum_w chosen_w x_w per 2x2 window for one-hot masks (one per window position, at the
    pooled resolution), summed position by position at the pooled resolution: no full-size
    tensor is made in the forward, and the backward writes grad * mask into each position of
    one uninitialized full-size map. Only the masks are saved."""

    POSITIONS = ((0, 0), (0, 1), (1, 0), (1, 1))

    @staticmethod
    def forward(ctx, x, *masks):
        (i, j), rest = _Picked.POSITIONS[0], _Picked.POSITIONS[1:]
        y = x[..., i::2, j::2] * masks[0]
        for (i, j), mask in zip(rest, masks[1:]):
            y.addcmul_(x[..., i::2, j::2], mask)
        ctx.save_for_backward(*masks)
        ctx.shape = x.shape  # the gradient in x's layout (channels_last in training, crops included)
        ctx.layout = torch.channels_last if x.shape[1] > 1 and x.stride(1) == 1 else torch.contiguous_format
        return y

    @staticmethod
    def backward(ctx, grad):
        masks = ctx.saved_tensors
        grad_x = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout)
        for (i, j), mask in zip(_Picked.POSITIONS, masks):
            torch.mul(grad, mask, out=grad_x[..., i::2, j::2])
        return grad_x, *(None for _ in masks)
