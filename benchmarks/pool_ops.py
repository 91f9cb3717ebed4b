"""Forward + backward time of each operator, alone at the default network's slots and in the
whole default network, relative to max pooling in the same process (CPU).

Usage: python benchmarks/pool_ops.py [--threads 2] [--reps 15] [--batch 256] [--pools a,b,...]
                                     [--eval-batch 128] [--no-network] [--slot 16x28 --slot 32x14 ...]
                                     [--baseline OLD_CHECKOUT] [--system-malloc] [--window-max]

malloc is set up as a poolbench run sets it (poolbench/allocator.py: freed memory is kept for
the next step); --system-malloc leaves glibc's defaults, as this script ran before that existed.

Slots: by default the three downsampling slots of the default MNIST network (channels 16, 32, 64
at 28, 14, 7 pixels), batch 256, channels_last input as in training. Each repetition runs every
operator once on every slot (forward, then backward of a gradient of ones in the output's
layout, as a conv's gradient would be, not the expanded gradient of a sum), interleaved, so a
change in the machine's load hits every operator alike; the table gives, per operator, the
minimum and median over repetitions of the three slots' summed time, min / max's min and
median / max's median.

Network (unless --no-network): one training step (forward, cross-entropy, backward, SGD step)
of the default network (`poolbench bench`'s model: `model=small`, MNIST-shaped synthetic batch)
per operator, interleaved the same way: the per-epoch cost that issue 16 asks to keep within
1.5x of max's. Then one evaluation batch (--eval-batch 128, eval.batch_size's default) of the
network's BatchNorm-folded copy under inference_mode, the pass that evaluation repeats about 20
times per test image (once per draw for fractional).

Two replaced formulations stay as references: `attention (unfold)` (unfold the 2x2 windows,
softmax over the last dimension), which the registry's avg_pool-based form replaced, and
`fractional (torch)` (`F.fractional_max_pool2d`), which max_pool + gather replaced (both left
out with --baseline).

--window-max prints only one table: torch's max_pool2d against pools/window_max.max_2x2 (the 2x2
window max that max, blur, fractional, mixed, gated, lp and the softmax operators' overflow guard
share) without gradient, per map.

--baseline OLD_CHECKOUT (e.g. `git worktree add /tmp/old HEAD`, or `git archive HEAD poolbench |
tar -x -C /tmp/old`) adds that checkout's operators as rows "<pool> (before)", in the same
process and the same interleaved rounds (the network's slots too), so a change is measured
against its baseline under the same load: its `poolbench/pools/` is copied into a temporary
package with its `poolbench.pools` imports renamed; everything else comes from this checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from poolbench.allocator import keep_freed_memory
from poolbench.pools import POOLS, build_pool, pool_names
from poolbench.pools.basic import FractionalMaxPool

DEFAULT_SLOTS = ("16x28", "32x14", "64x7")


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


BEFORE = " (before)"


def load_baseline(checkout: str):
    """The `pools` package of another checkout, importable beside this one (as `baseline_pools`)."""
    target = Path(tempfile.mkdtemp(prefix="pool_ops_")) / "baseline_pools"
    shutil.copytree(Path(checkout) / "poolbench" / "pools", target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.glob("*.py"):
        path.write_text(path.read_text().replace("poolbench.pools", "baseline_pools"))
    sys.path.insert(0, str(target.parent))
    return importlib.import_module("baseline_pools")


@contextlib.contextmanager
def baseline_registered(baseline, name: str):
    """While building a network, `pool=name` builds the baseline's operator."""
    current = POOLS[name]
    POOLS[name] = baseline.POOLS[name]
    try:
        yield
    finally:
        POOLS[name] = current


def build(name: str, channels: int, baseline=None) -> torch.nn.Module:
    if name.endswith(BEFORE):
        return baseline.build_pool({"name": name[: -len(BEFORE)]}, channels)
    return build_pool({"name": name}, channels)


