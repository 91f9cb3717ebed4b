"""One training step of SmallCNN networks of other shapes, timed in one process, interleaved.

Usage: python benchmarks/network_steps.py [--threads 2] [--rounds 12] [--batch 256] NAME=OVERRIDES ...

    python benchmarks/network_steps.py "recipe=" "deeper=convs=[1,2,1,1]" \
        "narrow=channels=[16,32,64,128] convs=[1,2,2,2]"

Each network is the one `poolbench run data=cifar10` builds (configs/model/cifar10.yaml: 32x32
colour images, pool=max, the frozen whitening first layer) with the `model.*` overrides given
after its name (space-separated key=value, as on the command line). A step is forward,
label-smoothed cross-entropy, backward and a Nesterov SGD step, batch `--batch`, channels_last,
fp32, on random images (the step time does not depend on the pixels). Each round times one step
of every network in turn, so a change in the machine's speed lands on all of them; the median
over the rounds is reported with its ratio to the first network's. For choosing epochs at equal
training time before a CIFAR-10 trial.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from pool_ops import interleaved_ms  # benchmarks/, the script's own folder
from torch import nn

from poolbench.allocator import keep_freed_memory
from poolbench.config import compose_config
from poolbench.model import build_model


def network(overrides: str) -> nn.Module:
    """CIFAR-10's network as `poolbench run data=cifar10 model.KEY=VALUE ...` would build it."""
    cfg = compose_config(["data=cifar10", *(f"model.{item}" for item in overrides.split())])
    return build_model(cfg).to(memory_format=torch.channels_last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="+", help="NAME=model overrides, e.g. 'deeper=convs=[1,2,1,1]'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    keep_freed_memory()  # as in a poolbench run
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch,))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    steps = {}
    for spec in args.networks:
        name, _, overrides = spec.partition("=")
        model = network(overrides)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                                    momentum=0.9, nesterov=True)
        steps[name] = (model, optimizer, sum(p.numel() for p in model.parameters()))

    def step(model, optimizer) -> None:
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    calls = {name: (lambda model=model, optimizer=optimizer: step(model, optimizer))
             for name, (model, optimizer, _) in steps.items()}
    times = interleaved_ms(calls, args.rounds, warmup=3)  # ms per step, every network in each round
    first = statistics.median(next(iter(times.values())))
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {args.rounds} interleaved rounds")
    print(f"{'network':24s} {'params':>9s} {'median ms':>10s} {'ratio':>6s} {'epoch s':>8s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:24s} {steps[name][2]:9,d} {median:10.1f} {median / first:6.2f} "
              f"{median / 1e3 * 50_000 / args.batch:8.1f}")


if __name__ == "__main__":
    main()
