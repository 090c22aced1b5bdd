"""The NVM LSTM accelerator: NVM array macros, shared hidden-unit lanes, state, control FSM, streams.

Data flow of one timestep (docs/rtl.md has the port and register map):

1. ``INPUT``: accept one ``inp`` beat (x_t codes of all inputs) into ``x``.
2. For each layer l: ``READ`` strobes all of layer l's macros (their rows are wired to x / h of layer l-1,
   h of layer l and the bias code); ``WAIT`` until the ADC codes are valid; in the valid cycle and the
   following ones, ``ISSUE`` one group of ``lanes`` units per cycle into the lane pipeline (GateLane ->
   CellLane -> HiddenLane), selecting each unit's accumulated codes (summed over row tiles) and layer l's
   gate scales; ``DRAIN`` while the last group writes c and h state.
3. ``HEAD_READ`` / ``HEAD_WAIT``: strobe the head macros, sum their codes over row tiles into the output
   register.
4. ``OUTPUT``: present the output codes and every layer's h_t on ``out`` until accepted.

Latency (no stalls on the streams), with ``L_m`` the macro read latency and ``G = ceil(H / lanes)``:

* ``layer_step_cyc = L_m + G + 3`` (read 1 + wait L_m - 1 + issue G + drain 3)
* ``head_cyc = L_m + 1``
* ``timestep_cyc = 1 + num_layers * layer_step_cyc + head_cyc + 1``
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nvmlstm.golden.config import LstmConfig

from .lanes import CellLane, GateLane, HiddenLane, cell_shape
from .macro import NvmArrayMacro
from .params import check_int
from .progmap import ProgramMap

__all__ = ["NvmLstmAccelerator"]


class NvmLstmAccelerator(wiring.Component):
    """Accelerator for every model of ``cfg``; models are loaded through the programming port.

    Parameters
    ----------
    cfg : LstmConfig
    lanes : int
        Hidden units processed in parallel, 1 to ``hidden_size``.
    macro_latency : int
        Read latency of the NVM array macros (cycles, >= 1).
    macro_model : str
        ``"instance"`` for Verilog generation, ``"sim"`` for the Amaranth simulator (`hdl.sim`).
    seq_len_bits, cycle_bits : int
        Widths of the ``seq_len`` input and the ``cycles`` counter.

    Attributes
    ----------
    inp : stream, in
        One beat per timestep: ``x`` codes, ``ArrayLayout(signed(dac_bits), input_size)``. A code of
        ``-2**(dac_bits-1)`` (outside the symmetric range) is clamped to ``-dac_max``.
    out : stream, out
        One beat per timestep: ``outputs`` (output codes) and ``h`` (h_t codes of every layer).
    start, seq_len : in
        A ``start`` pulse while idle runs ``seq_len`` timesteps from the current state.
    clear : in
        A pulse while idle zeroes c and h of every layer (each golden sequence starts cleared).
    busy, done : out
        ``busy`` while running; ``done`` pulses for one cycle after the last output beat is accepted.
    cycles : out
        Cycles since the last ``start`` (holds when idle).
    prog_addr, prog_data, prog_we : in
        Programming port (`hdl.progmap`), effective while idle.
    """

    def __init__(self, cfg: LstmConfig, *, lanes: int, macro_latency: int = 2, macro_model: str = "instance",
                 seq_len_bits: int = 16, cycle_bits: int = 32):
        if not isinstance(cfg, LstmConfig):
            raise TypeError(f"cfg must be an LstmConfig, not {type(cfg).__name__}")
        check_int("lanes", lanes, 1, cfg.hidden_size)
        check_int("macro_latency", macro_latency, 1, 64)
        check_int("seq_len_bits", seq_len_bits, 1, 32)
        check_int("cycle_bits", cycle_bits, 8, 64)
        self.cfg = cfg
        self.lanes = lanes
        self.macro_latency = macro_latency
        self.groups = math.ceil(cfg.hidden_size / lanes)
        self.pmap = ProgramMap(cfg)
        self.layer_acc_bits = [cfg.acc_bits(cfg.layer_rows(l), cfg.adc_bits) for l in range(cfg.num_layers)]
        self.acc_width = max(self.layer_acc_bits)
        self.out_bits = cfg.acc_bits(cfg.head_rows, cfg.head_adc_bits_eff)
        self.macros = []
        for ref in self.pmap.tiles:
            adc_bits = cfg.head_adc_bits_eff if ref.layer is None else cfg.adc_bits
            self.macros.append(NvmArrayMacro(
                rows=cfg.array_rows, cols=cfg.array_cols, weight_bits=cfg.weight_bits, dac_bits=cfg.dac_bits,
                adc_bits=adc_bits, adc_step_bits=cfg.adc_step_bits, read_latency=macro_latency, model=macro_model))
        self.in_layout = data.ArrayLayout(signed(cfg.dac_bits), cfg.input_size)
        self.out_layout = data.StructLayout({
            "outputs": data.ArrayLayout(signed(self.out_bits), cfg.output_size),
            "h": data.ArrayLayout(data.ArrayLayout(signed(cfg.dac_bits), cfg.hidden_size), cfg.num_layers),
        })
        super().__init__({
            "inp": In(stream.Signature(self.in_layout)),
            "out": Out(stream.Signature(self.out_layout)),
            "start": In(1),
            "seq_len": In(unsigned(seq_len_bits)),
            "clear": In(1),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(unsigned(cycle_bits)),
            "prog_addr": In(unsigned(self.pmap.addr_bits)),
            "prog_data": In(unsigned(self.pmap.data_bits)),
            "prog_we": In(1),
        })

    # ---------------------------------------------------------------------------------------------
    @property
    def layer_step_cyc(self) -> int:
        """Cycles of one layer in one timestep: ``macro_latency + ceil(H / lanes) + 3``."""
        return self.macro_latency + self.groups + 3

    @property
    def head_cyc(self) -> int:
        """Cycles of the dense head: ``macro_latency + 1``."""
        return self.macro_latency + 1

    @property
    def timestep_cyc(self) -> int:
        """Cycles per timestep with no stream stalls: ``1 + num_layers * layer_step_cyc + head_cyc + 1``."""
        return 1 + self.cfg.num_layers * self.layer_step_cyc + self.head_cyc + 1

    def sequence_cyc(self, steps: int) -> int:
        """Cycles from ``start`` to ``done`` for ``steps`` timesteps with no stalls (``cycles`` at ``done``)."""
        return steps * self.timestep_cyc

    # ---------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        cfg, pm = self.cfg, self.pmap
        L, H, G, lanes = cfg.num_layers, cfg.hidden_size, self.groups, self.lanes
        m = Module()

        # --- state and configuration registers
        x = [Signal(signed(cfg.dac_bits), name=f"x_{k}") for k in range(cfg.input_size)]
        h_state = [[Signal(signed(cfg.dac_bits), name=f"h_l{l}_{u}") for u in range(H)] for l in range(L)]
        c_state = [[Signal(cell_shape(cfg), name=f"c_l{l}_{u}") for u in range(H)] for l in range(L)]
        step_reg = [Signal(unsigned(cfg.adc_step_bits), init=1, name=f"adc_step_l{l}") for l in range(L)]
        head_step = Signal(unsigned(cfg.adc_step_bits), init=1, name="adc_step_head")
        scale_reg = [[Signal(unsigned(cfg.scale_bits), name=f"scale_l{l}_{gn}") for gn in "ifgo"] for l in range(L)]
        out_reg = [Signal(signed(self.out_bits), name=f"out_{o}") for o in range(cfg.output_size)]

        idle = Signal()
        layer = Signal(range(max(L, 2)))
        read_layer = Signal(L)  # one strobe per layer
        head_read = Signal()

        # --- macros: row inputs, strobes, steps, programming
        tile_bits_lo = pm.row_bits + pm.col_bits
        is_weight = ~self.prog_addr[-1]
        prog_tile = self.prog_addr[tile_bits_lo : tile_bits_lo + pm.tile_bits]
        dmax = Const(cfg.dac_max, signed(cfg.dac_bits))
        zero = Const(0, signed(cfg.dac_bits))
        for ref, mac in zip(pm.tiles, self.macros):
            m.submodules[f"macro_{ref.name}"] = mac
            t = ref.tile
            rows = []
            for k in range(cfg.array_rows):
                kg = t.row_start + k
                if ref.layer is None:
                    n_in = H
                    src = h_state[L - 1][kg] if kg < H else (dmax if kg == H else zero)
                else:
                    n_in = cfg.layer_input_size(ref.layer)
                    K = cfg.layer_rows(ref.layer)
                    if kg < n_in:
                        src = x[kg] if ref.layer == 0 else h_state[ref.layer - 1][kg]
                    elif kg < n_in + H:
                        src = h_state[ref.layer][kg - n_in]
                    elif kg == K - 1:
                        src = dmax
                    else:
                        src = zero
                rows.append(src)
            m.d.comb += [
                mac.x.eq(Cat(*rows)),
                mac.adc_step.eq(head_step if ref.layer is None else step_reg[ref.layer]),
                mac.read.eq(head_read if ref.layer is None else read_layer[ref.layer]),
                mac.prog_row.eq(self.prog_addr[pm.col_bits : pm.col_bits + pm.row_bits]),
                mac.prog_col.eq(self.prog_addr[: pm.col_bits]),
                mac.prog_code.eq(self.prog_data[: cfg.weight_bits]),
                mac.prog_we.eq(self.prog_we & idle & is_weight & (prog_tile == ref.global_index)),
            ]

        def column_sum(layer_idx, n, width):
            """Sum over row tiles of the ADC code of global column n of a matrix."""
            refs = pm.layer_tiles(layer_idx)
            ab = cfg.head_adc_bits_eff if layer_idx is None else cfg.adc_bits
            c_tile, j = divmod(n, cfg.array_cols)
            terms = [self.macros[r.global_index].y[j * ab : (j + 1) * ab].as_signed()
                     for r in refs if r.tile.col_tile == c_tile]
            s = Signal(signed(width), name=f"acc_{'head' if layer_idx is None else f'l{layer_idx}'}_{n}")
            m.d.comb += s.eq(sum(terms[1:], terms[0]))
            return s

        acc = [[column_sum(l, n, self.layer_acc_bits[l]) for n in range(4 * H)] for l in range(L)]
        head_sum = [column_sum(None, o, self.out_bits) for o in range(cfg.output_size)]
        layer_valid = Array(self.macros[pm.layer_tiles(l)[0].global_index].valid for l in range(L))[layer]
        head_valid = self.macros[pm.layer_tiles(None)[0].global_index].valid

        # --- programming of registers (while idle)
        reg_idx = self.prog_addr[: pm.reg_bits]
        with m.If(self.prog_we & idle & ~is_weight):
            step_data = self.prog_data[: cfg.adc_step_bits]
            step_val = Signal(unsigned(cfg.adc_step_bits))
            m.d.comb += step_val.eq(step_data | (step_data == 0))  # 0 is stored as 1
            with m.Switch(reg_idx):
                for l in range(L):
                    with m.Case(l):
                        m.d.sync += step_reg[l].eq(step_val)
                with m.Case(L):
                    m.d.sync += head_step.eq(step_val)
                for l in range(L):
                    for g in range(4):
                        with m.Case(L + 1 + 4 * l + g):
                            m.d.sync += scale_reg[l][g].eq(self.prog_data[: cfg.scale_bits])

        # --- lane pipeline: issue -> GateLane (1) -> CellLane (1) -> HiddenLane (1)
        issue = Signal()
        group = Signal(range(max(G, 2)))  # group entering the lanes this cycle (comb)
        issue_group = Signal(range(max(G, 2)))  # next group to issue in ISSUE
        sel = Signal(range(max(L * G, 2)))
        m.d.comb += sel.eq(layer * G + group)
        p1_valid, p2_valid, p3_valid = Signal(), Signal(), Signal()
        p1_sel, p2_sel, p3_sel = (Signal(range(max(L * G, 2)), name=f"p{i}_sel") for i in (1, 2, 3))
        m.d.sync += [p1_valid.eq(issue), p1_sel.eq(sel),
                     p2_valid.eq(p1_valid), p2_sel.eq(p1_sel),
                     p3_valid.eq(p2_valid), p3_sel.eq(p2_sel)]
        zero_acc = Const(0, signed(self.acc_width))
        zero_c = Const(0, cell_shape(cfg))
        for q in range(lanes):
            gl = GateLane(cfg, self.acc_width)
            cl = CellLane(cfg)
            hl = HiddenLane(cfg)
            m.submodules[f"gate_lane_{q}"] = gl
            m.submodules[f"cell_lane_{q}"] = cl
            m.submodules[f"hidden_lane_{q}"] = hl
            units = [k * lanes + q for k in range(G)]
            for g, gn in enumerate("ifgo"):
                choices = [acc[l][g * H + u] if u < H else zero_acc for l in range(L) for u in units]
                m.d.comb += [
                    getattr(gl, f"acc_{gn}").eq(Array(choices)[sel]),
                    getattr(gl, f"scale_{gn}").eq(Array(scale_reg[l][g] for l in range(L))[layer]),
                ]
            c_choices = [c_state[l][u] if u < H else zero_c for l in range(L) for u in units]
            m.d.comb += [
                cl.i.eq(gl.i), cl.f.eq(gl.f), cl.g.eq(gl.g), cl.o.eq(gl.o),
                cl.c_prev.eq(Array(c_choices)[p1_sel]),
                hl.c.eq(cl.c), hl.o.eq(cl.o_out),
            ]
            for l in range(L):
                for k, u in enumerate(units):
                    if u >= H:
                        continue
                    with m.If(p2_valid & (p2_sel == l * G + k)):
                        m.d.sync += c_state[l][u].eq(cl.c)
                    with m.If(p3_valid & (p3_sel == l * G + k)):
                        m.d.sync += h_state[l][u].eq(hl.h)

        # --- control
        remaining = Signal.like(self.seq_len)
        drain = Signal(range(4))
        m.d.comb += self.busy.eq(~idle)
        m.d.sync += self.done.eq(0)
        with m.If(~idle):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        for o in range(cfg.output_size):
            m.d.comb += self.out.payload.outputs[o].eq(out_reg[o])
        for l in range(L):
            for u in range(H):
                m.d.comb += self.out.payload.h[l][u].eq(h_state[l][u])

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(self.clear):
                    for l in range(L):
                        m.d.sync += [s.eq(0) for s in h_state[l]] + [s.eq(0) for s in c_state[l]]
                with m.Elif(self.start):
                    m.d.sync += self.cycles.eq(0)
                    with m.If(self.seq_len == 0):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.d.sync += remaining.eq(self.seq_len)
                        m.next = "INPUT"
            with m.State("INPUT"):
                m.d.comb += self.inp.ready.eq(1)
                with m.If(self.inp.valid):
                    for k in range(cfg.input_size):
                        v = self.inp.payload[k]
                        m.d.sync += x[k].eq(Mux(v < -cfg.dac_max, -cfg.dac_max, v))
                    m.d.sync += layer.eq(0)
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += read_layer.eq((Const(1, L) << layer)[:L])
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(layer_valid):
                    m.d.comb += [issue.eq(1), group.eq(0)]
                    if G == 1:
                        m.d.sync += drain.eq(0)
                        m.next = "DRAIN"
                    else:
                        m.d.sync += issue_group.eq(1)
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [issue.eq(1), group.eq(issue_group)]
                m.d.sync += issue_group.eq(issue_group + 1)
                with m.If(issue_group == G - 1):
                    m.d.sync += drain.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == 2):
                    with m.If(layer == L - 1):
                        m.next = "HEAD_READ"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "READ"
            with m.State("HEAD_READ"):
                m.d.comb += head_read.eq(1)
                m.next = "HEAD_WAIT"
            with m.State("HEAD_WAIT"):
                with m.If(head_valid):
                    m.d.sync += [r.eq(s) for r, s in zip(out_reg, head_sum)]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.comb += self.out.valid.eq(1)
                with m.If(self.out.ready):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining == 1):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "INPUT"
        return m
