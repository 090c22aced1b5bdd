"""Activation lookup tables: the single definition that the golden model, training and the RTL ROMs use.

A table is indexed by a signed ``lut_bits``-bit index ``idx`` (``lut_frac`` fractional bits, so it stands
for ``idx / 2**lut_frac``) and holds a gate output with ``frac_bits`` fractional bits, rounded half to even
from float64 and clipped to [0, 1] (sigmoid) or [-1, 1] (tanh). Element ``k`` of the returned array is the
entry of index ``lut_min + k``.
"""

from __future__ import annotations

import functools

import numpy as np

from .config import LstmConfig
from .quant import round_float

__all__ = ["sigmoid_table", "tanh_table", "lut_indices"]


def lut_indices(cfg: LstmConfig) -> np.ndarray:
    """All table indices, from ``lut_min`` to ``lut_max``."""
    return np.arange(cfg.lut_min, cfg.lut_max + 1, dtype=np.int64)


def _stable_sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a non-positive argument only: no overflow, and sigmoid(-z) = 1 - sigmoid(z) by construction.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@functools.lru_cache(maxsize=64)
def _tables(lut_bits: int, lut_frac: int, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(-(1 << (lut_bits - 1)), 1 << (lut_bits - 1), dtype=np.int64)
    z = idx.astype(np.float64) / float(1 << lut_frac)
    one = float(1 << frac_bits)
    sig = np.clip(round_float(_stable_sigmoid(z) * one, "half_even"), 0, one).astype(np.int64)
    tnh = np.clip(round_float(np.tanh(z) * one, "half_even"), -one, one).astype(np.int64)
    sig.setflags(write=False)
    tnh.setflags(write=False)
    return sig, tnh


def sigmoid_table(cfg: LstmConfig) -> np.ndarray:
    """Sigmoid table (read-only int64 array of ``2**lut_bits`` entries in [0, 2**frac_bits])."""
    return _tables(cfg.lut_bits, cfg.lut_frac, cfg.frac_bits)[0]


def tanh_table(cfg: LstmConfig) -> np.ndarray:
    """Tanh table (read-only int64 array of ``2**lut_bits`` entries in [-2**frac_bits, 2**frac_bits])."""
    return _tables(cfg.lut_bits, cfg.lut_frac, cfg.frac_bits)[1]
