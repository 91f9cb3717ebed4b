"""What a run leaves behind: metrics.json (README: "What a run leaves") and model.pt, written atomically.

Every file goes to a temporary name in the same folder first and is renamed into place, so a
killed process never leaves a half-written result.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch

from poolbench.errors import UsageError

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "model.pt"


def atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value):
    """NaN/inf are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(_jsonable(data), indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {METRICS_FILE}: pass a poolbench run directory.") from None
    except json.JSONDecodeError:
        raise UsageError(f"{path} is damaged (not valid JSON): rerun the experiment.") from None


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint safely (weights_only=True: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path.parent} has no checkpoint {path.name}: pass a finished poolbench run directory.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UsageError(f"Checkpoint {path} is damaged ({type(err).__name__}): rerun the experiment.") from None


def new_metrics(run_info: dict) -> dict:
    """The skeleton of metrics.json before anything is measured."""
    return {
        "schema": SCHEMA_VERSION,
        "status": "running",
        "run": run_info,
        "accuracy": {},
        "invariance": {},
        "throughput": {},
        "model": {},
        "time": {},
        "history": [],
    }
