"""Sweeps: the default grid, the end-of-multirun aggregation, skipping finished jobs, threads.

Hydra's `on_multirun_end` callback gets no job results (a launcher may have run the jobs in
other processes or on other machines), so it reads each job's metrics.json from the sweep
directory, whichever launcher ran them. Parallel launchers split the CPU cores between their
jobs when `threads=auto`.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from hydra.experimental.callback import Callback

from poolbench.errors import UsageError

# `poolbench sweep` = `poolbench run -m` with these values for any key the user did not name.
DEFAULT_GRID = {"pool": "max,avg,strided,global,fractional,attention", "seed": "0,1,2"}

# What the last multirun in this process found (the CLI turns failed jobs into exit code 1).
_last = {"jobs": 0, "failed": 0}


def with_default_grid(overrides: list[str]) -> list[str]:
    """The default grid first, minus every key the user's overrides set themselves."""
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o or o.startswith("~")}
    return [f"{key}={values}" for key, values in DEFAULT_GRID.items() if key not in named] + list(overrides)


def cli_command(overrides: list[str]) -> str:
    """The equivalent `poolbench run -m` command line, shown when a sweep starts."""
    return "poolbench run -m " + " ".join(overrides)


# ---------------------------------------------------------------- aggregation

def aggregate(paths: list[Path], out_dir: Path, title: str) -> tuple[int, int]:
    """Table, summary files and plots for the runs below `paths`; returns (jobs, failed)."""
    from poolbench.aggregate import summarize
    from poolbench.summary import publish

    summary = summarize(paths)
    publish(summary, out_dir, title)
    return sum(len(row.runs) for row in summary.rows), len(summary.failed)


def compare(dirs: list[Path], out_dir: Path | None) -> tuple[int, int]:
    """`poolbench compare`: one directory's summary goes into it; several get a new folder."""
    if out_dir is None:
        if len(dirs) == 1:
            out_dir = Path(dirs[0])
        else:
            out_dir = Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    return aggregate(list(dirs), Path(out_dir), title="comparison of " + ", ".join(str(d) for d in dirs))


class AggregateSweep(Callback):
    """Configured in configs/config.yaml (hydra.callbacks); runs after every multirun."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from poolbench.report import console

        sweep_dir = Path(str(config.hydra.sweep.dir))
        _last.update(jobs=0, failed=0)
        try:
            jobs, failed = aggregate([sweep_dir], sweep_dir, title=f"sweep {sweep_dir}")
        except UsageError as err:  # e.g. every job was skipped by --cfg: nothing to compare
            console.print(f"[yellow]no comparison:[/] {err}", soft_wrap=True)
            return
        _last.update(jobs=jobs, failed=failed)


def failed_jobs_in_last_multirun() -> tuple[int, int]:
    return _last["failed"], _last["jobs"]


# ---------------------------------------------------------------- skipping finished jobs

def finished_job(hydra_config) -> dict | None:
    """In a multirun, the metrics of this job's earlier complete run, if its directory holds one.

    A rerun of the same sweep into the same sweep directory then reruns only the jobs that
    failed, were interrupted or never started. Single runs always run.
    """
    import json

    from hydra.types import RunMode

    from poolbench.report import console
    from poolbench.results import METRICS_FILE

    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    path = Path(hydra_config.runtime.output_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same_job = metrics.get("run", {}).get("overrides") == list(hydra_config.overrides.task)
    if metrics.get("status") != "complete" or not same_job:
        return None
    console.print(f"[dim]skipped {path.parent.name}: already complete ({path})[/]", soft_wrap=True)
    return metrics


# ---------------------------------------------------------------- threads per job

def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_threads() -> int:
    """Threads for `threads=auto`: this process's cores, shared fairly with parallel sibling jobs.

    joblib runs n_jobs jobs at once on this machine (n_jobs=-1: one per core, joblib's
    convention for negatives), so each gets cores // n_jobs. submitit jobs get the
    cpus_per_task they asked for; SLURM also pins them, which the affinity mask shows.
    """
    from hydra.core.hydra_config import HydraConfig

    cores = _cores()
    if not HydraConfig.initialized():
        return cores
    launcher = HydraConfig.get().get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs") or 1)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // min(parallel, cores))
    if "submitit" in target.lower() and launcher.get("cpus_per_task"):
        return max(1, min(cores, int(launcher.cpus_per_task)))
    return cores