def slot_ops(names: list[str], channels: int, baseline=None) -> dict:
    ops = {name: build(name, channels, baseline).to(memory_format=torch.channels_last).train()
           for name in names}
    if "attention" in ops and not any(name.endswith(BEFORE) for name in names):
        ops["attention (unfold)"] = unfold_attention(ops["attention"])
    if "fractional" in ops and not any(name.endswith(BEFORE) for name in names):
        ops["fractional (torch)"] = TorchKernelFractional(channels, ops["fractional"].ratio).train()
    return ops


def time_slots(names: list[str], slots: list[tuple[int, int]], batch: int, reps: int, baseline=None) -> dict:
    """Per operator, the summed fwd+bwd ms over the slots, one entry per repetition."""
    inputs, per_slot = [], []
    for channels, size in slots:
        x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
        inputs.append(x.requires_grad_())
        per_slot.append(slot_ops(names, channels, baseline))
    labels = list(per_slot[0])
    times: dict[str, list[float]] = {name: [] for name in labels}
    for rep in range(reps + 1):  # the first round warms up
        for name in labels:
            total = 0.0
            for x, ops in zip(inputs, per_slot):
                start = time.perf_counter()
                out = ops[name](x)
                out.backward(torch.ones_like(out))  # in out's layout, as a conv's gradient would be
                total += time.perf_counter() - start
                x.grad = None
            if rep:
                times[name].append(total * 1e3)
    return times


def default_network(name: str, baseline=None):
    """(cfg, model on the CPU) of the default network (bench's model) with operator `name`; a
    "<pool> (before)" name builds the baseline checkout's operator."""
    from poolbench.bench import operator_config
    from poolbench.runtime import model_on

    pool = name[: -len(BEFORE)] if name.endswith(BEFORE) else name
    cfg = operator_config(pool, [])
    torch.manual_seed(int(cfg.seed))
    with baseline_registered(baseline, pool) if name.endswith(BEFORE) else contextlib.nullcontext():
        return cfg, model_on(cfg, torch.device("cpu"))


def network_images(cfg, batch: int) -> torch.Tensor:
    shape = (batch, int(cfg.data.channels), int(cfg.data.image_size), int(cfg.data.image_size))
    return torch.randn(shape).contiguous(memory_format=torch.channels_last)


