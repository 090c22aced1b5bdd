"""Digital periphery of one hidden-unit lane: gate scaling and activation tables, cell update, h requantization.

Each block implements one section of `docs/datapath.md` and registers its outputs, so each has
``latency_cyc == 1``: outputs in cycle n+1 are the function of the inputs in cycle n. Table contents come
from `golden.tables` (the single definition), loaded into ROMs (`amaranth.lib.memory.Memory`, combinational
read ports).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.tables import sigmoid_table, tanh_table

from .params import check_int

__all__ = ["GateLane", "CellLane", "HiddenLane", "saturate", "rshift_round", "gate_shape", "cell_shape"]

GATE_NAMES = ("i", "f", "g", "o")


def gate_shape(cfg: LstmConfig):
    """Gate outputs: signed, frac_bits fractional bits, range [-2**F, 2**F] (needs F + 2 bits)."""
    return signed(cfg.frac_bits + 2)


def cell_shape(cfg: LstmConfig):
    return signed(cfg.cell_bits)


def rshift_round(value, shift: int):
    """``(value + 2**(shift-1)) >> shift`` (round half up); ``value`` unchanged for ``shift == 0``."""
    if shift == 0:
        return value
    return (value + (1 << (shift - 1))) >> shift


def saturate(m: Module, value, lo: int, hi: int, shape, name: str) -> Signal:
    """A combinational signal of ``shape`` holding ``value`` clipped to ``[lo, hi]``."""
    out = Signal(shape, name=name)
    m.d.comb += out.eq(Mux(value < lo, lo, Mux(value > hi, hi, value)))
    return out


def _rom(m: Module, name: str, table, shape, n_ports: int):
    """A ROM holding ``table`` (entry k = index lut_min + k) with ``n_ports`` combinational read ports."""
    rom = Memory(shape=shape, depth=len(table), init=[int(v) for v in table])
    m.submodules[name] = rom
    return [rom.read_port(domain="comb") for _ in range(n_ports)]


def _lut_addr(idx):
    """Table address of a signed index: ``idx - lut_min`` is ``idx`` with its sign bit inverted."""
    return Cat(idx[:-1], ~idx[-1])


class GateLane(wiring.Component):
    """Accumulated ADC codes of gates i, f, g, o of one unit -> gate outputs (docs/datapath.md sections 4-5).

    ``idx = sat((acc * scale + 2**(scale_shift-1)) >> scale_shift, lut_min, lut_max)``, then the sigmoid
    table (i, f, o) or the tanh table (g). Outputs are registered: ``latency_cyc == 1``.

    Parameters
    ----------
    cfg : LstmConfig
    acc_width : int
        Signed width of the accumulator inputs.
    """

    def __init__(self, cfg: LstmConfig, acc_width: int):
        if not isinstance(cfg, LstmConfig):
            raise TypeError(f"cfg must be an LstmConfig, not {type(cfg).__name__}")
        check_int("acc_width", acc_width, 2, 64)
        self.cfg, self.acc_width = cfg, acc_width
        sig = {}
        for g in GATE_NAMES:
            sig[f"acc_{g}"] = In(signed(acc_width))
            sig[f"scale_{g}"] = In(unsigned(cfg.scale_bits))
        for g in GATE_NAMES:
            sig[g] = Out(gate_shape(cfg))
        super().__init__(sig)

    latency_cyc = 1

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        sig_ports = _rom(m, "sigmoid_rom", sigmoid_table(cfg), gate_shape(cfg), 3)
        (tanh_port,) = _rom(m, "tanh_rom", tanh_table(cfg), gate_shape(cfg), 1)
        ports = {"i": sig_ports[0], "f": sig_ports[1], "g": tanh_port, "o": sig_ports[2]}
        for g in GATE_NAMES:
            prod = getattr(self, f"acc_{g}") * getattr(self, f"scale_{g}")
            idx = saturate(m, rshift_round(prod, cfg.scale_shift), cfg.lut_min, cfg.lut_max,
                           signed(cfg.lut_bits), f"idx_{g}")
            m.d.comb += ports[g].addr.eq(_lut_addr(idx))
            m.d.sync += getattr(self, g).eq(ports[g].data)
        return m


class CellLane(wiring.Component):
    """Cell update of one unit (docs/datapath.md section 6); ``o`` is carried along for the next stage.

    ``c = sat((f * c_prev + i * g + 2**(F-1)) >> F, -cell_max, cell_max)``. Registered: ``latency_cyc == 1``.
    """

    def __init__(self, cfg: LstmConfig):
        if not isinstance(cfg, LstmConfig):
            raise TypeError(f"cfg must be an LstmConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        super().__init__({
            "i": In(gate_shape(cfg)), "f": In(gate_shape(cfg)), "g": In(gate_shape(cfg)), "o": In(gate_shape(cfg)),
            "c_prev": In(cell_shape(cfg)),
            "c": Out(cell_shape(cfg)),
            "o_out": Out(gate_shape(cfg)),
        })

    latency_cyc = 1

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        s = self.f * self.c_prev + self.i * self.g
        c = saturate(m, rshift_round(s, cfg.frac_bits), -cfg.cell_max, cfg.cell_max, cell_shape(cfg), "c_next")
        m.d.sync += [self.c.eq(c), self.o_out.eq(self.o)]
        return m


class HiddenLane(wiring.Component):
    """h_t of one unit from c_t and o (docs/datapath.md section 7). Registered: ``latency_cyc == 1``.

    ``tidx = sat((c + 2**(F-lut_frac-1)) >> (F - lut_frac))``, ``tc = tanh_lut[tidx]``,
    ``h = sat((o * tc * dac_max + 2**(2F-1)) >> 2F, -dac_max, dac_max)``.
    """

    def __init__(self, cfg: LstmConfig):
        if not isinstance(cfg, LstmConfig):
            raise TypeError(f"cfg must be an LstmConfig, not {type(cfg).__name__}")
        self.cfg = cfg
        super().__init__({
            "c": In(cell_shape(cfg)),
            "o": In(gate_shape(cfg)),
            "h": Out(signed(cfg.dac_bits)),
        })

    latency_cyc = 1

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        (port,) = _rom(m, "tanh_rom", tanh_table(cfg), gate_shape(cfg), 1)
        tidx = saturate(m, rshift_round(self.c, cfg.frac_bits - cfg.lut_frac), cfg.lut_min, cfg.lut_max,
                        signed(cfg.lut_bits), "tidx")
        m.d.comb += port.addr.eq(_lut_addr(tidx))
        prod = self.o * port.data * cfg.dac_max
        h = saturate(m, rshift_round(prod, 2 * cfg.frac_bits), -cfg.dac_max, cfg.dac_max, signed(cfg.dac_bits), "h_next")
        m.d.sync += self.h.eq(h)
        return m
