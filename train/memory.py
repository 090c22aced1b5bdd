"""Keep the memory of freed training tensors for reuse: glibc ``mallopt`` (called by `run_training` and the
training benchmark, once per process).

Why: a QAT batch allocates and frees tensors of tens of megabytes (the dot products of every row tile at every
timestep, their ADC-table indices, their gradients). glibc's malloc serves blocks that large with a fresh
``mmap`` and returns them with ``munmap``, so every batch page-faults and zero-fills all of that memory
again: measured, a QAT epoch at hidden 128 on charlm took 1.37x as long that way as with the memory kept
(1.87x with every row tile converted in the loop; `docs/performance.md`, "Training speed"). Raising
``M_MMAP_THRESHOLD`` to `MMAP_THRESHOLD` makes blocks up to that size come from the heap, and raising
``M_TRIM_THRESHOLD`` to `TRIM_THRESHOLD` keeps up to that much freed heap memory instead of returning it to the
system, so later batches reuse pages already mapped.

Both are bounded on purpose: larger blocks (an evaluation over a whole split, a big model) still get their
own mapping and go back to the system when freed. With unbounded settings (1 GiB blocks on the heap) a
hidden-256 run grew to 16 GB resident by heap fragmentation and was killed; the cost now is at most
`TRIM_THRESHOLD` of memory kept.

``mallopt`` is a public, documented glibc function (mallopt(3)); on other C libraries (musl, macOS) it is
absent and nothing changes (training is then only slower). ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` in the environment are the user's choice and are left alone.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

# mallopt(3) parameter numbers (glibc <malloc.h>; stable since glibc 2.0).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap (64 MiB: every per-batch tensor of charlm QAT at hidden 128).
MMAP_THRESHOLD = 64 << 20
#: Free memory at the top of the heap kept up to this size.
TRIM_THRESHOLD = 512 << 20

_applied: str | None = None


def keep_freed_memory() -> str:
    """Apply the two settings once per process; returns what was done, as one phrase for logs.

    Returns ``"applied"``, ``"left to the environment (MALLOC_..._ set)"`` or ``"not available (...)"``.
    """
    global _applied
    if _applied is not None:
        return _applied
    if any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        _applied = "left to the environment (MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ set)"
        return _applied
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        _applied = "not available (no glibc mallopt)"
        return _applied
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _applied = "applied" if ok else "not available (mallopt refused the values)"
    return _applied
