"""Where a result came from: the software, the commit and the machine, in every metrics.json
(`environment`) and `poolbench bench -o` JSON.

Cheap by design: the git lookup (one `git status` of the checkout holding this package, 2 s
timeout, about 10 ms), the package versions and the CPU model are read once per process. Anything that cannot
be found is null, never an error or a line on stderr.
"""

from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from poolbench import allocator

PACKAGE_DIR = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 2.0


def environment(device: torch.device, threads: int) -> dict:
    """poolbench, git, python, torch, torchvision, platform, cpu, gpu, threads, malloc, started.

    malloc: `tuned` where poolbench set glibc to keep freed memory (allocator.py), `user` where the
    user's own allocator settings were kept, `system` where the defaults stay."""
    device = torch.device(device)
    return {
        "poolbench": _version("poolbench"),
        "git": git_state(PACKAGE_DIR.parent),  # {"commit": 40 hex, "dirty": bool}, or null: not a checkout
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "gpu": _gpu_name(device),
        "threads": int(threads),
        "malloc": allocator.state(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


@functools.lru_cache(maxsize=None)
def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _gpu_name(device: torch.device) -> str | None:
    if device.type != "cuda":
        return None
    try:
        return torch.cuda.get_device_name(device)
    except (RuntimeError, AssertionError):
        return None


@functools.lru_cache(maxsize=None)
def git_state(repo: Path) -> dict | None:
    """{"commit", "dirty"} of the git checkout whose top folder is `repo`, or None.

    Only `repo` itself counts: a package installed in a virtual environment inside some other
    project's checkout must not report that project's commit. Dirty = tracked files changed
    (untracked ones, such as outputs/, are not counted).
    """
    if not (Path(repo) / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(repo), "status", "--porcelain=v2", "--branch",
             "--untracked-files=no"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None
    if done.returncode != 0:  # not a repository after all, or one git refuses (another owner)
        return None
    lines = done.stdout.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), None)
    if commit is None or len(commit) != 40:  # "(initial)": no commit yet
        return None
    return {"commit": commit, "dirty": any(not line.startswith("#") for line in lines)}


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """"AMD EPYC 7763 64-Core Processor": /proc/cpuinfo's model name on Linux, else what
    platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
