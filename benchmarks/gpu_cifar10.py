"""CIFAR-10 on one GPU: time to 94% test accuracy with a poolbench operator in every downsampling slot.

    python benchmarks/gpu_cifar10.py                        # pool=max, 3 runs of 30 epochs
    python benchmarks/gpu_cifar10.py --pools max,avg,strided,fractional,attention,global --runs 1
    python benchmarks/gpu_cifar10.py --pool avg --runs 5 --epochs 20 --json-out cifar10_avg.json
    python benchmarks/gpu_cifar10.py --device cpu --epochs 1 --max-steps 2 --batch 32 --subset 256   # smoke test

The network and recipe follow airbench94 (Keller Jordan 2024) in spirit: a 3x3 stem, then three
blocks of (conv, downsample, BN, GELU, conv, BN, GELU) at widths 64/256/256, a global max readout;
the whole dataset lives on the GPU as uint8, crops (translate up to 2 px) and flips are batched
tensor ops, the model runs channels_last under bf16 autocast, Nesterov SGD with label smoothing
and a linear warm-up/decay schedule; evaluation averages the logits of each image and its mirror.
The downsampling slot is poolbench's registry (`--pools`, a comma list; `--pool` is the same
option), so operators compare on a network that reaches 94%, far beyond SmallCNN's reach. Several
operators train in one process with the data loaded once, `--runs` runs (seeds 0, 1, ...) each, in
the order given. `global` in every slot means no downsampling at all (32x32 throughout), many times
slower than the others: put it last.

Schedule: 30 epochs by default. An H200 trained 10 epochs with pool=max in 2.73 s (87.2%), about
0.27 s an epoch, so 30 epochs should take about 8 s there: an estimate, not measured until a device
run. The verdict ">= 94% within 10 s" asks for a mean accuracy >= 94% over a pool's runs and no
run's training longer than 10 s.

Timing: training seconds only (data already on the device), with
torch.cuda.synchronize() before the clock is read; no host read inside the training loop. Before
each operator's timed runs, a few untimed steps on a throwaway model (`--warmup-steps`) take the
one-off costs (kernel selection, allocator growth) out of the first run's time.
Data come from poolbench's loader (`data.source=...` and friends go in --data-override).

Output: one JSON line per run (pool, seed, epochs, steps, train_s, accuracy), then one summary line
per operator naming the card and the verdict. `--json-out PATH` also writes every result with the
card's name, the torch version, epochs and batch to PATH, rewritten after each run so a run cut
short by a time limit still leaves what it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.config import compose_config
from poolbench.data import load_dataset
from poolbench.data.transforms import Normalizer, random_flip, random_shift
from poolbench.pools import build_pool


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out, momentum=0.4), nn.GELU()]


class Net(nn.Module):
    def __init__(self, pool: str, widths=(64, 256, 256), stem: int = 24, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = conv_bn(3, stem)
        c_in = stem
        for width in widths:
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), build_pool({"name": pool}, width),
                       nn.BatchNorm2d(width, momentum=0.4), nn.GELU(), *conv_bn(width, width)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(torch.amax(x, dim=(2, 3))) / 9  # global max readout, logits scaled down


def evaluate(model, images, labels, normalize, autocast, batch: int = 2000) -> float:
    model.eval()
    correct = torch.zeros((), device=images.device)
    with torch.inference_mode(), autocast:
        for start in range(0, images.shape[0], batch):
            x = normalize(images[start:start + batch])
            logits = model(x) + model(x.flip(-1))  # flip test-time augmentation
            correct += (logits.argmax(1) == labels[start:start + batch]).sum()
    model.train()
    return correct.item() / labels.numel()


def train_once(data, args, device, pool: str, seed: int, max_steps: int | None = None,
               evaluate_after: bool = True) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    normalize = Normalizer(args.mean, args.std, device, channels_last=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    model = Net(pool).to(device).to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    n = data.train_x.shape[0]
    steps_per_epoch = n // args.batch
    total = steps_per_epoch * args.epochs
    total = total if max_steps is None else min(max_steps, total)
    warmup = max(1, int(0.2 * total))

    def make_optimizer():
        optimizer = torch.optim.SGD([{"params": decay, "weight_decay": args.wd},
                                     {"params": no_decay, "weight_decay": 0.0}],
                                    lr=args.lr, momentum=0.85, nesterov=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
        return optimizer, schedule

    def step(idx, optimizer, schedule):
        images = random_flip(random_shift(data.train_x[idx], 2, generator), generator)
        with autocast:
            loss = F.cross_entropy(model(normalize(images)), data.train_y[idx], label_smoothing=0.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

    optimizer, schedule = make_optimizer()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    done = 0
    while done < total:
        perm = torch.randperm(n, device=device, generator=generator)
        for s in range(min(steps_per_epoch, total - done)):
            step(perm[s * args.batch:(s + 1) * args.batch], optimizer, schedule)
        done += min(steps_per_epoch, total - done)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    accuracy = evaluate(model, data.test_x, data.test_y, normalize, autocast) if evaluate_after else None
    return {"pool": pool, "seed": seed, "epochs": args.epochs, "steps": total, "train_s": round(seconds, 4),
            "accuracy": accuracy}


def summarize(pool: str, runs: list[dict]) -> dict:
    accs = [r["accuracy"] for r in runs]
    secs = [r["train_s"] for r in runs]
    return {"pool": pool, "runs": len(runs), "accuracy_mean": statistics.mean(accs), "accuracy_min": min(accs),
            "train_s_median": statistics.median(secs), "train_s_max": max(secs),
            "goal_met": statistics.mean(accs) >= 0.94 and max(secs) <= 10}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", "--pool", default="max",
                        help="operators, comma-separated, trained in this order (default: max)")
    parser.add_argument("--runs", type=int, default=3, help="runs per operator (seeds 0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--wd", type=float, default=5e-4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--max-steps", type=int, default=None, help="smoke test: stop after this many steps")
    parser.add_argument("--subset", type=int, default=None,
                        help="smoke test: train and test on N images each, a fixed random sample")
    parser.add_argument("--warmup-steps", type=int, default=5,
                        help="untimed steps on a throwaway model before each operator's runs (0: none)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write every result here as JSON")
    parser.add_argument("--data-override", nargs="*", default=[], help="poolbench overrides, e.g. data.source=...")
    args = parser.parse_args(argv)
    pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    if not pools:
        parser.error("--pools names no operator")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here: this benchmark needs a GPU (or --device cpu for a smoke test).")
    cfg = compose_config(["data=cifar10", *args.data_override])
    args.mean, args.std = list(cfg.data.mean), list(cfg.data.std)
    data = load_dataset(cfg.data)
    if args.subset is not None:  # a fixed random sample: the image folders come sorted by class
        pick = torch.Generator().manual_seed(0)
        train = torch.randperm(data.train_x.shape[0], generator=pick)[:args.subset]
        test = torch.randperm(data.test_x.shape[0], generator=pick)[:args.subset]
        data = dataclasses.replace(data, train_x=data.train_x[train], train_y=data.train_y[train],
                                   test_x=data.test_x[test], test_y=data.test_y[test])
    data = data.to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"card": name, "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
              "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "wd": args.wd,
              "max_steps": args.max_steps, "subset": args.subset, "warmup_steps": args.warmup_steps, "pools": pools,
              "runs": [], "summaries": [], "errors": []}

    def save() -> None:
        if args.json_out is not None:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            args.json_out.write_text(json.dumps(report, indent=2) + "\n")

    save()
    for pool in pools:
        try:
            if args.warmup_steps > 0:
                train_once(data, args, device, pool, seed=1000, max_steps=args.warmup_steps, evaluate_after=False)
            runs = []
            for seed in range(args.runs):
                result = train_once(data, args, device, pool, seed, max_steps=args.max_steps)
                print(json.dumps(result), flush=True)
                runs.append(result)
                report["runs"].append(result)
                save()
        except Exception as error:  # one operator failing must not cost the others their runs
            message = f"{type(error).__name__}: {error}"
            print(f"{name}, pool={pool}: failed: {message}", flush=True)
            report["errors"].append({"pool": pool, "error": message})
            save()
            continue
        if not runs:
            continue
        summary = summarize(pool, runs)
        report["summaries"].append(summary)
        save()
        print(f"{name}, torch {torch.__version__}, pool={pool}, {args.epochs} epochs, batch {args.batch}, "
              f"eager: accuracy mean {summary['accuracy_mean']:.2%} (min {summary['accuracy_min']:.2%}) "
              f"in {summary['train_s_median']:.2f} s training (median of {len(runs)}, max "
              f"{summary['train_s_max']:.2f} s); goal >= 94% within 10 s: "
              f"{'met' if summary['goal_met'] else 'not met'}", flush=True)
    if args.json_out is not None:
        print(f"saved: {args.json_out}")
    if report["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
