"""Image-folder datasets (train/<class>/*, test/<class>/*), as a folder or an archive of one.

`data=imagefolder data.root=PATH` loads the user's own images; CIFAR-10's image-folder copies
come through here too. The first load decodes every image once into uint8 tensors and saves
them to one cache file; later loads read only that file. The cache key covers the source's
path, every file's path inside it (class folder included), size and modification time (an
archive: its own size and modification time) and the requested size and channels, so a changed,
added, removed or relabelled (moved) image is decoded again. The cache holds a SHA-256 of its
tensors, checked on every load: a damaged cache is decoded again, with a warning, and a cache
folder that cannot be written only costs a warning (the cache is an optimization, never needed).
A cache's name starts with a key of the source's path, the image size and channels alone, so writing a new
cache removes the ones an earlier state of the same source left (a replaced archive would
otherwise leave a full decoded copy behind each time).
`poolbench data info` counts a source from its file names alone (`count_image_folder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from rich.markup import escape

from poolbench.data.archives import is_archive, iter_files, iter_members
from poolbench.data.base import Check, Contents, Source, TensorData, data_root, fill_from_data
from poolbench.data.decode import PIL_MODES, decode_images
from poolbench.errors import UsageError, first_line
from poolbench.report import console
from poolbench.results import save_checkpoint

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
CACHE_VERSION = 2  # 2: per-file cache key, checksum
LAYOUT_HINT = "an image-folder dataset needs train/<class>/ and test/<class>/ folders of images"


@dataclass
class FolderImages:
    train_x: torch.Tensor  # (N, C, H, W) uint8
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    cache: Path
    decode_seconds: float | None  # None when read from the cache


def load_image_folder(source: Path, cache_dir: Path, image_size: int, channels: int,
                      refresh: bool = False, max_pixels: int | None = None) -> FolderImages:
    """The dataset at `source` (folder or archive) as tensors, from the cache when it is current
    (`refresh`: decode every image again and rewrite the cache). An image whose header declares
    more than `max_pixels` pixels is refused before decoding (None: data.max_pixels' default)."""
    source = _existing(source, channels)
    cache = cache_file(source, cache_dir, image_size, channels)
    cached = None if refresh else _read_cache(cache, image_size, channels, source)
    if cached is not None:
        return cached
    console.print(f"[dim]decoding {source} once; later runs read {cache}[/]", soft_wrap=True)
    started = time.perf_counter()
    splits, classes = _layout(iter_files(source) if is_archive(source) else _folder_entries(source), source)
    tensors = {}
    for split in SPLITS:
        names = [name for name, _, _ in splits[split]]
        blobs = [blob for _, _, blob in splits[split]]
        tensors[f"{split}_x"] = decode_images(blobs, names, image_size, channels, max_pixels)
        tensors[f"{split}_y"] = torch.tensor([label for _, label, _ in splits[split]], dtype=torch.long)
    seconds = time.perf_counter() - started
    log.info("decoded %s in %.1f s; cache %s", source, seconds, cache)
    if _write_cache(cache, {**tensors, "classes": classes, "source": str(source), "version": CACHE_VERSION,
                            "checksum": checksum(tensors, classes)}):
        _remove_stale_caches(cache)
    return FolderImages(**tensors, classes=classes, cache=cache, decode_seconds=seconds)


def count_image_folder(source: Path, cache_dir: Path, image_size: int, channels: int) -> Contents:
    """What `source` holds, from its file names alone (an archive's member list, a folder's tree):
    `poolbench data info` promises to fetch nothing, so it decodes no image and writes no cache."""
    source = _existing(source, channels)
    splits, classes = _layout(iter_members(source) if is_archive(source) else _folder_entries(source), source)
    cache = cache_file(source, cache_dir, image_size, channels)
    state = f"cache {cache}" if cache.is_file() else f"not decoded yet; a run decodes it into {cache}"
    return Contents(len(splits["train"]), len(splits["test"]), (channels, image_size, image_size), classes,
                    f"{source} ({state})")


def _existing(source: Path, channels: int) -> Path:
    """`source` with ~ expanded, once it is known to exist and `channels` to be decodable."""
    source = Path(source).expanduser()
    if not source.exists():
        raise UsageError(f"{source} does not exist: point data.root (or data.source) at a folder or archive; "
                         f"{LAYOUT_HINT}.")
    if channels not in PIL_MODES:
        raise UsageError(f"data.channels must be 1, 3 or 4 for image folders, got {channels}.")
    return source


def _write_cache(cache: Path, saved: dict) -> bool:
    """Save the decoded tensors; True when saved. The cache only saves the next run a decode, so a
    folder that cannot take it (read-only data.cache, a full disk) gets a one-line warning and the
    run goes on."""
    try:
        save_checkpoint(cache, saved)
        return True
    except OSError as err:
        reason = err.strerror or first_line(err)
        console.print(f"[yellow]warning:[/] cannot write the decoded-image cache in {escape(str(cache.parent))} "
                      f"({escape(reason)}): going on without it, so the next run decodes again; make the folder "
                      "writable or point the cache elsewhere.", soft_wrap=True)
        log.warning("cannot write the cache %s (%s): going on without it", cache, reason)
        return False


def _remove_stale_caches(cache: Path) -> None:
    """Delete the caches of earlier states of the same source (same source key: path, image size
    and channels; another content key) beside `cache`; one that cannot be removed is left, with a
    log line."""
    source_id = cache.name.split("-")[1]
    for stale in cache.parent.glob(f"cache-{source_id}-*.pt"):
        if stale != cache:
            try:
                stale.unlink()
                log.info("removed %s, the cache of an earlier state of the same source", stale)
            except OSError as err:
                log.warning("cannot remove the stale cache %s (%s)", stale, err.strerror or first_line(err))


def cache_file(source: Path, cache_dir: Path, image_size: int, channels: int) -> Path:
    """The one place a decoded copy of `source` is kept: run, `data info` and `data verify` agree."""
    source = Path(source).expanduser()
    return (Path(cache_dir).expanduser()
            / f"cache-{source_key(source, image_size, channels)}-{cache_key(source, image_size, channels)}.pt")


def source_key(source: Path, image_size: int, channels: int) -> str:
    """The same for every state of one source at one image size and channels (and cache version):
    the caches a new one replaces."""
    text = json.dumps([CACHE_VERSION, str(source.resolve()), int(image_size), int(channels)])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def cache_key(source: Path, image_size: int, channels: int) -> str:
    if source.is_dir():  # every file's place (its class), size and time: a moved image changes the key
        lines = []
        for folder, _, files in os.walk(source):
            for name in files:
                path = os.path.join(folder, name)
                st = os.stat(path)
                lines.append(f"{Path(os.path.relpath(path, source)).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
        fingerprint = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    else:
        st = source.stat()
        fingerprint = [st.st_size, st.st_mtime_ns]
    text = json.dumps([CACHE_VERSION, str(source.resolve()), fingerprint, int(image_size), int(channels)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checksum(tensors: dict, classes: list[str]) -> str:
    """SHA-256 of the cached images, labels and class names (60,000 32x32 RGB images: ~0.1 s with
    the CPU's SHA instructions; about 0.5 s without them)."""
    digest = hashlib.sha256(json.dumps(classes).encode())
    for key in ("train_x", "train_y", "test_x", "test_y"):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.numpy())
    return digest.hexdigest()


def _read_cache(cache: Path, image_size: int, channels: int, source: Path) -> FolderImages | None:
    """The cache's tensors if the file is intact and fits the config; else None, with a warning."""
    if not cache.is_file():
        return None
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        shape = (channels, image_size, image_size)
        if saved.get("version") != CACHE_VERSION:
            problem = f"cache version {saved.get('version')}, not {CACHE_VERSION}"
        elif not all(tuple(saved[f"{s}_x"].shape[1:]) == shape and saved[f"{s}_x"].dtype == torch.uint8
                     and saved[f"{s}_y"].shape[0] == saved[f"{s}_x"].shape[0] for s in SPLITS):
            problem = "its tensors do not fit the config"
        elif saved.get("checksum") != checksum(saved, list(saved["classes"])):
            problem = "checksum mismatch"
        else:
            problem = None
    except Exception as err:  # a damaged cache is only a cache: decode again
        problem = f"unreadable: {type(err).__name__}"
    if problem is not None:
        console.print(f"[yellow]warning:[/] cache {escape(str(cache))} is damaged ({escape(problem)}): "
                      f"decoding {escape(str(source))} again", soft_wrap=True)
        log.warning("cache %s is damaged (%s): decoding %s again", cache, problem, source)
        return None
    return FolderImages(*(saved[k] for k in ("train_x", "train_y", "test_x", "test_y")),
                        classes=list(saved["classes"]), cache=cache, decode_seconds=None)


# ------------------------------------------------------------------ layout

def _folder_entries(source: Path):
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        base = Path(folder)
        rel_base = PurePosixPath(base.relative_to(source).as_posix())
        for name in dirs:
            yield rel_base / name, None
        for name in sorted(files):
            yield rel_base / name, base / name


def _hidden(parts) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _layout(entries, source: Path):
    """Sort entries into splits and classes: (split -> [(name, label, blob)], classes).

    An entry is (path inside `source`, blob): blob is None for a folder, the file's Path in a
    folder, its bytes (or only its size, when counting) in an archive. A file's name, which every
    error about it shows, is its path; an archive member's is "<member> in <archive>".
    """
    found: dict[tuple, dict[str, dict[str, list]]] = {}  # prefix -> split -> class -> [(name, blob)]
    for rel, blob in entries:
        parts = rel.parts
        if _hidden(parts):
            continue
        if blob is None:  # a folder: remember class folders so empty ones can be reported
            if len(parts) >= 2 and parts[-2] in SPLITS:
                found.setdefault(parts[:-2], {}).setdefault(parts[-2], {}).setdefault(parts[-1], [])
            continue
        if len(parts) < 3 or parts[-3] not in SPLITS or rel.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        classes = found.setdefault(parts[:-3], {}).setdefault(parts[-3], {})
        classes.setdefault(parts[-2], []).append((rel.as_posix(), blob))
    if not found:
        raise UsageError(f"{source} holds no train/<class>/ images: {LAYOUT_HINT}.")
    prefix = min(found, key=len)  # the outermost dataset wins; deeper look-alikes are ignored
    where = f"{source}/{'/'.join(prefix)}".rstrip("/")
    tree = found[prefix]
    for split in SPLITS:
        if split not in tree:
            raise UsageError(f"{where} has no {split}/ split: {LAYOUT_HINT}.")
        for name, files in tree[split].items():
            if not files:
                raise UsageError(f"Class '{name}' in {where}/{split}/ has no images: add some or remove the folder.")
    classes = sorted(tree["train"])
    extra = sorted(set(tree["test"]) - set(classes))
    if extra:
        raise UsageError(f"{where}/test/ has class '{extra[0]}' that train/ lacks: the splits must share classes.")
    splits = {}
    for split in SPLITS:
        rows = []
        for label, name in enumerate(classes):
            for member, blob in sorted(tree[split].get(name, []), key=lambda item: item[0]):
                rows.append((str(blob) if isinstance(blob, Path) else f"{member} in {source}", label, blob))
        splits[split] = rows
    return splits, classes


# ------------------------------------------------------------------ data=imagefolder

def _root(data_cfg) -> Path:
    if not data_cfg.get("root"):
        raise UsageError("data=imagefolder needs data.root=PATH: a folder (or .tar.xz/.tar.gz/.zip) holding "
                         "train/<class>/ and test/<class>/ folders of images.")
    return data_root(data_cfg)


def max_pixels(data_cfg) -> int | None:
    """data.max_pixels (None in a config saved before the key existed: its default applies)."""
    value = data_cfg.get("max_pixels")
    return None if value is None else int(value)


def _settings(data_cfg) -> tuple[Path, Path, int, int, int | None]:
    return (_root(data_cfg), Path(str(data_cfg.cache)).expanduser(), int(data_cfg.image_size),
            int(data_cfg.channels), max_pixels(data_cfg))


def describe(source: Path, images: FolderImages) -> str:
    how = "cached" if images.decode_seconds is None else f"decoded in {images.decode_seconds:.1f} s"
    return f"{source} ({how}; cache {images.cache})"


def load(data_cfg) -> TensorData:
    """Any train/<class>/, test/<class>/ dataset at data.root (folder or archive)."""
    source, cache_dir, size, channels, limit = _settings(data_cfg)
    images = load_image_folder(source, cache_dir, size, channels, max_pixels=limit)
    data = TensorData("imagefolder", images.train_x, images.train_y, images.test_x, images.test_y,
                      images.classes, describe(source, images))
    fill_from_data(data_cfg, data)
    return data


def locations(data_cfg) -> list[Path]:
    if not data_cfg.get("root"):
        return []
    source, cache_dir, size, channels, _ = _settings(data_cfg)
    return [source, cache_file(source, cache_dir, size, channels)] if source.exists() else [source]


def contents(data_cfg) -> Contents:
    source, cache_dir, size, channels, _ = _settings(data_cfg)
    return count_image_folder(source, cache_dir, size, channels)


def decode_check(source: Path, cache_dir: Path, size: int, channels: int, limit: int | None = None) -> Check:
    """An image-folder source is checked by decoding every image afresh (the cache is rewritten)."""
    try:
        images = load_image_folder(source, cache_dir, size, channels, refresh=True, max_pixels=limit)
    except UsageError as err:
        return Check(str(source), "every image decodes", False, str(err))
    count = len(images.train_y) + len(images.test_y)
    return Check(str(source), "every image decodes", True,
                 f"ok: {count} images, {len(images.classes)} classes, decoded in {images.decode_seconds:.1f} s")


SOURCE = Source(
    name="imagefolder",
    description="your own train/ and test/ class folders: data.root=PATH",
    load=load,
    locations=locations,
    checks=lambda cfg: iter([decode_check(*_settings(cfg))]),
    contents=contents,
    downloads=False,
)
