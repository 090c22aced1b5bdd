"""Digital periphery of the hidden-unit lanes: gate scaling and activation tables, cell update, h
requantization, and the bank of lanes the accelerator time-multiplexes over its units.

Each stage implements one section of `docs/datapath.md` and is cut into register ranks (its ``latency_cyc``,
a property of the block: outputs in cycle n + latency_cyc are the function of the inputs in cycle n; two ranks
each today, so that no rank holds a multiplier and a table, or two multipliers, in series). `LaneBank` composes
the stages' latencies, and its own input and ``c_prev`` registers, into its delays. Datapath registers have
no reset (`datapath_register`); valid bits keep theirs. The four gates are array members in the
order of `golden.config.GATES`. Table contents come from `golden.tables` (the single definition), loaded into
ROMs (`amaranth.lib.memory.Memory`, combinational read ports). `rshift_round` is the Amaranth form of
`golden.quant.rshift_round` (proved equal over a whole domain in tests/test_hdl_structure.py).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nvmlstm.golden import config as _config
from nvmlstm.golden import datapath as _datapath
from nvmlstm.golden.config import LstmConfig, check_int
from nvmlstm.golden.tables import sigmoid_table, tanh_table

from .params import parameter

__all__ = [
    "GateLane",
    "CellLane",
    "HiddenLane",
    "LaneBank",
    "saturate",
    "rshift_round",
    "gate_shape",
    "cell_shape",
    "gate_layout",
    "datapath_register",
    "round_saturate",
]


def _check_cfg(cfg) -> None:
    if not isinstance(cfg, LstmConfig):
        raise TypeError(f"cfg must be an LstmConfig, not {type(cfg).__name__}")


def gate_layout(shape):
    """One ``shape`` element per gate, in the order of `golden.config.GATES` (element k is gate GATES[k])."""
    return data.ArrayLayout(shape, len(_config.GATES))


def gate_number(name: str) -> int:
    """Position of gate ``name`` in `golden.config.GATES` (read at call time: the one gate order)."""
    return _config.GATES.index(name)


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


def round_saturate(m: Module, value, shift: int, lo: int, hi: int, shape, name: str) -> Signal:
    """``saturate(rshift_round(value, shift), lo, hi)``, with the bounds compared against ``value`` itself.

    ``rshift_round(v, s) > hi`` exactly when ``v >= ((hi + 1) << s) - 2**(s-1)`` and ``< lo`` exactly when
    ``v < (lo << s) - 2**(s-1)`` (the shift floors), so both comparisons run beside the rounding adder instead
    of after it, and the adder only needs the bits of ``shape`` (an unsaturated result fits there). Equal to
    the golden form everywhere (tests/test_hdl_structure.py).
    """
    if shift == 0:
        return saturate(m, value, lo, hi, shape, name)
    half = 1 << (shift - 1)
    rounded = Signal(shape, name=f"{name}_rounded")
    m.d.comb += rounded.eq(rshift_round(value, shift))  # truncated to shape: used only when it fits
    out = Signal(shape, name=name)
    over, under = value >= ((hi + 1) << shift) - half, value < (lo << shift) - half
    m.d.comb += out.eq(Mux(under, lo, Mux(over, hi, rounded)))
    return out


def _rom(m: Module, name: str, table, shape, n_ports: int):
    """A ROM holding ``table`` (entry k = index lut_min + k) with ``n_ports`` combinational read ports."""
    rom = Memory(shape=shape, depth=len(table), init=[int(v) for v in table])
    m.submodules[name] = rom
    return [rom.read_port(domain="comb") for _ in range(n_ports)]


def _lut_addr(idx):
    """Table address of a signed index: ``idx - lut_min`` is ``idx`` with its sign bit inverted."""
    return Cat(idx[:-1], ~idx[-1])


def datapath_register(m: Module, value, shape, name: str) -> Signal:
    """A reset-less register of ``shape`` that takes ``value`` at every clock edge.

    For datapath values only: what such a register holds before the first valid data reaches it means nothing
    (a valid bit or tag beside it says when it does), so a reset would only put logic in front of every
    flip-flop's D (the sky130 mapping has no flip-flop with a synchronous reset).
    """
    reg = Signal(shape, name=name, reset_less=True)
    m.d.sync += reg.eq(value)
    return reg


class _RegisteredStage(wiring.Component):
    """A lane stage cut into `REGISTERS` register stages: outputs in cycle n + `REGISTERS` are the function of
    the inputs in cycle n, and a new input is taken every cycle.

    A subclass sets `REGISTERS` to the number of `datapath_register` ranks its ``elaborate`` puts between an
    input and an output (the pipeline tests read every stage's output `latency_cyc` edges after its inputs,
    so a count that disagrees with the logic fails them).
    """

    #: Register ranks from the inputs to the outputs.
    REGISTERS = 1

    def __init__(self, cfg: LstmConfig, signature: dict):
        self._cfg = cfg  # checked by the subclass before it builds the signature from it
        super().__init__(signature)

    cfg: LstmConfig = parameter("cfg")

    @property
    def latency_cyc(self) -> int:
        """Cycles from the stage's inputs to its outputs: its register ranks."""
        return self.REGISTERS


