"""Atomic writes and sha256 digests: one definition for every package and benchmark script.

A reader (or a crashed writer's next run) sees the old file or the whole new one, never a partial write;
an output directory appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["write_bytes_atomic", "write_text_atomic", "atomic_output_dir", "sha256_bytes", "sha256_file", "json_sha256"]


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory renamed over it, so a
    reader sees the old file or the whole new one, never a partial write."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the result is an ordinary output file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """`write_bytes_atomic` of ``text`` in UTF-8."""
    write_bytes_atomic(Path(path), text.encode("utf-8"))


@contextlib.contextmanager
def atomic_output_dir(out: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success its files land in ``out``, on any error nothing does.

    A missing ``out`` appears whole (one rename). An existing ``out`` receives each file by an atomic
    replace. Parent directories created here are removed again on failure.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    created: list[Path] = []
    parent = out.parent
    for p in reversed([parent, *parent.parents]):
        if not p.exists():
            p.mkdir()
            created.append(p)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the result is an ordinary output directory
        yield tmp
        if not out.exists():
            os.rename(tmp, out)
        else:
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in reversed(created):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (a large netlist or corpus is never read whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_sha256(doc: Any) -> str:
    """Hex sha256 of ``doc`` as canonical JSON (sorted keys; values JSON cannot hold are written with str)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
