"""Throughput, FLOPs and MFU (the definitions: README "Metrics").

Throughput is the median of timed iterations after warm-up, on a synthetic batch of the
model's input shape; CUDA timings synchronize before reading the clock. Training throughput
is measured on a copy of the model so the trained weights stay untouched.
MFU = model FLOPs per second / the dense matmul rate measured in this process; a training
step counts as 3x the forward FLOPs (forward + backward, the usual convention).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
TRAIN_FLOPS_PER_FORWARD = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(step, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_s(device: torch.device, size: int = 2048, iters: int = 5,
                       dtype: torch.dtype = torch.float32) -> float:
    """Dense matmul rate of this machine, measured now (the MFU denominator)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = _median_seconds(lambda: torch.mm(a, b), device, warmup=2, iters=iters)
    return 2 * size**3 / seconds


@functools.lru_cache(maxsize=None)
def matmul_rate_once(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """The matmul rate measured once per process: jobs that share a process (a basic or joblib
    sweep) need not spend a second on it each."""
    return matmul_flops_per_s(device, dtype=dtype)


def _pool_flops(*args, out_shape=None, **kwargs) -> int:
    """A pooling op reads every input element of every window once: out elements x window size."""
    kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size", (2, 2))
    kernel = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
    window = kernel[0] * (kernel[-1] if len(kernel) > 1 else kernel[0])
    several = isinstance(out_shape, (list, tuple)) and isinstance(out_shape[0], (list, tuple, torch.Size))
    out = out_shape[0] if several else out_shape  # max_pool2d_with_indices: (values, indices)
    return _numel(out) * window


def _reduce_flops(*args, out_shape=None, **kwargs) -> int:
    """Global average pool, softmax and sums: about one FLOP per input element."""
    return _numel(args[0])


def _elementwise_flops(*args, out_shape=None, **kwargs) -> int:
    """Element-wise arithmetic (the weighting inside softpool, lp, attention, mixed, gated...):
    one FLOP per output element; broadcasting makes the output the larger shape."""
    return _numel(out_shape)


def _numel(shape) -> int:
    total = 1
    for dim in shape:
        total *= int(dim)
    return total


# Counted besides convolutions and matmuls: pooling and the arithmetic that operators are built
# from (a gate's sigmoid included). The network's own ReLUs and BatchNorms and data movement
# (pad, interpolate, copies) are left out: every operator's network has the same ones.
POOLING_FLOPS = {
    aten.max_pool2d: _pool_flops,
    aten.max_pool2d_with_indices: _pool_flops,
    aten.avg_pool2d: _pool_flops,
    aten._adaptive_avg_pool2d: _reduce_flops,
    aten.mean: _reduce_flops,
    aten._softmax: _reduce_flops,
    aten.sum: _reduce_flops,
    # keyed by op packet (aten.mul, not aten.mul.Tensor): FlopCounterMode looks ops up that way
    **{op: _elementwise_flops for op in (
        aten.add, aten.sub, aten.rsub, aten.mul, aten.div, aten.exp, aten.pow, aten.abs,
        aten.sigmoid, aten.where, aten.clamp, aten.clamp_min)},
}


# Ops the counter leaves at zero on purpose: data movement and tensor creation, comparisons that
# make masks, and the network's own BatchNorms and ReLUs (every operator's network has the same).
# Any other op without a FLOP formula is reported, never silently counted as zero.
NOT_COUNTED_BY_DESIGN = {getattr(aten, name) for name in (
    "_to_copy", "alias", "arange", "cat", "stack", "clone", "copy_", "detach", "empty", "empty_like",
    "expand", "full", "full_like", "zeros", "zeros_like", "ones", "ones_like", "fill_", "new_zeros",
    "new_empty", "new_full", "gather", "index", "index_select", "lift_fresh", "scalar_tensor", "select",
    "slice", "split", "split_with_sizes", "narrow", "t", "transpose", "permute", "unsqueeze", "squeeze",
    "view", "_unsafe_view", "reshape", "as_strided", "unbind", "flip", "roll", "constant_pad_nd",
    "reflection_pad2d", "replication_pad2d", "upsample_nearest2d", "gt", "ge", "lt", "le", "eq", "ne",
    "native_batch_norm", "_native_batch_norm_legit_no_training", "relu", "relu_", "threshold",
    "hardtanh", "hardtanh_", "contiguous", "flatten", "_reshape_alias", "bernoulli_", "rand", "rand_like",
    "randint", "uniform_") if hasattr(aten, name)}


class _OpRecorder(TorchDispatchMode):
    """Notes every aten op a forward pass runs, to find the ones the FLOP counter cannot count."""

    def __init__(self):
        super().__init__()
        self.ops: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def count_flops(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, list[str]]:
    """(forward FLOPs for one image, the ops that ran but could not be counted).

    Convolutions and matmuls plus the pooling and element-wise ops in POOLING_FLOPS are counted;
    an op outside both the counter's formulas and NOT_COUNTED_BY_DESIGN (a user's operator that
    sorts, say) is listed, so the total is known to be a lower bound.
    """
    was_training = model.training
    model.eval()
    probe = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    counter, recorder = FlopCounterMode(display=False, custom_mapping=POOLING_FLOPS), _OpRecorder()
    with counter, recorder, torch.no_grad():
        model(probe)
    model.train(was_training)
    counted = set(counter.flop_registry)
    missed = sorted(str(op) for op in recorder.ops if op not in counted and op not in NOT_COUNTED_BY_DESIGN)
    return int(counter.get_total_flops()), missed


def flops_per_image(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image (see count_flops)."""
    return count_flops(model, input_shape)[0]


def throughput(model: torch.nn.Module, input_shape: tuple[int, int, int], num_classes: int,
               device: torch.device, batch_size: int, warmup: int, iters: int,
               autocast: contextlib.AbstractContextManager | None = None,
               channels_last: bool = True, inference_model: torch.nn.Module | None = None) -> dict:
    """Inference and training images/s at `batch_size` (median of `iters` timed steps).

    Inference times `inference_model` (the evaluation's BatchNorm-folded copy) where given.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images = torch.randn(batch_size, *input_shape, device=device).contiguous(memory_format=fmt)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)
    autocast = autocast or contextlib.nullcontext()

    was_training = model.training
    inference_model = (model if inference_model is None else inference_model).eval()

    def infer():
        with torch.inference_mode(), autocast:
            inference_model(images)

    infer_s = _median_seconds(infer, device, warmup, iters)
    model.train(was_training)

    trainee = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(trainee.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        with autocast:
            loss = F.cross_entropy(trainee(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_s = _median_seconds(train_step, device, warmup, iters)
    return {"batch_size": batch_size,
            "infer_images_per_s": batch_size / infer_s,
            "train_images_per_s": batch_size / train_s}


def add_mfu(speed: dict, flops: int, matmul_rate: float) -> dict:
    speed = dict(speed)
    speed["matmul_flops_per_s"] = matmul_rate
    speed["infer_mfu"] = flops * speed["infer_images_per_s"] / matmul_rate
    speed["train_mfu"] = TRAIN_FLOPS_PER_FORWARD * flops * speed["train_images_per_s"] / matmul_rate
    return speed
