"""CIFAR-10 from whatever source is at hand, tried in order:

1. `data.source`, when set: a folder holding `cifar-10-batches-py` (or that folder itself), the
   original `cifar-10-python.tar.gz`, or CIFAR-10 as image folders (train/<class>/, test/<class>/)
   as a folder or a .tar.xz/.tar.gz/.zip archive; images are decoded once and cached under
   `<data.root>/cifar10/`.
2. `<data.root>/cifar-10-batches-py`, every batch checked against torchvision's MD5s.
3. torchvision's download URL (when `data.download`), the archive's MD5 checked before it is
   unpacked (safely, see archives.py) into `data.root`.

`layout(cfg)` decides which of these a config means, once, for loading, `data info` and
`data verify` alike.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from poolbench.data.archives import extract, is_archive, member_names
from poolbench.data.base import Contents, Source, TensorData, data_root, md5_checks, verified_files
from poolbench.data.imagefolder import (
    cache_file,
    count_image_folder,
    decode_check,
    describe,
    load_image_folder,
    max_pixels,
)
from poolbench.errors import UsageError, first_line

log = logging.getLogger(__name__)

BATCHES_DIR = "cifar-10-batches-py"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGE_SIZE, CHANNELS = 32, 3


@dataclass(frozen=True)
class Layout:
    """Where a config's CIFAR-10 lives: python batches in `batches` (unpacked there from `archive`
    when one is given), or image folders at `images` decoded into `cache`."""

    batches: Path | None = None
    archive: Path | None = None
    images: Path | None = None
    cache: Path | None = None


def cache_dir(data_cfg) -> Path:
    return data_root(data_cfg) / "cifar10"


def layout(data_cfg) -> Layout:
    root = data_root(data_cfg)
    if not data_cfg.get("source"):
        return Layout(batches=root / BATCHES_DIR)
    source = Path(str(data_cfg.source)).expanduser()
    if not source.exists():
        raise UsageError(f"data.source {source} does not exist: pass an existing folder or archive.")
    for folder in (source / BATCHES_DIR, source):
        if folder.is_dir() and (folder / "batches.meta").exists():
            return Layout(batches=folder)
    if is_archive(source) and _holds_batches(source):
        return Layout(batches=root / BATCHES_DIR, archive=source)
    return Layout(images=source, cache=cache_file(source, cache_dir(data_cfg), IMAGE_SIZE, CHANNELS))


def batch_md5s() -> dict[str, str]:
    """File name -> MD5 for the python batches, as torchvision's CIFAR10 class lists them."""
    from torchvision.datasets import CIFAR10

    files = {name: digest for name, digest in CIFAR10.train_list + CIFAR10.test_list}
    files[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return files


def checked_batches(folder: Path, data_cfg=None) -> list[str] | None:
    """None when a batch is missing; else the batches used despite their MD5 (empty: all intact).

    A present but altered file is an error unless data.allow_checksum_mismatch=true.
    """
    allow = bool(data_cfg.get("allow_checksum_mismatch", False)) if data_cfg is not None else False
    return verified_files(folder, batch_md5s(), "CIFAR-10", f"delete {folder} and run again to fetch a fresh copy.",
                          allow)


def read_batches(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels of both splits; call checked_batches first (pickle)."""
    from torchvision.datasets import CIFAR10

    def read(names):
        xs, ys = [], []
        for name in names:
            with open(folder / name, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")  # trusted: its MD5 was just checked
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(entry["labels"])
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long)

    return (*read([n for n, _ in CIFAR10.train_list]), *read([n for n, _ in CIFAR10.test_list]))


def download(root: Path) -> None:
    """Fetch the python archive, check its MD5, unpack it into `root`; raises on any failure."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity, download_url

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        download_url(CIFAR10.url, tmp, CIFAR10.filename, CIFAR10.tgz_md5)
        archive = Path(tmp) / CIFAR10.filename
        if not check_integrity(str(archive), CIFAR10.tgz_md5):
            raise RuntimeError(f"{CIFAR10.filename} failed its MD5 check")
        unpack_batches(archive, root)


def unpack_batches(archive: Path, root: Path) -> Path:
    """Unpack an archive holding cifar-10-batches-py/ into root; returns the batches folder."""
    target = root / BATCHES_DIR
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".unpack-") as tmp:
        unpacked = extract(archive, Path(tmp) / "x") / BATCHES_DIR
        if not unpacked.is_dir():
            raise UsageError(f"{archive} holds no {BATCHES_DIR}/ folder: it is not CIFAR-10's python archive.")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def _holds_batches(archive: Path) -> bool:
    names = member_names(archive, limit=3)
    return any(name.parts and name.parts[0] == BATCHES_DIR for name in names)


def load(data_cfg) -> TensorData:
    where = layout(data_cfg)
    if where.images is not None:
        return _from_images(where, max_pixels(data_cfg))
    if where.archive is not None:
        differ = checked_batches(where.batches, data_cfg)
        if differ is None:
            unpack_batches(where.archive, where.batches.parent)
            differ = checked_batches(where.batches, data_cfg)
            if differ is None:
                raise UsageError(f"{where.archive} lacks some CIFAR-10 batches: download it again.")
        return _tensors(read_batches(where.batches), f"{where.batches} (from {where.archive})", differ)
    if data_cfg.get("source"):
        differ = checked_batches(where.batches, data_cfg)
        if differ is None:
            raise UsageError(f"{where.batches} lacks some CIFAR-10 batches: copy the whole {BATCHES_DIR} folder.")
        return _tensors(read_batches(where.batches), str(where.batches), differ)
    return _from_root(data_cfg, where.batches)


def _from_root(data_cfg, folder: Path) -> TensorData:
    """<data.root>/cifar-10-batches-py, downloaded there first when missing and allowed."""
    differ = checked_batches(folder, data_cfg)
    if differ is not None:
        return _tensors(read_batches(folder), str(folder), differ)
    reason = "data.download is false"
    if data_cfg.download:
        try:
            download(folder.parent)
            differ = checked_batches(folder, data_cfg)
            if differ is not None:
                return _tensors(read_batches(folder), f"{folder} (downloaded)", differ)
            reason = "the download was incomplete"
        except UsageError:
            raise
        except Exception as err:  # no network, mirror down, bad file: say so below
            reason = f"download failed: {first_line(err)}"
            log.info("CIFAR-10 download failed: %s", err)
    raise UsageError(
        f"CIFAR-10 not found in {folder.parent} ({reason}): put {BATCHES_DIR} there, or pass data.source=PATH "
        "to a copy (cifar-10-batches-py, or image folders train/<class>/ test/<class>/ as a folder or "
        ".tar.xz/.tar.gz/.zip)."
    )


def _from_images(where: Layout, limit: int | None) -> TensorData:
    images = load_image_folder(where.images, where.cache.parent, IMAGE_SIZE, CHANNELS, max_pixels=limit)
    _check_classes(where.images, images.classes)
    return _tensors((images.train_x, images.train_y, images.test_x, images.test_y), describe(where.images, images))


def _check_classes(source: Path, classes: list[str]) -> None:
    if classes != CLASSES:
        raise UsageError(f"data.source {source} has classes {classes}, not CIFAR-10's: "
                         "use data=imagefolder data.root=... for other datasets.")


def contents(data_cfg) -> Contents | None:
    """Image folders are counted from their file names (no decoding, no cache written, as `data info`
    promises); python batches are small enough to load (None)."""
    where = layout(data_cfg)
    if where.images is None:
        return None
    found = count_image_folder(where.images, where.cache.parent, IMAGE_SIZE, CHANNELS)
    _check_classes(where.images, found.classes)
    return found


def _tensors(splits: tuple, source: str, unverified: list[str] | None = None) -> TensorData:
    return TensorData("cifar10", *splits, list(CLASSES), source, list(unverified or []))


def locations(data_cfg) -> list[Path]:
    if data_cfg.get("source") and not Path(str(data_cfg.source)).expanduser().exists():
        return [Path(str(data_cfg.source)).expanduser()]
    where = layout(data_cfg)
    paths = [where.archive, where.batches, where.images, where.cache]
    return [p for p in paths if p is not None]


def checks(data_cfg):
    where = layout(data_cfg)
    if where.batches is not None:
        yield from md5_checks(where.batches, batch_md5s())
    else:
        yield decode_check(where.images, where.cache.parent, IMAGE_SIZE, CHANNELS, max_pixels(data_cfg))


SOURCE = Source(
    name="cifar10",
    description="downloaded when missing, kept in data.root; or data.source=PATH to a copy",
    load=load,
    locations=locations,
    checks=checks,
    contents=contents,
    classes=10,
)
