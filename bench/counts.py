"""Operation counts of one timestep, from the golden model's tiling and datapath.

The tiles are `nvmlstm.golden.nvm.tile_grid` of each matrix (the tiling golden, hdl and gen use); the
digital work per hidden unit is one entry per stage function of `nvmlstm.golden.datapath` (`stage_ops`,
checked against that module's ``__all__`` by the tests, so a new stage cannot be left uncounted); widths
come from `nvmlstm.golden.config.LstmConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from nvmlstm.golden.config import GATES, LstmConfig
from nvmlstm.golden.nvm import tile_grid

__all__ = [
    "Counts",
    "stage_ops",
    "matrix_counts",
    "layer_counts",
    "head_counts",
    "timestep_counts",
    "macs_per_timestep",
]


@dataclass(frozen=True)
class Counts:
    """Counts of one matrix (or a sum of matrices) for one timestep.

    ``array_reads``: tile reads; ``active_cells``: devices on a driven row and a used column (2 per
    weight, the differential pair); ``physical_cells``: all devices of the tiles; ``dac_conversions``:
    driven rows summed over tiles (rows past the matrix edge get code 0 and are not counted);
    ``adc_conversions``: columns converted (every column of a tile: the macro converts them all);
    ``adc_conversions_used``: of those, the columns that hold matrix columns; ``adds`` / ``add_bits``:
    digital additions and the sum of their widths; ``mults`` / ``mult_bits2``: multiplications and the
    sum of the products of their operand widths; ``table_reads``; ``register_writes`` / ``register_bits``.
    """

    array_reads: int = 0
    active_cells: int = 0
    physical_cells: int = 0
    dac_conversions: int = 0
    adc_conversions: int = 0
    adc_conversions_used: int = 0
    adds: int = 0
    add_bits: int = 0
    mults: int = 0
    mult_bits2: int = 0
    table_reads: int = 0
    register_writes: int = 0
    register_bits: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _gate_bits(cfg: LstmConfig) -> int:
    """Gate outputs and table entries: signed, frac_bits fractional bits, range [-1, 1] (frac_bits + 2)."""
    return cfg.frac_bits + 2


def stage_ops(cfg: LstmConfig, acc_bits: int) -> dict[str, dict[str, list[int]]]:
    """Per hidden unit and timestep, the work of each stage function of `golden.datapath`.

    ``{stage: {"adds": [widths], "mults": [a*b per multiply], "table_reads": [n], "registers": [widths]}}``;
    each list holds one element per operation. ``adc_convert`` is the ADCs' (counted per column).
    """
    n_gates, gb = len(GATES), _gate_bits(cfg)
    prod_bits = acc_bits + cfg.scale_bits
    return {
        # acc * scale, one rounding add, then the table index per gate (docs/datapath.md, gate index)
        "gate_index": {
            "adds": [prod_bits] * n_gates,
            "mults": [acc_bits * cfg.scale_bits] * n_gates,
            "table_reads": [],
            "registers": [],
        },
        # the sigmoid / tanh table read per gate; its output is registered (GateLane)
        "activation": {"adds": [], "mults": [], "table_reads": [1] * n_gates, "registers": [gb] * n_gates},
        # f*c + i*g, one sum and one rounding add; c is registered in the lane and written to the state
        "cell_update": {
            "adds": [2 * gb + cfg.cell_bits] * 2,
            "mults": [gb * cfg.cell_bits, gb * gb],
            "table_reads": [],
            "registers": [cfg.cell_bits] * 2,
        },
        # the rounding shift of c_t to the tanh index, then the tanh(c) table read
        "tanh_cell_index": {"adds": [cfg.cell_bits], "mults": [], "table_reads": [1], "registers": []},
        # o * tanh(c) * dac_max (two multiplies, the second by a constant), one rounding add; h registered
        # in the lane and written to the state
        "requant_h": {
            "adds": [2 * gb + cfg.dac_bits],
            "mults": [gb * gb, 2 * gb * cfg.dac_bits],
            "table_reads": [],
            "registers": [cfg.dac_bits] * 2,
        },
    }


#: Stages of `golden.datapath` that are not per-unit digital work (the ADC transfer is counted per column).
NOT_PER_UNIT = ("adc_convert", "GATE_IS_TANH")


def matrix_counts(rows: int, cols: int, cfg: LstmConfig, adc_bits: int) -> Counts:
    """Array, converter and column-sum counts of one read of a ``cols x rows`` matrix."""
    tiles = tile_grid(rows, cols, cfg.array_rows, cfg.array_cols)
    n_row_tiles = cfg.row_tiles(rows)
    acc = cfg.acc_bits(rows, adc_bits)
    return Counts(
        array_reads=len(tiles),
        active_cells=sum(2 * (t.row_stop - t.row_start) * (t.col_stop - t.col_start) for t in tiles),
        physical_cells=len(tiles) * 2 * cfg.array_rows * cfg.array_cols,
        dac_conversions=sum(t.row_stop - t.row_start for t in tiles),
        adc_conversions=len(tiles) * cfg.array_cols,
        adc_conversions_used=sum(t.col_stop - t.col_start for t in tiles),
        # the sum over row tiles of each column's ADC codes (hdl.array: one adder per extra row tile)
        adds=cols * (n_row_tiles - 1),
        add_bits=cols * (n_row_tiles - 1) * acc,
    )


def layer_counts(cfg: LstmConfig, layer: int) -> Counts:
    """One LSTM layer in one timestep: its matrix read plus the digital stages of its H units."""
    rows = cfg.layer_rows(layer)
    c = matrix_counts(rows, cfg.layer_cols, cfg, cfg.adc_bits)
    acc = cfg.acc_bits(rows, cfg.adc_bits)
    unit = Counts()
    for ops in stage_ops(cfg, acc).values():
        unit = unit + Counts(
            adds=len(ops["adds"]),
            add_bits=sum(ops["adds"]),
            mults=len(ops["mults"]),
            mult_bits2=sum(ops["mults"]),
            table_reads=sum(ops["table_reads"]),
            register_writes=len(ops["registers"]),
            register_bits=sum(ops["registers"]),
        )
    H = cfg.hidden_size
    return c + Counts(**{k: v * H for k, v in unit.to_dict().items()})


def head_counts(cfg: LstmConfig) -> Counts:
    """The dense head in one timestep: its matrix read and the output register."""
    bits = cfg.head_adc_bits_eff
    c = matrix_counts(cfg.head_rows, cfg.output_size, cfg, bits)
    out_bits = cfg.acc_bits(cfg.head_rows, bits)
    return c + Counts(register_writes=cfg.output_size, register_bits=cfg.output_size * out_bits)


def timestep_counts(cfg: LstmConfig) -> dict[str, Counts]:
    """Per part (``input``, ``layer0`` ..., ``head``) and ``total``: the counts of one timestep."""
    parts = {"input": Counts(register_writes=cfg.input_size, register_bits=cfg.input_size * cfg.dac_bits)}
    for l in range(cfg.num_layers):
        parts[f"layer{l}"] = layer_counts(cfg, l)
    parts["head"] = head_counts(cfg)
    total = Counts()
    for c in parts.values():
        total = total + c
    parts["total"] = total
    return parts


def macs_per_timestep(cfg: LstmConfig) -> int:
    """Multiply-accumulates of the dense network per timestep: every weight of [W_x | W_h | b] of each
    layer and of the head (bias included, as the arrays compute it). Operations = 2 * MACs."""
    return sum(cfg.layer_rows(l) * cfg.layer_cols for l in range(cfg.num_layers)) + cfg.head_rows * cfg.output_size
