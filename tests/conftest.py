import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Tests share two cores with whatever else runs; one thread each keeps timings steady.
torch.set_num_threads(1)

# A run small enough for a test: a few hundred generated images, one epoch, cheap evaluation.
TINY = [
    "data=shapes", "data.train_size=1600", "data.test_size=300", "train.epochs=2",
    "eval.shift_pairs=2", "eval.throughput.warmup=1", "eval.throughput.iters=2",
    "eval.throughput.batch_size=32", "threads=1",
]


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `poolbench ARGS` in a fresh interpreter, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "poolbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_overrides():
    return list(TINY)
