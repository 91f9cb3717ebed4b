"""The training loop, in plain sight: SGD + Nesterov, one-cycle learning rate, checkpoints.

Batches are drawn by indexing the in-memory uint8 tensors with a `randperm`; augmentation and
normalization are whole-batch tensor ops. The loss is accumulated on the device and read back
only every few steps, so a GPU never waits on the host inside an epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from poolbench.config import load_run_config
from poolbench.data import TensorData
from poolbench.data.transforms import Normalizer, alternating_flips, flip_where, random_flip, random_shift
from poolbench.errors import RunError, UsageError
from poolbench.evaluate import predict, uses_test_time_flip
from poolbench.lookahead import Lookahead
from poolbench.model import inference_copy
from poolbench.results import ADDED_SINCE, CHECKPOINT_FILE, flatten, load_checkpoint, save_checkpoint
from poolbench.runtime import StopRequest, autocast_for
from poolbench.whitening import fit_whitening

LOSS_READ_EVERY = 25  # steps between host reads of the running loss (progress display)


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
    # the last epoch's unshifted test predictions: evaluation reuses them (not checkpointed)
    test_predictions: torch.Tensor | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training between two steps; a checkpoint was saved."""

    def __init__(self, state: TrainState):
        super().__init__("training interrupted")
        self.state = state


def train(cfg, model: torch.nn.Module, data: TensorData, device: torch.device,
          checkpoint_path: Path, progress=None, resume: dict | None = None,
          stop: StopRequest | None = None, on_epoch: Callable[[dict], None] | None = None) -> TrainState:
    """Train `model` for cfg.train.epochs, saving a checkpoint after every epoch.

    One long function on purpose (nanoGPT / airbench style): the whole loop reads top to
    bottom, and the hot path stays free of calls that would hide per-step costs.

    `resume` is a checkpoint from `load_checkpoint`: training goes on from its exact step, with
    the same random streams, so the result is bit-identical to an uninterrupted run on CPU. A
    checkpoint whose training was finished is saved again at `checkpoint_path` as it is.
    `stop.requested` (set by a signal) ends training after the current step with a checkpoint
    and TrainingInterrupted. `on_epoch(record)` gets each finished epoch's history record, after
    its checkpoint (the log file and the trackers mirror the history from it).
    """
    tc = cfg.train
    state = TrainState()
    normalize = Normalizer(cfg.data.mean, cfg.data.std, device, tc.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                                nesterov=tc.momentum > 0, weight_decay=tc.weight_decay)
    generator = torch.Generator(device=device).manual_seed(int(cfg.seed))

    n = data.train_x.shape[0]
    batch_size = min(int(tc.batch_size), n)
    steps_per_epoch = n // batch_size
    total_steps = steps_per_epoch * int(tc.epochs)
    autocast = autocast_for(device, tc.amp)
    # Plain Python values for the hot loop: OmegaConf lookups cost microseconds each, every step.
    peak_lr, warmup_fraction, smoothing = float(tc.lr), float(tc.warmup_fraction), float(tc.label_smoothing)
    max_shift, flip = int(tc.augment.shift), tc.augment.flip  # flip: true | false | alternate
    flips = alternating_flips(n, cfg.seed, device) if flip == "alternate" else None
    first_step, perm, loss_sum = 0, None, None
    if resume is not None:
        state = TrainState(int(resume["epoch"]), float(resume["train_seconds"]), list(resume["history"]))
        first_step, perm, loss_sum = _restore(resume, model, optimizer, generator, device, steps_per_epoch)
    else:  # model.whiten: filters from the data before step 1, counted as training time (epoch 1's)
        started = time.perf_counter()
        fit_whitening(model, data.train_x, normalize)
        state.train_seconds += time.perf_counter() - started
    # train.lookahead: created after the whitening fit, so the slow copy holds the fitted filters
    lookahead = Lookahead(model, tc.lookahead, total_steps) if float(tc.lookahead) else None
    if lookahead is not None and resume is not None:
        if resume.get("lookahead") is None:
            raise UsageError("train.lookahead is on, but the checkpoint holds no slow weights (its run trained "
                             "without lookahead): resume with the run's own settings.")
        lookahead.load_state_dict(resume["lookahead"])
    stop = stop or StopRequest()
    # The settings go into every checkpoint: a resume checks against them even after the run's
    # folder was reused (a sweep job continued in place rewrites its .hydra/config.yaml first).
    settings = OmegaConf.to_container(cfg, resolve=True)

    def checkpoint(step: int, perm=None, loss_sum=None) -> None:
        save_checkpoint(checkpoint_path, {
            "config": settings,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "lookahead": lookahead.state_dict() if lookahead is not None else None,
            "epoch": state.epoch, "step": step, "perm": perm, "loss_sum": loss_sum,
            "steps_per_epoch": steps_per_epoch,
            "train_seconds": state.train_seconds, "history": state.history,
        })

    stop.armed = True
    try:
        for epoch in range(state.epoch, int(tc.epochs)):
            model.train()
            started = time.perf_counter()
            if first_step == 0:
                perm = torch.randperm(n, generator=generator, device=device)
                loss_sum = torch.zeros((), device=device)
            if progress is not None:
                progress.start_epoch(epoch + 1, int(tc.epochs), steps_per_epoch)
            for step in range(first_step, steps_per_epoch):
                steps_before = epoch * steps_per_epoch + step  # in the whole run
                lr = one_cycle_lr(steps_before, total_steps, peak_lr, warmup_fraction)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                idx = perm[step * batch_size:(step + 1) * batch_size]
                images = data.train_x[idx]
                if max_shift:
                    images = random_shift(images, max_shift, generator)
                if flips is not None:
                    images = flip_where(images, flips[idx] ^ bool(epoch % 2))
                elif flip:
                    images = random_flip(images, generator)
                with autocast:
                    loss = F.cross_entropy(model(normalize(images)), data.train_y[idx],
                                           label_smoothing=smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if lookahead is not None:
                    lookahead.after_step(steps_before + 1)
                loss_sum += loss.detach()
                if (step + 1) % LOSS_READ_EVERY == 0 or step + 1 == steps_per_epoch:
                    running = (loss_sum / (step + 1)).item()  # one host read per LOSS_READ_EVERY steps
                    if not math.isfinite(running):
                        raise RunError(f"Training diverged in epoch {epoch + 1} by step {step + 1} "
                                       f"(loss is {running}): lower train.lr (now {tc.lr}).")
                    if progress is not None:
                        progress.update(step + 1, running, (step + 1 - first_step) * batch_size
                                        / (time.perf_counter() - started))
                if stop.requested and step + 1 < steps_per_epoch:
                    state.train_seconds += time.perf_counter() - started
                    checkpoint(step + 1, perm, loss_sum)
                    raise TrainingInterrupted(state)
            first_step = 0
            epoch_loss = (loss_sum / steps_per_epoch).item()
            state.train_seconds += time.perf_counter() - started
            # one draw (fractional, stochastic: their deterministic pass); test-time flip as eval.tta_flip says
            state.test_predictions = predict(inference_copy(model), data.test_x, normalize, cfg.eval.batch_size,
                                             autocast_for(device, tc.amp), flip=uses_test_time_flip(cfg.eval))
            test_accuracy = (state.test_predictions == data.test_y).sum().item() / max(1, data.test_y.numel())
            state.epoch = epoch + 1
            before = state.history[-1]["seconds"] if state.history else 0.0  # a resumed epoch counts both parts
            # lr: the epoch's last step's; seconds: cumulative training time (evaluation excluded)
            record = {"epoch": epoch + 1, "train_loss": round(epoch_loss, 6), "test_accuracy": test_accuracy,
                      "lr": round(lr, 10), "seconds": round(state.train_seconds, 3),
                      "epoch_seconds": round(state.train_seconds - before, 3)}
            state.history.append(record)
            if progress is not None:
                progress.end_epoch(epoch_loss, test_accuracy)
            checkpoint(0)
            if on_epoch is not None:
                on_epoch(dict(record))
            if stop.requested and state.epoch < int(tc.epochs):
                raise TrainingInterrupted(state)
        if resume is not None and state.epoch == int(resume["epoch"]) and not int(resume.get("step", 0)):
            # the resumed run had finished training (stopped in evaluation, or complete): nothing was
            # left to train, but this run still ends with its own checkpoint in its own folder
            checkpoint(0)
    finally:
        stop.armed = False
    return state


def _restore(ckpt: dict, model, optimizer, generator, device, steps_per_epoch: int):
    """Put model, optimizer and every random stream back; returns (step, perm, loss_sum)."""
    saved_steps = ckpt.get("steps_per_epoch", steps_per_epoch)
    if int(ckpt.get("step", 0)) and saved_steps != steps_per_epoch:
        raise UsageError("The checkpoint stopped mid-epoch with a different batch size or dataset size: "
                         "resume with the run's own settings.")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["generator"])
    if "torch_rng" in ckpt:
        torch.set_rng_state(ckpt["torch_rng"])
    if device.type == "cuda" and ckpt.get("cuda_rng"):
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    step = int(ckpt.get("step", 0))
    if step == 0:
        return 0, None, None
    return step, ckpt["perm"].to(device), ckpt["loss_sum"].to(device)


