"""The one reader of a run directory: what ran (overrides, operator, dataset, seed), how it
ended (status), and its metrics. Aggregation, sweep reruns and `compare` all read runs here.

Status words:
    complete     metrics.json says so
    interrupted  stopped by Ctrl-C/SIGTERM with a checkpoint to continue from
    failed       metrics.json records the error
    killed       no metrics.json, only .hydra/: killed (SIGKILL, preemption) or still running
    damaged      metrics.json unreadable or not poolbench's
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from poolbench.errors import UsageError, first_line
from poolbench.results import CHECKPOINT_FILE, METRICS_FILE, run_protocol

RESUMABLE = ("interrupted", "running", "killed")  # stopped before the end: a checkpoint may continue it
# Keys that identify a run's seed or are read from `run` instead of the overrides.
_NOT_CONFIG_KEYS = {"seed", "pool", "data"}
# Keys that change where results are mirrored or what a search optimizes, not what was trained:
# runs differing only in these are one configuration (and a rerun with other trackers matches its jobs).
_BOOKKEEPING = ("logger", "optimized_metric")


@dataclass
class RunDir:
    path: Path
    status: str
    error: str | None
    overrides: list[str]              # as given on the command line (.hydra/overrides.yaml)
    config: dict[str, str]            # pool, data, device (when known) and the other overrides
    seed: int | None
    metrics: dict = field(default_factory=dict)
    mtime: float = 0.0
    protocol: dict | None = None      # the recipe and test protocol (results.run_protocol), when known

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE and (self.path / CHECKPOINT_FILE).is_file()


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every run directory (holding metrics.json or .hydra/) at or below each path."""
    found: list[Path] = []
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"{root} is not a directory: pass run or sweep directories "
                             "(the folders `poolbench run` and `poolbench sweep` print).")
        before = len(found)
        for current, dirs, files in os.walk(root):
            if METRICS_FILE in files or ".hydra" in dirs:
                found.append(Path(current))
                dirs.clear()  # a run directory holds no other runs
            else:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # skip .submitit and the like
        if len(found) == before:
            raise UsageError(f"{root} holds no poolbench runs (no {METRICS_FILE} or .hydra/ below it): "
                             "pass a run or sweep directory.")
    return list(dict.fromkeys(p.resolve() for p in found))


def read_run(run_dir: Path) -> RunDir:
    """Read one run directory, finished or not."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return _from_hydra_files(run_dir, "killed", f"no {METRICS_FILE}: the job was killed, or is still running",
                                 run_dir.stat().st_mtime)
    mtime = path.stat().st_mtime
    try:
        metrics = json.loads(path.read_text())
        run = metrics["run"]
        overrides = [str(o) for o in run.get("overrides", [])]
        config = {"pool": str(run["pool"]), "data": str(run["dataset"]), "device": str(run["device"]),
                  **config_from_overrides(overrides)}
        status = str(metrics.get("status", "damaged"))
        error = first_line(metrics.get("error")) or None
        if status != "complete" and not error:
            resume = metrics.get("resume_with")  # an interrupted run that checkpointed says how to go on
            error = (f"stopped before it finished; continue with {resume}" if resume
                     else f"the job stopped ({status}) before it finished")
        protocol = metrics.get("protocol") or _protocol_from_config(run_dir)
        return RunDir(run_dir, status, error, overrides, config, _int(run.get("seed")), metrics, mtime, protocol)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return _from_hydra_files(run_dir, "damaged", f"{METRICS_FILE} is damaged or not poolbench's", mtime)


def config_from_overrides(overrides: list[str]) -> dict[str, str]:
    config = {}
    for item in overrides:
        key, _, value = str(item).partition("=")
        name = key.lstrip("+~")
        if name not in _NOT_CONFIG_KEYS and not key.startswith("hydra") and name.split(".")[0] not in _BOOKKEEPING:
            config[key] = value
    return config


def _protocol_from_config(run_dir: Path) -> dict | None:
    """The protocol of a run written before metrics.json recorded it: from its .hydra/config.yaml."""
    try:
        return run_protocol(OmegaConf.load(run_dir / ".hydra" / "config.yaml"))
    except Exception:  # no or unreadable config: the table just cannot name this run's recipe
        return None


def _from_hydra_files(run_dir: Path, status: str, error: str, mtime: float) -> RunDir:
    """What a job's .hydra/ says it was, for jobs without usable results."""
    config, seed, overrides = {}, None, []
    try:  # read on its own: a rerun of the sweep finds the job by these, whatever its config holds
        overrides = [str(o) for o in OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")]
    except Exception:
        overrides = []
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        config = {"pool": str(cfg.pool.name), "data": str(cfg.data.name)}
        seed = _int(cfg.get("seed"))
        config.update(config_from_overrides(overrides))
    except Exception:  # not even a readable config: list it under its folder name
        config = {"dir": run_dir.name}
    return RunDir(run_dir, status, error, overrides, config, seed, {}, mtime)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
