"""Where and how a run executes: device, CPU threads, bf16 autocast, signals, the placed model.

Everything that depends on the machine rather than on the experiment lives here, so train.py,
experiment.py, bench.py and `poolbench eval` make the same choices the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import torch
from torch import nn

from poolbench.allocator import keep_freed_memory
from poolbench.errors import UsageError
from poolbench.model import build_model


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda was asked for but no CUDA device is available: use device=auto or device=cpu.")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got '{name}'.")
    return torch.device(name)


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 matmuls run in hardware here: any CUDA device, or a CPU with AVX512-BF16 or AMX.
    Elsewhere oneDNN emulates bf16, and a bf16 training step is up to 10x slower than fp32."""
    if device.type == "cuda":
        return True
    # not torch.ops.mkldnn._is_mkldnn_bf16_supported(): that also says yes for plain AVX-512, which
    # only emulates bf16 arithmetic
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these checks
        return False


def amp_enabled(device: torch.device, amp) -> bool:
    """`auto`: bf16 autocast where bf16 is native (CUDA, CPUs with AVX512-BF16/AMX); true/false force it."""
    return bf16_is_native(device) if amp == "auto" else bool(amp)


def compute_dtype(device: torch.device, amp) -> torch.dtype:
    """The precision the model's matmuls run in (bf16 under autocast): what its MFU is measured against."""
    return torch.bfloat16 if amp_enabled(device, amp) else torch.float32


def autocast_for(device: torch.device, amp) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (see amp_enabled)."""
    if not amp_enabled(device, amp):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def model_on(cfg, device: torch.device) -> nn.Module:
    """The network `cfg` describes, on `device`, in the memory layout training uses."""
    model = build_model(cfg).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------- CPU threads and memory

def prepare_process(threads) -> None:
    """Before a run, an evaluation or a benchmark: the CPU threads, and malloc keeping the memory
    each step frees for the next (allocator.py; once per process)."""
    set_threads(threads)
    keep_freed_memory()


def set_threads(threads) -> None:
    """`threads=auto` shares the cores with parallel sibling jobs instead of fighting over them."""
    count = auto_threads() if threads in (None, "auto") else int(threads)
    torch.set_num_threads(max(1, count))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_threads() -> int:
    """Threads for `threads=auto`: this process's cores, shared fairly with parallel sibling jobs.

    joblib runs n_jobs jobs at once on this machine (n_jobs=-1: one per core, joblib's
    convention for negatives), so each gets cores // n_jobs. submitit jobs get the
    cpus_per_task they asked for; SLURM also pins them, which the affinity mask shows.
    """
    from hydra.core.hydra_config import HydraConfig

    cores = _cores()
    if not HydraConfig.initialized():
        return cores
    launcher = HydraConfig.get().get("launcher") or {}
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = int(launcher.get("n_jobs") or 1)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // min(parallel, cores))
    if "submitit" in target.lower() and launcher.get("cpus_per_task"):
        return max(1, min(cores, int(launcher.cpus_per_task)))
    return cores


# ---------------------------------------------------------------- signals

class StopRequest:
    """Set by a signal handler; the training loop checks it after each step, so it stops cleanly."""

    def __init__(self):
        self.requested = False
        self.armed = False  # True while training can stop at the next step boundary


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM: during training, finish the step, checkpoint and stop; a second
    signal, or one outside training, interrupts at once (KeyboardInterrupt)."""
    stop = StopRequest()

    def handler(signum, frame):
        if stop.armed and not stop.requested:
            stop.requested = True
            return
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield stop
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
