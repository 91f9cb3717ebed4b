"""Building the network: a backbone with the configured operator at every downsampling point.

A backbone is any factory(in_channels, num_classes, image_size, make_pool, **options) named by
`model._target_`: SmallCNN here (the default), the ResNets in resnet.py, or the user's own.
SmallCNN's stages are conv3x3 + BatchNorm + ReLU followed by the slot (a slot whose operator
commutes with ReLU runs before it, the same function: relu_and_pool), and `model.convs` more
conv3x3 + BatchNorm + ReLU layers after the slot; its readout is either
`flatten` (flatten the last feature map, then a linear classifier) or `gap` (global average
pool, then the classifier). The model knows nothing of data or training.
"""

from __future__ import annotations

import copy

import torch
from omegaconf import ListConfig
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from poolbench.errors import UsageError
from poolbench.pools import build_pool
from poolbench.pools.registry import check_options, is_local
from poolbench.results import ADDED_SINCE
from poolbench.targets import import_target
from poolbench.whitening import PatchWhitening, max_filters


class SmallCNN(nn.Module):
    """One stage per width in `channels`: conv3x3 + BatchNorm + ReLU, then the operator.

    `padding` is the padding_mode of every conv3x3 (padding 1): `zeros` (the default) or
    `circular`, with which the convolutions commute with circular shifts of the feature map. An
    operator's own padded convolutions (pool=strided's, pool=lip's logit) keep their zero padding.
    `whiten`: the first stage's convolution is a frozen patch-whitening filter bank fitted to the
    training images before training starts (whitening.py) instead of a learned one.
    `convs`: convolutions per stage, one number for every stage or one per stage. A stage's
    first convolution comes before its slot; the others (width -> width, each with BatchNorm and
    ReLU) come after it, at the resolution the slot leaves: a quarter of the cost for operators that
    halve the map (the block of the fast CIFAR-10 trainers: conv, pool, conv), the full cost with
    pool=global, whose slots keep the size.
    `pool_first`: per stage (or for all), conv, slot, BatchNorm, ReLU instead of conv, BatchNorm,
    ReLU, slot: BatchNorm and ReLU run on the pooled map, and behind the frozen whitening layer
    the slot gets no gradient to pass back. Another network (BatchNorm sees pooled values), and
    inference_copy cannot fold such a BatchNorm into a conv.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, make_pool: PoolMaker, *,
                 channels: list[int], readout: str, padding: str = "zeros",
                 whiten: bool = ADDED_SINCE["model.whiten"], convs: int | list[int] = ADDED_SINCE["model.convs"],
                 pool_first: bool | list[bool] = ADDED_SINCE["model.pool_first"]):
        super().__init__()
        self.readout = resolve_readout(readout, make_pool.local, make_pool.name)
        padding = resolve_padding(padding)
        layers: list[nn.Module] = []
        c_in = in_channels
        stages = zip(channels, resolve_convs(convs, len(channels)), resolve_pool_first(pool_first, len(channels)),
                     strict=True)
        for stage, (width, count, early) in enumerate(stages):
            first_whitens = stage == 0 and check_whiten(whiten, in_channels, width)
            conv = (PatchWhitening(c_in, width, padding) if first_whitens
                    else nn.Conv2d(c_in, width, 3, padding=1, padding_mode=padding, bias=False))
            if early:
                layers += [conv, make_pool(width), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            else:
                layers += [conv, nn.BatchNorm2d(width), *relu_and_pool(make_pool(width))]
            for _ in range(count - 1):
                layers += [nn.Conv2d(width, width, 3, padding=1, padding_mode=padding, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            GlobalAveragePool() if self.readout == "gap" else nn.Identity(), nn.Flatten()
        )
        self.classifier = nn.Linear(self._feature_count(in_channels, image_size, make_pool.name), num_classes)

    def _feature_count(self, in_channels: int, image_size: int, pool_name: str) -> int:
        probe = torch.zeros(2, in_channels, image_size, image_size)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                size = self.features(probe).shape
        except RuntimeError:
            size = None
        finally:
            self.train(was_training)
        if size is None or min(size[-2:]) < 1:
            raise UsageError(
                f"The model is too deep for {image_size}x{image_size} images with pool={pool_name}: "
                "use fewer model.channels stages or larger images."
            )
        return size[1] if self.readout == "gap" else size[1] * size[2] * size[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


def relu_and_pool(pool: nn.Module) -> list[nn.Module]:
    """ReLU, then the operator; or the operator first where it declares `commutes_with_relu`
    (a max: the same values and gradients), so the ReLU runs on the smaller map."""
    if getattr(pool, "commutes_with_relu", False):
        return [pool, nn.ReLU(inplace=True)]
    return [nn.ReLU(inplace=True), pool]


class GlobalAveragePool(nn.Module):
    """(N, C, H, W) -> (N, C, 1, 1) mean, like nn.AdaptiveAvgPool2d(1), with a cheaper backward.

    AdaptiveAvgPool2d's backward writes a dense NCHW gradient; meeting the channels_last ReLU
    before it, that made ReLU's backward about 10x slower than with matching layouts, and
    pool=global spends its training at full resolution. Here the gradient is a broadcast view.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BroadcastMean.apply(x)


