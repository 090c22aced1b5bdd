"""Quantizers and integer rounding rules of the datapath contract (`docs/datapath.md`, "Rounding").

Three rounding rules are used, each where the hardware or the software that feeds it does that kind of
rounding:

* ``half_even`` (ties to even): float-to-code quantization done in software (weights, inputs,
  table contents). It is numpy's ``rint`` and PyTorch's ``round``, so training and golden agree.
* ``half_away`` (ties away from zero): the ADC, a symmetric converter whose thresholds sit at
  ``(k + 1/2) * step`` on both sides of zero.
* ``half_up`` (ties toward +infinity): every right shift in the digital periphery, ``(v + 2**(s-1)) >> s``,
  the cheapest rounding in logic.

Float versions of the rules are exact for every float (no ``floor(x + 0.5)`` double rounding).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ROUNDING_RULES",
    "round_float",
    "rshift_round",
    "saturate",
    "quantize",
    "symmetric_max",
]

ROUNDING_RULES = ("half_even", "half_away", "half_up")


def symmetric_max(bits: int) -> int:
    """Largest code of a signed, symmetric ``bits``-bit format (the most negative code is its negation)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 2:
        raise ValueError(f"bits must be an integer >= 2, not {bits!r}")
    return (1 << (int(bits) - 1)) - 1


def round_float(x: np.ndarray | float, rule: str) -> np.ndarray:
    """Round floats to the nearest integer (as floats) with the given tie rule.

    ``x - trunc(x)`` and ``x - floor(x)`` are exact in binary floating point, so comparing the
    fraction with 0.5 decides ties exactly; ``floor(x + 0.5)`` would not (0.49999999999999994 + 0.5
    rounds to 1.0).
    """
    x = np.asarray(x, dtype=np.float64)
    if rule == "half_even":
        return np.rint(x)
    if rule == "half_away":
        t = np.trunc(x)
        frac = np.abs(x - t)
        return t + np.where(frac >= 0.5, np.sign(x), 0.0)
    if rule == "half_up":
        f = np.floor(x)
        return f + (x - f >= 0.5)
    raise ValueError(f"rounding rule must be one of {', '.join(ROUNDING_RULES)}, not {rule!r}")


def rshift_round(v: np.ndarray | int, shift: int) -> np.ndarray:
    """Arithmetic right shift by ``shift`` bits, rounding half up: ``(v + 2**(shift-1)) >> shift``.

    ``shift == 0`` returns ``v`` unchanged. Works on any numpy integer dtype wide enough for ``v + half``.
    """
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.integer):
        raise TypeError(f"rshift_round needs integers, not {v.dtype}")
    if shift < 0:
        raise ValueError(f"shift must be >= 0, not {shift}")
    if shift == 0:
        return v.copy()
    return (v + (1 << (shift - 1))) >> shift


def saturate(v: np.ndarray | int, lo: int, hi: int) -> np.ndarray:
    """Clip to ``[lo, hi]`` (saturation, never wrap-around)."""
    return np.clip(np.asarray(v), lo, hi)


def quantize(x: np.ndarray | float, scale: np.ndarray | float, bits: int, rule: str = "half_even") -> np.ndarray:
    """Float values to signed symmetric codes: ``clip(round(x / scale), -qmax, qmax)`` as int64.

    ``scale`` broadcasts against ``x`` and must be positive and finite.
    """
    qmax = symmetric_max(bits)
    scale = np.asarray(scale, dtype=np.float64)
    bad = ~np.isfinite(scale) | ~(scale > 0)
    if np.any(bad):
        raise ValueError(f"quantization scale must be positive and finite, not {float(scale[bad].flat[0])!r}")
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"cannot quantize {float(x[where])!r} at index {where}: values must be finite")
    return np.clip(round_float(x / scale, rule), -qmax, qmax).astype(np.int64)
