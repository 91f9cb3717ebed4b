"""Fashion-MNIST and KMNIST: MNIST's IDX format, kept as the four .gz files torchvision downloads
into `<data.root>/<FashionMNIST|KMNIST>/raw/`, each checked against its published MD5 (the
ones torchvision lists) and decompressed in memory.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from poolbench.data.base import Source, TensorData, data_root, md5_checks
from poolbench.data.fetch import checked_files
from poolbench.errors import UsageError

SPLIT_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
               "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (gzipped) as a uint8 tensor: magic 0x0000_08_<ndim>, ndim big-endian sizes, bytes."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise UsageError(f"{path} is not an IDX file of bytes: fetch the published file again.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != expected:
        raise UsageError(f"{path} holds {len(raw)} bytes, its header says {expected}: fetch it again.")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def idx_source(name: str, folder: str, torchvision_class: str) -> Source:
    def dataset_class():
        import torchvision.datasets

        return getattr(torchvision.datasets, torchvision_class)

    def raw_dir(data_cfg) -> Path:
        return data_root(data_cfg) / folder / "raw"

    def digests() -> dict[str, str]:
        return dict(dataset_class().resources)

    def load(data_cfg) -> TensorData:
        root = data_root(data_cfg)
        differ, where = checked_files(data_cfg, raw_dir(data_cfg), digests(), name,
                                      lambda: dataset_class()(str(root), train=True, download=True))
        tensors = []
        for split in ("train", "test"):
            images, labels = (read_idx(raw_dir(data_cfg) / f) for f in SPLIT_FILES[split])
            tensors += [images.unsqueeze(1), labels.long()]
        return TensorData(name, *tensors, list(dataset_class().classes), where, differ)

    return Source(name=name, description="downloaded when missing (torchvision), kept in data.root",
                  load=load, locations=lambda cfg: [raw_dir(cfg)],
                  checks=lambda cfg: md5_checks(raw_dir(cfg), digests()), classes=10)


FASHION_MNIST = idx_source("fashion_mnist", "FashionMNIST", "FashionMNIST")
KMNIST = idx_source("kmnist", "KMNIST", "KMNIST")
