"""The programming address map of the accelerator and the write sequence that loads a model.

Pure Python (no Amaranth), so the generator, the Amaranth tests and the cocotb testbench share it.

Address ``prog_addr`` (``addr_bits`` wide), data ``prog_data`` (``data_bits`` wide, two's complement for
weights):

* bit ``addr_bits-1`` = 0: a weight. The low bits are ``{tile, row, col}`` with ``tile_bits``, ``row_bits``,
  ``col_bits`` bits (``col`` lowest). ``tile`` is the global tile number: layer 0's tiles in the order of
  `golden.nvm.tile_grid` (row-tile-major), then layer 1's, ..., then the head's. ``row``/``col`` are the cell
  within the tile. Data: the weight code (low ``weight_bits`` bits).
* bit ``addr_bits-1`` = 1: a register; the low bits are its index: ``0 .. L-1`` the ADC step of layer l,
  ``L`` the head's ADC step, ``L + 1 + 4*l + g`` the gate scale of layer l, gate g (the order of
  `golden.config.GATES`: i, f, g, o).
  A step written as 0 is stored as 1.

Writes take effect only while the accelerator is idle.
"""

from __future__ import annotations

from dataclasses import dataclass

from nvmlstm.golden import config as _config
from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.model import QuantizedModel
from nvmlstm.golden.nvm import Tile, tile_grid

__all__ = ["ProgramMap", "bits_for"]


def bits_for(n: int) -> int:
    """Width of an index over ``n`` values (at least 1)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class TileRef:
    """A macro instance: which matrix (``layer`` index, or ``None`` for the head) and which tile of it."""

    global_index: int
    layer: int | None
    tile: Tile

    @property
    def name(self) -> str:
        owner = "head" if self.layer is None else f"l{self.layer}"
        return f"{owner}_t{self.tile.index}"


class ProgramMap:
    """Tiles, widths and addresses of the programming port for a config."""

    def __init__(self, cfg: LstmConfig):
        self.cfg = cfg
        tiles: list[TileRef] = []
        for l in range(cfg.num_layers):
            for t in tile_grid(cfg.layer_rows(l), cfg.layer_cols, cfg.array_rows, cfg.array_cols):
                tiles.append(TileRef(len(tiles), l, t))
        for t in tile_grid(cfg.head_rows, cfg.output_size, cfg.array_rows, cfg.array_cols):
            tiles.append(TileRef(len(tiles), None, t))
        self.tiles = tuple(tiles)
        self.row_bits = bits_for(cfg.array_rows)
        self.col_bits = bits_for(cfg.array_cols)
        self.tile_bits = bits_for(len(tiles))
        self.n_regs = cfg.num_layers + 1 + len(_config.GATES) * cfg.num_layers
        self.reg_bits = bits_for(self.n_regs)
        self.addr_bits = 1 + max(self.tile_bits + self.row_bits + self.col_bits, self.reg_bits)
        self.data_bits = max(cfg.weight_bits, cfg.adc_step_bits, cfg.scale_bits)

    def layer_tiles(self, layer: int | None) -> list[TileRef]:
        return [t for t in self.tiles if t.layer == layer]

    def weight_address(self, tile: int, row: int, col: int) -> int:
        return (tile << (self.row_bits + self.col_bits)) | (row << self.col_bits) | col

    def step_register(self, layer: int | None) -> int:
        """Register index of the ADC step of ``layer`` (``None``: the head)."""
        return self.cfg.num_layers if layer is None else layer

    def scale_register(self, layer: int, gate: int) -> int:
        """Register index of gate scale ``gate`` (position in `golden.config.GATES`) of ``layer``."""
        return self.cfg.num_layers + 1 + len(_config.GATES) * layer + gate

    def step_address(self, layer: int | None) -> int:
        return (1 << (self.addr_bits - 1)) | self.step_register(layer)

    def scale_address(self, layer: int, gate: int) -> int:
        return (1 << (self.addr_bits - 1)) | self.scale_register(layer, gate)

    def writes(self, model: QuantizedModel, *, skip_zero_weights: bool = False) -> list[tuple[int, int]]:
        """(address, data) writes that load ``model``; data is unsigned (two's complement for weights).

        Every cell of every tile is written (cells beyond the matrix edge get 0) unless
        ``skip_zero_weights``, which relies on the macros' reset state of 0.
        """
        if model.config != self.cfg:
            raise ValueError("model config differs from the accelerator config")
        mask = (1 << self.data_bits) - 1
        out: list[tuple[int, int]] = []
        for ref in self.tiles:
            w = model.head.weights if ref.layer is None else model.layers[ref.layer].weights
            t = ref.tile
            for row in range(self.cfg.array_rows):
                for col in range(self.cfg.array_cols):
                    k, n = t.row_start + row, t.col_start + col
                    code = int(w[n, k]) if (k < t.row_stop and n < t.col_stop) else 0
                    if skip_zero_weights and code == 0:
                        continue
                    out.append((self.weight_address(ref.global_index, row, col), code & mask))
        for l, lp in enumerate(model.layers):
            out.append((self.step_address(l), lp.adc_step))
            for g in range(len(_config.GATES)):
                out.append((self.scale_address(l, g), int(lp.gate_scale[g])))
        out.append((self.step_address(None), model.head.adc_step))
        return out
