"""LIP, Local Importance-based Pooling (Gao, Wang & Wu, ICCV 2019), its simplified form.

    y = avg_pool(x * w, 3, stride 2, padding 1) / avg_pool(w, 3, stride 2, padding 1)
    w = exp(logit(x)),  logit(x) = 12 * sigmoid(InstanceNorm_affine(conv3x3(x)))

This is the official code's `SimplifiedLIP` (github.com/sebgao/LIP, imagenet/lip_resnet.py):
a 3x3 convolution (padding 1, no bias) from C to C channels, InstanceNorm2d with affine terms,
and the "SoftGate" sigmoid scaled by 12 (COEFF), so the importance weights lie in (1, e^12) and
exp cannot overflow. The paper's bottleneck logit module (shared 1x1/3x3 convolutions in the
ResNet-50 blocks) is not this one.

Output size: floor((H + 2*1 - 3) / 2) + 1 = ceil(H/2), width alike. avg_pool2d counts the zero
padding in its divisor, but the divisor cancels in the ratio: each output is the w-weighted mean
of the input values inside its 3x3 window clipped to the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.pools.registry import register
from poolbench.pools.weighted import fp32

COEFF = 12.0  # the official SoftGate's scale: logits in (0, 12), weights in (1, e^12)


@register(
    "lip",
    description="3x3 windows, stride 2, weights exp(12 sigmoid(IN(conv3x3 x)))",
    size_rule="ceil(H/2)",
    reference="Gao et al. 2019 (LIP)",
)
class LocalImportancePool(nn.Module):
    """LIP (Gao et al. 2019), the official `SimplifiedLIP`: y = sum_w e^{l_w} x_w / sum_w e^{l_w}
    over 3x3 windows with stride 2 and padding 1, logits l = 12 * sigmoid(IN(conv3x3(x))).

    The convolution's weight starts at zero, as in the official code, so the logits start equal
    and LIP starts as 3x3 average pooling (over the window inside the image). It is a plain
    parameter, not an nn.Conv2d, so a backbone that re-initializes every Conv2d (resnet.py's
    Kaiming loop) keeps this start, as the official ResNet does by zeroing it after its own loop.
    That convolution pads with zeros whatever model.padding says. The weights are computed in
    fp32 and the result cast back to the input's dtype. A 1x1 input is returned as it is (the
    weighted mean of one value; InstanceNorm needs more than one element).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, channels, 3, 3))  # the logit's conv3x3, no bias
        self.norm = nn.InstanceNorm2d(channels, affine=True)

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """12 * sigmoid(IN(conv3x3(x))), in fp32."""
        return torch.sigmoid(self.norm(fp32(F.conv2d(x, self.weight, padding=1)))) * COEFF

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] == 1:
            return x
        weight = torch.exp(self.logit(x))
        pooled = F.avg_pool2d(fp32(x) * weight, 3, 2, 1) / F.avg_pool2d(weight, 3, 2, 1)
        return pooled.to(x.dtype)
