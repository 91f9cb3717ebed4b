"""Experiment trackers: the `logger` config group (csv, tensorboard, mlflow, wandb; several at once).

The run directory's files (metrics.json, history.csv) are the record; a tracker mirrors them so
runs can be browsed in a tracker's UI. So a tracker that breaks in the middle of a run is switched
off with a warning and the run goes on, and a tracker's library is imported only when the tracker
is chosen: importing poolbench stays cheap, and each library is an optional extra
(`pip install "poolbench[tensorboard]"`). Every tracker gets the same things: the resolved
config as hyperparameters, one record per epoch (metrics.json's `history` entries), the final
metrics as flat scalars named by their path in metrics.json (`accuracy/test`), and the status.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from rich.markup import escape

from poolbench.errors import PoolbenchError, RunError, UsageError, first_line
from poolbench.report import console
from poolbench.results import flatten  # noqa: F401  (the backends' flatten: one for the whole package)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    module: str             # poolbench.trackers.<module>, imported when the tracker is chosen
    needs: str | None       # the library it imports (also the name of its extra), None: standard library
    label: str              # the library's name in a sentence


BACKENDS = {
    "csv": Backend("csv_history", None, "csv"),
    "tensorboard": Backend("tensorboard_events", "tensorboard", "TensorBoard"),
    "mlflow": Backend("mlflow_runs", "mlflow", "MLflow"),
    "wandb": Backend("wandb_runs", "wandb", "Weights & Biases (wandb)"),
}
# The sections of metrics.json whose numbers are a run's final metrics.
FINAL_SECTIONS = ("accuracy", "invariance", "throughput", "model", "time")


@dataclass(frozen=True)
class RunInfo:
    """What every tracker is told about the run it mirrors."""

    run_dir: Path
    name: str               # the run directory's name (a sweep job's: its number and overrides)
    group: str | None       # the sweep directory when the run is a job of a Hydra multirun, else None
    config: dict            # the resolved config without `logger`: the run's hyperparameters


def chosen(cfg) -> dict:
    """{tracker name: its settings} of `cfg.logger` (a config saved before trackers existed has none)."""
    node = cfg.get("logger")
    settings = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    unknown = sorted(set(settings) - set(BACKENDS))
    if unknown:
        raise UsageError(f"Unknown logger '{unknown[0]}'; choose from: {', '.join(BACKENDS)}.")
    return settings


def _missing(name: str, detail: str = "") -> UsageError:
    backend = BACKENDS[name]
    return UsageError(f'logger={name} needs {backend.label}: pip install "poolbench[{backend.needs}]"'
                      f"{f' ({detail})' if detail else ''}.")


def check_installed(cfg) -> None:
    """Every chosen tracker's library is importable; looked up without importing it (mlflow takes
    seconds), so a missing extra is named before any run directory exists."""
    for name in chosen(cfg):
        needs = BACKENDS[name].needs
        if needs and importlib.util.find_spec(needs) is None:
            raise _missing(name)


def sweep_group(run_dir: Path) -> str | None:
    """The sweep directory when `run_dir` is the current job of a Hydra multirun, else None.

    The output folder must be `run_dir`: Hydra's config outlives the Hydra run that set it, and a
    later call of run_experiment from Python (no Hydra) must not join an old sweep's group.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or Path(hc.runtime.output_dir).resolve() != Path(run_dir).resolve():
        return None
    return str(hc.sweep.dir)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def final_scalars(metrics: dict) -> dict:
    """The numbers of metrics.json's result sections, named by their path: {"accuracy/test": 0.97, ...}."""
    sections = {key: metrics.get(key) or {} for key in FINAL_SECTIONS}
    return {key: value for key, value in flatten(sections, sep="/").items() if is_number(value)}


def hyperparameters(cfg) -> dict:
    """The resolved config as plain data, without the trackers' own settings (they change no result)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("logger", None)
    return config


class Trackers:
    """The open trackers of one run, called as one. A tracker that raises is closed and dropped with
    a warning (console and log file): the run and the other trackers go on, the files stay complete."""

    def __init__(self, backends: dict | None = None):
        self._backends = dict(backends or {})
        self._step = 0

    def log_epoch(self, record: dict) -> None:
        self._step = int(record.get("epoch", self._step + 1))
        self._each("log_epoch", record)

    def log_final(self, metrics: dict) -> None:
        self._each("log_final", final_scalars(metrics), self._step)

    def close(self, status: str) -> None:
        """`status`: metrics.json's (complete, interrupted, failed)."""
        self._each("close", status)
        self._backends.clear()

    def _each(self, method: str, *args) -> None:
        for name, backend in list(self._backends.items()):
            try:
                getattr(backend, method)(*args)
            except Exception as err:
                del self._backends[name]
                _warn(f"logger={name} failed and was switched off ({first_line(err)}); "
                      "the run and its files are not affected.")
                if method != "close":
                    try:
                        backend.close("failed")
                    except Exception:
                        pass


def _warn(message: str) -> None:
    log.warning(message)
    console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def open_trackers(cfg, run_dir: Path) -> Trackers:
    """Start every tracker `cfg.logger` names for the run in `run_dir`. A library that is missing
    raises UsageError (exit 2), a tracker that cannot start (an unreachable server) RunError."""
    settings = chosen(cfg)
    if not settings:
        return Trackers()
    check_installed(cfg)  # a caller that skipped validate() gets the same sentence
    run_dir = Path(run_dir)
    run = RunInfo(run_dir, run_dir.name, sweep_group(run_dir), hyperparameters(cfg))
    opened = {}
    for name, options in settings.items():
        try:
            try:
                module = importlib.import_module(f"{__name__}.{BACKENDS[name].module}")
            except ImportError as err:
                raise _missing(name, first_line(err)) from None
            opened[name] = module.Tracker(options or {}, run)
        except Exception as err:
            Trackers(opened).close("failed")
            if isinstance(err, PoolbenchError):
                raise
            raise RunError(f"logger={name} could not start ({first_line(err)}): check the logger.{name}.* "
                           f"settings, or leave {name} out of logger=[...].") from err
    return Trackers(opened)
