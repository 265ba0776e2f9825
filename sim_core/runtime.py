"""Process-level tuning for CPU renders.

PyTorch's CPU tensors come from malloc. A render allocates and frees many same-sized temporaries per
chunk; with glibc's defaults each of those megabyte-sized blocks is mapped fresh from the kernel and
page-faulted in again, which costs more than the arithmetic on it. Raising glibc's mmap and trim
thresholds keeps freed blocks in the heap for reuse. It is applied once per process, only on glibc,
and can be switched off with ``BRAGG_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(limit_bytes: int = 1 << 30) -> bool:
    """Keep freed blocks up to ``limit_bytes`` in the heap; True when the setting took effect."""
    global _done
    if _done:
        return True
    if os.environ.get("BRAGG_MALLOC_TUNING", "1") in ("0", "false", "no"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(limit_bytes))) and bool(
        mallopt(_M_TRIM_THRESHOLD, int(2 * limit_bytes)))
    _done = ok
    return ok
