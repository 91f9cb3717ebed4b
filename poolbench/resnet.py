"""CIFAR-style ResNets (He et al. 2016) with the configured operator at every downsampling point.

`model=resnet20`: a 3x3 stem of 16 channels, stages of 3 basic blocks at 16, 32, 64 channels.
`model=resnet18`: a 3x3 stem of 64 channels (no stem max-pool), stages of 2 blocks at 64-512.
Where a plain ResNet uses a stride-2 convolution, the block here uses a stride-1 convolution
followed by the operator, in the residual path and in the shortcut (the antialiased-cnns
recipe: conv -> BN -> ReLU -> operator; shortcut: operator -> conv1x1 -> BN). `pool=strided`
keeps the plain stride-2 convolutions; `pool=global` downsamples nowhere, leaving it all to
the global average pool before the classifier. Convolutions and BatchNorms sit next to each
other in `nn.Sequential`s, so the evaluation copy folds them (model.inference_copy).
`model.padding` (zeros | circular) is the padding_mode of every 3x3 convolution, the stem's and
pool=strided's stride-2 ones included; an operator's own convolutions keep theirs.
"""

from __future__ import annotations

import torch
from torch import nn

from poolbench.errors import UsageError
from poolbench.model import GlobalAveragePool, PoolMaker, relu_and_pool, resolve_padding


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: str = "zeros") -> list[nn.Module]:
    """Conv (padding kernel // 2, with padding_mode `padding`) + BatchNorm."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, padding_mode=padding, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut; `downsample` halves the map."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, make_pool: PoolMaker, padding: str = "zeros"):
        super().__init__()
        if downsample and make_pool.strided:
            residual = [*conv_bn(c_in, c_out, 3, stride=2, padding=padding), nn.ReLU(inplace=True)]
            shortcut = conv_bn(c_in, c_out, 1, stride=2)
        elif downsample and make_pool.local:
            residual = [*conv_bn(c_in, c_out, 3, padding=padding), *relu_and_pool(make_pool(c_out))]
            shortcut = [make_pool(c_in), *conv_bn(c_in, c_out, 1)]
        else:  # no downsampling here (or pool=global: nowhere)
            residual = [*conv_bn(c_in, c_out, 3, padding=padding), nn.ReLU(inplace=True)]
            shortcut = conv_bn(c_in, c_out, 1) if c_in != c_out else []
        self.residual = nn.Sequential(*residual, *conv_bn(c_out, c_out, 3, padding=padding))
        self.shortcut = nn.Sequential(*shortcut)  # empty: the identity
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class ResNet(nn.Module):
    """A 3x3 stem, then len(widths) stages of basic blocks; every stage after the first starts by
    downsampling. Global average pool, then a linear classifier. `padding`: the padding_mode of
    every 3x3 convolution (zeros | circular)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, make_pool: PoolMaker, *,
                 widths: list[int], blocks: list[int], padding: str = "zeros"):
        super().__init__()
        padding = resolve_padding(padding)
        if len(widths) != len(blocks) or not widths or min(list(widths) + list(blocks)) < 1:
            raise UsageError(f"model.widths and model.blocks must be equally long lists of positive numbers, "
                             f"got {list(widths)} and {list(blocks)}.")
        stages: list[nn.Module] = [*conv_bn(in_channels, widths[0], 3, padding=padding), nn.ReLU(inplace=True)]
        c_in = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks)):
            for block in range(count):
                stages.append(BasicBlock(c_in, width, downsample=index > 0 and block == 0, make_pool=make_pool,
                                         padding=padding))
                c_in = width
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(GlobalAveragePool(), nn.Flatten())
        self.classifier = nn.Linear(c_in, num_classes)
        self._check_size(in_channels, image_size, make_pool.name)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _check_size(self, in_channels: int, image_size: int, pool_name: str) -> None:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                size = self.features(torch.zeros(2, in_channels, image_size, image_size)).shape
        except RuntimeError:
            size = None
        finally:
            self.train(was_training)
        if size is None or min(size[-2:]) < 1:
            raise UsageError(f"The ResNet is too deep for {image_size}x{image_size} images with pool={pool_name}: "
                             "use fewer stages (model.widths, model.blocks) or larger images.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))
