"""Aggregate runs into one comparison: after every multirun, and for `poolbench compare`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from poolbench.sweep.aggregate import summarize
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


def compare(dirs: list[Path], out_dir: Path | None) -> tuple[int, int]:
    """`poolbench compare`: one directory's summary goes into it; several get a new folder."""
    out_dir = output_dir(dirs, out_dir)
    return aggregate(list(dirs), out_dir, title="comparison of " + ", ".join(str(d) for d in dirs))
