"""The Python API: `run`, `load_run`, `compare`, the same steps the CLI takes, from a notebook or script.

    import poolbench
    metrics = poolbench.run(["data=shapes", "pool=avg"])            # trains; a complete run directory
    trained = poolbench.load_run(metrics["run_dir"])                # model (eval mode), config, normalization
    table = poolbench.compare([metrics["run_dir"]], write=False)    # the comparison table's data

A run composes its config exactly as `poolbench run` does (the same checks, the same folder pattern
and lock) and writes the same `.hydra/` files, so `poolbench eval` and `compare` accept its folder.
Nothing global is left changed: the console, the `poolbench` logger and torch's thread count are
restored when a call returns, and importing poolbench changes nothing at all.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from poolbench import config
from poolbench.results import CHECKPOINT_FILE, load_checkpoint, run_dir_lock, write_text

HYDRA_DIR = ".hydra"
LOG_FILE = "poolbench.log"  # the name Hydra's job_logging gives it (configs/config.yaml hydra.job.name)


def run(overrides: Sequence[str] = (), quiet: bool = True) -> dict:
    """Train and evaluate one configuration, as `poolbench run OVERRIDES` does; returns its metrics
    (metrics.json's content) with `run_dir` added: the folder holding `.hydra/`, metrics.json,
    model.pt and poolbench.log. `quiet`: print nothing (no tables, no progress bars).

    Bad overrides raise poolbench.errors.UsageError (the CLI's exit 2) before any folder exists;
    a failed run raises its error after writing metrics.json with status "failed".
    """
    from poolbench.data import check_declared_classes
    from poolbench.experiment import run_experiment

    overrides = [str(o) for o in overrides]
    check_declared_classes(config.check_overrides(overrides, multirun=False).data)
    overrides, run_dir = config.pin_output_dir(overrides, "hydra.run.dir", resolve_with=overrides)
    full = config.compose_config(overrides, hydra_config=True)
    task_overrides = list(full.hydra.overrides.task)
    with run_dir_lock(run_dir), _quiet_console(quiet), _log_to(run_dir / LOG_FILE, full), _threads_kept():
        cfg = _save_hydra_files(full, run_dir)
        metrics = run_experiment(cfg, run_dir, task_overrides, show_progress=not quiet)
    return {**metrics, "run_dir": str(run_dir)}


@dataclass
class LoadedRun:
    """A trained run, ready for inference: `model(normalize(images))` gives the logits of uint8 images
    shaped (N, C, H, W) with values 0-255."""

    model: torch.nn.Module          # eval mode, on `device`
    config: DictConfig              # the run's config, with what was measured from the data filled in
    normalize: Callable[[torch.Tensor], torch.Tensor]  # uint8 (or 0-255 float) images -> the model's input
    mean: tuple[float, ...]         # per channel, on the 0-1 scale (normalize subtracts mean * 255)
    std: tuple[float, ...]
    run_dir: Path


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The trained model of a finished run directory, in eval mode, with its config and input
    normalization. The config is the one the checkpoint was trained with (a folder of your own
    images has its classes, mean and std measured there)."""
    from poolbench.data.transforms import Normalizer
    from poolbench.errors import RunError
    from poolbench.runtime import model_on

    run_dir = Path(run_dir)
    config.load_run_config(run_dir)  # one clear sentence when this is not a run directory
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    cfg = OmegaConf.create(checkpoint["config"])
    target = torch.device(device)
    model = model_on(cfg, target)
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError):
        raise RunError(f"The checkpoint in {run_dir} does not match its config: rerun the experiment.") from None
    model.eval()
    mean, std = tuple(float(m) for m in cfg.data.mean), tuple(float(s) for s in cfg.data.std)
    normalize = Normalizer(mean, std, target, channels_last=bool(cfg.train.channels_last))
    return LoadedRun(model, cfg, normalize, mean, std, run_dir)


def compare(dirs: Sequence[str | Path], out: str | Path | None = None, write: bool = False,
            quiet: bool = True) -> dict:
    """The comparison `poolbench compare DIRS` shows, as plain data (summary.json's content: one
    entry per configuration with each metric's mean, CI, per-seed values and test against the
    baseline). `write`: also write the summary files, runs.csv and plots (to `out`, by default as
    the CLI chooses); `quiet=False`: print the table too."""
    from poolbench.sweep.aggregate import to_dict
    from poolbench.sweep.compare import compare as compare_dirs

    summary = compare_dirs([Path(d) for d in dirs], Path(out) if out is not None else None, quiet=quiet, write=write)
    return to_dict(summary)


def _save_hydra_files(full: DictConfig, run_dir: Path) -> DictConfig:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them for a run; returns the
    job's config (the hydra node removed)."""
    hydra_node = full.hydra
    with open_dict(hydra_node):
        hydra_node.runtime.output_dir = str(Path(run_dir).resolve())
    cfg = full.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    folder = Path(run_dir) / HYDRA_DIR
    write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(folder / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_node})))
    write_text(folder / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(hydra_node.overrides.task))))
    return cfg


@contextlib.contextmanager
def _quiet_console(quiet: bool):
    from poolbench.report import console

    before = console.quiet
    console.quiet = quiet or before
    try:
        yield
    finally:
        console.quiet = before


@contextlib.contextmanager
def _log_to(path: Path, full: DictConfig):
    """The run's log file, in the format of the CLI's (hydra.job_logging), for this call only."""
    logger = logging.getLogger("poolbench")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(str(full.hydra.job_logging.formatters.simple.format)))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


@contextlib.contextmanager
def _threads_kept():
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
