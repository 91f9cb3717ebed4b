"""Keeping freed memory in the process: glibc's malloc set up once for training on a CPU.

A training step allocates and frees the same activation tensors, a few MB each, every step. With
glibc's default settings some of the freed blocks go back to the kernel (munmap, heap trimming),
and the next step faults the same pages in again: 1,200-2,300 page faults a step of the default
MNIST network here (BENCHMARKS.md, "Page faults and the ReLU order"). Raising malloc's mmap and
trim thresholds keeps them for reuse: 1.1-1.2x on that step. Results do not change, only where
memory comes from; the price is that the process holds on to its peak memory until it exits.

Left alone where the user has chosen: a MALLOC_* variable, malloc settings in GLIBC_TUNABLES, or
another allocator preloaded (jemalloc, tcmalloc, mimalloc). Elsewhere than glibc there is nothing
to do.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# Blocks below the mmap threshold come from the heap, which keeps them; glibc before 2.35 refuses
# a threshold above 32 MiB (HEAP_MAX_SIZE / 2 on 64-bit), so that is the fallback.
MMAP_THRESHOLDS = (256 << 20, 32 << 20)
TRIM_THRESHOLD = 1 << 30     # free memory at the heap's top kept before any goes back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>

TUNED, USER, SYSTEM = "tuned", "user", "system"
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


@functools.cache
def keep_freed_memory() -> str:
    """Set glibc's thresholds once per process; returns the allocator's state (see `choose`)."""
    return choose(os.environ, platform.libc_ver()[0], _load_libc)


def state() -> str:
    """What `keep_freed_memory` did in this process, without doing it: recorded in metrics.json."""
    return keep_freed_memory() if keep_freed_memory.cache_info().currsize else SYSTEM


def users_choice(environ) -> bool:
    """Whether the environment already says how malloc should behave."""
    return (any(name.startswith("MALLOC_") for name in environ)
            or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
            or any(name in environ.get("LD_PRELOAD", "") for name in OTHER_ALLOCATORS))


def choose(environ, libc_name: str, load_libc) -> str:
    """`tuned` (both thresholds raised), `user` (the user's own allocator settings, kept) or
    `system` (not glibc, or mallopt refused the mmap threshold: glibc's defaults stay whole)."""
    if users_choice(environ):
        return USER
    if libc_name != "glibc":
        return SYSTEM
    libc = load_libc()
    if libc is None:
        return SYSTEM
    # The mmap threshold first: setting either one turns off glibc's own raising of the mmap
    # threshold, so the trim threshold is only set once a raised mmap threshold has been accepted.
    if not any(libc.mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in MMAP_THRESHOLDS):
        return SYSTEM
    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)  # glibc accepts any trim threshold
    return TUNED


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None
