"""Deterministic PNG figures: the same figure gives the same bytes (no Software or date tag), written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .files import write_bytes_atomic

__all__ = ["save_png"]


def save_png(fig: Any, path: str | Path, *, dpi: int = 90) -> None:
    """Render a matplotlib figure to ``path`` as PNG and close it.

    matplotlib stamps a ``Software`` tag with its version into PNG metadata, so a library upgrade would change
    every figure's bytes; it is removed. The PNG is rendered in memory and written with `write_bytes_atomic`.
    """
    import matplotlib.pyplot as plt  # only when a figure is saved: the module itself stays import-light

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