class GateLane(_RegisteredStage):
    """Accumulated ADC codes of the gates of one unit -> gate outputs (docs/datapath.md sections 4-5).

    ``idx = sat((acc * scale + 2**(scale_shift-1)) >> scale_shift, lut_min, lut_max)``, then the tanh table
    for the gate that `golden.datapath.GATE_IS_TANH` names (g), the sigmoid table for the others. Three register
    ranks (`latency_cyc` 3): ``acc`` and ``scale`` are registered on entry, the product ends in the second
    rank, the rounding, saturation and table read in the gate register (a multiplier and its rounding in one
    rank were the longest path at the slow corner; before, one rank held a multiplier and a ROM in series).
    The input rank is the lane's own, not the bank's: a
    ``scale`` register shared by 32 lanes drove every lane's multiplier (0.27 pF on one flip-flop, the
    critical path at 32 lanes), and copies side by side in the bank would be merged by synthesis; here each
    copy drives one multiplier, in the module where the mapping can buffer it.

    Parameters
    ----------
    cfg : LstmConfig
    acc_width : int
        Signed width of the accumulator inputs (2 to 64).

    Members
    -------
    acc : In(ArrayLayout(signed(acc_width), 4))
        Accumulated column sums, one per gate in `golden.config.GATES` order.
    scale : In(ArrayLayout(unsigned(scale_bits), 4))
        Gate scales, same order.
    gates : Out(ArrayLayout(gate_shape(cfg), 4))
        Gate outputs, same order.
    """

    REGISTERS = 3

    def __init__(self, cfg: LstmConfig, acc_width: int):
        _check_cfg(cfg)
        check_int("acc_width", acc_width, 2, 64)
        self._acc_width = acc_width
        super().__init__(
            cfg,
            {
                "acc": In(gate_layout(signed(acc_width))),
                "scale": In(gate_layout(unsigned(cfg.scale_bits))),
                "gates": Out(gate_layout(gate_shape(cfg))),
            },
        )

    acc_width: int = parameter("acc_width")

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        is_tanh = _datapath.GATE_IS_TANH
        n_sig = sum(1 for t in is_tanh if not t)
        sig_ports = iter(_rom(m, "sigmoid_rom", sigmoid_table(cfg), gate_shape(cfg), n_sig))
        tanh_ports = iter(_rom(m, "tanh_rom", tanh_table(cfg), gate_shape(cfg), len(is_tanh) - n_sig))
        acc_r = datapath_register(m, self.acc, self.acc.shape(), "acc_r")  # rank 1
        scale_r = datapath_register(m, self.scale, self.scale.shape(), "scale_r")
        for k, name in enumerate(_config.GATES):
            port = next(tanh_ports) if is_tanh[k] else next(sig_ports)
            prod = acc_r[k] * scale_r[k]
            prod_r = datapath_register(m, prod, prod.shape(), f"prod_{name}_r")  # rank 2
            idx = round_saturate(
                m, prod_r, cfg.scale_shift, cfg.lut_min, cfg.lut_max, signed(cfg.lut_bits), f"idx_{name}"
            )
            m.d.comb += port.addr.eq(_lut_addr(idx))
            gate_r = datapath_register(m, port.data, gate_shape(cfg), f"gate_{name}_r")  # rank 3
            m.d.comb += self.gates[k].eq(gate_r)
        return m


