"""Keep freed host memory for reuse instead of handing it back to the OS (glibc only).

Batched tensor code on the CPU allocates and frees the same few-megabyte buffers at every
call. glibc serves buffers of that size from fresh ``mmap`` pages, or trims them off the heap
when freed, and the kernel zero-fills each page again on first touch: on the development
machine (2 cores) that page faulting took 30-45% of a 32-px noise distortion's time and 10-30%
at 224 px. Raising ``M_MMAP_THRESHOLD`` to its maximum (32 MiB) and ``M_TRIM_THRESHOLD`` keeps
such buffers on the heap, which is what jemalloc and tcmalloc (the allocators PyTorch's CPU
performance guide recommends) do anyway. Larger buffers (a 256-image batch at 224 px is 154 MB)
would still come from ``mmap``, one page fault per 4 KiB: ``M_MMAP_MAX = 0`` serves them from the
heap too (a 224-px batch's copy: 48 -> 13 ms once warm). The price is a resident size near the
process's peak, steady from round to round (running every distortion on 256 images at 224 px:
2.4 GB with the larger CPU chunks this setting selects, see ``Distortion.cpu_chunk_values``;
0.9-1.7 GB without it).

One pattern it does not cure: a batch-sized buffer requested while the last one of that size is
still held, as ``y = distortion(x)`` in a loop holds the last ``y`` until the call returns. torch
asks for 64-byte alignment, for which glibc needs a little more than the freed chunk of the same
size, so unless free neighbours have merged with it the request takes fresh pages (a 154 MB
batch: 37,632 page faults, +35 ms on the development machine; pixelate's 20 ms became 55).
Where that matters, release the last batch before the next call (``del y``).

robench's cell workers call :func:`keep_freed_memory` once; set ``ROBENCH_KEEP_FREED_MEMORY=0``
to leave the allocator as it is (e.g. to measure the difference).
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
_TRIM_THRESHOLD = 1 << 30
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above, once per process. Returns whether it applies
    (False where the C library has no ``mallopt``, e.g. macOS or musl, or when disabled)."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` has been applied in this process."""
    return bool(_applied)


def _apply() -> bool:
    if os.environ.get("ROBENCH_KEEP_FREED_MEMORY", "1") == "0":
        logger.debug("host allocator left as it is (ROBENCH_KEEP_FREED_MEMORY=0)")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        logger.debug("no mallopt in this C library: host allocator left as it is")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = all(mallopt(parameter, value) for parameter, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_MMAP_MAX, 0)))
    logger.debug("glibc malloc keeps freed buffers of every size for reuse: %s", applied)
    return applied
