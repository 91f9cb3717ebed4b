"""What every dataset source shares: the in-memory tensors, the source interface, checksums.

Every dataset becomes a `TensorData`: images (N, C, H, W) uint8 and labels int64 for both
splits. Training and evaluation index these tensors directly; there is no DataLoader and no
per-sample Python anywhere after loading.

A `Source` is one module's answer to three questions (a fourth where it can), asked by
`poolbench run` and by the `poolbench data` commands alike, so both always look at the same files:
- `load(cfg)`: the dataset as tensors (fetching it when `data.download` allows);
- `locations(cfg)`: every file and folder it reads or writes (sources, unpacked copies, caches);
- `checks(cfg)`: what can be verified, one `Check` per file (an MD5, or "every image decodes");
- `contents(cfg)`, where a source can: what it holds, counted without loading (for `data info`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from poolbench.errors import UsageError


@dataclass
class TensorData:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str
    # files used although their MD5 differs (data.allow_checksum_mismatch=true): the run records them
    unverified: list[str] = field(default_factory=list)

    def to(self, device: torch.device) -> TensorData:
        return TensorData(self.name, self.train_x.to(device), self.train_y.to(device),
                          self.test_x.to(device), self.test_y.to(device), self.classes, self.source, self.unverified)


@dataclass(frozen=True)
class Contents:
    """What a dataset holds, as `poolbench data info` shows it. A source that can count its samples
    without loading them (image folders: from file names) says so through `Source.contents`, so
    info neither decodes images nor writes a cache; the others are loaded and measured."""

    train: int
    test: int
    shape: tuple[int, ...]  # (C, H, W) of one image as a run gets it
    classes: list[str]
    source: str

    @classmethod
    def of(cls, data: TensorData) -> Contents:
        return cls(len(data.train_y), len(data.test_y), tuple(data.train_x.shape[1:]), list(data.classes),
                   data.source)


@dataclass(frozen=True)
class Check:
    """One verifiable thing: a file and its expected MD5, or a folder whose images must decode."""

    target: str
    expected: str
    ok: bool
    status: str


@dataclass(frozen=True)
class Source:
    name: str
    description: str                                   # one line for `poolbench list`
    load: Callable[..., TensorData]
    locations: Callable[..., list[Path]]
    checks: Callable[..., Iterator[Check]]
    downloads: bool = True                             # False: nothing to fetch (generated, or the user's files)
    contents: Callable[..., Contents | None] | None = None  # what it holds, not loaded; None (or it returns None): load
    classes: int | None = None                         # a published (or generated) set's fixed class count


def data_root(data_cfg) -> Path:
    return Path(str(data_cfg.root)).expanduser()


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_intact(folder: Path, digests: dict[str, str], what: str, fix: str) -> bool:
    """True when every file is present and matches its MD5; False when any is missing.

    A present file with another MD5 is an error (UsageError naming it): it would be read as data.
    """
    return verified_files(folder, digests, what, fix, allow_mismatch=False) is not None


def verified_files(folder: Path, digests: dict[str, str], what: str, fix: str,
                   allow_mismatch: bool) -> list[str] | None:
    """None when any file is missing; else the files whose MD5 differs (empty: all intact).

    A mismatch is refused (UsageError naming the file and `fix`) unless `allow_mismatch`, the
    user's explicit data.allow_checksum_mismatch=true; then it is returned for the run to record.
    """
    if not all((folder / name).is_file() for name in digests):
        return None
    differ = [str(folder / name) for name, digest in digests.items() if md5(folder / name) != digest]
    if differ and not allow_mismatch:
        raise UsageError(f"{what} file {differ[0]} is corrupted (MD5 mismatch): {fix} (To use a copy whose "
                         "checksum differs on purpose, set data.allow_checksum_mismatch=true; the run records it.)")
    return differ


def md5_checks(folder: Path, digests: dict[str, str]) -> Iterator[Check]:
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            yield Check(str(path), digest, False, "missing")
        else:
            actual = md5(path)
            yield Check(str(path), digest, actual == digest, "ok" if actual == digest else f"MD5 is {actual}")


def fill_from_data(data_cfg, data: TensorData) -> None:
    """Settings left null in the config come from the data: class count, per-channel mean/std."""
    from omegaconf import open_dict

    with open_dict(data_cfg):
        if data_cfg.get("num_classes") is None:
            data_cfg.num_classes = len(data.classes)
        if data_cfg.get("mean") is None or data_cfg.get("std") is None:
            sample = data.train_x[::max(1, data.train_x.shape[0] // 10000)]  # every class, bounded memory
            pixels = sample.transpose(0, 1).flatten(1).float() / 255  # (C, n*H*W)
            data_cfg.mean = [round(v, 4) for v in pixels.mean(1).tolist()]
            data_cfg.std = [round(max(v, 1e-3), 4) for v in pixels.std(1).tolist()]


def check_num_classes(data_cfg, data: TensorData) -> None:
    """Refuse data.num_classes below the labels present, before training: the model would have no
    output for the highest labels and cross-entropy would fail mid-run with an index error. More
    outputs than labels only leaves some untrained, so a larger value is accepted."""
    declared = data_cfg.get("num_classes")
    if declared is None:
        return
    for split, labels in (("training", data.train_y), ("test", data.test_y)):
        top = int(labels.max()) if labels.numel() else -1
        if top >= int(declared):
            needed = max(top + 1, len(data.classes))
            raise UsageError(f"data.num_classes={declared} but the {split} labels go up to {top} ({needed} classes): "
                             f"set data.num_classes={needed}, or leave it at its default.")
