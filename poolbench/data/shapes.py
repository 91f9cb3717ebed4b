"""`data=shapes`: 10 classes of simple figures at random positions, generated in memory.

Needs no file and no network, so tests and CI smoke runs stay offline. Each class is a mask
over a coordinate grid, drawn for all images of that class at once (no per-sample Python);
size, position and brightness vary, and a little noise is added.
"""

from __future__ import annotations

import torch

from poolbench.data.base import Check, Source, TensorData

SHAPE_CLASSES = ("disk", "ring", "square", "frame", "diamond",
                 "plus", "cross", "hbar", "vbar", "triangle")


def _masks(dy: torch.Tensor, dx: torch.Tensor, r: torch.Tensor) -> list[torch.Tensor]:
    """Boolean masks (n, H, W) for every class, given offsets from the centre and radii."""
    dist = torch.sqrt(dy**2 + dx**2)
    cheb = torch.maximum(dy.abs(), dx.abs())
    thick = 1.0
    return [
        dist <= r,                                                    # disk
        (dist <= r) & (dist >= r - 1.6),                              # ring
        cheb <= r,                                                    # square
        (cheb <= r) & (cheb >= r - 1.6),                              # frame
        dy.abs() + dx.abs() <= r,                                     # diamond
        ((dx.abs() <= thick) | (dy.abs() <= thick)) & (cheb <= r),    # plus
        (((dx - dy).abs() <= thick) | ((dx + dy).abs() <= thick)) & (cheb <= r),  # cross
        (dy.abs() <= thick) & (dx.abs() <= r),                        # hbar
        (dx.abs() <= thick) & (dy.abs() <= r),                        # vbar
        (dy <= r) & (dy >= -r) & (dx.abs() <= (dy + r) / 2),          # triangle
    ]


def generate_shapes(n: int, size: int = 28, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8 (n, 1, size, size), labels int64 (n,)), reproducible from `seed`."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(SHAPE_CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    radius = size * (0.15 + 0.13 * torch.rand(n, generator=g))
    margin = radius + 1
    cy = margin + (size - 1 - 2 * margin) * torch.rand(n, generator=g)
    cx = margin + (size - 1 - 2 * margin) * torch.rand(n, generator=g)
    brightness = 140 + 115 * torch.rand(n, generator=g)
    grid = torch.arange(size, dtype=torch.float32)
    dy = grid.view(1, size, 1) - cy.view(n, 1, 1)
    dx = grid.view(1, 1, size) - cx.view(n, 1, 1)
    r = radius.view(n, 1, 1)

    images = torch.zeros(n, size, size)
    for cls in range(len(SHAPE_CLASSES)):
        rows = labels == cls
        if rows.any():
            mask = _masks(dy[rows], dx[rows], r[rows])[cls]
            images[rows] = mask.float() * brightness[rows].view(-1, 1, 1)
    images += 12 * torch.randn(images.shape, generator=g)
    return images.clamp(0, 255).round().to(torch.uint8).unsqueeze(1), labels.long()


def load(data_cfg) -> TensorData:
    seed = int(data_cfg.generator_seed)
    train_x, train_y = generate_shapes(int(data_cfg.train_size), int(data_cfg.image_size), seed=seed)
    test_x, test_y = generate_shapes(int(data_cfg.test_size), int(data_cfg.image_size), seed=seed + 1)
    return TensorData("shapes", train_x, train_y, test_x, test_y, list(SHAPE_CLASSES), "generated")


SOURCE = Source(
    name="shapes",
    description="generated in memory; no files, no network",
    load=load,
    locations=lambda cfg: [],
    checks=lambda cfg: iter([Check("(generated)", "-", True, "ok: made from data.generator_seed")]),
    downloads=False,
    classes=10,
)
