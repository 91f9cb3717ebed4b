"""CIFAR-100: the python version's `train`, `test` and `meta` pickles in
`<data.root>/cifar-100-python/`, each checked against its published MD5 (the ones torchvision
lists) before it is unpickled; fine labels (100 classes)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from poolbench.data.base import Source, TensorData, data_root, md5_checks
from poolbench.data.fetch import checked_files


def folder(data_cfg) -> Path:
    from torchvision.datasets import CIFAR100

    return data_root(data_cfg) / CIFAR100.base_folder


def digests() -> dict[str, str]:
    from torchvision.datasets import CIFAR100

    return {**dict(CIFAR100.train_list + CIFAR100.test_list), CIFAR100.meta["filename"]: CIFAR100.meta["md5"]}


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="latin1")  # trusted: its MD5 was just checked


def load(data_cfg) -> TensorData:
    from torchvision.datasets import CIFAR100

    root = data_root(data_cfg)
    differ, where = checked_files(data_cfg, folder(data_cfg), digests(), "CIFAR-100",
                                  lambda: CIFAR100(str(root), train=True, download=True))
    tensors = []
    for split in ("train", "test"):
        entry = _unpickle(folder(data_cfg) / split)
        tensors += [torch.from_numpy(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)),
                    torch.tensor(entry["fine_labels"], dtype=torch.long)]
    classes = list(_unpickle(folder(data_cfg) / CIFAR100.meta["filename"])[CIFAR100.meta["key"]])
    return TensorData("cifar100", *tensors, classes, where, differ)


SOURCE = Source(name="cifar100", description="downloaded when missing (torchvision), kept in data.root",
                load=load, locations=lambda cfg: [folder(cfg)], checks=lambda cfg: md5_checks(folder(cfg), digests()),
                classes=100)
