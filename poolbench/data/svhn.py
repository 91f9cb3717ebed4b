"""SVHN (cropped digits): `train_32x32.mat` and `test_32x32.mat` in `<data.root>/SVHN/`, each
checked against its published MD5 (the ones torchvision lists). Reading MATLAB files needs SciPy
(`pip install 'poolbench[datasets]'`). Label 10 means the digit 0, as in torchvision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from poolbench.data.base import Source, TensorData, data_root, md5_checks
from poolbench.data.fetch import checked_files
from poolbench.errors import UsageError

SPLITS = ("train", "test")


def folder(data_cfg) -> Path:
    return data_root(data_cfg) / "SVHN"


def digests() -> dict[str, str]:
    from torchvision.datasets import SVHN

    return {SVHN.split_list[s][1]: SVHN.split_list[s][2] for s in SPLITS}


def read_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UsageError("data=svhn reads MATLAB files with SciPy: pip install 'poolbench[datasets]'.") from None
    entry = loadmat(str(path))
    images = np.ascontiguousarray(entry["X"].transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    labels = entry["y"].astype(np.int64).reshape(-1) % 10
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels)


def load(data_cfg) -> TensorData:
    def download():
        from torchvision.datasets import SVHN

        for split in SPLITS:
            SVHN(str(folder(data_cfg)), split=split, download=True)

    differ, where = checked_files(data_cfg, folder(data_cfg), digests(), "SVHN", download)
    tensors = []
    for split in SPLITS:
        tensors += read_mat(folder(data_cfg) / f"{split}_32x32.mat")
    return TensorData("svhn", *tensors, [str(d) for d in range(10)], where, differ)


SOURCE = Source(name="svhn", description="downloaded when missing (torchvision), kept in data.root",
                load=load, locations=lambda cfg: [folder(cfg)], checks=lambda cfg: md5_checks(folder(cfg), digests()),
                classes=10)
