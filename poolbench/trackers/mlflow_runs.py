"""logger=mlflow: one MLflow run per poolbench run, through MlflowClient.

The client, not `mlflow.start_run`: the fluent API keeps the active run and the tracking URI as
process-wide state, which a Python caller running several experiments would inherit.
The default store is a SQLite file (`logger.mlflow.tracking_uri`, relative to the working
directory; MLflow creates it and its folder); a server's http(s) URI works the same. A single run
goes to the experiment `logger.mlflow.experiment`; the jobs of a sweep to one experiment named
`<experiment>/<sweep dir>`. MLflow's own log messages (e.g. "Creating initial MLflow database
tables") go to the run's log file instead of the console, which belongs to rich.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from poolbench.trackers import flatten, is_number

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; parallel jobs on a fresh SQLite store may collide
    fcntl = None

STATUS = {"complete": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
BATCH = 100  # MLflow takes at most 100 params per log_batch call


@contextlib.contextmanager
def _to_log_file():
    """MLflow's logger writes to stderr; for the duration of a call, its records go to the root
    logger instead (the run's poolbench.log under Hydra). Put back afterwards: nothing global stays."""
    logger = logging.getLogger("mlflow")
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [], True
    try:
        yield
    finally:
        logger.handlers, logger.propagate = handlers, propagate


@contextlib.contextmanager
def _one_process_at_a_time(uri: str):
    """Hold a lock beside a SQLite store while a run opens it. A new store is made by running MLflow's
    schema migrations, which fail when two processes run them at once (the parallel jobs of a sweep
    on a fresh outputs/mlflow.db); the lock also keeps two jobs from creating one experiment twice.
    The `.lock` file stays behind (empty). Other stores (servers) need nothing."""
    path = uri[len("sqlite:///"):].split("?")[0] if uri.startswith("sqlite:///") else ""
    if fcntl is None or not path or path == ":memory:":
        yield
        return
    database = Path(path)
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
        except OSError:  # a file system without locks: go on unlocked
            pass
        yield


def _now_ms() -> int:
    return int(time.time() * 1000)


class Tracker:
    def __init__(self, settings: dict, run):
        experiment = str(settings["experiment"])
        if run.group is not None:
            experiment = f"{experiment}/{run.group}"
        uri = str(settings["tracking_uri"])
        with _to_log_file(), _one_process_at_a_time(uri):
            self.client = MlflowClient(tracking_uri=uri)
            experiment_id = self._experiment(experiment)
            tags = {"poolbench.run_dir": str(run.run_dir.resolve())}
            if run.group is not None:
                tags["poolbench.sweep_dir"] = run.group
            self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
            params = [Param(key, str(value)) for key, value in flatten(run.config).items()]
            for start in range(0, len(params), BATCH):
                self.client.log_batch(self.run_id, params=params[start:start + BATCH])

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another process created it first (a server's store takes no lock)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _log(self, scalars: dict, step: int) -> None:
        now = _now_ms()
        metrics = [Metric(key, float(value), now, step) for key, value in scalars.items() if is_number(value)]
        with _to_log_file():
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_epoch(self, record: dict) -> None:
        self._log({key: value for key, value in record.items() if key != "epoch"}, int(record["epoch"]))

    def log_final(self, scalars: dict, step: int) -> None:
        self._log(scalars, step)

    def close(self, status: str) -> None:
        with _to_log_file():
            self.client.set_tag(self.run_id, "poolbench.status", status)
            self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))