# Keys that may change when a run is resumed: where data lives, machine settings, evaluation, trackers.
RESUME_MAY_DIFFER = ("train.resume", "threads", "device", "eval.", "data_home", "data.root", "data.source",
                     "data.download", "data.cache", "data.max_pixels", "logger.", "optimized_metric")
MEASURED_FROM_DATA = ("data.num_classes", "data.mean", "data.std")  # null in a config: filled in from the data


def settings_differ(now, then) -> list[str]:
    """The keys (with both values) where config `now` trains something else than `then` did: the
    settings a resume or an evaluation may not change. Both are configs or plain containers."""
    def flat(cfg):
        return flatten(OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg)

    now, then = flat(now), flat(then)
    then = {**{k: v for k, v in ADDED_SINCE.items() if k in now}, **then}
    keys = sorted(key for key in set(now) | set(then) if now.get(key) != then.get(key)
                  and not key.startswith(RESUME_MAY_DIFFER)
                  and not (now.get(key) is None and key.startswith(MEASURED_FROM_DATA)))
    return [f"{k}={now.get(k)} (run has {then.get(k)})" for k in keys]


def load_resume(cfg) -> dict:
    """The checkpoint of the run named by train.resume, after checking it trained the same thing."""
    run_dir = Path(str(cfg.train.resume)).expanduser()
    saved = load_run_config(run_dir)  # also says clearly when run_dir is not a run
    path = run_dir / CHECKPOINT_FILE
    ckpt = load_checkpoint(path) if path.is_file() else None
    differ = settings_differ(cfg, ckpt["config"] if ckpt and "config" in ckpt else saved)
    if differ:
        shown = ", ".join(differ[:4])
        raise UsageError(f"train.resume={run_dir} continues that run, but these settings differ: {shown}; "
                         "pass the run's own overrides (see its .hydra/overrides.yaml), and the values "
                         "listed here where a recipe's defaults changed since.")
    return ckpt if ckpt is not None else load_checkpoint(path)  # the latter says the checkpoint is missing