class CellLane(_RegisteredStage):
    """Cell update of one unit (docs/datapath.md section 6); gate o is carried along for the next stage.

    ``c = sat((f * c_prev + i * g + 2**(F-1)) >> F, -cell_max, cell_max)``. Two register ranks (`latency_cyc`
    2): the two products, then their sum rounded and saturated. ``c_prev`` is sampled with ``gates``.

    Members
    -------
    gates : In(ArrayLayout(gate_shape(cfg), 4))
        Gate outputs of `GateLane`, in `golden.config.GATES` order.
    c_prev : In(cell_shape(cfg))
    c : Out(cell_shape(cfg))
    o : Out(gate_shape(cfg))
        Gate o, delayed with ``c``.
    """

    REGISTERS = 2

    def __init__(self, cfg: LstmConfig):
        _check_cfg(cfg)
        super().__init__(
            cfg,
            {
                "gates": In(gate_layout(gate_shape(cfg))),
                "c_prev": In(cell_shape(cfg)),
                "c": Out(cell_shape(cfg)),
                "o": Out(gate_shape(cfg)),
            },
        )

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        i, f, g, o = (self.gates[gate_number(n)] for n in "ifgo")
        fc, ig = f * self.c_prev, i * g
        fc_r = datapath_register(m, fc, fc.shape(), "fc_r")  # rank 1
        ig_r = datapath_register(m, ig, ig.shape(), "ig_r")
        o_r = datapath_register(m, o, gate_shape(cfg), "o_r")
        c = round_saturate(m, fc_r + ig_r, cfg.frac_bits, -cfg.cell_max, cfg.cell_max, cell_shape(cfg), "c_next")
        c_r = datapath_register(m, c, cell_shape(cfg), "c_r")  # rank 2
        o_rr = datapath_register(m, o_r, gate_shape(cfg), "o_rr")
        m.d.comb += [self.c.eq(c_r), self.o.eq(o_rr)]
        return m


class HiddenLane(_RegisteredStage):
    """h_t of one unit from c_t and o (docs/datapath.md section 7).

    ``tidx = sat((c + 2**(F-lut_frac-1)) >> (F - lut_frac))``, ``tc = tanh_lut[tidx]``,
    ``h = sat((o * tc * dac_max + 2**(2F-1)) >> 2F, -dac_max, dac_max)``. Two register ranks (`latency_cyc`
    2): the index and the table read end in the ``tc * dac_max`` register (the table holds ``tanh * dac_max``),
    the product in the second; ``h`` is that product rounded and saturated, after the last rank (the parent
    registers it in its h state, so the rounding shares a cycle with the state write, not with the
    multiplier: the two in one rank were the longest path at 32 lanes).
    """

    REGISTERS = 2

    def __init__(self, cfg: LstmConfig):
        _check_cfg(cfg)
        super().__init__(
            cfg,
            {
                "c": In(cell_shape(cfg)),
                "o": In(gate_shape(cfg)),
                "h": Out(signed(cfg.dac_bits)),
            },
        )

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        # The table holds tanh * dac_max: the same integer product o * tc * dac_max without a constant
        # multiplier after the table.
        scaled = [int(v) * cfg.dac_max for v in tanh_table(cfg)]
        tc_shape = signed(max(abs(v) for v in scaled).bit_length() + 1)
        (port,) = _rom(m, "tanh_rom", scaled, tc_shape, 1)
        tidx = round_saturate(
            m, self.c, cfg.frac_bits - cfg.lut_frac, cfg.lut_min, cfg.lut_max, signed(cfg.lut_bits), "tidx"
        )
        m.d.comb += port.addr.eq(_lut_addr(tidx))
        tc_r = datapath_register(m, port.data, tc_shape, "tc_dac_r")  # rank 1: tanh(c) * dac_max
        o_r = datapath_register(m, self.o, gate_shape(cfg), "o_r")
        prod = o_r * tc_r
        prod_r = datapath_register(m, prod, prod.shape(), "oh_prod_r")  # rank 2
        h = round_saturate(m, prod_r, 2 * cfg.frac_bits, -cfg.dac_max, cfg.dac_max, signed(cfg.dac_bits), "h_next")
        m.d.comb += self.h.eq(h)
        return m


