"""CIFAR-10 on the CPU in one command: `poolbench run data=cifar10` against the 85% / 5-minute goal.

    python benchmarks/cifar10.py --source /path/to/cifar10-jpg.tar.xz                 # seeds 0 1 2
    python benchmarks/cifar10.py --source DIR --seeds 0,1 train.epochs=4              # extra overrides go to poolbench

Runs the CIFAR-10 recipe (configs/train/cifar10.yaml, pool=max) once per seed, each in its own
process, and reports test accuracy, training seconds (evaluation excluded), accuracy after every
epoch, images/s, MFU and the process's peak resident memory. Then, from each run's checkpoint in
this process, the unshifted test accuracy with and without test-time flip (`eval.tta_flip`), so the
flip's effect is measured on the same weights. --source is passed as data.source (any copy
poolbench's CIFAR-10 loader accepts); without it poolbench looks in data.root / downloads. The run
folders are kept under --runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist import REPO, machine, run_measured  # noqa: E402  (same measuring helpers)


def flip_effect(run_dir: Path) -> dict:
    """Unshifted test accuracy of the run's weights without and with test-time flip."""
    import torch

    from poolbench.api import load_run
    from poolbench.data import load_dataset
    from poolbench.evaluate import predict
    from poolbench.model import inference_copy
    from poolbench.runtime import autocast_for

    loaded = load_run(run_dir)
    data = load_dataset(loaded.config.data)
    model = inference_copy(loaded.model)
    autocast = autocast_for(torch.device("cpu"), loaded.config.train.amp)
    out = {}
    for flip in (False, True):
        predictions = predict(model, data.test_x, loaded.normalize, int(loaded.config.eval.batch_size), autocast,
                              flip=flip)
        out["with_flip" if flip else "without_flip"] = (predictions == data.test_y).float().mean().item()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="data.source for CIFAR-10 (folder or archive)")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2],
                        help="comma-separated, e.g. 0,1,2 (so overrides may follow)")
    parser.add_argument("--target", type=float, default=0.85, help="mean test accuracy over the seeds")
    parser.add_argument("--budget-s", type=float, default=300.0, help="training seconds allowed, each seed")
    parser.add_argument("--runs", type=Path, default=None, help="where the run folders go "
                        "(default outputs/bench/cifar10-runs/<time>)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "cifar10.json")
    parser.add_argument("overrides", nargs="*", help="extra poolbench overrides")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, width=120)
    info = machine()
    console.print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
                  f"{info['date']}, load average {info['load_avg_at_start'][0]:.2f}")
    overrides = ["data=cifar10", *([f"data.source={args.source}"] if args.source else []), *args.overrides]
    runs_dir = args.runs or REPO / "outputs" / "bench" / "cifar10-runs" / time.strftime("%Y%m%d-%H%M%S")
    runs = []
    for seed in args.seeds:
        run_dir = runs_dir / f"seed{seed}"
        cmd = [sys.executable, "-m", "poolbench", "run", *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}"]
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        code, wall, rss = run_measured(cmd, runs_dir / f"seed{seed}.log")
        if code != 0:
            console.print((runs_dir / f"seed{seed}.log").read_text()[-2000:])
            raise SystemExit(f"poolbench run failed (exit {code})")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        for h in metrics["history"]:
            console.print(f"seed {seed} epoch {h['epoch']}: test accuracy {h['test_accuracy']:.2%} "
                          f"at {h['seconds']:.1f} s training")
        acc, train_s = metrics["accuracy"]["test"], metrics["time"]["train_s"]
        tp = metrics["throughput"]
        flips = flip_effect(run_dir)
        console.print(f"seed {seed}: test accuracy {acc:.2%} after {train_s:.1f} s training ({wall:.0f} s in all), "
                      f"train {tp['train_images_per_s']:,.0f} img/s (MFU {tp['train_mfu']:.1%}, "
                      f"{tp.get('matmul_dtype')}), peak RSS {rss:.0f} MB; same weights without / with "
                      f"test-time flip: {flips['without_flip']:.2%} / {flips['with_flip']:.2%}")
        runs.append({"seed": seed, "accuracy": acc, "train_s": train_s, "wall_s": wall, "peak_rss_mb": rss,
                     "flip_effect": flips, "run_dir": str(run_dir), "metrics": metrics})
    mean = sum(r["accuracy"] for r in runs) / len(runs)
    slowest = max(r["train_s"] for r in runs)
    met = mean >= args.target and slowest <= args.budget_s
    console.print(f"poolbench run {escape(' '.join(overrides))}, seeds {args.seeds}: mean test accuracy {mean:.2%} "
                  f"({', '.join(format(r['accuracy'], '.2%') for r in runs)}), slowest training {slowest:.1f} s")
    console.print(f"goal (mean >= {args.target:.0%}, each within {args.budget_s:.0f} s training): "
                  + ("[green]met[/]" if met else "[red]not met[/]"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": info, "overrides": overrides, "runs": runs, "mean_accuracy": mean,
                                    "slowest_train_s": slowest, "goal_met": met,
                                    "command": " ".join(["python", "benchmarks/cifar10.py",
                                                         *(argv if argv is not None else sys.argv[1:])])},
                                   indent=2))
    console.print(f"saved: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
