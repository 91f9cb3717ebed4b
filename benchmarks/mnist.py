"""MNIST speed goals in one command: time to 99.0%, against the canonical recipe, peak memory.

    python benchmarks/mnist.py                      # seeds 0 1 2, canonical recipe up to 5 epochs
    python benchmarks/mnist.py --seeds 0 --baseline-epochs 3 --out outputs/bench/mnist.json

1. `poolbench run seed=S` (the default config: MNIST, pool=max) once per seed, each in its own
   process; time-to-99.0% is the cumulative training time (history[].seconds, evaluation
   excluded) at the first epoch whose test accuracy reaches the target; peak resident memory of
   each process comes from wait4's rusage.
2. benchmarks/canonical_mnist.py (the usual PyTorch recipe) in its own process, same threads,
   same definition of seconds; it stops at the first epoch that reaches the target.
3. The ratio: the canonical recipe's time-to-target over poolbench's slowest seed.

Everything runs in this one command, one after the other, so the ratio compares runs made
under the same machine conditions. Prints a summary table and saves a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_measured(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """Run `cmd` with output to `log`; returns (exit code, wall seconds, peak RSS in MB)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env=dict(os.environ, COLUMNS="100", PYTHONUNBUFFERED="1"))
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_maxrss / 1024  # Linux: KiB


def time_to(history: list[dict], target: float) -> float | None:
    return next((h["seconds"] for h in history if h["test_accuracy"] >= target), None)


def poolbench_run(seed: int, workdir: Path, threads: str, extra: list[str]) -> dict:
    run_dir = workdir / f"seed{seed}"
    cmd = [sys.executable, "-m", "poolbench", "run", f"seed={seed}", f"threads={threads}",
           f"hydra.run.dir={run_dir}", *extra]
    code, wall, rss = run_measured(cmd, workdir / f"seed{seed}.log")
    if code != 0:
        raise SystemExit(f"poolbench run failed (exit {code}); see {workdir / f'seed{seed}.log'}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"seed": seed, "history": metrics["history"], "accuracy": metrics["accuracy"]["test"],
            "train_s": metrics["time"]["train_s"], "wall_s": wall, "peak_rss_mb": rss,
            "threads": metrics["run"].get("threads"), "command": " ".join(["poolbench", *cmd[3:]])}


def canonical_run(workdir: Path, epochs: int, target: float, threads: int, max_batches: int | None) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / "canonical_mnist.py"), "--epochs", str(epochs),
           "--target", str(target), "--threads", str(threads)]
    if max_batches:
        cmd += ["--max-batches", str(max_batches)]
    log = workdir / "canonical.log"
    code, wall, rss = run_measured(cmd, log)
    if code != 0:
        raise SystemExit(f"canonical recipe failed (exit {code}); see {log}")
    history = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return {"history": history, "wall_s": wall, "peak_rss_mb": rss,
            "command": " ".join(["python", *cmd[1:]]).replace(str(REPO) + "/", "")}


def machine() -> dict:
    import torch

    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--budget-s", type=float, default=20.0, help="goal 1: training seconds allowed")
    parser.add_argument("--baseline-epochs", type=int, default=5,
                        help="canonical recipe: at most this many (0: skip it and goal 2)")
    parser.add_argument("--round2-budget-s", type=float, default=6.0,
                        help="round two: training seconds allowed to the target, every seed")
    parser.add_argument("--round2-margin", type=float, default=0.002,
                        help="round two: epoch 1 must end this far above the target")
    parser.add_argument("--baseline-max-batches", type=int, default=None, help="debugging only")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for both")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "mnist.json")
    parser.add_argument("overrides", nargs="*", help="extra poolbench overrides (e.g. train.epochs=3)")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=120)
    info = machine()
    console.print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
                  f"{info['date']}, load average {info['load_avg_at_start'][0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="poolbench-bench-") as tmp:
        workdir = Path(tmp)
        runs = []
        for seed in args.seeds:
            runs.append(poolbench_run(seed, workdir, str(args.threads), args.overrides))
            r = runs[-1]
            console.print(f"poolbench seed {seed}: {r['accuracy']:.2%} after {r['train_s']:.1f} s training, "
                          f"to {args.target:.1%}: {_secs(time_to(r['history'], args.target))}, "
                          f"peak RSS {r['peak_rss_mb']:.0f} MB")
        base = (canonical_run(workdir, args.baseline_epochs, args.target, args.threads, args.baseline_max_batches)
                if args.baseline_epochs > 0 else {"history": [], "skipped": True})
        for h in base["history"]:
            console.print(f"canonical epoch {h['epoch']}: {h['test_accuracy']:.2%} at {h['seconds']:.1f} s training")

    ours = [time_to(r["history"], args.target) for r in runs]
    base_t = time_to(base["history"], args.target)
    worst = None if None in ours else max(ours)
    if base.get("skipped"):
        ratio, ratio_note = None, "canonical recipe skipped (--baseline-epochs 0)"
    elif worst is None:
        ratio, ratio_note = None, "poolbench missed the target on some seed"
    elif base_t is None:
        ratio = base["history"][-1]["seconds"] / worst
        ratio_note = f"at least (canonical below target after {len(base['history'])} epochs)"
    else:
        ratio, ratio_note = base_t / worst, "canonical time-to-target / poolbench's slowest seed"
    peak_rss = max(r["peak_rss_mb"] for r in runs)

    table = Table(title=f"MNIST speed goals (target {args.target:.1%} test accuracy, {args.threads} threads)")
    for column in ("goal", "measured", "goal met"):
        table.add_column(column)
    accs = ", ".join(f"{r['accuracy']:.2%}" for r in runs)
    secs = ", ".join("-" if t is None else f"{t:.1f}" for t in ours)
    table.add_row(f"1. >= {args.target:.1%} within {args.budget_s:.0f} s training (seeds {args.seeds})",
                  f"final acc {accs}; time to target {secs} s",
                  _yes(worst is not None and worst <= args.budget_s))
    epoch1 = [r["history"][0]["test_accuracy"] for r in runs]
    table.add_row(f"round two: <= {args.round2_budget_s:.0f} s to {args.target:.1%}, epoch 1 >= "
                  f"{args.target + args.round2_margin:.1%} (every seed)",
                  f"epoch 1: {', '.join(f'{a:.2%}' for a in epoch1)} at "
                  f"{', '.join(str(r['history'][0]['seconds']) for r in runs)} s",
                  _yes(worst is not None and worst <= args.round2_budget_s
                       and min(epoch1) >= args.target + args.round2_margin))
    table.add_row("2. >= 10x faster time-to-target than the canonical recipe",
                  ratio_note if ratio is None else f"{ratio:.1f}x ({ratio_note}; canonical "
                  f"{_secs(base_t or base['history'][-1]['seconds'])}, poolbench {_secs(worst)})",
                  _yes(ratio is not None and ratio >= 10))
    table.add_row("5. peak RSS of a default run < 2 GB", f"{peak_rss:.0f} MB (max over seeds)",
                  _yes(peak_rss < 2048))
    console.print(table)

    result = {"machine": info, "target": args.target, "poolbench": runs, "canonical": base,
              "ratio": ratio, "ratio_note": ratio_note, "peak_rss_mb": peak_rss,
              "command": " ".join(["python", "benchmarks/mnist.py", *(argv if argv is not None else sys.argv[1:])])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    console.print(f"saved: {args.out}")
    return 0


def _secs(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def _yes(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


if __name__ == "__main__":
    sys.exit(main())