def interleaved_ms(calls: dict, reps: int, warmup: int) -> dict:
    """Per name, the ms of each call over `reps` rounds after `warmup` rounds; every round calls
    each in turn, so a change in the machine's load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for rep in range(warmup + reps):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if rep >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return times


def time_network(names: list[str], batch: int, reps: int, baseline=None) -> dict:
    """Per operator, ms per training step of the default network (bench's model and batch)."""
    steps = {}
    for name in names:
        cfg, model = default_network(name, baseline)
        model.train()
        images = network_images(cfg, batch)
        labels = torch.randint(0, int(cfg.data.num_classes or 10), (batch,))
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(model=model, images=images, labels=labels, optimizer=optimizer):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        steps[name] = step
    return interleaved_ms(steps, reps, warmup=2)


def time_evaluation(names: list[str], batch: int, reps: int, baseline=None) -> dict:
    """Per operator, ms per evaluation batch of the default network: the BatchNorm-folded copy
    that evaluation runs (model.inference_copy), forward under inference_mode, as evaluate.predict
    runs each pass (one draw: fractional's u = 0.5)."""
    from poolbench.model import inference_copy

    passes = {}
    for name in names:
        cfg, model = default_network(name, baseline)
        model, images = inference_copy(model), network_images(cfg, batch)
        passes[name] = lambda model=model, images=images: model(images).argmax(1)
    with torch.inference_mode():
        return interleaved_ms(passes, reps, warmup=2)


def time_window_max(slots: list[tuple[int, int]], batch: int, reps: int) -> None:
    """--window-max: torch's max_pool2d against pools/window_max.max_2x2 (the same values) on each
    slot's map, stride 1 and 2, channels_last and NCHW, no gradient: median ms, interleaved."""
    from poolbench.pools.window_max import max_2x2

    print(f"\n2x2 window max without gradient, batch {batch}, median ms of {reps} interleaved rounds")
    print(f"{'map':<14}{'stride':>7}{'layout':>15}{'max_pool2d':>12}{'max_2x2':>9}{'ratio':>7}")
    with torch.inference_mode():
        for channels, size in slots:
            for stride in (1, 2):
                for layout in (torch.channels_last, torch.contiguous_format):
                    x = torch.randn(batch, channels, size, size).contiguous(memory_format=layout)
                    assert torch.equal(max_2x2(x, stride), F.max_pool2d(x, 2, stride=stride))
                    times = interleaved_ms({"torch": lambda: F.max_pool2d(x, 2, stride=stride),
                                            "ours": lambda: max_2x2(x, stride)}, reps, warmup=1)
                    torch_ms, ours_ms = (statistics.median(times[k]) for k in ("torch", "ours"))
                    name = "channels_last" if layout is torch.channels_last else "NCHW"
                    print(f"{f'{channels}ch {size}px':<14}{stride:>7}{name:>15}{torch_ms:>12.3f}{ours_ms:>9.3f}"
                          f"{torch_ms / ours_ms:>7.1f}")


def print_table(title: str, times: dict) -> None:
    base = min(times["max"])
    base_median = statistics.median(times["max"])
    print(title)
    print(f"{'pool':<20}{'min ms':>9}{'median ms':>11}{'min / max':>11}{'med / max':>11}")
    for name, values in sorted(times.items(), key=lambda item: min(item[1])):
        print(f"{name:<20}{min(values):>9.1f}{statistics.median(values):>11.1f}"
              f"{min(values) / base:>11.2f}{statistics.median(values) / base_median:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--slot", action="append", help="CxH, repeatable; default 16x28 32x14 64x7")
    parser.add_argument("--pools", default="", help="comma list; default every registered operator")
    parser.add_argument("--eval-batch", type=int, default=128, help="the evaluation table's batch (eval.batch_size)")
    parser.add_argument("--no-network", action="store_true", help="skip the whole-network tables")
    parser.add_argument("--baseline", help="another checkout: its operators timed as '<pool> (before)' rows")
    parser.add_argument("--system-malloc", action="store_true", help="keep glibc's malloc defaults")
    parser.add_argument("--window-max", action="store_true", help="only the 2x2 window max table")
    args = parser.parse_args()
    malloc = "system defaults" if args.system_malloc else keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = [p for p in args.pools.split(",") if p] or pool_names()
    if "max" not in names:
        names.insert(0, "max")
    baseline = load_baseline(args.baseline) if args.baseline else None
    if baseline is not None:
        names += [name + BEFORE for name in names if name in baseline.POOLS]
    slots = [tuple(int(v) for v in s.split("x")) for s in (args.slot or DEFAULT_SLOTS)]
    import poolbench.pools
    print(f"operators from {poolbench.pools.__file__}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}, channels_last, {args.reps} reps, malloc {malloc}")
    if args.window_max:
        time_window_max(slots + [(32, 19), (64, 13)], args.eval_batch, args.reps)  # + fractional's maps
        return
    slot_text = " + ".join(f"{c}ch {h}px" for c, h in slots)
    print_table(f"\nfwd+bwd of the pooling slots alone, summed over {slot_text}",
                time_slots(names, slots, args.batch, args.reps, baseline))
    if not args.no_network:
        print_table("\none training step of the default network (fwd + loss + bwd + SGD)",
                    time_network(names, args.batch, args.reps, baseline))
        print_table(f"\none evaluation batch of the default network ({args.eval_batch} images, BatchNorm folded, "
                    "inference mode)", time_evaluation(names, args.eval_batch, args.reps, baseline))


if __name__ == "__main__":
    main()
