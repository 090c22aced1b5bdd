"""nvmlstm.train.memory: training keeps freed memory for reuse (glibc mallopt), and it has the intended effect.

The effect is checked in fresh processes through glibc's own accounting (mallinfo2): a large block freed
stays in the heap for the next batch, where by default it is a mapping of its own returned to the system;
the control process shows the default, so the test fails if the C library stops honouring the call.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")  # nvmlstm.train imports torch

from nvmlstm.train import memory  # noqa: E402

_PROBE = r"""
import ctypes, sys
import numpy as np
if sys.argv[1] == "keep":
    from nvmlstm.train.memory import keep_freed_memory
    print(keep_freed_memory(), file=sys.stderr)

class Mallinfo2(ctypes.Structure):  # glibc >= 2.33, mallinfo(3)
    _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

info = ctypes.CDLL(None).mallinfo2
info.restype = Mallinfo2
a = np.ones(int(sys.argv[2]) // 4, dtype=np.float32)  # touched
mapped_alone = info().hblkhd  # bytes in blocks of their own mmap
del a
print(mapped_alone, info().fordblks)  # ... and free bytes the heap keeps after the block is freed
"""


def _has_mallinfo2() -> bool:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    return hasattr(libc, "mallopt") and hasattr(libc, "mallinfo2")


def _probe(mode: str, size: int) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(size)], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    if mode == "keep":
        assert r.stderr.strip() == "applied", r.stderr
    mapped, kept = map(int, r.stdout.split())
    return mapped, kept


@pytest.mark.skipif(not _has_mallinfo2(), reason="not glibc >= 2.33 (no mallopt/mallinfo2): training is only slower")
def test_a_large_freed_block_stays_in_the_heap_for_reuse():
    size = memory.MMAP_THRESHOLD // 2  # a per-batch tensor of training
    # The control: by default such a block is a mapping of its own, returned to the system when freed (the
    # next batch maps and zero-fills it again).
    mapped, kept = _probe("default", size)
    assert mapped >= size and kept < size
    # Kept: it comes from the heap and stays there when freed.
    mapped, kept = _probe("keep", size)
    assert mapped < size and kept >= size
    # Bounded: a block above the threshold (an evaluation of a whole split) still gets its own mapping and
    # goes back to the system.
    mapped, kept = _probe("keep", 2 * memory.MMAP_THRESHOLD)
    assert mapped >= 2 * memory.MMAP_THRESHOLD and kept < memory.MMAP_THRESHOLD


def test_the_environment_wins_and_the_call_is_made_once(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert memory.keep_freed_memory() == (
        "left to the environment (MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ set)"
    )
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert memory.keep_freed_memory().startswith("left to the environment")  # decided once per process