class _BroadcastMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_shape = x.shape
        return x.mean((2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, c, h, w = ctx.input_shape
        return (grad / (h * w)).expand(n, c, h, w)


def resolve_readout(readout: str, local: bool, pool_name: str) -> str:
    if readout not in ("auto", "flatten", "gap"):
        raise UsageError(f"model.readout must be auto, flatten or gap, got '{readout}'.")
    if not local:
        if readout == "flatten":
            raise UsageError(f"pool={pool_name} leaves all downsampling to a global pool: "
                             "use model.readout=gap (or auto).")
        return "gap"
    return "flatten" if readout == "auto" else readout


def check_whiten(whiten, in_channels: int, width: int) -> bool:
    """model.whiten: a bool; when true, the first stage's width must be an even number of filters
    that the image's 3x3 patches have directions for (two per direction, one of each sign)."""
    if not isinstance(whiten, bool):
        raise UsageError(f"model.whiten must be true or false, got '{whiten}'.")
    most = max_filters(in_channels)
    if whiten and (width % 2 or width > most):
        raise UsageError(f"model.whiten=true needs an even first width of at most {most} for "
                         f"{in_channels}-channel images, got model.channels[0]={width}: change model.channels.")
    return whiten


def per_stage(key: str, value, stages: int, valid, what: str) -> list:
    """model.<key>: one value for every stage, or a list with one per stage, each `valid`."""
    values = value if isinstance(value, list) else [value] * stages
    if len(values) != stages or not all(valid(v) for v in values):
        raise UsageError(f"model.{key} must be {what} or a list of {stages} of them "
                         f"(one per model.channels stage), got '{value}'.")
    return values


def resolve_convs(convs, stages: int) -> list[int]:
    return per_stage("convs", convs, stages, lambda c: isinstance(c, int) and not isinstance(c, bool) and c >= 1,
                     "a positive integer")


def resolve_pool_first(pool_first, stages: int) -> list[bool]:
    return per_stage("pool_first", pool_first, stages, lambda f: isinstance(f, bool), "true, false")


PADDINGS = ("zeros", "circular")


def resolve_padding(padding: str) -> str:
    """model.padding: the padding_mode of a backbone's 3x3 convolutions."""
    if padding not in PADDINGS:
        raise UsageError(f"model.padding must be zeros or circular, got '{padding}'.")
    return padding


class PoolMaker:
    """`make_pool(channels)`: the configured operator for one downsampling point.

    A backbone calls it at each point where it downsamples. `local` is False for pool=global
    (the slots are identities, the readout's global average pool does all the reduction);
    `strided` is True for pool=strided, where a backbone keeps its own stride-2 convolution.
    """

    def __init__(self, pool_cfg):
        self.pool_cfg = pool_cfg
        self.local = is_local(pool_cfg)
        self.name = str(pool_cfg.get("_target_") or pool_cfg["name"])
        self.strided = self.name == "strided"

    def __call__(self, channels: int) -> nn.Module:
        return build_pool(self.pool_cfg, channels)


def build_model(cfg) -> nn.Module:
    """Build the network that `cfg` (the composed config) describes: the backbone `model._target_`
    names, called as factory(in_channels, num_classes, image_size, make_pool, **model options)."""
    target = cfg.model.get("_target_")
    if not target:
        raise UsageError(f"model={cfg.model.get('name')} has no model._target_: name the backbone's class, "
                         "e.g. model._target_=mynets.Net.")
    factory = import_target(str(target), "model._target_")
    options = {k: v for k, v in dict(cfg.model).items() if k not in ("name", "_target_")}
    options = {k: list(v) if isinstance(v, ListConfig) else v for k, v in options.items()}
    check_options(factory, options, f"model._target_={target}", "model", skip=4)
    return factory(int(cfg.data.channels), int(cfg.data.num_classes), int(cfg.data.image_size),
                   PoolMaker(cfg.pool), **options)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each BatchNorm2d folded into the Conv2d right before it.

    The standard deployment step: the same function up to float rounding (the tests compare
    outputs), one pass over each feature map fewer. Evaluation, `poolbench eval` and inference
    throughput all run this copy; the trained model and its checkpoint are left as they are.
    """
    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        if not isinstance(block, nn.Sequential):
            continue
        for i in range(len(block) - 1):
            conv, norm = block[i], block[i + 1]
            if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d and norm.running_mean is not None:
                block[i], block[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return folded
