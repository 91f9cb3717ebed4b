"""Test-time draws: how accuracy and the invariance metrics of trained runs move with eval.draws=K.

Usage: python benchmarks/eval_draws.py RUN_DIR [RUN_DIR ...] [--draws 1,2,4,8,12] [--accuracy-only]

Each run (trained by `poolbench run`, e.g. pool=fractional with seeds 0-2) is loaded from its
checkpoint and evaluated by the ordinary evaluation code (`evaluate.invariance`) once per K, with
its own config otherwise. Prints one line per run and K as it goes, then the mean over runs per
K, and the evaluation time per K (the cost the choice of default pays in every sweep).
`--accuracy-only` makes only the unshifted pass (`evaluate.predict`): the invariance metrics
make about 20 passes over the test set, each K times, so a long list of K is slow in full.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from poolbench.config import load_run_config
from poolbench.data import load_dataset
from poolbench.data.transforms import Normalizer
from poolbench.evaluate import invariance, predict, uses_test_time_flip
from poolbench.model import inference_copy
from poolbench.results import CHECKPOINT_FILE, load_checkpoint
from poolbench.runtime import autocast_for, model_on, prepare_process, select_device


def evaluate_with_draws(run_dir: Path, draws: list[int], accuracy_only: bool = False) -> list[dict]:
    cfg = load_run_config(run_dir)
    prepare_process(cfg.threads)
    device = select_device(str(cfg.device))
    data = load_dataset(cfg.data).to(device)
    model = model_on(cfg, device)
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_FILE)["model"])
    inference = inference_copy(model)
    normalize = Normalizer(cfg.data.mean, cfg.data.std, device, cfg.train.channels_last)
    rows = []
    for k in draws:
        eval_cfg = OmegaConf.merge(cfg.eval, {"draws": k})
        started = time.perf_counter()
        autocast = autocast_for(device, cfg.train.amp)
        if accuracy_only:
            predictions = predict(inference, data.test_x, normalize, int(cfg.eval.batch_size), autocast,
                                  draws=k, draw_seed=int(cfg.eval.seed), flip=uses_test_time_flip(cfg.eval))
            result = {"accuracy": (predictions == data.test_y).float().mean().item(),
                      "invariance": {"consistency": float("nan"), "flip_rate_1px": float("nan")}}
        else:
            result = invariance(inference, data.test_x, data.test_y, normalize, eval_cfg, autocast)
        rows.append({"run": str(run_dir), "pool": str(cfg.pool.name), "seed": int(cfg.seed), "draws": k,
                     "accuracy": result["accuracy"], "consistency": result["invariance"]["consistency"],
                     "flip_rate_1px": result["invariance"]["flip_rate_1px"],
                     "eval_s": time.perf_counter() - started})
        print_row(rows[-1])
    return rows


def print_row(row: dict, label: str | None = None) -> None:
    print(f"{row['pool']:<12}{label or row['seed']:>5}{row['draws']:>4}{100 * row['accuracy']:>9.2f}"
          f"{100 * row['consistency']:>11.2f}{100 * row['flip_rate_1px']:>8.2f}{row['eval_s']:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--draws", default="1,2,4,8,12", help="comma-separated K values")
    parser.add_argument("--accuracy-only", action="store_true", help="only the unshifted test pass per K")
    args = parser.parse_args()
    draws = [int(k) for k in args.draws.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'pool':<12}{'seed':>5}{'K':>4}{'acc %':>9}{'consist %':>11}{'flip %':>8}{'eval s':>8}", flush=True)
    rows = [row for run in args.runs for row in evaluate_with_draws(run, draws, args.accuracy_only)]
    print("mean over runs:")
    for pool in dict.fromkeys(row["pool"] for row in rows):
        for k in draws:
            chosen = [row for row in rows if row["pool"] == pool and row["draws"] == k]
            mean = {key: statistics.fmean(row[key] for row in chosen)
                    for key in ("accuracy", "consistency", "flip_rate_1px", "eval_s")}
            print_row({"pool": pool, "draws": k, **mean}, label=f"n={len(chosen)}")


if __name__ == "__main__":
    main()
