"""The one exception type of `gen`: every generation, lint or synthesis failure the user can act on."""

from __future__ import annotations

__all__ = ["GenError"]


class GenError(Exception):
    """Generation failed for a reason the user can act on; the message is one line saying what and where."""
