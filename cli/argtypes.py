"""argparse value types shared by every ``nvmlstm`` subcommand, so each rule has one wording."""

from __future__ import annotations

import argparse

__all__ = ["nonneg_int", "pos_int", "any_int", "int_in"]


def any_int(text: str) -> int:
    """Any integer; the range check is the consumer's, so its message names the valid range."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None


def nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, not {text!r}")
    return v


def pos_int(text: str) -> int:
    v = nonneg_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, not 0")
    return v


def int_in(lo: int, hi: int):
    """An integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, not {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, not {text!r}")
        return v

    return parse
