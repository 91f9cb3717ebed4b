"""Throughput, FLOPs and MFU (the definitions: README "Metrics").

Throughput is the median of timed iterations after warm-up, on a synthetic batch of the
model's input shape; CUDA timings synchronize before reading the clock. Training throughput
is measured on a copy of the model so the trained weights stay untouched.
MFU = model FLOPs per second / the dense matmul rate of this machine, measured in this process
in the precision the model runs in (`matmul_rate`: the best of several warmed-up measurements,
not a vendor peak); a training step counts as 3x the forward FLOPs (forward + backward, the
usual convention).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import statistics
import time
from typing import NamedTuple

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


MATMUL_ROUNDS = 5  # rounds per measurement; the rate is the best round's
MATMUL_CALLS = 3  # timed mm calls per round; a round's time is their median
MATMUL_SIZES = (1024, 8192)  # the square size starts at 1024 and doubles while one mm takes < 10 ms
MATMUL_SLOW_SIZE = 256  # the size for a precision this device emulates (one 512 mm over 0.1 s)
MATMUL_WARMUP_CALLS = (2, 8)  # warm-up: at least 2 calls, then until two in a row agree within 10%, at most 8
MATMUL_BUDGET_S = 0.5  # no round starts after this long (at least one round is always timed)


class MatmulRate(NamedTuple):
    """The MFU denominator: this machine's dense matmul rate and how it was measured."""

    flops_per_s: float
    dtype: str  # "float32", "bfloat16"
    method: str  # "best of 5 rounds (median of 3 mm each) of 1024x1024 float32 after warm-up"


def _mm_seconds(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> float:
    """One torch.mm, timed (CUDA synchronized before reading the clock)."""
    _sync(device)
    start = time.perf_counter()
    torch.mm(a, b)
    _sync(device)
    return time.perf_counter() - start


def _operands(size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(size, size, device=device, dtype=dtype),
            torch.randn(size, size, device=device, dtype=dtype))


@functools.lru_cache(maxsize=None)
def matmul_size(device: torch.device, dtype: torch.dtype = torch.float32) -> int:
    """The square size the rate is measured at, chosen once per process, device and dtype, so every
    measurement of a process (a bench table's rows) uses the same one.

    1024, doubled while one mm takes under 10 ms (up to 8192: a data-centre GPU); 256 where one
    512x512 mm takes over 0.1 s, a precision the device emulates (bf16 on a CPU without
    AVX512-BF16 or AMX: about 1 GFLOP/s, 0.22 s for a 512 mm, 2 s for a 1024 one; fp32 takes 2 ms
    on a quiet 2-core CPU, 20 ms on a loaded one). Time decides only upward from 1024: on a loaded
    CPU every small mm waits for a time slice (a 256 mm then takes as long as a 512 one), which
    must not shrink the size.
    """
    _mm_seconds(*_operands(256, device, dtype), device)  # the first call pays for library set-up
    if _mm_seconds(*_operands(512, device, dtype), device) > 0.1:
        return MATMUL_SLOW_SIZE
    size, largest = MATMUL_SIZES
    while size < largest:
        a, b = _operands(size, device, dtype)
        if min(_mm_seconds(a, b, device) for _ in range(2)) >= 0.01:
            break
        size *= 2
    return size


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, size: int | None = None,
                rounds: int = MATMUL_ROUNDS, calls: int = MATMUL_CALLS) -> MatmulRate:
    """Dense matmul rate of this machine in `dtype`, measured now: the MFU denominator.

    Warm up until two calls in a row agree within 10% (2 to 8 calls), then `rounds` rounds of
    `calls` timed mm calls; a round's rate is 2 n^3 / its median call and the result is the best
    round's. The best rather than the median because what slows a round down on a shared machine
    (another process, a frequency dip) only ever lowers the rate: the best round is the closest to
    what this machine can do, and moves least between runs. The old single median of 5 calls at
    2048 moved 126-187 GFLOP/s between quiet runs of a 2-core CPU. Cost there: about 0.3-0.4 s for
    fp32 with 2 threads (about 20 calls of 17 ms at 1024; 0.6 s with one thread) and about 0.5 s
    for bf16 (emulated: 256x256 at 25 ms a call); no round starts after MATMUL_BUDGET_S.
    `size`: the matrix size, by default `matmul_size`.
    """
    size = size or matmul_size(device, dtype)
    a, b = _operands(size, device, dtype)
    started = time.perf_counter()
    low, high = MATMUL_WARMUP_CALLS
    previous = _mm_seconds(a, b, device)
    for done in range(1, high):
        seconds = _mm_seconds(a, b, device)
        if done + 1 >= low and abs(seconds - previous) <= 0.1 * previous:
            break
        previous = seconds
    best, timed = 0.0, 0
    while timed < rounds and (timed == 0 or time.perf_counter() - started < MATMUL_BUDGET_S):
        seconds = statistics.median(_mm_seconds(a, b, device) for _ in range(calls))
        best = max(best, 2 * size**3 / seconds)
        timed += 1
    name = dtype_name(dtype)
    return MatmulRate(best, name, f"best of {timed} rounds (median of {calls} mm each) of "
                                  f"{size}x{size} {name} after warm-up")


@functools.lru_cache(maxsize=None)
def dtype_name(dtype: torch.dtype) -> str:
    """"float32", "bfloat16": how metrics.json names a precision."""
    return str(dtype).removeprefix("torch.")


def matmul_rate_once(device: torch.device, dtype: torch.dtype = torch.float32) -> MatmulRate:
    """The matmul rate measured once per process: jobs that share a process (a basic or joblib
    sweep) need not spend half a second on it each."""
    return matmul_rate(device, dtype)


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


# Ops the counter leaves at zero on purpose: data movement and tensor creation (repeat: an
# InstanceNorm's affine terms, once per image), comparisons that make masks or pick an index
# (argmax: which polyphase component pool=aps keeps, N x 4 numbers), and the network's own
# BatchNorms and ReLUs (every operator's network has the same). pool=lip's InstanceNorm runs as
# native_batch_norm too, so it counts zero like them: a few FLOPs per element of the logit map,
# next to its 3x3 convolution's 18 x C. Any other op without a FLOP formula is reported, never
# silently counted as zero.
NOT_COUNTED_BY_DESIGN = {getattr(aten, name) for name in (
    "_to_copy", "alias", "arange", "cat", "stack", "clone", "copy_", "detach", "empty", "empty_like",
    "repeat", "argmax",
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


def add_mfu(speed: dict, flops: int, rate: MatmulRate) -> dict:
    """`speed` with infer_mfu, train_mfu and their denominator: matmul_flops_per_s, matmul_dtype,
    matmul_method (how it was measured)."""
    speed = dict(speed)
    speed.update(matmul_flops_per_s=rate.flops_per_s, matmul_dtype=rate.dtype, matmul_method=rate.method)
    speed["infer_mfu"] = flops * speed["infer_images_per_s"] / rate.flops_per_s
    speed["train_mfu"] = TRAIN_FLOPS_PER_FORWARD * flops * speed["train_images_per_s"] / rate.flops_per_s
    return speed
