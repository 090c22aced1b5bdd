"""argparse value types shared by every ``nvmlstm`` subcommand, so each rule has one wording, and the
``--config`` / ``--model`` choice that several subcommands declare alike."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = [
    "nonneg_int",
    "pos_int",
    "any_int",
    "int_in",
    "nonneg_float",
    "pos_float",
    "number_in",
    "add_config_or_model",
]

_T = TypeVar("_T", int, float)


def _parse(text: str, convert: Callable[[str], _T], expected: str, ok: Callable[[_T], bool] = lambda v: True) -> _T:
    """``convert(text)`` if it parses and ``ok``; otherwise the one message ``expected <expected>, not '<text>'``."""
    try:
        v = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}")
    return v


def any_int(text: str) -> int:
    """Any integer; the range check is the consumer's, so its message names the valid range."""
    return _parse(text, int, "an integer")


def nonneg_int(text: str) -> int:
    return _parse(text, int, "a non-negative integer", lambda v: v >= 0)


def pos_int(text: str) -> int:
    v = nonneg_int(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, not 0")
    return v


def int_in(lo: int, hi: int):
    """An integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        return _parse(text, int, f"an integer from {lo} to {hi}", lambda v: lo <= v <= hi)

    return parse


def number_in(lo: float, hi: float):
    """A finite number in ``[lo, hi]`` (a probability, for example)."""

    def parse(text: str) -> float:
        return _parse(text, float, f"a number from {lo:g} to {hi:g}", lambda v: math.isfinite(v) and lo <= v <= hi)

    return parse


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (a non-number says ``expected a number >= 0``)."""
    v = _parse(text, float, "a number >= 0")
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, not {text!r}")
    return v


def pos_float(text: str) -> float:
    """A finite number > 0."""
    v = nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError("expected a positive number, not 0")
    return v


def add_config_or_model(parser: argparse.ArgumentParser, config: str, model: str):
    """The required choice of ``--config`` (a config JSON) or ``--model`` (a quantized MODEL.npz), with these
    help texts; returns the group, to which a command may add more sources."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help=config)
    src.add_argument("--model", type=Path, help=model)
    return src
