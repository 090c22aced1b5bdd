"""NVM crossbar array model: tiling, differential conductances, dot products, and seeded non-idealities.

A layer's matrix ``M`` (columns x rows, e.g. 4H x (I+H+1) for an LSTM layer) is cut into tiles of
``array_rows`` inputs x ``array_cols`` output columns. Tile ``(r, c)`` holds rows
``[r*array_rows, min((r+1)*array_rows, K))`` and columns ``[c*array_cols, min((c+1)*array_cols, N))``;
tiles are numbered row-tile-major: ``index = r * n_col_tiles + c``. Cells past the matrix edge hold weight 0
(both devices at Gmin) and unused rows are driven with DAC code 0, so they add nothing.

In the ideal model each tile column computes the exact integer ``p = sum_k w[k] * x[k]`` over its rows; a
column's ADC converts that (`golden.datapath.adc_convert`). Columns are independent, so column tiling never
changes a number; row tiling does, because every row tile has its own ADC conversion.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

__all__ = ["Tile", "tile_grid", "row_tile_bounds", "differential_pair", "NonIdealities", "ProgrammedArray"]


@dataclass(frozen=True)
class Tile:
    """One crossbar tile: its place in the grid and the slice of the weight matrix it holds."""

    index: int
    row_tile: int
    col_tile: int
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int


def row_tile_bounds(rows: int, array_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each row tile of a matrix with ``rows`` input rows."""
    return [(a, min(a + array_rows, rows)) for a in range(0, rows, array_rows)]


def tile_grid(rows: int, cols: int, array_rows: int, array_cols: int) -> list[Tile]:
    """All tiles of a matrix with ``rows`` inputs and ``cols`` output columns, in index order."""
    n_col = -(-cols // array_cols)
    tiles = []
    for r, (a, b) in enumerate(row_tile_bounds(rows, array_rows)):
        for c in range(n_col):
            tiles.append(Tile(r * n_col + c, r, c, a, b, c * array_cols, min((c + 1) * array_cols, cols)))
    return tiles


def differential_pair(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed weight codes to (G+, G-) in conductance levels: ``G+ = max(w, 0)``, ``G- = max(-w, 0)``.

    Level 0 is Gmin and level ``weight_max`` is Gmax; the column current is proportional to
    ``sum x * (G+ - G-)``, which equals ``sum x * w`` for ideal devices.
    """
    w = np.asarray(w, dtype=np.int64)
    return np.maximum(w, 0), np.maximum(-w, 0)


@dataclass(frozen=True)
class NonIdealities:
    """Seeded device and converter non-idealities; all off by default (the ideal, bit-exact model).

    Parameters
    ----------
    prog_noise : float
        Standard deviation of each device's programming error, as a fraction of the conductance range
        Gmax - Gmin; drawn once when the arrays are programmed, the result clipped to [Gmin, Gmax].
    read_noise : float
        Standard deviation of each device's conductance at each read, as a fraction of the range.
    adc_noise : float
        Standard deviation of the ADC input-referred noise, in ADC LSBs, per conversion.
    stuck_gmin_rate, stuck_gmax_rate : float
        Probability that a device is stuck at Gmin / Gmax (programming has no effect on it).
    seed : int
        Seed of every random draw; the same seed gives the same devices and the same reads.
    """

    prog_noise: float = 0.0
    read_noise: float = 0.0
    adc_noise: float = 0.0
    stuck_gmin_rate: float = 0.0
    stuck_gmax_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "seed":
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 0:
                    raise ValueError(f"seed must be a non-negative integer, not {v!r}")
                continue
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{f.name} must be a finite number >= 0, not {v!r}")
            if f.name.endswith("_rate") and v > 1:
                raise ValueError(f"{f.name} must be at most 1, not {v!r}")
        if self.stuck_gmin_rate + self.stuck_gmax_rate > 1:
            raise ValueError(
                f"stuck_gmin_rate + stuck_gmax_rate must be at most 1, not "
                f"{self.stuck_gmin_rate + self.stuck_gmax_rate!r}"
            )

    @property
    def ideal(self) -> bool:
        return not (
            self.prog_noise or self.read_noise or self.adc_noise or self.stuck_gmin_rate or self.stuck_gmax_rate
        )


class ProgrammedArray:
    """The weights of one matrix as programmed into devices, with read and ADC noise.

    Parameters
    ----------
    weights : ndarray of int, shape (N, K)
        Signed weight codes, one row per output column.
    weight_max : int
        Code of Gmax (the conductance range in levels).
    nonideal : NonIdealities
    rng : numpy.random.Generator
        Source of every draw of this array (programming first, then reads in call order).
    """

    def __init__(self, weights: np.ndarray, weight_max: int, nonideal: NonIdealities, rng: np.random.Generator):
        self.weight_max = int(weight_max)
        self.nonideal = nonideal
        self.rng = rng
        gp, gm = differential_pair(weights)
        self.g_plus = self._program(gp.astype(np.float64))
        self.g_minus = self._program(gm.astype(np.float64))
        #: Effective signed weights G+ - G- (levels), shape (N, K).
        self.effective = self.g_plus - self.g_minus

    def _program(self, g: np.ndarray) -> np.ndarray:
        ni, gmax = self.nonideal, float(self.weight_max)
        if ni.prog_noise:
            g = np.clip(g + self.rng.normal(0.0, ni.prog_noise * gmax, size=g.shape), 0.0, gmax)
        if ni.stuck_gmin_rate or ni.stuck_gmax_rate:
            u = self.rng.random(size=g.shape)
            g = np.where(u < ni.stuck_gmin_rate, 0.0, g)
            g = np.where((u >= ni.stuck_gmin_rate) & (u < ni.stuck_gmin_rate + ni.stuck_gmax_rate), gmax, g)
        return g

    def read_noise(self, x_tile: np.ndarray, n_cols: int) -> np.ndarray:
        """Column-current noise of one read of one row tile, shape ``x_tile.shape[:-1] + (n_cols,)``.

        Every device's read error is independent N(0, (read_noise * range)**2); a column sums 2 devices per
        row weighted by the input code, so its noise is N(0, 2 * (read_noise * range)**2 * sum x**2).
        Drawing that sum directly is exact in distribution and costs one draw per column.
        """
        sigma = self.nonideal.read_noise * self.weight_max
        std = sigma * np.sqrt(2.0 * np.sum(np.square(x_tile, dtype=np.float64), axis=-1, keepdims=True))
        return self.rng.normal(0.0, 1.0, size=x_tile.shape[:-1] + (n_cols,)) * std

    def adc_noise(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.normal(0.0, self.nonideal.adc_noise, size=shape)
