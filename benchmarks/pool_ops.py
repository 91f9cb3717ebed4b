"""Forward + backward time of each operator alone, on one slot's activation (CPU, one thread).

Usage: python benchmarks/pool_ops.py [--batch 256] [--channels 16] [--size 28] [--reps 9]

Prints the minimum and median over `reps` interleaved repetitions (channels_last input, as in
training), relative to max pooling in the same process, and the same for `attention` written
the straightforward way (unfold the 2x2 windows, softmax over the last dimension), which the
registry's avg_pool-based form replaced, and for `fractional` through torch's own kernel
(`F.fractional_max_pool2d`), which the registry's max_pool + gather form replaced.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from poolbench.pools import build_pool, pool_names
from poolbench.pools.basic import FractionalMaxPool


def unfold_attention(pool: torch.nn.Module):
    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        windows = lambda t: t.unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)  # noqa: E731
        return (windows(x) * torch.softmax(windows(pool.logit(x)), -1)).sum(-1)
    return forward


class TorchKernelFractional(FractionalMaxPool):
    """The registry's fractional pool through torch's own kernel (fixed regions in eval mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2] * self.ratio), int(x.shape[-1] * self.ratio))
        samples = None if self.training else torch.full((x.shape[0], x.shape[1], 2), 0.5)
        return F.fractional_max_pool2d(x, 2, output_size=size, _random_samples=samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.size, args.size)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    ops = {}
    for name in pool_names():
        ops[name] = build_pool({"name": name}, args.channels).to(memory_format=torch.channels_last).train()
    ops["attention (unfold)"] = unfold_attention(ops["attention"])
    ops["fractional (torch)"] = TorchKernelFractional(args.channels, ops["fractional"].ratio).train()
    times: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(args.reps):
        for name, op in ops.items():
            start = time.perf_counter()
            op(x).sum().backward()
            times[name].append((time.perf_counter() - start) * 1e3)
    base = min(times["max"])
    print(f"fwd+bwd of one slot, input {tuple(x.shape)} channels_last, 1 thread, {args.reps} reps")
    print(f"{'pool':<20}{'min ms':>9}{'median ms':>11}{'min / max':>11}")
    for name, values in times.items():
        print(f"{name:<20}{min(values):>9.1f}{statistics.median(values):>11.1f}{min(values) / base:>11.2f}")


if __name__ == "__main__":
    main()
