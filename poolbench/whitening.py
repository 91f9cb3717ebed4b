"""A first convolution whose filters are fitted to the training data and then frozen: patch whitening.

The filters are the principal directions of the training set's 3x3 image patches, each scaled by
1/sqrt(its variance), in pairs of opposite sign so that a ReLU after them keeps both halves of
every direction (the first layer of the fastest known CIFAR-10 recipes, e.g. Keller Jordan's
airbench). Fitting happens once, before the first training step (`fit_whitening`); the filters
are an ordinary frozen weight after that, so checkpoints, resume and evaluation need nothing new.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FIT_IMAGES = 5000      # spread over the training set: the patch covariance settles well before this
FIT_CHUNK = 500       # images per step of the covariance sum
EIGENVALUE_EPS = 5e-4  # keeps the near-zero variance directions from being scaled up without bound


def max_filters(in_channels: int) -> int:
    """Two filters (one of each sign) per direction of a 3x3 patch of `in_channels` channels."""
    return 2 * 9 * in_channels


class PatchWhitening(nn.Conv2d):
    """A 3x3 convolution (padding 1, no bias) with `out_channels`/2 whitening directions, ± each.

    Until `fit` is called it is an ordinary randomly initialised convolution, frozen.
    `out_channels` is even and at most max_filters(in_channels) (model.check_whiten says so to a user).
    """

    def __init__(self, in_channels: int, out_channels: int, padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, 3, padding=1, padding_mode=padding_mode, bias=False)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from `images` (N, C, H, W, normalized as the network sees them)."""
        c = self.in_channels
        # covariance does not depend on a shift: taking out each channel's mean first keeps the
        # float32 sums below exact enough
        images = images.float()
        images = images - images.mean((0, 2, 3), keepdim=True)
        total, outer, count = torch.zeros(c * 9, dtype=torch.float64), 0, 0
        for chunk in images.split(FIT_CHUNK):                                # bounded memory
            patches = F.unfold(chunk, 3).transpose(0, 1).reshape(c * 9, -1)  # C*9, n*(H-2)*(W-2)
            # one large matmul per chunk (float32, summed in float64): about a second for 5,000 images
            total = total + patches.sum(1).double().cpu()
            outer = outer + (patches @ patches.T).double().cpu()
            count += patches.shape[1]
        mean = total / count
        covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)
        variances, directions = torch.linalg.eigh(covariance)                # ascending
        keep = self.out_channels // 2
        variances, directions = variances.flip(0)[:keep], directions.flip(1)[:, :keep]
        filters = (directions / (variances + EIGENVALUE_EPS).sqrt()).T.reshape(keep, c, 3, 3)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))


def fit_whitening(model: nn.Module, train_images: torch.Tensor, normalize) -> None:
    """Fit every PatchWhitening layer of `model` to FIT_IMAGES training images (uint8, as stored)
    spread evenly over the training set, normalized as training normalizes them; the same images
    every run. Evenly spread, not the first ones: image-folder sources store the images class by
    class. A no-op for models without such a layer."""
    layers = [m for m in model.modules() if isinstance(m, PatchWhitening)]
    if not layers:
        return
    n = train_images.shape[0]
    picked = torch.linspace(0, n - 1, min(n, FIT_IMAGES)).round().long().to(train_images.device)
    images = normalize(train_images[picked]).float().contiguous()
    for layer in layers:
        layer.fit(images)
