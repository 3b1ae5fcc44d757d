"""Keep PyTorch's large CPU buffers in the process's heap between refinement steps.

A refinement step allocates and frees the same tensors of tens of megabytes every time (a 768x512
image's last synthesis layer holds 128 x 256 x 384 values). glibc's malloc serves blocks above its
mmap threshold (at most 32 MiB, adjusted as blocks are freed) with fresh `mmap` calls and gives them
back on `free`, so every step pays the kernel's page faults and zeroing for them again, and trims the
heap's top as well. `tune_allocator()` raises both thresholds, so freed memory is reused: on the
2-core AMD EPYC the default encode of a 768x512 Kodak image took 0.75x the time (median of four
images, BENCHMARKS.md "Gain per second"). Arithmetic is untouched, so files and losses are the same bytes.
The cost is that the process keeps its peak memory until it exits, which suits a command-line run.

The command line calls it (and so do its worker processes); a Python user opts in by calling
`latentfit.tune_allocator()`. `LATENTFIT_TUNE_MALLOC=0` turns it off (the malloc of earlier versions),
a user's own `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` environment settings win, and on
anything but glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap, and this much free memory stays at its top.
THRESHOLD = 1 << 30

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only (musl has mallopt but ignores these parameters)
        return libc
    except (OSError, AttributeError):
        return None


def tune_allocator() -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process (once); True if they are set.
    Does nothing, and returns False, on other C libraries, with `LATENTFIT_TUNE_MALLOC=0`, or when the
    user set either threshold in the environment."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("LATENTFIT_TUNE_MALLOC") == "0" or any(
            name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    libc = _glibc()
    if libc is None:
        return False
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    return _applied
