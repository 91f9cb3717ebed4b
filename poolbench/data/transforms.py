"""Batched image transforms on uint8 tensors: per-image shifts and flips, normalization.

One gather moves every image of a batch by its own (dy, dx); training augmentation and the
invariance metrics share it, so "a shift" means the same thing in both.
"""

from __future__ import annotations

import torch


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, mode: str = "circular") -> torch.Tensor:
    """Move image i down by dy[i] and right by dx[i] pixels.

    circular: pixels leaving one edge come back at the other (torch.roll per image);
    translate: vacated pixels become background (0).
    """
    if mode not in ("circular", "translate"):
        raise ValueError(f"shift mode must be circular or translate, got {mode!r}")
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h) - dy.view(n, 1).to(x.device)
    cols = torch.arange(w, device=x.device).view(1, w) - dx.view(n, 1).to(x.device)
    if mode == "circular":
        rows, cols = rows.remainder(h), cols.remainder(w)
        valid = None
    else:
        valid = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # (n, h, w, c) gather, then back to (n, c, h, w)
    out = x.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    if valid is not None:
        out = out * valid.to(out.dtype)
    return out


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training augmentation: translate each image by up to `max_shift` pixels, zero fill."""
    if max_shift <= 0:
        return x
    n = x.shape[0]
    offsets = torch.randint(-max_shift, max_shift + 1, (2, n), generator=generator, device=x.device)
    return shift_images(x, offsets[0], offsets[1], mode="translate")


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training augmentation: mirror a random half of the images left-right."""
    return flip_where(x, torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5)


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror image i left-right where mask[i] is true."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def alternating_flips(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """train.augment.flip=alternate: which of n images epoch 1 mirrors, half of them at random;
    each later epoch mirrors the others (epochs 2, 4, ... take the complement), so every two
    epochs show each image both ways (Keller Jordan's airbench). A stream of its own, from the run's
    seed: a resumed run draws the same."""
    generator = torch.Generator().manual_seed(int(seed) + ALTERNATING_FLIP_STREAM)
    return (torch.rand(n, generator=generator) < 0.5).to(device)


ALTERNATING_FLIP_STREAM = 0x5EED  # offset from the run's seed: not the stream shifts and batches draw from


class Normalizer:
    """uint8 (N, C, H, W) -> float32 standardized, optionally channels_last."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = True):
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)
