"""Operators that smooth before (or instead of) picking the maximum: blur (anti-aliased max)
and lp (the power mean of |x|, between average and max).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.pools.registry import number_option, register
from poolbench.pools.weighted import even_crop, fp32, upsample_like
from poolbench.pools.window_max import max_2x2


@register(
    "blur",
    description="anti-aliased max: max 2x2 stride 1, binomial blur stride 2",
    size_rule="floor(H/2)",
    reference="Zhang 2019",
    options={"blur_size": "binomial blur taps, 1..7 (1: plain max pooling; 3 = [1,2,1]; Zhang 2019 uses 3-5)"},
)
class BlurMaxPool(nn.Module):
    """MaxBlurPool (Zhang 2019): max 2x2 stride 1 keeps the max's selectivity, then a normalized
    binomial blur of `blur_size` taps subsamples with stride 2, so little aliases.

    Reflect padding as in the paper; maps too small to reflect (1 pixel) are padded by
    replication instead, so deep models on tiny images still build.
    """

    def __init__(self, channels: int, blur_size: int = 3):
        super().__init__()
        self.blur_size = number_option("blur_size", blur_size, low=1, high=7, integer=True)
        taps = torch.tensor([math.comb(self.blur_size - 1, k) for k in range(self.blur_size)],
                            dtype=torch.float32)
        kernel = torch.outer(taps, taps)
        kernel = (kernel / kernel.sum()).expand(channels, 1, -1, -1).clone()
        self.register_buffer("kernel", kernel, persistent=False)  # fixed: rebuilt, not saved
        before = (self.blur_size - 1) // 2
        self.padding = (before, self.blur_size - 1 - before) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_2x2(x, stride=1)
        mode = "reflect" if max(self.padding) < min(x.shape[-2:]) else "replicate"
        x = F.pad(x, self.padding, mode=mode)
        return F.conv2d(x, self.kernel.to(x.dtype), stride=2, groups=x.shape[1])

    def extra_repr(self) -> str:
        return f"blur_size={self.blur_size}"


@register(
    "lp",
    description="(mean |x|^p)^(1/p): mean of |x| (p=1) to max",
    size_rule="floor(H/2)",
    reference="Gulcehre et al. 2014",
    options={"p": "power, 1..100: 1 = mean of |x|, large p approaches max of |x|"},
)
class LPPool(nn.Module):
    """LP pooling as a power mean: y = (mean_w |x_w|^p)^(1/p) over each 2x2 window.

    p = 1 is the mean of |x|, p -> inf the max of |x|. Unlike nn.LPPool2d (sum of x^p, NaN for
    negative x) it takes |x|, and it divides by the window's largest |x| before the power, so
    large activations and large p cannot overflow. It is nn.LPPool2d / 4^(1/p) for x >= 0.
    """

    def __init__(self, channels: int, p: float = 3.0):
        super().__init__()
        self.p = number_option("p", p, low=1, high=100)  # finite: the gradient of x^inf is NaN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = even_crop(x)
        return _PowerMean.apply(fp32(x), self.p).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class _PowerMean(torch.autograd.Function):
    """y = m * (mean_w r_w^p)^(1/p), r = |x| / m, m the window's largest |x|, with an analytic
    backward that saves r and one pooled map (autograd would save |x|, r, r^p and more):

        dy/dx_w = q^(1/p - 1) / 4 * r_w^(p-1) * sign(x_w),  q = mean_w r_w^p

    y does not depend on m (m is not differentiated). q >= 1/4 in a window with a nonzero value
    (its largest r is 1); a window of zeros gives q = 0, clamped to 1/4, and y = 0, gradient 0.
    """

    @staticmethod
    def forward(ctx, x, p: float):
        magnitude = x.abs()
        peak = max_2x2(magnitude)  # no gradient flows here (the backward is analytic): the fast form
        scale = F.interpolate(peak.clamp_min(torch.finfo(peak.dtype).tiny), scale_factor=2, mode="nearest")
        ratio = torch.div(magnitude, scale, out=magnitude)  # out=: counted as aten.div (speed.py)
        power_mean = F.avg_pool2d(ratio.pow(p), 2)
        power_mean = torch.clamp_min(power_mean, 0.25, out=power_mean)
        root = power_mean.pow(1 / p)
        ctx.p = p
        ctx.save_for_backward(x, ratio, power_mean, root)
        return peak * root

    @staticmethod
    def backward(ctx, grad):
        x, ratio, power_mean, root = ctx.saved_tensors
        p = ctx.p
        coefficient = upsample_like(grad * root.div(power_mean).mul_(0.25), x)  # q^(1/p - 1) / 4 = root / q / 4
        if p == 1:  # r^0 = 1: the sign alone (0 at x = 0, as |x|'s gradient)
            return torch.sign(x).mul_(coefficient), None
        return ratio.pow(p - 1).copysign_(x).mul_(coefficient), None
