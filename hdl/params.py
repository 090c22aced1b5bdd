"""Parameter validation shared by the hdl components: exact, testable messages."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[lo, hi]``; otherwise raise ``ValueError`` naming it.

    Messages: ``"lanes must be a positive integer, not 0"``, ``"rows must be an integer from 2 to 65536, not 1"``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        if lo == 1 and hi is None:
            rule = "a positive integer"
        elif hi is None:
            rule = f"an integer >= {lo}"
        else:
            rule = f"an integer from {lo} to {hi}"
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    return value
