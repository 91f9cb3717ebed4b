"""Accuracy and translation invariance (DESIGN.md section 4).

All shifts come from a generator seeded with `eval.seed`, so every operator is measured on
the same shifted images. Predictions run in large batches under `torch.inference_mode`.
"""

from __future__ import annotations

import contextlib

import torch

from poolbench.shifts import shift_images

AXIS_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # down, up, right, left


@torch.inference_mode()
def predict(model, images: torch.Tensor, normalize, batch_size: int,
            autocast: contextlib.AbstractContextManager | None = None,
            offsets: tuple[torch.Tensor, torch.Tensor] | None = None, mode: str = "circular") -> torch.Tensor:
    """Top-1 class of every image (uint8 (N, C, H, W)) in eval mode, no test-time augmentation.

    With `offsets` = (dy, dx), image i is first shifted by (dy[i], dx[i]) (see shift_images).
    """
    was_training = model.training
    model.eval()
    preds = []
    with autocast or contextlib.nullcontext():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size]
            if offsets is not None:
                dy, dx = (o[start:start + batch_size] for o in offsets)
                chunk = shift_images(chunk, dy, dx, mode)
            preds.append(model(normalize(chunk)).argmax(1))
    model.train(was_training)
    return torch.cat(preds)


def invariance(model, images: torch.Tensor, labels: torch.Tensor, normalize, eval_cfg,
               autocast: contextlib.AbstractContextManager | None = None) -> dict:
    """Test accuracy plus consistency, shift_accuracy[d] and flip_rate_1px."""
    max_shift, mode, batch = int(eval_cfg.max_shift), str(eval_cfg.shift_mode), int(eval_cfg.batch_size)
    n = images.shape[0]

    def predict_shifted(dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        return predict(model, images, normalize, batch, autocast, offsets=(dy, dx), mode=mode)

    base = predict(model, images, normalize, batch, autocast)
    shift_accuracy = {"0": _share(base == labels)}
    flip_rate = 0.0
    for d in range(1, max_shift + 1):
        accs = []
        for sy, sx in AXIS_DIRECTIONS:
            dy = torch.full((n,), sy * d, dtype=torch.long)
            dx = torch.full((n,), sx * d, dtype=torch.long)
            shifted = predict_shifted(dy, dx)
            accs.append(_share(shifted == labels))
            if d == 1:
                flip_rate += _share(shifted != base) / len(AXIS_DIRECTIONS)
        shift_accuracy[str(d)] = sum(accs) / len(accs)

    generator = torch.Generator().manual_seed(int(eval_cfg.seed))
    agreements = []
    for _ in range(int(eval_cfg.shift_pairs)):
        offsets = torch.randint(-max_shift, max_shift + 1, (2, 2, n), generator=generator)
        first = predict_shifted(offsets[0, 0], offsets[0, 1])
        second = predict_shifted(offsets[1, 0], offsets[1, 1])
        agreements.append(_share(first == second))

    return {
        "accuracy": shift_accuracy["0"],
        "invariance": {
            "consistency": sum(agreements) / len(agreements) if agreements else float("nan"),
            "max_shift": max_shift,
            "shift_mode": mode,
            "shift_pairs": int(eval_cfg.shift_pairs),
            "shift_accuracy": shift_accuracy,
            "flip_rate_1px": flip_rate if max_shift >= 1 else float("nan"),
        },
    }


def _share(mask: torch.Tensor) -> float:
    return mask.sum().item() / max(1, mask.numel())