class LaneBank(wiring.Component):
    """``lanes`` copies of the unit pipeline GateLane -> CellLane -> HiddenLane, time-multiplexed over groups
    of units by the parent, with each issued group's ``tag`` carried alongside its data.

    The parent issues one group per cycle (``issue`` high, its ``tag``, the lanes' ``acc`` and the shared
    ``scale``, all selected by the parent); the gate lanes register ``acc`` and ``scale`` on entry (their first
    rank), so the parent's control, decode and selection muxes form one register-to-register stage and the gate
    stage's multiplier starts from a register; the bank adds `INPUT_REGISTERS` more ranks (`input_cyc`, none).
    `c_prev_cyc` cycles after issue the bank asks for that group's previous cell state (``c_prev_tag``,
    answered combinationally on ``c_prev``) and registers it, for the cell stage that samples it `cell_in_cyc`
    cycles after issue; `c_cyc` cycles after issue ``c`` is valid (``c_valid``, ``c_tag``),
    `latency_cyc` cycles after issue ``h`` (``h_valid``, ``h_tag``). Every delay is the sum of the stages' own
    ``latency_cyc``, so a stage with another latency changes them all.

    Parameters
    ----------
    cfg : LstmConfig
    lanes : int
        Number of lanes (>= 1).
    acc_width : int
        Signed width of the accumulated column sums.
    n_tags : int
        Number of distinct tags (>= 1).

    Members
    -------
    issue : In(1)
    tag : In(range(max(n_tags, 2)))
    acc : In(ArrayLayout(ArrayLayout(signed(acc_width), 4), lanes))
        Per lane, the column sums of its unit's gates (`golden.config.GATES` order).
    scale : In(ArrayLayout(unsigned(scale_bits), 4))
        The gate scales, shared by all lanes.
    c_prev_tag : Out(tag shape)
    c_prev : In(ArrayLayout(cell_shape(cfg), lanes))
    c_valid, c_tag : Out
    c : Out(ArrayLayout(cell_shape(cfg), lanes))
    h_valid, h_tag : Out
    h : Out(ArrayLayout(signed(dac_bits), lanes))
    """

    #: Register ranks between the bank's ``acc``/``scale`` inputs and the gate stage, beyond the gate lanes'
    #: own input rank (`GateLane`): none.
    INPUT_REGISTERS = 0
    #: Register ranks between the ``c_prev`` answer and the cell stage.
    C_PREV_REGISTERS = 1

    def __init__(self, cfg: LstmConfig, *, lanes: int, acc_width: int, n_tags: int):
        _check_cfg(cfg)
        check_int("lanes", lanes, 1)
        check_int("acc_width", acc_width, 2, 64)
        check_int("n_tags", n_tags, 1)
        self._cfg, self._lanes, self._acc_width, self._n_tags = cfg, lanes, acc_width, n_tags
        # Built here, not in elaborate(): their latencies define the bank's, which the parent needs first.
        self._gate_lanes = [GateLane(cfg, acc_width) for _ in range(lanes)]
        self._cell_lanes = [CellLane(cfg) for _ in range(lanes)]
        self._hidden_lanes = [HiddenLane(cfg) for _ in range(lanes)]
        tag = range(max(n_tags, 2))
        cell = cell_shape(cfg)
        super().__init__(
            {
                "issue": In(1),
                "tag": In(tag),
                "acc": In(data.ArrayLayout(gate_layout(signed(acc_width)), lanes)),
                "scale": In(gate_layout(unsigned(cfg.scale_bits))),
                "c_prev_tag": Out(tag),
                "c_prev": In(data.ArrayLayout(cell, lanes)),
                "c_valid": Out(1),
                "c_tag": Out(tag),
                "c": Out(data.ArrayLayout(cell, lanes)),
                "h_valid": Out(1),
                "h_tag": Out(tag),
                "h": Out(data.ArrayLayout(signed(cfg.dac_bits), lanes)),
            }
        )

    cfg: LstmConfig = parameter("cfg")
    lanes: int = parameter("lanes")
    acc_width: int = parameter("acc_width")
    n_tags: int = parameter("n_tags")
    gate_lanes: list[GateLane] = parameter("gate_lanes")
    cell_lanes: list[CellLane] = parameter("cell_lanes")
    hidden_lanes: list[HiddenLane] = parameter("hidden_lanes")

    @property
    def input_cyc(self) -> int:
        """Cycles from issue to the gate stage's inputs: the input registers."""
        return self.INPUT_REGISTERS

    @property
    def cell_in_cyc(self) -> int:
        """Cycles from issue to the cell stage's inputs (when it samples ``gates`` and ``c_prev``): input
        registers + gate stage."""
        return self.input_cyc + self.gate_lanes[0].latency_cyc

    @property
    def c_prev_cyc(self) -> int:
        """Cycles from issue to the cycle the bank asks for ``c_prev`` (``c_prev_tag``): `cell_in_cyc` less the
        ``c_prev`` register."""
        return self.cell_in_cyc - self.C_PREV_REGISTERS

    @property
    def c_cyc(self) -> int:
        """Cycles from issue to a valid ``c``: `cell_in_cyc` + cell stage."""
        return self.cell_in_cyc + self.cell_lanes[0].latency_cyc

    @property
    def latency_cyc(self) -> int:
        """Cycles from issue to a valid ``h``: `c_cyc` + hidden stage."""
        return self.c_cyc + self.hidden_lanes[0].latency_cyc

    def _delayed(self, m: Module, value, ranks: int, name: str):
        """``value`` through ``ranks`` reset-less registers (datapath)."""
        for k in range(ranks):
            value = datapath_register(m, value, value.shape(), f"{name}_d{k + 1}")
        return value

    def elaborate(self, platform):
        m = Module()
        # Tag pipeline: stage k holds the issue strobe and tag of k cycles ago (stage 0: this cycle's). The
        # strobes keep their reset (a valid bit must be low after reset); a tag means nothing without its strobe.
        valid, tag = [self.issue], [self.tag]
        for k in range(1, self.latency_cyc + 1):
            v = Signal(name=f"p{k}_valid")
            m.d.sync += v.eq(valid[-1])
            valid.append(v)
            tag.append(datapath_register(m, tag[-1], self.tag.shape(), f"p{k}_tag"))
        m.d.comb += [
            self.c_prev_tag.eq(tag[self.c_prev_cyc]),
            self.c_valid.eq(valid[self.c_cyc]),
            self.c_tag.eq(tag[self.c_cyc]),
            self.h_valid.eq(valid[self.latency_cyc]),
            self.h_tag.eq(tag[self.latency_cyc]),
        ]
        scale = self._delayed(m, self.scale, self.INPUT_REGISTERS, "scale")
        for q, (gl, cl, hl) in enumerate(zip(self.gate_lanes, self.cell_lanes, self.hidden_lanes)):
            m.submodules[f"gate_lane_{q}"] = gl
            m.submodules[f"cell_lane_{q}"] = cl
            m.submodules[f"hidden_lane_{q}"] = hl
            m.d.comb += [
                gl.acc.eq(self._delayed(m, self.acc[q], self.INPUT_REGISTERS, f"acc_{q}")),
                gl.scale.eq(scale),
                cl.gates.eq(gl.gates),
                cl.c_prev.eq(self._delayed(m, self.c_prev[q], self.C_PREV_REGISTERS, f"c_prev_{q}")),
                hl.c.eq(cl.c),
                hl.o.eq(cl.o),
                self.c[q].eq(cl.c),
                self.h[q].eq(hl.h),
            ]
        return m
