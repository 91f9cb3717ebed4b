"""Goal 3 in one command: MFU of the default model, and `poolbench bench` for every operator.

    python benchmarks/mfu.py                    # the default MNIST model, all cores (fp32 unless bf16 is native:
                                                # add train.amp=false for goal 3's fp32 figure there)
    python benchmarks/mfu.py train.amp=true     # the same under bf16 autocast

MFU = forward FLOPs x images/s / this machine's dense matmul rate in the model's precision
(`speed.matmul_rate`: the best of several warmed-up torch.mm rounds; the size it picked is in
the JSON's `matmul_method`) measured right after each operator's timings in the same process; a
training step counts 3x the forward FLOPs.
The default model is pool=max; the goal is training >= 30% and inference >= 40% MFU. Other
operators are listed for comparison (BENCHMARKS.md says why some fall short).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist import REPO, machine  # noqa: E402

TRAIN_GOAL, INFER_GOAL = 0.30, 0.40


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from poolbench.bench import run_bench

    overrides = list(sys.argv[1:] if argv is None else argv)
    console = Console(highlight=False, width=120)
    info = machine()
    console.print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
                  f"{info['date']}, load average {info['load_avg_at_start'][0]:.2f}")
    rows = run_bench(overrides, REPO / "outputs" / "bench" / "mfu.json", console=console)
    default = next((r for r in rows if r["pool"] == "max"), None)
    if default is None:
        console.print("pool=max was not benched: no goal to check.")
        return 0
    train_ok, infer_ok = default["train_mfu"] >= TRAIN_GOAL, default["infer_mfu"] >= INFER_GOAL
    console.print(f"goal 3, default model (pool=max): training MFU {default['train_mfu']:.1%} "
                  f"(goal {TRAIN_GOAL:.0%}: {'met' if train_ok else 'NOT met'}), inference MFU "
                  f"{default['infer_mfu']:.1%} (goal {INFER_GOAL:.0%}: {'met' if infer_ok else 'NOT met'}); "
                  f"{default['train_images_per_s']:,.0f} / {default['infer_images_per_s']:,.0f} img/s, "
                  f"matmul {default['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
