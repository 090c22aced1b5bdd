"""Torch forms of the datapath's rounding rules and activation tables (`docs/datapath.md`, sections 4-7, 11).

Every function here works on float tensors that hold integers (float64 for the exact evaluation path,
float32 in training, where every intermediate of the supported configs stays below 2**24 and is therefore
also exact). The table *contents* come from `golden.tables` -- one definition for golden, RTL and training;
this module only converts them to tensors and adds their derivatives for the straight-through estimator.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.datapath import activation, requant_h, tanh_cell_index
from nvmlstm.golden.quant import rshift_round as np_rshift_round
from nvmlstm.golden.tables import sigmoid_table, tanh_table

__all__ = [
    "adc_round",
    "round_half_away",
    "round_half_even",
    "rshift_round",
    "ste",
    "Tables",
    "tables",
]


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (the ADC), exactly as `golden.quant.round_float`.

    ``v - trunc(v)`` is exact in binary floating point, so the tie test is exact; ``floor(|v| + 0.5)``
    would double-round values just below a tie.
    """
    t = torch.trunc(v)
    return t + torch.where((v - t).abs() >= 0.5, torch.sign(v), torch.zeros((), dtype=v.dtype))


def adc_round(v: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero, as ``sign(v) floor(|v| + 1/2)`` (a new tensor): the ADC of the
    training forward where its input is a quotient (``p / step``, plus noise).

    Cheaper than `round_half_away` (``torch.trunc`` is slow on CPU) and exact for ``v = p / step`` with
    integer ``p`` and ``step`` in the configs' range: such a quotient is a tie exactly or at least
    ``1 / (2 step)`` from one, far more than the rounding error of ``|v| + 1/2``. With ADC noise no exact tie
    matters. ``tests/test_train_ckernel.py`` proves it equal to `nvmlstm.golden.datapath.adc_convert` over
    every dot product and ADC step of a small config.
    """
    return v.abs().add_(0.5).floor_().mul_(torch.sign(v))


def round_half_even(v: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties to even: ``torch.round`` (numpy's ``rint``), used for software float -> code."""
    return torch.round(v)


def rshift_round(v: torch.Tensor, shift: int, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(v + 2**(shift-1)) >> shift`` on integer-valued floats: rounding half up; ``shift == 0`` is identity.

    The torch form of `nvmlstm.golden.quant.rshift_round` (``tests/test_train_ckernel.py`` proves them equal
    on every integer of magnitude up to 2**17 and shifts 0 to 18, float32 and float64, and near large
    float64 values). Exact while ``|v| + 2**(shift-1)`` is below 2**24 (float32) or 2**53 (float64):
    multiplying by ``2**-shift`` is exact (a power of two), so ``floor`` sees the true quotient.
    ``out``: write the result there (the training loop's preallocated buffers); ``v`` is never modified.
    """
    if shift == 0:
        return v if out is None else out.copy_(v)
    return torch.add(v, float(1 << (shift - 1)), out=out).mul_(2.0**-shift).floor_()


def ste(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the forward value of ``value``, the gradient of ``surrogate``."""
    return surrogate + (value - surrogate).detach()


class Tables:
    """Activation tables of one config as tensors, with the derivatives the STE backward uses.

    Attributes
    ----------
    gate : Tensor (2 * lut_size,)
        ``[sigmoid_lut | tanh_lut]`` (golden's integer entries as floats); entry ``k`` of each half is the
        table index ``lut_min + k``.
    dgate : Tensor (2 * lut_size,)
        d(entry)/d(index) of the smooth functions the tables sample: ``2**F * f'(idx / 2**lut_frac) /
        2**lut_frac``. The backward pass differentiates the table as if it were that smooth function.
    tanh, dtanh : Tensor (lut_size,)
        The tanh half alone (for tanh(c_t)).
    tanh_c, dtanh_c : Tensor (2 * cell_max + 1,)
        tanh(c_t) as a function of the cell state c_t (entry ``c + cell_max``): the chain
        ``tanh_lut[tanh_cell_index(c)]`` of `golden.datapath`, and its STE slope d/dc (0 where the index
        saturates).
    h_oc : Tensor ((2**F + 1) * (2 * cell_max + 1),)
        h_t DAC code for gate o in [0, 2**F] (the sigmoid table's range) and c_t: entry
        ``o * (2 * cell_max + 1) + c + cell_max`` is ``requant_h(o, tanh_c(c))`` of `golden.datapath`.
    derived : dict
        Cache of the per-(gate scales, step) tables of `train.recurrence` (keyed by those numbers).
    """

    def __init__(self, cfg: LstmConfig, dtype: torch.dtype):
        idx = np.arange(cfg.lut_min, cfg.lut_max + 1, dtype=np.float64) / float(1 << cfg.lut_frac)
        sig = 1.0 / (1.0 + np.exp(-idx))
        dsig = sig * (1.0 - sig)
        dtanh = 1.0 - np.tanh(idx) ** 2
        k = float(cfg.one) / float(1 << cfg.lut_frac)
        self.gate = torch.tensor(np.concatenate([sigmoid_table(cfg), tanh_table(cfg)]).astype(np.float64), dtype=dtype)
        self.dgate = torch.tensor(np.concatenate([dsig, dtanh]) * k, dtype=dtype)
        self.tanh = self.gate[cfg.lut_size :].clone()
        self.dtanh = self.dgate[cfg.lut_size :].clone()
        c = np.arange(-cfg.cell_max, cfg.cell_max + 1, dtype=np.int64)
        tc = activation(tanh_cell_index(c, cfg), True, cfg)
        sh = cfg.frac_bits - cfg.lut_frac
        tidx = np_rshift_round(c, sh)
        inside = (tidx >= cfg.lut_min) & (tidx <= cfg.lut_max)
        slope = (dtanh * k)[np.clip(tidx, cfg.lut_min, cfg.lut_max) - cfg.lut_min] * inside * 2.0**-sh
        self.tanh_c = torch.tensor(tc.astype(np.float64), dtype=dtype)
        self.dtanh_c = torch.tensor(slope, dtype=dtype)
        o = np.arange(cfg.one + 1, dtype=np.int64)[:, None]
        self.h_oc = torch.tensor(requant_h(o, tc[None, :], cfg).ravel().astype(np.float64), dtype=dtype)
        # Tables derived per batch from a few integers (gate scales, ADC step), cached by `train.recurrence`.
        self.derived: dict = {}


@functools.lru_cache(maxsize=32)
def tables(cfg: LstmConfig, dtype: torch.dtype = torch.float32) -> Tables:
    """Cached `Tables` of ``cfg`` (the config is frozen and hashable)."""
    return Tables(cfg, dtype)


def log_step_init(step: float) -> float:
    """The trained ADC step is stored as its natural log (see `train.model`)."""
    return math.log(max(1.0, float(step)))
