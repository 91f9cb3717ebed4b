"""Aggregate runs into one comparison: after every multirun, and for `poolbench compare`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from poolbench.sweep.aggregate import summarize
from poolbench.sweep.summary import publish


def aggregate(paths: list[Path], out_dir: Path, title: str) -> tuple[int, int]:
    """Table, summary files and plots for the runs below `paths`; returns (jobs, failed)."""
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
