"""Sweeps: the default grid, the end-of-multirun aggregation, reruns, threads.

Hydra's `on_multirun_end` callback gets no job results (a launcher may have run the jobs in
other processes or on other machines), so it reads each job's metrics.json from the sweep
directory, whichever launcher ran them. Parallel launchers split the CPU cores between their
jobs when `threads=auto`.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import datetime
from pathlib import Path

from hydra.experimental.callback import Callback

from poolbench.errors import UsageError
from poolbench.results import CHECKPOINT_FILE, METRICS_FILE

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


# ---------------------------------------------------------------- reruns: skip, resume, rerun

def earlier_attempt(hydra_config) -> tuple[dict | None, Path | None]:
    """In a multirun, what an earlier run of this same job left in the sweep directory.

    Returns (metrics, None) when a run with the same overrides completed: the job is skipped.
    Returns (None, run_dir) when one stopped with a checkpoint (interrupted, or killed before
    it could write metrics.json, as by SIGKILL or a cluster's preemption): the job continues
    from it. Else (None, None): the job runs from the start. Jobs are matched by their set of
    overrides, not by folder or order, so a widened grid (which renumbers the job folders)
    still finds them. Single runs always run.
    """
    from hydra.types import RunMode

    from poolbench.report import console

    if hydra_config.mode != RunMode.MULTIRUN:
        return None, None
    wanted = sorted(hydra_config.overrides.task)
    own = Path(hydra_config.runtime.output_dir)
    complete, resumable = None, []
    for run_dir, status, overrides, metrics in _earlier_jobs(_sweep_dir(hydra_config)):
        if sorted(overrides) != wanted:
            continue
        if status == "complete":
            complete = (metrics, run_dir)
        elif status in ("interrupted", "running", "killed") and (run_dir / CHECKPOINT_FILE).is_file():
            resumable.append(run_dir)
    if complete is not None:
        console.print(f"[dim]skipped {own.name}: already complete ({complete[1]})[/]", soft_wrap=True)
        return complete[0], None
    if resumable:  # the newest checkpoint goes furthest
        run_dir = max(resumable, key=lambda d: (d / CHECKPOINT_FILE).stat().st_mtime)
        console.print(f"[dim]{own.name}: continuing the stopped run in {run_dir}[/]", soft_wrap=True)
        return None, run_dir
    return None, None


def _sweep_dir(hydra_config) -> Path:
    """The sweep directory as an absolute path (jobs may run with hydra.job.chdir=true)."""
    return Path(hydra_config.runtime.cwd) / str(hydra_config.sweep.dir)


def _earlier_jobs(sweep_dir: Path):
    """(run_dir, status, overrides, metrics) of every job folder below the sweep directory; a
    folder without metrics.json (its job was killed) reads its overrides from .hydra/."""
    import json

    from omegaconf import OmegaConf

    from poolbench.aggregate import find_run_dirs

    try:
        run_dirs = find_run_dirs([sweep_dir])
    except UsageError:  # a first run: nothing there yet
        return
    for run_dir in run_dirs:
        try:
            metrics = json.loads((run_dir / METRICS_FILE).read_text())
            yield run_dir, metrics.get("status"), list(metrics.get("run", {}).get("overrides", [])), metrics
        except FileNotFoundError:
            try:
                overrides = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
            except Exception:
                continue
            yield run_dir, "killed", [str(o) for o in overrides], None
        except (OSError, ValueError):
            continue


def pin_sweep_dir(overrides: list[str]) -> tuple[list[str], Path]:
    """The sweep directory, resolved now and passed to Hydra explicitly.

    The config's `${now:...}` pattern (or the user's own hydra.sweep.dir) would otherwise be
    resolved inside Hydra, and a launcher may run the jobs in other processes: pinned, this
    process knows where the jobs write, to summarize them after Ctrl-C and to tell the user
    how to continue.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from poolbench.config import CONFIG_NAME, config_dir

    def is_sweep_dir(override: str) -> bool:
        return override.lstrip("+").split("=", 1)[0] == "hydra.sweep.dir"

    given = [o for o in overrides if is_sweep_dir(o)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            sweep_dir = str(compose(CONFIG_NAME, overrides=given, return_hydra_config=True).hydra.sweep.dir)
    finally:
        GlobalHydra.instance().clear()
    quoted = sweep_dir if re.fullmatch(r"[\w./:@-]+", sweep_dir) else "'" + sweep_dir.replace("'", "\\'") + "'"
    return [o for o in overrides if not is_sweep_dir(o)] + [f"hydra.sweep.dir={quoted}"], Path(sweep_dir)


def summarize_interrupted(sweep_dir: Path, overrides: list[str]) -> None:
    """After Ctrl-C: the table of what finished, and the command that continues the sweep."""
    from poolbench.report import console

    if any(sweep_dir.glob("*/metrics.json")):
        try:
            aggregate([sweep_dir], sweep_dir, title=f"sweep {sweep_dir} (interrupted)")
        except Exception as err:  # the summary is a courtesy here: never hide the interrupt behind it
            console.print(f"[yellow]no comparison:[/] {err}", soft_wrap=True)
    console.print(f"sweep interrupted; continue it with: poolbench run -m {shlex.join(overrides)}",
                  soft_wrap=True)


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
