"""CIFAR-10 on the CPU in one command: `poolbench run data=cifar10` against the 80% / 5-minute goal.

    python benchmarks/cifar10.py --source /path/to/cifar10-jpg.tar.xz      # the default recipe
    python benchmarks/cifar10.py --source DIR train.epochs=6              # extra overrides go to poolbench

Runs the default CIFAR-10 recipe (configs/train/cifar10.yaml, pool=max) once in its own process
and reports test accuracy, training seconds (evaluation excluded), accuracy after every epoch,
images/s, MFU and the process's peak resident memory. --source is passed as data.source (any
copy poolbench's CIFAR-10 loader accepts); without it poolbench looks in data.root / downloads.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist import REPO, machine, run_measured  # noqa: E402  (same measuring helpers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="data.source for CIFAR-10 (folder or archive)")
    parser.add_argument("--target", type=float, default=0.80)
    parser.add_argument("--budget-s", type=float, default=300.0, help="training seconds allowed")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "cifar10.json")
    parser.add_argument("overrides", nargs="*", help="extra poolbench overrides")
    args = parser.parse_args(argv)

    from rich.console import Console

    console = Console(highlight=False, width=120)
    info = machine()
    console.print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
                  f"{info['date']}, load average {info['load_avg_at_start'][0]:.2f}")
    overrides = ["data=cifar10", *([f"data.source={args.source}"] if args.source else []), *args.overrides]
    with tempfile.TemporaryDirectory(prefix="poolbench-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "poolbench", "run", *overrides, f"hydra.run.dir={run_dir}"]
        code, wall, rss = run_measured(cmd, Path(tmp) / "run.log")
        if code != 0:
            console.print((Path(tmp) / "run.log").read_text()[-2000:])
            raise SystemExit(f"poolbench run failed (exit {code})")
        metrics = json.loads((run_dir / "metrics.json").read_text())
    for h in metrics["history"]:
        console.print(f"epoch {h['epoch']}: test accuracy {h['test_accuracy']:.2%} at {h['seconds']:.1f} s training")
    acc, train_s = metrics["accuracy"]["test"], metrics["time"]["train_s"]
    tp = metrics["throughput"]
    met = acc >= args.target and train_s <= args.budget_s
    console.print(f"poolbench {' '.join(overrides)} ({metrics['run'].get('threads')} threads): "
                  f"test accuracy {acc:.2%} after {train_s:.1f} s training ({wall:.0f} s in all), "
                  f"train {tp['train_images_per_s']:,.0f} img/s (MFU {tp['train_mfu']:.1%}), "
                  f"peak RSS {rss:.0f} MB")
    console.print(f"goal 4 (>= {args.target:.0%} within {args.budget_s:.0f} s training): "
                  + ("[green]met[/]" if met else "[red]not met[/]"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": info, "overrides": overrides, "metrics": metrics,
                                    "wall_s": wall, "peak_rss_mb": rss, "goal_met": met}, indent=2))
    console.print(f"saved: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
