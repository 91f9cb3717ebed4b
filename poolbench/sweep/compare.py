"""Aggregate runs into one comparison: after every multirun, for `poolbench compare`, and from Python."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from poolbench.sweep.aggregate import Summary, summarize
from poolbench.sweep.summary import publish


def aggregate(paths: list[Path], out_dir: Path, title: str) -> tuple[int, int]:
    """Table, summary files and plots for the runs below `paths`; returns (jobs, failed).

    A quiet timing pass (timing.json) in `paths` or in `out_dir` gives the speed columns.
    """
    summary = summarize(paths, timing_dirs=[out_dir])
    publish(summary, out_dir, title)
    return sum(len(row.runs) for row in summary.rows), len(summary.failed)


def output_dir(dirs: list[Path], out_dir: Path | None) -> Path:
    """Where `compare` writes: the given folder; else the one directory compared; else a new folder."""
    if out_dir is not None:
        return Path(out_dir)
    if len(dirs) == 1:
        return Path(dirs[0])
    return Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def compare(dirs: list[Path], out_dir: Path | None = None, *, quiet: bool = False, write: bool = True) -> Summary:
    """`poolbench compare`, and the same from Python: the comparison of every run below `dirs`.

    Returns the Summary the table shows (rows with their statistics; `aggregate.to_dict` makes it
    summary.json's plain data). `write`: the summary files, runs.csv and plots go to
    output_dir(dirs, out_dir) (one directory's summary goes into it; several get a new folder).
    `quiet`: nothing is printed, for a caller who wants the data, not the console.
    """
    dirs = [Path(d) for d in dirs]
    out = output_dir(dirs, out_dir)
    summary = summarize(dirs, timing_dirs=[out])  # a timing pass `compare --time` left there ranks speed
    title = "comparison of " + ", ".join(str(d) for d in dirs)
    if write:
        publish(summary, out, title, quiet=quiet)
    elif not quiet:
        from poolbench.sweep.summary import show

        show(summary, title)
    return summary
