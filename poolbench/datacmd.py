"""`poolbench data download|verify|info [DATASET] [OVERRIDES]`: what is where, and is it intact.

Each command composes the dataset's config as a run would (`data=NAME` plus any overrides such
as `data.root=...` or `data.source=...`), so it looks exactly where `poolbench run` looks.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from poolbench.errors import RunError, UsageError

FILE_DATASETS = ["mnist", "cifar10"]  # what download/verify handle when no dataset is named


def _data_config(name: str, overrides: list[str]):
    from poolbench.config import compose_config, group_options

    if name not in group_options("data"):
        raise UsageError(f"Unknown dataset '{name}'; choose one of: {', '.join(group_options('data'))}.")
    return compose_config([f"data={name}", *overrides]).data


def _names(dataset: str | None, default: list[str]) -> list[str]:
    return [dataset] if dataset else default


def data_paths(data_cfg) -> list[Path]:
    """The files and folders a dataset occupies on disk (source, batches, cache)."""
    from poolbench.data import data_root
    from poolbench.data_cifar import BATCHES_DIR
    from poolbench.data_folder import cache_key

    name = data_cfg.name
    if name == "mnist":
        return [data_root(data_cfg) / "MNIST" / "raw"]
    if name == "cifar10":
        source = data_cfg.get("source")
        if not source:
            return [data_root(data_cfg) / BATCHES_DIR]
        source = Path(str(source)).expanduser()
        paths = [source]
        if source.exists():
            paths.append(data_root(data_cfg) / "cifar10" / f"cache-{cache_key(source, 32, 3)}.pt")
        return paths
    if name == "imagefolder" and data_cfg.get("root"):
        root = data_root(data_cfg)
        paths = [root]
        if root.exists():
            key = cache_key(root, int(data_cfg.image_size), int(data_cfg.channels))
            paths.append(Path(str(data_cfg.cache)).expanduser() / f"cache-{key}.pt")
        return paths
    return []


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def info(dataset: str | None, overrides: list[str]) -> list[Table]:
    """Path, size, samples, classes and source of each dataset, fetching nothing."""
    from omegaconf import open_dict

    from poolbench.data import load_dataset

    tables = []
    for name in _names(dataset, FILE_DATASETS + ["shapes"]):
        cfg = _data_config(name, overrides)
        paths = data_paths(cfg)
        table = Table(title=f"data={name}", title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("path", "\n".join(str(p) for p in paths) or "(generated in memory)")
        table.add_row("size", _human(sum(disk_size(p) for p in paths)))
        with open_dict(cfg):
            cfg.download = False
        try:
            data = load_dataset(cfg)
        except UsageError as err:
            table.add_row("status", f"[yellow]not available[/]: {err}")
        else:
            table.add_row("samples", f"{len(data.train_y)} train, {len(data.test_y)} test, "
                                     f"{tuple(data.train_x.shape[1:])} uint8")
            table.add_row("classes", f"{len(data.classes)}: {', '.join(data.classes)}")
            table.add_row("source", data.source)
        tables.append(table)
    return tables


def verify(dataset: str | None, overrides: list[str]) -> Table:
    """Check every file against its checksum (or decode every image); raise when any fails."""
    table = Table(title="verify")
    for column in ("dataset", "file", "expected (MD5)", "status"):
        table.add_column(column, overflow="fold")
    failures = 0
    for name in _names(dataset, FILE_DATASETS):
        cfg = _data_config(name, overrides)
        for file, expected, ok, status in _checks(cfg):
            failures += not ok
            table.add_row(name, file, expected, status if ok else f"[bold red]{status}[/]")
    if failures:
        from poolbench.report import console

        console.print(table)
        raise RunError(f"{failures} check(s) failed (files missing or damaged): delete damaged files, then run "
                       f"`poolbench data download{' ' + dataset if dataset else ''}` to fetch them.")
    return table


def _checks(cfg):
    """(file, expected, ok, status) for each thing that can be checked."""
    from poolbench.data import MNIST_MD5, data_root, md5

    if cfg.name == "mnist":
        raw = data_root(cfg) / "MNIST" / "raw"
        yield from _md5_rows(raw, MNIST_MD5, md5)
    elif cfg.name == "cifar10" and _cifar_batches(cfg) is not None:
        from poolbench.data_cifar import batch_md5s

        yield from _md5_rows(_cifar_batches(cfg), batch_md5s(), md5)
    elif cfg.name == "cifar10" or cfg.name == "imagefolder":
        yield _decode_check(cfg)
    else:
        yield ("(generated)", "-", True, "ok: made from data.generator_seed")


def _cifar_batches(cfg) -> Path | None:
    """The python-batches folder a CIFAR-10 config reads, or None for an image-folder source."""
    from poolbench.archives import is_archive
    from poolbench.data import data_root
    from poolbench.data_cifar import BATCHES_DIR, _holds_batches

    if not cfg.get("source"):
        return data_root(cfg) / BATCHES_DIR
    source = Path(str(cfg.source)).expanduser()
    for folder in (source / BATCHES_DIR, source):
        if folder.is_dir() and (folder / "batches.meta").exists():
            return folder
    if is_archive(source) and _holds_batches(source):
        return data_root(cfg) / BATCHES_DIR  # where run and download unpack it
    return None


def _md5_rows(folder: Path, digests: dict, md5):
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            yield str(path), digest, False, "missing"
        else:
            actual = md5(path)
            yield str(path), digest, actual == digest, "ok" if actual == digest else f"MD5 is {actual}"


def _decode_check(cfg):
    """An image-folder source is checked by decoding every image afresh (the cache is rewritten)."""
    from poolbench.data_folder import load_image_folder

    if cfg.name == "cifar10":
        source, cache_dir, size, channels = Path(str(cfg.source)), Path(str(cfg.root)) / "cifar10", 32, 3
    else:
        if not cfg.get("root"):
            raise UsageError("data=imagefolder needs data.root=PATH to verify.")
        source, cache_dir = Path(str(cfg.root)), Path(str(cfg.cache))
        size, channels = int(cfg.image_size), int(cfg.channels)
    source = source.expanduser()
    try:
        images = load_image_folder(source, cache_dir.expanduser(), size, channels, refresh=True)
    except UsageError as err:
        return str(source), "every image decodes", False, str(err)
    count = len(images.train_y) + len(images.test_y)
    return (str(source), "every image decodes", True,
            f"ok: {count} images, {len(images.classes)} classes, decoded in {images.decode_seconds:.1f} s")


def download(dataset: str | None, overrides: list[str]) -> list:
    """Fetch (or decode and cache) each dataset through its source chain, saying where from."""
    from poolbench.data import load_dataset

    from poolbench.report import console

    for name in _names(dataset, FILE_DATASETS):
        cfg = _data_config(name, overrides)
        if name == "shapes":
            console.print("shapes: generated on the fly, nothing to download")
            continue
        started = time.perf_counter()
        data = load_dataset(cfg)  # runs the source chain: present files, then each download source
        console.print(f"{name}: {len(data.train_y)} train + {len(data.test_y)} test images from {data.source} "
                      f"({time.perf_counter() - started:.1f} s)", soft_wrap=True)  # now: a later failure keeps it
    return []
