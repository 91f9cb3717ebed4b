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
  shifted map's elements are summed cannot decide between two components; the chosen
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
    in the official order (0, 0), (1, 0), (0, 1), (1, 1), in float64."""
    n, c, h, w = x.shape
    phases = x.unflatten(2, (h // 2, 2)).unflatten(4, (w // 2, 2))  # (N, C, H/2, i, W/2, j): a view
    squares = phases.detach().double().square().sum(dim=(1, 2, 4))  # (N, i, j)
    return squares.transpose(1, 2).reshape(n, 4)  # index k = i + 2j


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
        phases = x.unflatten(2, (h // 2, 2)).unflatten(4, (w // 2, 2)).permute(0, 3, 5, 1, 2, 4)
        return phases[torch.arange(n, device=x.device), i, j]  # (N, C, H/2, W/2), the input's layout
