"""Process-wide CPU allocator setting used by the framework's entry points (CLI, benchmarks).

PyTorch's CPU tensors come from glibc malloc, which maps every block above a small threshold
freshly from the kernel and returns it on free, so a training step that allocates the same
megabyte-sized tensors each time pays page faults for all of them (here about a third of the
stream's time). Keeping freed blocks in the heap removes that cost; it is what jemalloc or
tcmalloc preloading achieves, without a preload.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks below 32 MiB from the heap and not to trim it; False if unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
