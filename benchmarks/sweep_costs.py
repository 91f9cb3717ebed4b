"""Where a sweep job's time goes: training step and evaluation pass of the whole model, per operator.

Usage: python benchmarks/sweep_costs.py [--pools max,avg,...] [--threads 1] [--reps 7]

Each job of a joblib sweep runs on one thread, so that is the default. For every operator of the
default sweep grid (and `fractional (torch)`: the same model with torch's own fractional kernel,
the form the registry replaced) it times, interleaved over `reps` rounds, the MNIST SmallCNN's
training step (batch 128, SGD, channels_last) and an evaluation pass (`evaluate.predict` over
2,048 images) at eval batch sizes 64, 128 and 256 with the model as trained, and at 128 with
the BatchNorm-folded copy that evaluation runs (`model.inference_copy`), and prints medians in
images/s. malloc keeps freed memory, as in a poolbench run (poolbench/allocator.py). Ratios are
only meaningful within one run of this script (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from pool_ops import TorchKernelFractional  # benchmarks/, the script's own folder

from poolbench.allocator import keep_freed_memory
from poolbench.evaluate import predict
from poolbench.model import PoolMaker, SmallCNN, inference_copy
from poolbench.pools.basic import FractionalMaxPool
from poolbench.sweep.grid import DEFAULT_GRID

EVAL_BATCHES = (64, 128, 256)


def build(name: str) -> SmallCNN:
    torch.manual_seed(0)
    pool = name.split(" ")[0]
    model = SmallCNN(1, 10, 28, PoolMaker({"name": pool}), channels=[16, 32, 64], readout="auto")
    model = model.to(memory_format=torch.channels_last)
    if name == "fractional (torch)":
        for i, layer in enumerate(model.features):
            if isinstance(layer, FractionalMaxPool):
                model.features[i] = TorchKernelFractional(0, layer.ratio)  # channels: unused
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default=DEFAULT_GRID["pool"] + ",fractional (torch)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    names = args.pools.split(",")
    models = {name: build(name) for name in names}
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for name, m in models.items()}
    images = torch.randint(0, 256, (2048, 1, 28, 28), dtype=torch.uint8)
    batch = images[:128].float().contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (128,))

    def normalize(chunk: torch.Tensor) -> torch.Tensor:
        return chunk.float().div_(255).contiguous(memory_format=torch.channels_last)

    def train_step(name: str) -> None:
        model = models[name].train()
        loss = F.cross_entropy(model(batch), labels)
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()

    rates: dict[tuple[str, str], list[float]] = {}
    for rep in range(args.reps + 1):  # the first round is warm-up
        for name in names:
            start = time.perf_counter()
            train_step(name)
            seconds = {"train 128": time.perf_counter() - start}
            for eval_batch in EVAL_BATCHES:
                start = time.perf_counter()
                predict(models[name], images, normalize, eval_batch)
                seconds[f"eval {eval_batch}"] = (time.perf_counter() - start) / len(images) * 128
            folded = inference_copy(models[name])
            start = time.perf_counter()
            predict(folded, images, normalize, 128)
            seconds["folded 128"] = (time.perf_counter() - start) / len(images) * 128
            if rep:
                for column, value in seconds.items():
                    rates.setdefault((name, column), []).append(128 / value)
    columns = ["train 128"] + [f"eval {b}" for b in EVAL_BATCHES] + ["folded 128"]
    print(f"images/s, median of {args.reps} interleaved rounds, {args.threads} thread(s), MNIST SmallCNN")
    print(f"{'pool':<20}" + "".join(f"{c:>12}" for c in columns))
    for name in names:
        print(f"{name:<20}" + "".join(f"{statistics.median(rates[(name, c)]):>12,.0f}" for c in columns))


if __name__ == "__main__":
    main()
