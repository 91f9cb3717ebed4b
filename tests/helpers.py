"""Shared test helpers: tiny configs, the command line (in-process and as a real process), and
fake run / dataset folders. Tests import what they need: `from helpers import TINY, cli`."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import torch
from typer.testing import CliRunner

# A run small enough for a test: a few hundred generated images, two epochs, cheap evaluation.
TINY = [
    "data=shapes", "data.train_size=1600", "data.test_size=300", "train.epochs=2",
    "eval.shift_pairs=2", "eval.throughput.warmup=1", "eval.throughput.iters=2",
    "eval.throughput.batch_size=32", "threads=1",
]
# Smaller still, for sweeps of many jobs: a narrow two-stage model, one epoch.
SWEEP_TINY = ["data=shapes", "data.train_size=192", "data.test_size=64", "train.epochs=1", "eval.shift_pairs=1",
              "eval.max_shift=1", "eval.throughput.warmup=1", "eval.throughput.iters=1",
              "eval.throughput.batch_size=8", "eval.throughput.rounds=2", "model.channels=[4,8]"]
# Many short epochs (a narrow model, ~0.1 s each): a signal sent once the first checkpoint exists lands
# mid-training, and resuming or repeating the run in a test stays cheap.
LONG_EPOCHS = 8
LONG = ["data=shapes", "data.train_size=640", "data.test_size=100", f"train.epochs={LONG_EPOCHS}",
        "train.batch_size=64", "model.channels=[8,16]", "eval.shift_pairs=1", "eval.throughput.warmup=1",
        "eval.throughput.iters=2", "eval.throughput.batch_size=32", "eval.throughput.rounds=1", "threads=1"]
# What a sweep leaves beside its jobs.
OUTPUT_FILES = ["summary.csv", "summary.md", "summary.json", "runs.csv",
                *(f"{plot}.{kind}" for plot in ("accuracy_vs_consistency", "shift_accuracy", "throughput")
                  for kind in ("png", "pdf", "svg"))]


# ---------------------------------------------------------------- the command line

def cli(*args: str, **kwargs):
    """`poolbench ARGS` in this process: Typer's CliRunner on the root app (exit_code, output).

    Nothing is moved: write a root option such as `--debug` first, as `poolbench.cli.main` would.
    """
    from poolbench.cli import app

    return CliRunner().invoke(app, list(args), **kwargs)


def process_env(**extra: str) -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120", **extra)


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """Run `poolbench ARGS` in a fresh interpreter, as a user would (the end-to-end tests only)."""
    return subprocess.run([sys.executable, "-m", "poolbench", *args], cwd=cwd, env=env or process_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str) -> subprocess.Popen:
    """`poolbench ARGS` started in a fresh interpreter, for signals."""
    return subprocess.Popen([sys.executable, "-m", "poolbench", *args], env=process_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def sweep_metrics(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob("*/metrics.json"))]


# ---------------------------------------------------------------- run folders

def write_run(run_dir: Path, pool: str, seed: int, acc: float, consistency: float = 0.9, infer: float = 1000.0,
              status: str = "complete", error: str | None = None, extra: tuple[str, ...] = (),
              params: int = 100, dataset: str = "shapes") -> Path:
    """A metrics.json as run_experiment writes it (README "What a run leaves")."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "schema": 1, "status": status,
        "run": {"pool": pool, "dataset": dataset, "seed": seed, "device": "cpu",
                "overrides": [f"pool={pool}", f"seed={seed}", f"data={dataset}", *extra]},
        "accuracy": {}, "invariance": {}, "throughput": {}, "model": {}, "time": {}, "history": [],
    }
    if status == "complete":
        metrics.update({
            "accuracy": {"test": acc},
            "invariance": {"consistency": consistency, "flip_rate_1px": 1 - consistency, "max_shift": 2,
                           "shift_accuracy": {"0": acc, "1": acc - 0.01, "2": acc - 0.03}},
            "throughput": {"batch_size": 8, "infer_images_per_s": infer, "train_images_per_s": infer / 3},
            "model": {"params": params, "flops_per_image": 10 * params},
        })
    if error:
        metrics["error"] = error
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def make_sweep(root: Path) -> Path:
    """max vs avg (clearly better, 3 seeds each), global (one seed failed)."""
    for seed, (a_max, a_avg) in enumerate([(0.80, 0.90), (0.81, 0.91), (0.79, 0.92)]):
        write_run(root / f"max_{seed}", "max", seed, a_max, consistency=0.70 + seed / 100, infer=1000 + seed)
        write_run(root / f"avg_{seed}", "avg", seed, a_avg, consistency=0.72 + seed / 100, infer=1100 + seed)
    write_run(root / "global_0", "global", 0, 0.50, consistency=1.0, infer=100, params=50)
    write_run(root / "global_1", "global", 1, 0.52, consistency=1.0, infer=110, params=50)
    write_run(root / "global_2", "global", 2, 0, status="failed",
              error="RunError: Training diverged in epoch 1\nsecond line of detail")
    return root


def fake_run_dir(path: Path, checkpoint: bytes | None, overrides: list[str] | None = None) -> Path:
    """A run folder with the composed config of `overrides` (TINY) and, unless None, this model.pt."""
    from omegaconf import OmegaConf

    from poolbench.config import compose_config

    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(list(overrides or TINY)), path / ".hydra" / "config.yaml")
    if checkpoint is not None:
        (path / "model.pt").write_bytes(checkpoint)
    return path


# ---------------------------------------------------------------- datasets

def make_image_folder(root: Path, classes=("cat", "dog"), per_class=(3, 2), size=8, channels=3, seed=0):
    """A tiny train/<class>/, test/<class>/ dataset of PNGs; returns the images by split, in label order."""
    import warnings

    from torchvision.io import encode_png

    gen = torch.Generator().manual_seed(seed)
    expected = {}
    for split, count in zip(("train", "test"), per_class):
        images = []
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=gen)
                with warnings.catch_warnings():  # torchvision 0.29 deprecates (does not break) its encoders
                    warnings.simplefilter("ignore", DeprecationWarning)
                    png = encode_png(image)
                (root / split / name / f"{i:03d}.png").write_bytes(bytes(png.tolist()))
                images.append(image)
        expected[split] = torch.stack(images) if images else None
    return expected


def pack(folder: Path, archive: Path) -> Path:
    """`folder` as a .zip, .tar.xz or .tar.gz archive holding one top folder."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for path in sorted(folder.rglob("*")):
                zf.write(path, f"{folder.name}/{path.relative_to(folder)}")
    else:
        with tarfile.open(archive, "w:xz" if archive.suffix == ".xz" else "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    return archive


def fake_cifar_batches(folder: Path, monkeypatch) -> None:
    """Python batches in CIFAR-10's format (tiny), with their MD5s standing in for the real ones."""
    from torchvision.datasets import CIFAR10

    from poolbench.data import cifar10
    from poolbench.data.base import md5

    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        images = torch.randint(0, 256, (4, 3072), dtype=torch.uint8, generator=gen).numpy()
        (folder / name).write_bytes(pickle.dumps({"data": images, "labels": [0, 1, 2, 3]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": cifar10.CLASSES}))
    digests = {p.name: md5(p) for p in folder.iterdir()}
    monkeypatch.setattr(cifar10, "batch_md5s", lambda: dict(digests))
