"""`poolbench data download|verify|info [DATASET] [OVERRIDES]`: what is where, and is it intact.

Each command composes the dataset's config as a run would (`data=NAME` plus any overrides such
as `data.root=...` or `data.source=...`) and asks the dataset's own `Source` (data/base.py), so
it looks exactly where `poolbench run` looks.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import open_dict
from rich.table import Table

from poolbench.config import compose_config
from poolbench.data import get_source, load_dataset
from poolbench.data.base import Contents
from poolbench.errors import RunError, UsageError
from poolbench.report import console, si

FILE_DATASETS = ["mnist", "cifar10"]  # what download/verify handle when no dataset is named


def _data_config(name: str, overrides: list[str]):
    get_source(name)  # an unknown name gets the list of datasets
    return compose_config([f"data={name}", *overrides]).data


def _names(dataset: str | None, default: list[str]) -> list[str]:
    return [dataset] if dataset else default


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def info(dataset: str | None, overrides: list[str]) -> list[Table]:
    """Path, size, samples, classes and source of each dataset, fetching nothing."""
    tables = []
    for name in _names(dataset, [*FILE_DATASETS, "shapes"]):
        cfg = _data_config(name, overrides)
        table = Table(title=f"data={name}", title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        try:
            paths = get_source(name).locations(cfg)
        except UsageError as err:
            paths, problem = [], err
        else:
            problem = None
        table.add_row("path", "\n".join(str(p) for p in paths) or "(generated in memory)")
        table.add_row("size", si(sum(disk_size(p) for p in paths), ".1f", binary=True, space=" ") + "B")
        try:
            if problem is not None:
                raise problem
            found = _contents(name, cfg)
        except UsageError as err:
            table.add_row("status", f"[yellow]not available[/]: {err}")
        else:
            table.add_row("samples", f"{found.train} train, {found.test} test, {found.shape} uint8")
            table.add_row("classes", f"{len(found.classes)}: {', '.join(found.classes)}")
            table.add_row("source", found.source)
        tables.append(table)
    return tables


def _contents(name: str, cfg) -> Contents:
    """What the dataset holds: counted by its source where it can (image folders: no decoding, no
    cache written), else loaded as a run would, but without downloading."""
    source = get_source(name)
    found = source.contents(cfg) if source.contents is not None else None
    if found is not None:
        return found
    with open_dict(cfg):
        cfg.download = False
    return Contents.of(load_dataset(cfg))


def verify(dataset: str | None, overrides: list[str]) -> Table:
    """Check every file against its checksum (or decode every image); raise when any fails."""
    table = Table(title="verify")
    for column in ("dataset", "file", "expected (MD5)", "status"):
        table.add_column(column, overflow="fold")
    failures = 0
    for name in _names(dataset, FILE_DATASETS):
        cfg = _data_config(name, overrides)
        for check in get_source(name).checks(cfg):
            failures += not check.ok
            status = check.status if check.ok else f"[bold red]{check.status}[/]"
            table.add_row(name, check.target, check.expected, status)
    if failures:
        console.print(table)
        raise RunError(f"{failures} check(s) failed (files missing or damaged): delete damaged files, then run "
                       f"`poolbench data download{' ' + dataset if dataset else ''}` to fetch them.")
    return table


def download(dataset: str | None, overrides: list[str]) -> list:
    """Fetch (or decode and cache) each dataset through its source chain, saying where from."""
    for name in _names(dataset, FILE_DATASETS):
        cfg = _data_config(name, overrides)
        if not get_source(name).downloads and name == "shapes":
            console.print("shapes: generated on the fly, nothing to download")
            continue
        started = time.perf_counter()
        data = load_dataset(cfg)  # runs the source chain: present files, then each download source
        console.print(f"{name}: {len(data.train_y)} train + {len(data.test_y)} test images from {data.source} "
                      f"({time.perf_counter() - started:.1f} s)", soft_wrap=True)  # now: a later failure keeps it
    return []
