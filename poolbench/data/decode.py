"""Decoding image files to uint8 tensors: JPEGs in batches through torchvision's libjpeg
decoder (benchmarks/decode_images.py measured it 3.2x faster than PIL, same pixels), other
formats through `decode_image`, then PIL; each image resized to the requested size if needed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from poolbench.errors import UsageError

DECODE_CHUNK = 2048  # JPEGs per batched decode call
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # channels -> PIL mode; torchvision's come from _read_modes()


def _read_modes():
    from torchvision.io import ImageReadMode

    return {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB, 4: ImageReadMode.RGB_ALPHA}


def decode_images(blobs: list, names: list[str], image_size: int, channels: int) -> torch.Tensor:
    """Decode images (bytes, or paths read here) to (N, C, S, S) uint8, resizing where needed."""
    with warnings.catch_warnings():  # torchvision 0.29 marks its decoders deprecated (torchcodec); they work
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_images(blobs, names, image_size, channels)


def _decode_images(blobs: list, names: list[str], image_size: int, channels: int) -> torch.Tensor:
    from torchvision.io import decode_jpeg

    mode = _read_modes()[channels]
    out = torch.empty((len(blobs), channels, image_size, image_size), dtype=torch.uint8)
    data = [_as_tensor(blob, name) for blob, name in zip(blobs, names)]
    jpegs = [i for i, t in enumerate(data) if t[:3].tolist() == [0xFF, 0xD8, 0xFF]]
    jpeg_set = set(jpegs)
    for start in range(0, len(jpegs), DECODE_CHUNK):
        chunk = jpegs[start:start + DECODE_CHUNK]
        try:
            images = decode_jpeg([data[i] for i in chunk], mode=mode)
        except Exception:  # one bad file spoils the batch: decode one by one to name it
            images = [_decode_one(data[i], names[i], mode, channels) for i in chunk]
        for i, image in zip(chunk, images):
            out[i] = _fit(image, image_size, channels, names[i])
    for i in range(len(data)):
        if i not in jpeg_set:
            out[i] = _fit(_decode_one(data[i], names[i], mode, channels), image_size, channels, names[i])
    return out


def _as_tensor(blob, name: str) -> torch.Tensor:
    if not isinstance(blob, bytes):
        try:
            blob = Path(blob).read_bytes()
        except OSError as err:
            raise UsageError(f"Cannot read image {name} ({err.strerror}): fix its permissions or delete it.") from None
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.empty(0, dtype=torch.uint8)


def _decode_one(data: torch.Tensor, name: str, mode, channels: int) -> torch.Tensor:
    from torchvision.io import decode_image

    try:
        return decode_image(data, mode=mode)
    except Exception:
        pass
    try:  # formats torchvision does not decode (BMP, TIFF, ...)
        import io

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            array = np.array(image.convert(PIL_MODES[channels]))
    except Exception as err:
        raise UsageError(f"Cannot read image {name} ({type(err).__name__}: {err}): fix or delete the file.") from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def _fit(image: torch.Tensor, image_size: int, channels: int, name: str) -> torch.Tensor:
    if image.shape[0] != channels:
        raise UsageError(f"Image {name} decoded to {image.shape[0]} channels, expected {channels}.")
    if tuple(image.shape[-2:]) != (image_size, image_size):
        from torchvision.transforms.v2.functional import resize

        image = resize(image, [image_size, image_size], antialias=True)
    return image
