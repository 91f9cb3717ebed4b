"""Small fabricated dataset files in each source's own on-disk format (no download anywhere)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from poolbench.data.base import md5

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(raw: Path, n_train: int = 40, n_test: int = 20) -> dict[str, str]:
    """The four gzipped IDX files of an MNIST-like set; returns {file: md5} of what was written."""
    raw.mkdir(parents=True, exist_ok=True)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = RNG.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefix}-{kind}-idx{dims}-ubyte.gz"
            (raw / name).write_bytes(gzip.compress(idx_bytes(array)))
            files[name] = md5(raw / name)
    return files


def write_svhn(folder: Path, n_train: int = 30, n_test: int = 10) -> dict[str, str]:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # 1..10, where 10 is the digit 0
        savemat(str(folder / f"{split}_32x32.mat"), {"X": x, "y": y})
        files[f"{split}_32x32.mat"] = md5(folder / f"{split}_32x32.mat")
    return files


def write_cifar100(folder: Path, n_train: int = 30, n_test: int = 10) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        entry = {"data": RNG.integers(0, 256, (n, 3072)).astype(np.uint8), "fine_labels": list(np.arange(n) % 100),
                 "coarse_labels": list(np.arange(n) % 20)}
        (folder / split).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"class{i}" for i in range(100)]}))
    return {name: md5(folder / name) for name in ("train", "test", "meta")}
