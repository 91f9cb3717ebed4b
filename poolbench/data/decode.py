"""Decoding image files to uint8 tensors: JPEGs in batches through torchvision's libjpeg
decoder (benchmarks/decode_images.py measured it 3.2x faster than PIL, same pixels), other
formats through `decode_image`, then PIL; each image resized to the requested size if needed.

torchvision's decoders have no pixel limit (PIL's does not apply to them): a few hundred bytes
can declare a 20000x20000 image, gigabytes once decoded. So every image's header is read first
(PNG and JPEG parsed here, other formats by PIL, which reads only the header) and one that
declares more than `max_pixels` (data.max_pixels) is refused before anything is decoded.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from functools import cache
from pathlib import Path

import torch

from poolbench.errors import UsageError, first_line

DECODE_CHUNK = 2048  # JPEGs per batched decode call
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> PIL mode; torchvision's come from _read_modes()


def _read_modes():
    from torchvision.io import ImageReadMode

    return {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB, 4: ImageReadMode.RGB_ALPHA}


def decode_images(blobs: list, names: list[str], image_size: int, channels: int,
                  max_pixels: int | None = None) -> torch.Tensor:
    """Decode images (bytes, or paths read here) to (N, C, S, S) uint8, resizing where needed.

    An image whose header declares more than `max_pixels` pixels is refused (UsageError) before
    any image is decoded; None: the default of configs/data/_images.yaml (data.max_pixels).
    """
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    raws = [_read(blob, name) for blob, name in zip(blobs, names)]
    for raw, name in zip(raws, names):
        check_pixels(raw, name, limit)
    with warnings.catch_warnings():  # torchvision 0.29 marks its decoders deprecated (torchcodec); they work
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_images(raws, names, image_size, channels)


@cache
def default_max_pixels() -> int:
    """data.max_pixels as configs/data/_images.yaml sets it (the one place it is set), for callers
    without a config and for runs saved before the key existed."""
    from omegaconf import OmegaConf

    from poolbench.config import config_dir

    return int(OmegaConf.load(config_dir() / "data" / "_images.yaml").max_pixels)


def check_pixels(raw: bytes, name: str, limit: int) -> None:
    """Refuse an image whose header declares more than `limit` pixels, before it is decoded."""
    try:
        size = header_size(raw)
    except _PastPIL:
        pixels, shown = _past_pil() + 1, f"more than {_past_pil()} pixels"
    else:
        if size is None:  # no header we can read: the decoder names the damaged file
            return
        pixels, shown = size[0] * size[1], f"{size[0]}x{size[1]} pixels"
    if pixels > limit:
        raise UsageError(f"Image {name} declares {shown}, over the limit of {limit} (data.max_pixels; a header "
                         "like this can be a decompression bomb): refusing to decode it; shrink or delete the "
                         "file, or raise the limit with data.max_pixels=N.")


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) as the image's header declares it, reading nothing else; None if unreadable."""
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and len(raw) >= 24:
        return struct.unpack(">II", raw[16:24])
    if raw[:2] == b"\xff\xd8":
        size = _jpeg_size(raw)
        if size is not None:
            return size
    return _pil_size(raw)


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """The frame size in a JPEG's SOF marker, the segments before it skipped by their lengths."""
    i = 2
    while i + 4 <= len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # a fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif marker in _JPEG_SOF:
            if i + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[i + 5:i + 9])
            return width, height
        elif marker in (0xD9, 0xDA):  # the image or its scan data ends before any frame header
            return None
        else:
            i += 2 + int.from_bytes(raw[i + 2:i + 4], "big")
    return None


class _PastPIL(Exception):
    """The header declares more pixels than PIL will open (its DecompressionBombError)."""


def _past_pil() -> int:
    from PIL import Image

    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 1 << 62


def _pil_size(raw: bytes) -> tuple[int, int] | None:
    """Any other format's size from PIL, which reads only the header here (no pixel is decoded)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                return image.size
    except Image.DecompressionBombError:
        raise _PastPIL() from None
    except Exception:
        return None


def _decode_images(raws: list[bytes], names: list[str], image_size: int, channels: int) -> torch.Tensor:
    from torchvision.io import decode_jpeg

    mode = _read_modes()[channels]
    out = torch.empty((len(raws), channels, image_size, image_size), dtype=torch.uint8)
    jpegs = [i for i, raw in enumerate(raws) if raw[:3] == b"\xff\xd8\xff"]
    jpeg_set = set(jpegs)
    for start in range(0, len(jpegs), DECODE_CHUNK):
        chunk = jpegs[start:start + DECODE_CHUNK]
        data = [_as_tensor(raws[i]) for i in chunk]  # per chunk: the encoded bytes are not held twice
        try:
            images = decode_jpeg(data, mode=mode)
        except Exception:  # one bad file spoils the batch: decode one by one to name it
            images = [_decode_one(t, names[i], mode, channels) for i, t in zip(chunk, data)]
        for i, image in zip(chunk, images):
            out[i] = _fit(image, image_size, channels, names[i])
    for i, raw in enumerate(raws):
        if i not in jpeg_set:
            out[i] = _fit(_decode_one(_as_tensor(raw), names[i], mode, channels), image_size, channels, names[i])
    return out


def _read(blob, name: str) -> bytes:
    if isinstance(blob, bytes):
        return blob
    try:
        return Path(blob).read_bytes()
    except OSError as err:
        raise UsageError(f"Cannot read image {name} ({err.strerror}): fix its permissions or delete it.") from None


def _as_tensor(raw: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)


def _decode_one(data: torch.Tensor, name: str, mode, channels: int) -> torch.Tensor:
    from torchvision.io import decode_image

    try:
        return decode_image(data, mode=mode)
    except Exception as err:
        torch_err = err
    try:  # formats torchvision does not decode (BMP, TIFF, ...)
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            array = np.array(image.convert(PIL_MODES[channels]))
    except Exception as err:
        raise UsageError(f"{name} cannot be decoded ({why_undecodable(data.numel(), torch_err, err)}): "
                         "fix or delete the file.") from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)


_TORCH_PLACE = re.compile(r"^\w+, \S+:\d+, ")  # torchvision's "decode_jpeg, /__w/.../decode_jpeg.cpp:171, "
_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")  # what PIL calls the bytes it was handed


def why_undecodable(size: int, torch_err: BaseException, pil_err: BaseException) -> str:
    """Why neither decoder read a file, in words a user can act on. PIL's "cannot identify image file
    <_io.BytesIO object at 0x...>" names only the in-memory copy it was given, so then torchvision's
    reason is used where it knew the format ("Image is incomplete or truncated"), else a plain one."""
    from PIL import UnidentifiedImageError

    if size == 0:
        return "the file is empty"
    if not isinstance(pil_err, UnidentifiedImageError):
        return f"{type(pil_err).__name__}: {_OBJECT.sub('the file', first_line(pil_err))}"
    reason = _TORCH_PLACE.sub("", first_line(torch_err))
    if not reason or reason.startswith("Unsupported image file"):
        return "not an image in a format torchvision or PIL reads"
    return _OBJECT.sub("the file", reason)


def _fit(image: torch.Tensor, image_size: int, channels: int, name: str) -> torch.Tensor:
    if image.shape[0] != channels:
        raise UsageError(f"Image {name} decoded to {image.shape[0]} channels, expected {channels}.")
    if tuple(image.shape[-2:]) != (image_size, image_size):
        from torchvision.transforms.v2.functional import resize

        image = resize(image, [image_size, image_size], antialias=True)
    return image
