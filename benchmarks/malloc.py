"""What keeping freed memory (poolbench/allocator.py) buys: training steps with glibc's default
malloc against the tuned one, and the page faults each takes.

    python benchmarks/malloc.py [--pool max] [--data mnist] [--batch 128] [--rounds 4] [--steps 60]
                                [--threads 2]

Each round starts two fresh processes one after the other, one with malloc as glibc sets it and
one after `allocator.keep_freed_memory()`, so the two alternate under the same load (which goes
first alternates between rounds). A process
builds the run's network (the `poolbench run` config for --pool and --data, synthetic images in
channels_last), warms up 10 steps, then times --steps training steps (forward, loss, backward,
SGD step) and counts the minor page faults they take. Prints per round and the median over
rounds; the ratio is default / tuned.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import torch
import torch.nn.functional as F
from poolbench.allocator import keep_freed_memory
from poolbench.bench import operator_config
from poolbench.runtime import model_on, set_threads
pool, data, batch, steps, tuned, threads = sys.argv[1:]
state = keep_freed_memory() if tuned == "1" else "default"
set_threads(int(threads))
cfg = operator_config(pool, [f"data={data}"])
torch.manual_seed(0)
model = model_on(cfg, torch.device("cpu")).train()
size, channels = int(cfg.data.image_size), int(cfg.data.channels)
images = torch.randn(int(batch), channels, size, size).contiguous(memory_format=torch.channels_last)
labels = torch.randint(0, int(cfg.data.num_classes or 10), (int(batch),))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
def step():
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
started = time.perf_counter()
for _ in range(int(steps)):
    step()
seconds = time.perf_counter() - started
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"malloc": state, "step_ms": seconds / int(steps) * 1e3, "faults_per_step": faults / int(steps)}))
"""


def measure(args, tuned: bool) -> dict:
    cmd = [sys.executable, "-c", CHILD, args.pool, args.data, str(args.batch), str(args.steps),
           "1" if tuned else "0", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the timed process failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="max")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {"default": [], "tuned": []}
    print(f"pool={args.pool} data={args.data} batch {args.batch}, {args.threads} threads, "
          f"{args.steps} steps a process, {args.rounds} rounds")
    for round_ in range(1, args.rounds + 1):
        order = (("default", False), ("tuned", True))
        for label, tuned in order if round_ % 2 else order[::-1]:
            result = measure(args, tuned)
            results[label].append(result)
            print(f"round {round_} {label:<8} malloc={result['malloc']:<8} {result['step_ms']:7.2f} ms a step, "
                  f"{result['faults_per_step']:7.1f} page faults a step")
    medians = {label: statistics.median(r["step_ms"] for r in runs) for label, runs in results.items()}
    faults = {label: statistics.median(r["faults_per_step"] for r in runs) for label, runs in results.items()}
    print(f"median step: default {medians['default']:.2f} ms ({faults['default']:.0f} faults), "
          f"tuned {medians['tuned']:.2f} ms ({faults['tuned']:.0f} faults): "
          f"{medians['default'] / medians['tuned']:.2f}x")


if __name__ == "__main__":
    main()
