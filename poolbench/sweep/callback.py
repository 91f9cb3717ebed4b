"""The Hydra side of sweeps: the end-of-multirun aggregation, reruns, the pinned sweep folder.

Hydra's `on_multirun_end` callback gets no job results (a launcher may have run the jobs in
other processes or on other machines), so it reads each job's metrics.json from the sweep
directory, whichever launcher ran them.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from hydra.experimental.callback import Callback
from rich.markup import escape

from poolbench.errors import UsageError
from poolbench.report import console
from poolbench.sweep.compare import aggregate
from poolbench.sweep.rundir import find_run_dirs, read_run

# What the last multirun in this process found (the CLI turns failed jobs into exit code 1).
_last = {"jobs": 0, "failed": 0}


class AggregateSweep(Callback):
    """Configured in configs/config.yaml (hydra.callbacks); runs after every multirun."""

    def on_multirun_end(self, config, **kwargs) -> None:
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

    if hydra_config.mode != RunMode.MULTIRUN:
        return None, None
    wanted = sorted(hydra_config.overrides.task)
    own = Path(hydra_config.runtime.output_dir)
    complete, resumable = None, []
    for run in _earlier_runs(Path(hydra_config.runtime.cwd) / str(hydra_config.sweep.dir)):
        if sorted(run.overrides) != wanted:
            continue
        if run.complete:
            complete = run
        elif run.resumable:
            resumable.append(run.path)
    if complete is not None:
        console.print(f"[dim]skipped {own.name}: already complete ({complete.path})[/]", soft_wrap=True)
        return complete.metrics, None
    if resumable:  # the newest checkpoint goes furthest
        from poolbench.results import CHECKPOINT_FILE

        run_dir = max(resumable, key=lambda d: (d / CHECKPOINT_FILE).stat().st_mtime)
        console.print(f"[dim]{own.name}: continuing the stopped run in {run_dir}[/]", soft_wrap=True)
        return None, run_dir
    return None, None


def _earlier_runs(sweep_dir: Path):
    try:
        run_dirs = find_run_dirs([sweep_dir])
    except UsageError:  # a first run: nothing there yet
        return
    for run_dir in run_dirs:
        yield read_run(run_dir)


def pin_sweep_dir(overrides: list[str]) -> tuple[list[str], Path]:
    """The sweep directory, resolved now and passed to Hydra explicitly (config.pin_output_dir)."""
    from poolbench.config import pin_output_dir

    return pin_output_dir(overrides, "hydra.sweep.dir")


def summarize_interrupted(sweep_dir: Path, overrides: list[str]) -> None:
    """After Ctrl-C: the table of what finished, and the command that continues the sweep."""
    if any(sweep_dir.glob("*/metrics.json")):
        try:
            aggregate([sweep_dir], sweep_dir, title=f"sweep {sweep_dir} (interrupted)")
        except Exception as err:  # the summary is a courtesy here: never hide the interrupt behind it
            console.print(f"[yellow]no comparison:[/] {err}", soft_wrap=True)
    console.print(f"sweep interrupted; continue it with: poolbench run -m {escape(shlex.join(overrides))}",
                  soft_wrap=True)
