"""The maximum of every 2x2 window, the step that max, blur, fractional, mixed, gated, lp and
the overflow guard of softpool and attention share.

torch's CPU max_pool2d kernel is slow for 2x2 windows: on the default network's maps it takes
several times as long as two element-wise maxima of shifted views, stride 1 the most
(`python benchmarks/pool_ops.py --window-max`; BENCHMARKS.md, "The 2x2 window max"). Those give
the same values (a tie of +0.0 and -0.0 may keep the other zero, a NaN another NaN pattern),
so they run wherever no gradient flows back through the max: evaluation, and values an
analytic backward does not differentiate. Where one does, torch's kernel runs, whose
backward sends each window's gradient to its first maximum (ties are common: a blank background
gives equal values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _get_current_dispatch_mode


def max_2x2(x: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """`F.max_pool2d(x, 2, stride=stride)` for stride 1 or 2: the same values, computed faster on
    the CPU when `x` needs no gradient."""
    if stride not in (1, 2):
        raise ValueError(f"max_2x2 takes stride 1 or 2, got {stride}")
    if (x.requires_grad or x.device.type != "cpu" or shapes_only(x)
            or x.dim() not in (3, 4) or min(x.shape[-2:]) < 2):
        return F.max_pool2d(x, 2, stride=stride)
    h, w = x.shape[-2:]
    if stride == 1:
        rows = torch.maximum(x[..., :-1, :], x[..., 1:, :])
        return torch.maximum(rows[..., :-1], rows[..., 1:])
    height, width = h // 2 * 2, w // 2 * 2  # floor(H/2) windows: a trailing odd row/column is dropped
    rows = torch.maximum(x[..., 0:height:2, :width], x[..., 1:height:2, :width])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def shapes_only(t: torch.Tensor) -> bool:
    """True for a meta tensor (no values) and under a dispatch mode (speed.py's FLOP counter):
    there operators run the form whose ops the counter knows, independent of the values."""
    return t.is_meta or _get_current_dispatch_mode() is not None
