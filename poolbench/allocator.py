"""Keeping freed memory in the process: glibc's malloc set up once for training on a CPU.

A training step allocates and frees the same activation tensors, a few MB each, every step. With
glibc's default settings the freed blocks go back to the kernel (munmap, heap trimming), and the
next step faults the same pages in again: 2,500-5,000 page faults a step in the default MNIST
network, a third of its step time (BENCHMARKS.md, "Page faults"). Raising malloc's mmap and trim
thresholds keeps them for reuse. Results do not change, only where memory comes from; the price
is that the process holds on to its peak memory until it exits.

Left alone where the user has chosen: MALLOC_* or GLIBC_TUNABLES in the environment, or another
allocator preloaded (jemalloc, tcmalloc, mimalloc). Elsewhere than glibc there is nothing to do.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

MMAP_THRESHOLD = 256 << 20   # blocks below this come from the heap, which keeps them
TRIM_THRESHOLD = 1 << 30     # free memory at the heap's top kept before any goes back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>

TUNED, USER, SYSTEM = "tuned", "user", "system"
USER_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> str:
    """Set glibc's thresholds once per process; returns the allocator's state (see `choose`)."""
    return choose(os.environ, platform.libc_ver()[0], _load_libc)


def state() -> str:
    """What `keep_freed_memory` did in this process, without doing it: recorded in metrics.json."""
    return keep_freed_memory() if keep_freed_memory.cache_info().currsize else SYSTEM


def choose(environ, libc_name: str, load_libc) -> str:
    """`tuned` (thresholds raised), `user` (the user's own allocator settings, kept) or `system`
    (not glibc, or mallopt refused: the defaults stay)."""
    preloaded = environ.get("LD_PRELOAD", "")
    if any(name in environ for name in USER_VARIABLES) or any(name in preloaded for name in OTHER_ALLOCATORS):
        return USER
    if libc_name != "glibc":
        return SYSTEM
    libc = load_libc()
    if libc is None:
        return SYSTEM
    set_trim = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    set_mmap = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return TUNED if set_trim == 1 and set_mmap == 1 else SYSTEM


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None
