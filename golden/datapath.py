"""The digital stages of one LSTM timestep, as plain vectorized integer functions.

Each function is the definition of one step of `docs/datapath.md`; `golden.lstm` evaluates them over whole
batches (through tables of these same functions where the integer domain is small), and the RTL tests
compare against them. All arithmetic is int64; no stage can overflow int64 within the config limits.
"""

from __future__ import annotations

import numpy as np

from .config import GATES, LstmConfig
from .quant import round_float, rshift_round
from .tables import sigmoid_table, tanh_table

__all__ = [
    "adc_convert",
    "gate_index",
    "activation",
    "cell_update",
    "tanh_cell_index",
    "requant_h",
    "GATE_IS_TANH",
]

#: Per gate of `GATES` (i, f, g, o): g goes through tanh, the other three through sigmoid.
GATE_IS_TANH = tuple(g == "g" for g in GATES)


def adc_convert(p: np.ndarray, step: int, bits: int) -> np.ndarray:
    """ADC transfer: ``clip(round_half_away(p / step), -(2**(bits-1)-1), 2**(bits-1)-1)``.

    ``p`` is the column's dot product in units of (weight level x DAC code); in the ideal model an
    integer, with non-idealities a float. For integer ``p`` below 2**50 the float64 quotient decides ties
    exactly: a true quotient that is not a tie is at least ``1/(2*step)`` away from one.
    """
    if step < 1:
        raise ValueError(f"ADC step must be >= 1, not {step}")
    qmax = (1 << (bits - 1)) - 1
    q = round_float(np.asarray(p, dtype=np.float64) / float(step), "half_away")
    return np.clip(q, -qmax, qmax).astype(np.int64)


def gate_index(acc: np.ndarray, scale: np.ndarray | int, cfg: LstmConfig) -> np.ndarray:
    """Table index of a pre-activation: ``sat(rshift_round(acc * scale, scale_shift), lut_min, lut_max)``."""
    prod = np.asarray(acc, dtype=np.int64) * np.asarray(scale, dtype=np.int64)
    return np.clip(rshift_round(prod, cfg.scale_shift), cfg.lut_min, cfg.lut_max)


def activation(idx: np.ndarray, tanh: bool | np.ndarray, cfg: LstmConfig) -> np.ndarray:
    """Gate output for table index ``idx``: the tanh table where ``tanh`` is true, else the sigmoid table."""
    k = np.asarray(idx, dtype=np.int64) - cfg.lut_min
    return np.where(tanh, tanh_table(cfg)[k], sigmoid_table(cfg)[k])


def cell_update(f: np.ndarray, c_prev: np.ndarray, i: np.ndarray, g: np.ndarray, cfg: LstmConfig) -> np.ndarray:
    """``c_t = sat(rshift_round(f*c_{t-1} + i*g, frac_bits), -cell_max, cell_max)``.

    Both products carry 2*frac_bits fractional bits; they are summed exactly and rounded once.
    """
    s = np.asarray(f, dtype=np.int64) * np.asarray(c_prev, dtype=np.int64) + np.asarray(i, dtype=np.int64) * np.asarray(
        g, dtype=np.int64
    )
    return np.clip(rshift_round(s, cfg.frac_bits), -cfg.cell_max, cfg.cell_max)


def tanh_cell_index(c: np.ndarray, cfg: LstmConfig) -> np.ndarray:
    """Table index of tanh(c_t): ``sat(rshift_round(c_t, frac_bits - lut_frac), lut_min, lut_max)``."""
    return np.clip(rshift_round(np.asarray(c, dtype=np.int64), cfg.frac_bits - cfg.lut_frac), cfg.lut_min, cfg.lut_max)


def requant_h(o: np.ndarray, tc: np.ndarray, cfg: LstmConfig) -> np.ndarray:
    """h_t DAC code: ``sat(rshift_round(o * tanh_c * dac_max, 2*frac_bits), -dac_max, dac_max)``.

    ``o * tanh_c`` is h_t with 2*frac_bits fractional bits, in [-1, 1]; times dac_max it is in DAC codes.
    """
    prod = np.asarray(o, dtype=np.int64) * np.asarray(tc, dtype=np.int64) * cfg.dac_max
    return np.clip(rshift_round(prod, 2 * cfg.frac_bits), -cfg.dac_max, cfg.dac_max)
