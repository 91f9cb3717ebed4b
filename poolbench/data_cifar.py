"""CIFAR-10 from whatever source is at hand, tried in order:

1. `data.source`, when set: a folder holding `cifar-10-batches-py` (or that folder itself), the
   original `cifar-10-python.tar.gz`, or CIFAR-10 as image folders (train/<class>/, test/<class>/)
   as a folder or a .tar.xz/.tar.gz/.zip archive; images are decoded once and cached under
   `<data.root>/cifar10/`.
2. `<data.root>/cifar-10-batches-py`, every batch checked against torchvision's MD5s.
3. torchvision's download URL (when `data.download`), the archive's MD5 checked before it is
   unpacked (safely, see archives.py) into `data.root`.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from poolbench.archives import extract, is_archive, member_names
from poolbench.errors import UsageError

log = logging.getLogger(__name__)

BATCHES_DIR = "cifar-10-batches-py"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def batch_md5s() -> dict[str, str]:
    """File name -> MD5 for the python batches, as torchvision's CIFAR10 class lists them."""
    from torchvision.datasets import CIFAR10

    files = {name: digest for name, digest in CIFAR10.train_list + CIFAR10.test_list}
    files[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return files


def batches_ok(folder: Path) -> bool:
    """True when every batch is present and intact; a present but altered file is an error."""
    from poolbench.data import md5

    files = batch_md5s()
    if not all((folder / name).is_file() for name in files):
        return False
    for name, digest in files.items():
        if md5(folder / name) != digest:
            raise UsageError(f"CIFAR-10 file {folder / name} is corrupted (MD5 mismatch): delete {folder} "
                             "and run again to fetch a fresh copy.")
    return True


def read_batches(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels of both splits; call batches_ok first (pickle)."""
    def load(names):
        xs, ys = [], []
        for name in names:
            with open(folder / name, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")  # trusted: its MD5 was just checked
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(entry["labels"])
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long)

    from torchvision.datasets import CIFAR10

    return (*load([n for n, _ in CIFAR10.train_list]), *load([n for n, _ in CIFAR10.test_list]))


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


def load(data_cfg) -> tuple[tuple, str]:
    """((train_x, train_y, test_x, test_y), where they came from), by the source chain above."""
    from poolbench.data import data_root

    root = data_root(data_cfg)
    source = data_cfg.get("source")
    if source:
        return from_source(Path(str(source)).expanduser(), root)
    folder = root / BATCHES_DIR
    if batches_ok(folder):
        return read_batches(folder), str(folder)
    reason = "data.download is false"
    if data_cfg.download:
        try:
            download(root)
            if batches_ok(folder):
                return read_batches(folder), f"{folder} (downloaded)"
            reason = "the download was incomplete"
        except UsageError:
            raise
        except Exception as err:  # no network, mirror down, bad file: say so below
            reason = f"download failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            log.info("CIFAR-10 download failed: %s", err)
    raise UsageError(
        f"CIFAR-10 not found in {root} ({reason}): put {BATCHES_DIR} there, or pass data.source=PATH "
        "to a copy (cifar-10-batches-py, or image folders train/<class>/ test/<class>/ as a folder or "
        ".tar.xz/.tar.gz/.zip)."
    )


def from_source(source: Path, root: Path) -> tuple[tuple, str]:
    from poolbench.data_folder import load_image_folder

    if not source.exists():
        raise UsageError(f"data.source {source} does not exist: pass an existing folder or archive.")
    for folder in (source / BATCHES_DIR, source):
        if folder.is_dir() and (folder / "batches.meta").exists():
            if not batches_ok(folder):
                raise UsageError(f"{folder} lacks some CIFAR-10 batches: copy the whole {BATCHES_DIR} folder.")
            return read_batches(folder), str(folder)
    if is_archive(source) and _holds_batches(source):
        folder = root / BATCHES_DIR
        if not batches_ok(folder):
            unpack_batches(source, root)
            if not batches_ok(folder):
                raise UsageError(f"{source} lacks some CIFAR-10 batches: download it again.")
        return read_batches(folder), f"{folder} (from {source})"
    images = load_image_folder(source, root / "cifar10", image_size=32, channels=3)
    if images.classes != CLASSES:
        raise UsageError(f"data.source {source} has classes {images.classes}, not CIFAR-10's: "
                         "use data=imagefolder data.root=... for other datasets.")
    how = "cached" if images.decode_seconds is None else f"decoded in {images.decode_seconds:.1f} s"
    return ((images.train_x, images.train_y, images.test_x, images.test_y),
            f"{source} ({how}; cache {images.cache})")
