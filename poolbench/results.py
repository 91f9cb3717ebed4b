"""What a run leaves behind: metrics.json (README: "What a run leaves") and model.pt, written atomically.

Every file goes to a temporary name in the same folder first and is renamed into place, so a
killed process never leaves a half-written result. A run holds its folder's lock (`.lock`) for
its whole life, so a second run started in the same folder is refused instead of mixing files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import torch

from poolbench.errors import RunError, UsageError, write_failure

try:
    import fcntl
except ImportError:  # Windows: no flock; run folders are not locked there
    fcntl = None

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "model.pt"
LOCK_FILE = ".lock"

_held: set[str] = set()  # run folders this process holds (the CLI takes a single run's before Hydra starts)


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """Hold `run_dir` (created if missing) for the block: an exclusive flock on its `.lock` file,
    released when the block ends or the process dies. A folder another process holds is refused
    with one sentence (UsageError) before anything in it is touched. Re-entrant in one process.
    The `.lock` file stays behind (empty): removing it could let two runs lock two different files.
    """
    key = os.path.realpath(run_dir)
    if fcntl is None or key in _held:
        yield
        return
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handle = open(Path(run_dir) / LOCK_FILE, "a")  # "a": opening never changes the file
    except OSError as err:
        raise (write_failure(err, run_dir) or err) from None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"Another poolbench run is using {run_dir}: wait for it to finish, or run in "
                             "another folder (hydra.run.dir=..., or hydra.sweep.dir=... for a sweep).") from None
        except OSError:  # a file system without locks (some network mounts): run unlocked, as before
            pass
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)  # closing the file releases the lock


def atomic_write(path: Path, write) -> None:
    """`write(handle)` into a temporary file beside `path`, then renamed over it: a full disk or a
    kill leaves the old file (or none), never a cut one. A full disk or a folder that may not be
    written to ends in one sentence (errors.write_failure)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise (write_failure(err, path) or err) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        failure = write_failure(err, path)
        if failure is not None:
            raise failure from None
        raise


def flatten(tree, sep: str = ".") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: a nested dict (metrics.json, a plain config) by leaf path; lists
    stay leaves. For runs.csv's columns, the trackers' names and comparing two configs key by key."""
    if not isinstance(tree, dict):
        return {"": tree}
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update({f"{key}{sep}{path}": leaf for path, leaf in flatten(value, sep).items()})
        else:
            out[str(key)] = value
    return out


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


# The numbers a search sweeper may optimize (optimized_metric=...): dotted paths into metrics.json.
OPTIMIZABLE = re.compile(r"accuracy\.test|invariance\.(consistency|flip_rate_1px|shift_accuracy\.\d+)"
                         r"|throughput\.(infer|train)_(images_per_s|mfu)|model\.(params|flops_per_image)"
                         r"|time\.(train|eval|total)_s")
OPTIMIZABLE_EXAMPLES = "accuracy.test, invariance.consistency, invariance.flip_rate_1px, throughput.infer_images_per_s"


def metric_value(metrics: dict, path: str) -> float:
    """The number at `path` (e.g. invariance.consistency) in a run's metrics, for a search sweeper.
    A run that did not produce it (failed, or the metric is undefined) raises RunError."""
    value = metrics
    for part in str(path).split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunError(f"The run has no number at optimized_metric={path} (status {metrics.get('status')}).")
    return float(value)


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


# Keys added after runs were saved, with the value that gives what those runs trained: a run whose
# config lacks the key ran with that value (config.load_run_config fills in train's and eval's;
# SmallCNN's signature defaults to the model's).
ADDED_SINCE = {"model.whiten": False, "model.convs": 1, "model.pool_first": False, "train.lookahead": 0.0,
               "eval.draws": 1, "eval.tta_flip": False}


def run_protocol(cfg) -> dict:
    """The training recipe and test protocol a run followed, as metrics.json records them: what a
    table needs to say under which protocol its numbers hold (see recipe_text)."""
    train, evaluation = cfg.train, cfg.eval
    return {
        "train": {"epochs": int(train.epochs), "batch_size": int(train.batch_size),
                  "optimizer": "SGD Nesterov" if float(train.momentum) > 0 else "SGD",
                  "lr": float(train.lr), "schedule": "one-cycle linear",
                  "warmup_fraction": float(train.warmup_fraction), "momentum": float(train.momentum),
                  "weight_decay": float(train.weight_decay), "label_smoothing": float(train.label_smoothing),
                  "lookahead": float(train.get("lookahead", ADDED_SINCE["train.lookahead"])),
                  "augment": {"shift": int(train.augment.shift), "flip": _flip(train.augment.flip)},
                  "amp": str(train.amp)},
        "eval": {"draws": _draws(evaluation.get("draws", ADDED_SINCE["eval.draws"])),
                 "max_shift": int(evaluation.max_shift), "shift_pairs": int(evaluation.shift_pairs),
                 "shift_mode": str(evaluation.shift_mode), "seed": int(evaluation.seed),
                 "tta_flip": bool(evaluation.get("tta_flip", ADDED_SINCE["eval.tta_flip"]))},
    }


def recipe_text(protocol: dict) -> str:
    """One line naming the recipe: "2 epochs, batch 128, SGD Nesterov lr 0.1 one-cycle linear
    (25% warm-up), wd 0.0005, label smoothing 0.1, no augmentation; test: 1 draw"."""
    t, e = protocol["train"], protocol["eval"]
    augment = [f"shift {t['augment']['shift']}px"] if t["augment"]["shift"] else []
    augment += [{"alternate": "alternating flip"}.get(t["augment"]["flip"], "flip")] if t["augment"]["flip"] else []
    draws = e["draws"]
    test = {"auto": "each operator's own number of draws (eval.draws=auto)", 1: "1 fixed pass"}.get(
        draws, f"softmax over {draws} seeded draws")
    return (f"{t['epochs']} epochs, batch {t['batch_size']}, {t['optimizer']} lr {t['lr']:g} {t['schedule']} "
            f"({t['warmup_fraction']:.0%} warm-up), wd {t['weight_decay']:g}, "
            f"label smoothing {t['label_smoothing']:g}, "
            f"{'lookahead ' + format(t['lookahead'], 'g') + ', ' if t.get('lookahead') else ''}"
            f"{'bf16 autocast, ' if t.get('precision') == 'bfloat16' else ''}"
            f"{'augment: ' + ' + '.join(augment) if augment else 'no augmentation'}; "
            f"test: {test} for fractional/stochastic{'; test-time flip' if e.get('tta_flip') else ''}")


def _flip(value):
    return "alternate" if value == "alternate" else bool(value)


def _draws(value):
    return "auto" if str(value) == "auto" else int(value)
