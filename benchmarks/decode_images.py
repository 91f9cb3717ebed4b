"""How fast an image-folder archive becomes tensors: the choices behind poolbench/data/decode.py.

    python benchmarks/decode_images.py /path/to/cifar10-jpg.tar.xz [--sample 10000] [--threads 1]

Measures, one after the other in this process (so they share the machine's conditions):
1. reading every member of the archive (one sequential pass, no unpacking to disk);
2. decoding `--sample` JPEGs with torchvision's batched `decode_jpeg`, with `decode_image` one
   by one, and with PIL one by one (the pixels are checked to agree);
3. poolbench's whole first load (read + decode + cache write) and a second load from the cache.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import warnings

import numpy as np
import torch


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--sample", type=int, default=10000, help="JPEGs per decoder comparison")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", DeprecationWarning)

    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    from poolbench.data.archives import iter_files
    from poolbench.data.imagefolder import load_image_folder

    blobs, read_s = timed(lambda: [b for name, b in iter_files(args.archive) if b and name.suffix == ".jpg"])
    sample = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs[: args.sample]]
    batched, batched_s = timed(lambda: decode_jpeg(sample, mode=ImageReadMode.RGB))
    _, single_s = timed(lambda: [decode_image(t, mode=ImageReadMode.RGB) for t in sample])
    pil, pil_s = timed(lambda: [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
                                for b in blobs[: args.sample]])
    same = all(np.array_equal(a.permute(1, 2, 0).numpy(), b) for a, b in zip(batched, pil))
    with tempfile.TemporaryDirectory() as cache:
        first, first_s = timed(lambda: load_image_folder(args.archive, cache, 32, 3))
        _, again_s = timed(lambda: load_image_folder(args.archive, cache, 32, 3))

    n = len(sample)
    print(f"archive: {len(blobs)} JPEGs read in {read_s:.2f} s; threads={args.threads}")
    print(f"decode {n}: batched decode_jpeg {batched_s:.2f} s, decode_image {single_s:.2f} s, "
          f"PIL {pil_s:.2f} s (PIL / batched = {pil_s / batched_s:.1f}x; same pixels: {same})")
    print(f"poolbench first load {first_s:.2f} s ({first.train_x.shape[0]} + {first.test_x.shape[0]} images), "
          f"from cache {again_s:.2f} s")


if __name__ == "__main__":
    main()
