"""The NVM array macros of the accelerator: one per tile of every layer matrix and of the head, their
programming, and the sums of their ADC codes over row tiles (docs/rtl.md section 1).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nvmlstm.golden.config import check_int

from .macro import NvmArrayMacro
from .params import parameter
from .progmap import ProgramMap
from .registers import ProgramSignature, StepSignature

__all__ = ["MacroArray"]


class MacroArray(wiring.Component):
    """Every macro of a config (`hdl.progmap.ProgramMap.tiles`), read one matrix at a time.

    Tile t of matrix M sees global rows ``row_start .. row_start + array_rows - 1`` of M's row vector (0
    beyond the matrix edge) and contributes its ADC codes to the sum of each of its columns over the row
    tiles. A read strobes all macros of one matrix; `latency_cyc` later the sums are valid (``valid`` bit
    of that matrix high for one cycle) and they hold until the next read of that matrix.

    Parameters
    ----------
    pmap : ProgramMap
    macro_latency : int
        Read latency of the macros (1 to 64).
    macro_model : str
        ``"instance"`` or ``"sim"`` (`hdl.macro.NvmArrayMacro`).

    Attributes
    ----------
    macros : list of NvmArrayMacro
    layer_acc_bits : list of int
    out_bits : int

    Members
    -------
    prog : In(ProgramSignature)
        Weight writes (addresses with the select bit clear); register addresses are ignored here.
    steps : In(StepSignature)
        ADC steps of the layers' and the head's macros.
    rows_l{l} : In(ArrayLayout(signed(dac_bits), layer_rows(l)))
        Layer l's row vector ``[x or h of layer l-1 | h of layer l | bias]``.
    rows_head : In(ArrayLayout(signed(dac_bits), head_rows))
    read : In(num_layers)
        Bit l strobes layer l's macros.
    head_read : In(1)
    acc_l{l} : Out(ArrayLayout(signed(layer_acc_bits[l]), 4 * hidden_size))
        Column sums of layer l's matrix (column ``g * H + u``: gate g of unit u).
    acc_head : Out(ArrayLayout(signed(out_bits), output_size))
    valid : Out(num_layers)
        Bit l: layer l's sums are new in this cycle.
    head_valid : Out(1)
    """

    def __init__(self, pmap: ProgramMap, *, macro_latency: int, macro_model: str = "instance"):
        if not isinstance(pmap, ProgramMap):
            raise TypeError(f"pmap must be a ProgramMap, not {type(pmap).__name__}")
        check_int("macro_latency", macro_latency, 1, 64)
        cfg = pmap.cfg
        self._pmap = pmap
        self._macros = [
            NvmArrayMacro(
                rows=cfg.array_rows,
                cols=cfg.array_cols,
                weight_bits=cfg.weight_bits,
                dac_bits=cfg.dac_bits,
                adc_bits=self._adc_bits(ref.layer),
                adc_step_bits=cfg.adc_step_bits,
                read_latency=macro_latency,
                model=macro_model,
            )
            for ref in pmap.tiles
        ]
        self._layer_acc_bits = [cfg.acc_bits(cfg.layer_rows(l), cfg.adc_bits) for l in range(cfg.num_layers)]
        self._out_bits = cfg.acc_bits(cfg.head_rows, cfg.head_adc_bits_eff)
        L, code = cfg.num_layers, signed(cfg.dac_bits)
        members = {
            "prog": In(ProgramSignature(addr_bits=pmap.addr_bits, data_bits=pmap.data_bits)),
            "steps": In(StepSignature(num_layers=L, step_bits=cfg.adc_step_bits)),
        }
        for l in range(L):
            members[f"rows_l{l}"] = In(data.ArrayLayout(code, cfg.layer_rows(l)))
        members["rows_head"] = In(data.ArrayLayout(code, cfg.head_rows))
        members["read"] = In(L)
        members["head_read"] = In(1)
        for l in range(L):
            members[f"acc_l{l}"] = Out(data.ArrayLayout(signed(self.layer_acc_bits[l]), cfg.layer_cols))
        members["acc_head"] = Out(data.ArrayLayout(signed(self.out_bits), cfg.output_size))
        members["valid"] = Out(L)
        members["head_valid"] = Out(1)
        super().__init__(members)

    pmap: ProgramMap = parameter("pmap")
    macros: list[NvmArrayMacro] = parameter(
        "macros", "The macros, in `hdl.progmap.ProgramMap.tiles` order (built here: their latency is the array's)."
    )
    layer_acc_bits: list[int] = parameter("layer_acc_bits", "Signed width of each layer's column sums.")
    out_bits: int = parameter("out_bits", "Signed width of the head's column sums.")

    def _adc_bits(self, layer: int | None) -> int:
        cfg = self.pmap.cfg
        return cfg.head_adc_bits_eff if layer is None else cfg.adc_bits

    @property
    def latency_cyc(self) -> int:
        """Cycles from a read strobe to valid sums: the macros' read latency (the sums are combinational)."""
        return self.macros[0].latency_cyc

    @staticmethod
    def macro_path(ref) -> tuple[str, ...]:
        """Hierarchy path of tile ``ref``'s ``nvm_array_macro`` instance below this block."""
        return (f"macro_{ref.name}", NvmArrayMacro.INSTANCE_NAME)

    def rows(self, layer: int | None):
        """The row-vector member of ``layer`` (``None``: the head)."""
        return self.rows_head if layer is None else getattr(self, f"rows_l{layer}")

    def acc(self, layer: int | None):
        """The column-sum member of ``layer`` (``None``: the head)."""
        return self.acc_head if layer is None else getattr(self, f"acc_l{layer}")

    def elaborate(self, platform):
        pm, cfg = self.pmap, self.pmap.cfg
        m = Module()
        tile_lsb = pm.row_bits + pm.col_bits
        is_weight = ~self.prog.addr[pm.addr_bits - 1]
        prog_tile = self.prog.addr[tile_lsb : tile_lsb + pm.tile_bits]
        zero = Const(0, signed(cfg.dac_bits))
        for ref, mac in zip(pm.tiles, self.macros):
            m.submodules[self.macro_path(ref)[0]] = mac
            vec, t = self.rows(ref.layer), ref.tile
            n_rows = cfg.head_rows if ref.layer is None else cfg.layer_rows(ref.layer)
            rows = [vec[k] if k < n_rows else zero for k in range(t.row_start, t.row_start + cfg.array_rows)]
            m.d.comb += [
                mac.x.eq(Cat(*rows)),
                mac.adc_step.eq(self.steps.head if ref.layer is None else self.steps.layer[ref.layer]),
                mac.read.eq(self.head_read if ref.layer is None else self.read[ref.layer]),
                mac.prog_row.eq(self.prog.addr[pm.col_bits : pm.col_bits + pm.row_bits]),
                mac.prog_col.eq(self.prog.addr[: pm.col_bits]),
                mac.prog_code.eq(self.prog.data[: cfg.weight_bits]),
                mac.prog_we.eq(self.prog.we & is_weight & (prog_tile == ref.global_index)),
            ]
        # The macros of a matrix run in lockstep: the first one's valid stands for all of them.
        for l in range(cfg.num_layers):
            m.d.comb += self.valid[l].eq(self.macros[pm.layer_tiles(l)[0].global_index].valid)
        m.d.comb += self.head_valid.eq(self.macros[pm.layer_tiles(None)[0].global_index].valid)
        for layer in [*range(cfg.num_layers), None]:
            self._column_sums(m, layer)
        return m

    def _column_sums(self, m: Module, layer: int | None) -> None:
        """Sum over row tiles of the ADC code of every column of ``layer``'s matrix (named ``acc_l{l}_{n}``
        / ``acc_head_{o}`` for waveforms)."""
        cfg, refs = self.pmap.cfg, self.pmap.layer_tiles(layer)
        bits = self._adc_bits(layer)
        out = self.acc(layer)
        width = self.out_bits if layer is None else self.layer_acc_bits[layer]
        owner = "head" if layer is None else f"l{layer}"
        for n in range(cfg.output_size if layer is None else cfg.layer_cols):
            c_tile, j = divmod(n, cfg.array_cols)
            terms = [
                self.macros[r.global_index].y[j * bits : (j + 1) * bits].as_signed()
                for r in refs
                if r.tile.col_tile == c_tile
            ]
            s = Signal(signed(width), name=f"acc_{owner}_{n}")
            m.d.comb += [s.eq(sum(terms[1:], terms[0])), out[n].eq(s)]
