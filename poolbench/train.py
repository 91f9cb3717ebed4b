"""The training loop, in plain sight: SGD + Nesterov, one-cycle learning rate, checkpoints.

Batches are drawn by indexing the in-memory uint8 tensors with a `randperm`; augmentation and
normalization are whole-batch tensor ops. The loss is accumulated on the device and read back
only every few steps, so a GPU never waits on the host inside an epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from poolbench.data import TensorData
from poolbench.errors import RunError, UsageError
from poolbench.evaluate import predict
from poolbench.results import load_checkpoint, save_checkpoint
from poolbench.shifts import Normalizer, random_flip, random_shift

LOSS_READ_EVERY = 25  # steps between host reads of the running loss (progress display)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda was asked for but no CUDA device is available: use device=auto or device=cpu.")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got '{name}'.")
    return torch.device(name)


def autocast_for(device: torch.device, amp) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for; `auto` turns it on for CUDA only (on CPU it measured slower)."""
    enabled = (device.type == "cuda") if amp == "auto" else bool(amp)
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def one_cycle_lr(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up to `peak`, then linear decay to zero."""
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class TrainState:
    epoch: int = 0                      # epochs completed
    train_seconds: float = 0.0          # cumulative, evaluation excluded
    history: list = field(default_factory=list)


def train(cfg, model: torch.nn.Module, data: TensorData, device: torch.device,
          checkpoint_path: Path, progress=None, state: TrainState | None = None) -> TrainState:
    """Train `model` for cfg.train.epochs, saving a checkpoint after every epoch."""
    tc = cfg.train
    state = state or TrainState()
    normalize = Normalizer(cfg.data.mean, cfg.data.std, device, tc.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                                nesterov=tc.momentum > 0, weight_decay=tc.weight_decay)
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))
    if state.epoch > 0:
        _restore(checkpoint_path, model, optimizer, generator)

    n = data.train_x.shape[0]
    batch_size = min(int(tc.batch_size), n)
    steps_per_epoch = n // batch_size
    total_steps = steps_per_epoch * int(tc.epochs)
    autocast = autocast_for(device, tc.amp)

    for epoch in range(state.epoch, int(tc.epochs)):
        model.train()
        started = time.perf_counter()
        perm = torch.randperm(n, generator=generator, device=device)
        loss_sum = torch.zeros((), device=device)
        if progress is not None:
            progress.start_epoch(epoch + 1, int(tc.epochs), steps_per_epoch)
        for step in range(steps_per_epoch):
            lr = one_cycle_lr(epoch * steps_per_epoch + step, total_steps, tc.lr, tc.warmup_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = perm[step * batch_size:(step + 1) * batch_size]
            images = data.train_x[idx]
            if tc.augment.shift:
                images = random_shift(images, int(tc.augment.shift), generator)
            if tc.augment.flip:
                images = random_flip(images, generator)
            with autocast:
                loss = F.cross_entropy(model(normalize(images)), data.train_y[idx],
                                       label_smoothing=tc.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            if progress is not None and ((step + 1) % LOSS_READ_EVERY == 0 or step + 1 == steps_per_epoch):
                elapsed = time.perf_counter() - started
                progress.update(step + 1, (loss_sum / (step + 1)).item(), (step + 1) * batch_size / elapsed)
        epoch_loss = (loss_sum / steps_per_epoch).item()
        state.train_seconds += time.perf_counter() - started
        if not math.isfinite(epoch_loss):
            raise RunError(f"Training diverged in epoch {epoch + 1} (loss is {epoch_loss}): lower train.lr.")
        test_accuracy = accuracy(model, data.test_x, data.test_y, normalize, cfg.eval.batch_size, device, tc.amp)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, "train_loss": round(epoch_loss, 6),
                              "test_accuracy": test_accuracy, "seconds": round(state.train_seconds, 3)})
        if progress is not None:
            progress.end_epoch(epoch_loss, test_accuracy)
        save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "epoch": state.epoch,
            "train_seconds": state.train_seconds, "history": state.history,
        })
    return state


def _restore(path: Path, model, optimizer, generator) -> None:
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["generator"])


def accuracy(model, images, labels, normalize, batch_size, device, amp) -> float:
    preds = predict(model, images, normalize, batch_size, autocast_for(device, amp))
    return (preds == labels).sum().item() / max(1, labels.numel())
