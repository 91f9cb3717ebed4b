"""The classic operators: max, average, strided convolution, global pooling, fractional max."""

from __future__ import annotations

import math

import torch
from torch import nn

from poolbench.pools.registry import number_option, register
from poolbench.pools.window_max import max_2x2, shapes_only


@register(
    "max",
    description="max of each 2x2 window, stride 2",
    size_rule="floor(H/2)",
    reference="the baseline",
)
def _max(channels: int) -> nn.Module:
    return MaxPool(2)


class MaxPool(nn.MaxPool2d):
    """nn.MaxPool2d that lets a backbone run it before the ReLU it follows (model.relu_and_pool).

    A max commutes with ReLU, value and gradient alike (the window's winner is the same, and a
    window whose max is <= 0 passes no gradient either way), and after pooling the ReLU and its
    backward touch a quarter of the elements: 4-6% of the default MNIST training step.
    Its 2x2 windows are taken by window_max.max_2x2 (the same values; faster where no gradient
    is needed, as in evaluation).
    """

    commutes_with_relu = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plain_2x2():
            return max_2x2(x, stride=2)
        return super().forward(x)

    def plain_2x2(self) -> bool:
        """Built as the registry builds it: 2x2 windows, stride 2, no padding, dilation or indices."""
        return (_pair(self.kernel_size) == (2, 2) and _pair(self.stride) == (2, 2) and _pair(self.padding) == (0, 0)
                and _pair(self.dilation) == (1, 1) and not self.ceil_mode and not self.return_indices)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


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


@register(
    "fractional",
    description="max over pseudo-random regions, size x ratio",
    size_rule="floor(H*ratio)",
    reference="Graham 2014",
    options={"ratio": "output size = floor(input size x ratio), in (0, 1); 1/sqrt(2) as in Graham 2014"},
)
class FractionalMaxPool(nn.Module):
    """Fractional max pooling (Graham 2014) whose evaluation is deterministic.

    torch draws new pooling regions on every forward, evaluation included. In eval mode the
    regions are fixed: u = 0.5 for every plane, or, while evaluation averages over draws
    (`eval.draws`, see evaluate.py), u drawn per channel from the seed in `draw_seed`, the
    same for every image. Training draws u from torch's global generator exactly as
    `F.fractional_max_pool2d` does.
    """

    commutes_with_relu = True  # a max over each region, as MaxPool
    draw_seed: int | None = None  # set by evaluate.seeded_draw while evaluating one of K draws
    # eval.draws=auto: on MNIST u = 0.5 for every plane scored 97.70% (seeds 0-2), 2 or 4 seeded
    # draws 99.21%, 16 draws 99.29% (benchmarks/eval_draws.py): 4 is nearly all of it at 1/4 of the cost
    default_draws = 4

    def __init__(self, channels: int, ratio: float = math.sqrt(0.5)):
        super().__init__()
        self.ratio = number_option("ratio", ratio, low=0, high=1, low_open=True, high_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_size = (max(1, int(x.shape[-2] * self.ratio)), max(1, int(x.shape[-1] * self.ratio)))
        if self.training:
            samples = torch.rand((x.shape[0], x.shape[1], 2), dtype=x.dtype, device=x.device)
        elif self.draw_seed is not None:
            drawn = torch.rand((1, x.shape[1], 2), generator=torch.Generator().manual_seed(self.draw_seed))
            samples = drawn.to(device=x.device, dtype=x.dtype)  # (1, C, 2): the same for every image
        else:
            samples = torch.full((1, x.shape[1], 2), 0.5, dtype=x.dtype, device=x.device)
        return fractional_max_pool_2x2(x, out_size, samples)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:.4f}"


def fractional_max_pool_2x2(x: torch.Tensor, out_size: tuple[int, int], samples: torch.Tensor) -> torch.Tensor:
    """`F.fractional_max_pool2d(x, 2, output_size=out_size, _random_samples=samples)`, faster.

    Same regions, values and gradients as torch's kernel (tests compare them), but built from
    a stride-1 2x2 max pool and one gather of the chosen window corners: torch's CPU kernel
    is a scalar loop that also drops channels_last (benchmarks/pool_ops.py measures both).
    `samples` is (N, C, 2), or (1, C, 2) for the same regions in every image (evaluation): then
    a channels_last map keeps its layout, one index_select of (row, column, channel) positions
    (the same values and gradients as the gather).
    """
    n, c, h, w = x.shape
    windows = max_2x2(x, stride=1)                              # (N, C, H-1, W-1)
    rows = _region_starts(samples[..., 1], h, out_size[0])      # torch: sample 1 is for H
    cols = _region_starts(samples[..., 0], w, out_size[1])
    corners = rows[..., :, None] * (w - 1) + cols[..., None, :]  # (N or 1, C, oh, ow) flat indices
    # under the FLOP counter the gather runs, so the index arithmetic counted is the same in both layouts
    if samples.shape[0] == 1 and windows.is_contiguous(memory_format=torch.channels_last) and not shapes_only(x):
        positions = corners[0].permute(1, 2, 0) * c + torch.arange(c, device=x.device)  # (oh, ow, C)
        picked = windows.permute(0, 2, 3, 1).reshape(n, -1).index_select(1, positions.reshape(-1))
        return picked.view(n, *out_size, c).permute(0, 3, 1, 2)
    corners = corners.expand(n, c, *out_size)
    picked = torch.gather(windows.reshape(n, c, -1), 2, corners.reshape(n, c, -1))
    return picked.view(n, c, *out_size)


def _region_starts(samples: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Per plane, the first row (or column) of each 2-wide region: torch's interval rule.

    alpha = (in - 2) / (out - 1); start[i] = int((i + u) * alpha) - int(u * alpha) for
    i < out - 1, and the last region ends at the border. Computed in float32 as torch's
    CPU kernel does for float inputs, whatever the input's dtype.
    """
    u = samples.float()
    last = torch.full((*u.shape, 1), in_size - 2, dtype=torch.long, device=u.device)
    if out_size == 1:
        return last
    alpha = torch.tensor((in_size - 2) / (out_size - 1), dtype=torch.float32, device=u.device)
    i = torch.arange(out_size - 1, dtype=torch.float32, device=u.device)
    starts = ((i + u[..., None]) * alpha).long() - (u * alpha).long()[..., None]
    return torch.cat([starts, last], -1)
