"""Adaptive polyphase sampling, APS (Chaman & Dokmanic, CVPR 2021, "Truly shift-invariant
convolutional neural networks"; official code github.com/achaman2/truly_shift_invariant_cnns).

A stride-2 subsampling keeps one of the four polyphase components x[..., i::2, j::2],
i, j in {0, 1}. Plain subsampling always keeps (0, 0), so shifting the input by one pixel hands
it a different component. APS keeps, per image, the component with the largest l2 norm over
all its channels (the paper's default criterion, p = 2). A circular shift of the input permutes
the components without changing their norms, so APS keeps the same one, circularly shifted:
its output moves with the input instead of changing. In a network whose every other layer
commutes with circular shifts (circularly padded convolutions: model.padding=circular;
element-wise layers) and whose readout is a global average pool, the prediction is then
exactly invariant to circular shifts of an image whose size is divisible by 2^(number of APS
layers): every APS layer must meet an even size. That is SmallCNN with model.padding=circular
and model.readout=gap (tests/test_exact_invariance.py). Not the ResNets here: the residual path
and the shortcut each hold an APS that chooses on its own input, so the two halves of a block
can move by different amounts (the official APS ResNet hands the residual path's choice to the
shortcut; a slot here sees only its own input).

Conventions (as the official `aps_downsample_v2` with `apspool_criterion='l2'`, `filt_size=1`):
- Components are ranked in the official order (0, 0), (1, 0), (0, 1), (1, 1) (row offset i
  first); on an exact tie argmax keeps the first. A tie can break exact invariance, since a
  shift reorders the tied components; it needs two components of exactly equal norm.
- Odd sizes: like the official `aps_pad`, the map is first padded circularly by one row (its
  first row repeated below the last) and/or one column, so the output is ceil(H/2) x ceil(W/2).
  Exact invariance does not hold there: a shift of the padded map is not a shift of the input.
- Norms are accumulated in float64 from the (fp32-exact) squares, so the order in which a
  shifted map's elements are summed cannot decide between two components (channels first,
  then pixels: a circular shift moves whole pixels, each pixel's channel sum is unchanged); the chosen
  component itself keeps the input's dtype and memory format, and gradients flow through it.
- No anti-aliasing filter: the official ApsPool blurs first when filt_size > 1 (APS + LPF);
  pool=aps is APS alone.
"""

from __future__ import annotations

import torch
from torch import nn

from poolbench.pools.registry import register


def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """Circularly pad an odd height (width) by one row (column): the first one, repeated at the end."""
    if x.shape[-2] % 2:
        x = torch.cat([x, x[..., :1, :]], -2)
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., :, :1]], -1)
    return x


def polyphase_norms(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W), H and W even -> (N, 4): the squared l2 norm of each image's components
    in the official order (0, 0), (1, 0), (0, 1), (1, 1), in float64.

    The sum runs over the tensor in its memory order (a channels_last map as (N, H/2, i, W/2, j, C)),
    channels first, so float64 reduces contiguous rows: 15-20x faster than reducing the
    strided (C, H/2, W/2) dimensions of the NCHW view at once.
    """
    n, c, h, w = x.shape
    x = x.detach()
    if c > 1 and x.is_contiguous(memory_format=torch.channels_last):
        as_double = x.permute(0, 2, 3, 1).double()  # (N, H, W, C), contiguous
        squares = torch.square(as_double, out=as_double)  # out=: counted as aten.pow (speed.py)
        per_pixel = squares.sum(-1).view(n, h // 2, 2, w // 2, 2)  # (N, H/2, i, W/2, j)
        sums = per_pixel.sum(dim=(1, 3))  # (N, i, j)
    else:
        as_double = x.contiguous().double()
        squares = torch.square(as_double, out=as_double).view(n, c, h // 2, 2, w // 2, 2)
        sums = squares.sum(dim=(1, 2, 4))  # (N, i, j)
    return sums.transpose(1, 2).reshape(n, 4)  # index k = i + 2j


@register(
    "aps",
    description="keep the 2x2 polyphase component of largest l2 norm, per image",
    size_rule="ceil(H/2)",
    reference="Chaman & Dokmanic 2021 (APS)",
)
class AdaptivePolyphaseSampling(nn.Module):
    """APS (Chaman & Dokmanic 2021): y = x[..., i::2, j::2] with (i, j) the polyphase component
    of x (per image, over all channels) with the largest l2 norm; no parameters.

    Exactly invariant to circular shifts of an even-sized input up to a circular shift of the
    output (see the module's docstring for ties and odd sizes).
    """

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_even(x)
        n, c, h, w = x.shape
        with torch.no_grad():  # the choice is not differentiable; the chosen values are
            k = polyphase_norms(x).argmax(1)
            j = torch.div(k, 2, rounding_mode="floor")
            i = k - 2 * j
        return _PickPhase.apply(x, i, j)


def _phases(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(N, C, H, W) -> a view indexed [n, i, j] by image and component, over t's own memory order:
    (N, 2, 2, H/2, W/2, C) for channels_last, (N, 2, 2, C, H/2, W/2) for contiguous NCHW."""
    n, c, h, w = t.shape
    if channels_last:
        return t.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2, c).permute(0, 2, 4, 1, 3, 5)
    return t.view(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)


class _PickPhase(torch.autograd.Function):
    """y[n] = x[n, :, i_n::2, j_n::2], read and written in x's memory order (one gather of
    contiguous runs); the backward writes the gradient into the kept component of a zeroed map
    without autograd's accumulating index_put."""

    @staticmethod
    def forward(ctx, x, i, j):
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if not channels_last:
            x = x.contiguous()
        index = torch.arange(x.shape[0], device=x.device)
        picked = _phases(x, channels_last)[index, i, j]  # (N, H/2, W/2, C) or (N, C, H/2, W/2)
        ctx.save_for_backward(i, j)
        ctx.layout = (x.shape, channels_last)
        return picked.permute(0, 3, 1, 2) if channels_last else picked

    @staticmethod
    def backward(ctx, grad):
        i, j = ctx.saved_tensors
        shape, channels_last = ctx.layout
        layout = torch.channels_last if channels_last else torch.contiguous_format
        grad_x = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=layout).zero_()
        index = torch.arange(shape[0], device=grad.device)
        _phases(grad_x, channels_last)[index, i, j] = grad.permute(0, 2, 3, 1) if channels_last else grad
        return grad_x, None, None
