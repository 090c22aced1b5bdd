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

Structure (each part its own block with a latency property; the top composes them, no depth is written
twice): `hdl.registers.ConfigRegisters` (ADC steps, gate scales), `hdl.array.MacroArray` (the macros and
their column sums, ``latency_cyc`` = the macros' read latency), `hdl.lanes.LaneBank` (the lane pipeline,
``latency_cyc`` = the sum of its stages'), and here the state registers and the control FSM. Both
programmed blocks are joined to the programming port with ``wiring.connect``.

Latency (no stalls on the streams), with ``L_a`` the array's and ``L_b`` the lane bank's latency and
``G = ceil(H / lanes)``:

* ``layer_step_cyc = 1 + L_a + (G - 1) + L_b`` (READ 1, WAIT L_a whose last cycle issues group 0, ISSUE
  G - 1, DRAIN L_b); today ``macro_latency + G + 7`` (L_b = 7: input registers 1, gate 2, cell 2, hidden 2)
* ``head_cyc = 1 + L_a``
* ``timestep_cyc = 1 + num_layers * layer_step_cyc + head_cyc + 1``
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nvmlstm.golden import config as _config
from nvmlstm.golden.config import DEFAULT_MACRO_LATENCY_CYC, LstmConfig, check_int

from .array import MacroArray
from .lanes import LaneBank, cell_shape
from .macro import check_macro_model
from .params import parameter
from .progmap import ProgramMap
from .registers import ConfigRegisters, ProgramSignature

__all__ = ["NvmLstmAccelerator"]


class NvmLstmAccelerator(wiring.Component):
    """Accelerator for every model of ``cfg``; models are loaded through the programming port.

    Parameters
    ----------
    cfg : LstmConfig
    lanes : int, optional
        Hidden units processed in parallel, 1 to ``hidden_size`` (default ``hidden_size``).
    macro_latency : int
        Read latency of the NVM array macros (cycles, 1 to 64).
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
        Programming port (`hdl.progmap`), effective while idle. Flat top-level ports (the names of the
        manifest and the testbench); inside, they drive one `hdl.registers.ProgramSignature` interface.
    cfg, lanes, macro_latency, macro_model, seq_len_bits, cycle_bits
        The build parameters (read-only; ``lanes`` resolved from ``None``).
    regs, array, lane_bank : ConfigRegisters, MacroArray, LaneBank
        The parts (built here, elaborated as submodules of those names).
    macros : list of NvmArrayMacro
        ``array.macros``, in `hdl.progmap.ProgramMap.tiles` order.
    """

    #: Cycles of the one-cycle FSM states: INPUT (an x beat arrives without stall), READ / HEAD_READ (the read
    #: strobe), OUTPUT (the beat is taken without stall).
    INPUT_CYC = READ_CYC = OUTPUT_CYC = 1

    #: Submodule name of the macro array (the first element of every macro's hierarchy path).
    ARRAY_NAME = "array"

    @staticmethod
    def check_parameters(
        cfg: LstmConfig,
        *,
        lanes: int | None = None,
        macro_latency: int = DEFAULT_MACRO_LATENCY_CYC,
        macro_model: str = "instance",
        seq_len_bits: int = 16,
        cycle_bits: int = 32,
    ) -> int:
        """The one validation of the constructor's arguments, callable before building anything.

        Returns ``lanes`` (``None`` means ``hidden_size``). Raises ``TypeError`` / ``ValueError`` with one line
        naming the argument, its valid range and the value.
        """
        if not isinstance(cfg, LstmConfig):
            raise TypeError(f"cfg must be an LstmConfig, not {type(cfg).__name__}")
        H = cfg.hidden_size
        lanes = H if lanes is None else lanes
        try:
            check_int("lanes", lanes, 1, H)
        except ValueError:  # the range names hidden_size, whose value bounds it
            raise ValueError(f"lanes must be an integer from 1 to hidden_size ({H}), not {lanes!r}") from None
        check_int("macro_latency", macro_latency, 1, 64)
        check_macro_model(macro_model)
        check_int("seq_len_bits", seq_len_bits, 1, 32)
        check_int("cycle_bits", cycle_bits, 8, 64)
        return lanes

    def __init__(
        self,
        cfg: LstmConfig,
        *,
        lanes: int | None = None,
        macro_latency: int = DEFAULT_MACRO_LATENCY_CYC,
        macro_model: str = "instance",
        seq_len_bits: int = 16,
        cycle_bits: int = 32,
    ):
        lanes = self.check_parameters(
            cfg,
            lanes=lanes,
            macro_latency=macro_latency,
            macro_model=macro_model,
            seq_len_bits=seq_len_bits,
            cycle_bits=cycle_bits,
        )
        self._cfg = cfg
        self._lanes = lanes
        self._macro_latency = macro_latency
        self._macro_model = macro_model
        self._seq_len_bits, self._cycle_bits = seq_len_bits, cycle_bits
        self._pmap = ProgramMap(cfg)
        # The parts, built here so that their latencies (and the top's) are known before elaboration.
        self._regs = ConfigRegisters(self.pmap)
        self._array = MacroArray(self.pmap, macro_latency=macro_latency, macro_model=macro_model)
        self._lane_bank = LaneBank(cfg, lanes=lanes, acc_width=self.acc_width, n_tags=cfg.num_layers * self.groups)
        self._in_layout = data.ArrayLayout(signed(cfg.dac_bits), cfg.input_size)
        self._out_layout = data.StructLayout(
            {
                "outputs": data.ArrayLayout(signed(self.out_bits), cfg.output_size),
                "h": data.ArrayLayout(data.ArrayLayout(signed(cfg.dac_bits), cfg.hidden_size), cfg.num_layers),
            }
        )
        super().__init__(
            {
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
            }
        )

    # ---------------------------------------------------------------------------------------------
    # The build parameters and the parts (read-only: the design is built from them in the constructor).
    cfg: LstmConfig = parameter("cfg", "The LSTM configuration the accelerator runs (every model of it).")
    lanes: int = parameter("lanes", "Hidden units processed in parallel (resolved from ``None`` to ``hidden_size``).")
    macro_latency: int = parameter("macro_latency", "Read latency of the NVM array macros (cycles).")
    macro_model: str = parameter("macro_model", '``"instance"`` for Verilog, ``"sim"`` for the Amaranth simulator.')
    seq_len_bits: int = parameter("seq_len_bits", "Width of the ``seq_len`` input.")
    cycle_bits: int = parameter("cycle_bits", "Width of the ``cycles`` counter.")

    @property
    def groups(self) -> int:
        """Groups of ``lanes`` units per layer: ``ceil(hidden_size / lanes)``."""
        return math.ceil(self.cfg.hidden_size / self.lanes)

    pmap: ProgramMap = parameter("pmap")
    regs: ConfigRegisters = parameter("regs")
    array: MacroArray = parameter("array")
    lane_bank: LaneBank = parameter("lane_bank")

    @property
    def macros(self) -> list:
        return self.array.macros

    @property
    def layer_acc_bits(self) -> list[int]:
        return self.array.layer_acc_bits

    @property
    def acc_width(self) -> int:
        """Signed width of the column sums the lane bank takes: the widest layer's."""
        return max(self.layer_acc_bits)

    @property
    def out_bits(self) -> int:
        return self.array.out_bits

    in_layout: data.ArrayLayout = parameter("in_layout", "Payload layout of ``inp``.")
    out_layout: data.StructLayout = parameter("out_layout", "Payload layout of ``out``.")

    # ---------------------------------------------------------------------------------------------
    @property
    def layer_step_cyc(self) -> int:
        """Cycles of one layer in one timestep: READ + the array's latency (WAIT; its last cycle issues group
        0) + the other ``groups - 1`` groups (ISSUE) + the lane bank's latency (DRAIN)."""
        return self.READ_CYC + self.array.latency_cyc + (self.groups - 1) + self.lane_bank.latency_cyc

    @property
    def head_cyc(self) -> int:
        """Cycles of the dense head: HEAD_READ + the array's latency (HEAD_WAIT)."""
        return self.READ_CYC + self.array.latency_cyc

    @property
    def timestep_cyc(self) -> int:
        """Cycles per timestep with no stream stalls: INPUT + the layers + the head + OUTPUT."""
        return self.INPUT_CYC + self.cfg.num_layers * self.layer_step_cyc + self.head_cyc + self.OUTPUT_CYC

    def sequence_cyc(self, steps: int) -> int:
        """Cycles from ``start`` to ``done`` for ``steps`` timesteps with no stalls (``cycles`` at ``done``)."""
        return steps * self.timestep_cyc

    @property
    def latency_formulas(self) -> dict[str, str]:
        """The latency properties as formulas of the build parameters, with the parts' latencies filled in
        (the manifest records them)."""
        extra = self.READ_CYC - 1 + self.lane_bank.latency_cyc
        return {
            "layer_step_cyc": f"macro_latency + ceil(hidden_size / lanes) + {extra}",
            "head_cyc": f"macro_latency + {self.READ_CYC}",
            "timestep_cyc": f"{self.INPUT_CYC} + num_layers * layer_step_cyc + head_cyc + {self.OUTPUT_CYC}",
            "sequence_cyc": "steps * timestep_cyc (cycles from start to done, no stream stalls)",
        }

    def macro_instance_path(self, ref) -> str:
        """Hierarchical name, below the top, of tile ``ref``'s ``nvm_array_macro`` instance."""
        return ".".join((self.ARRAY_NAME, *MacroArray.macro_path(ref)))

    # ---------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = self.regs
        m.submodules[self.ARRAY_NAME] = self.array
        m.submodules.lane_bank = self.lane_bank
        st = self._state(m)
        # One programming interface for both programmed blocks; writes take effect only while idle.
        prog = ProgramSignature(addr_bits=self.pmap.addr_bits, data_bits=self.pmap.data_bits).create(path=("prog",))
        m.d.comb += [prog.addr.eq(self.prog_addr), prog.data.eq(self.prog_data), prog.we.eq(self.prog_we & st.idle)]
        wiring.connect(m, prog, self.regs.prog, self.array.prog)
        wiring.connect(m, self.regs.steps, self.array.steps)
        self._array_rows(m, st)
        self._connect_lanes(m, st)
        self._control(m, st)
        return m

    def _state(self, m: Module) -> _State:
        """The state and the control signals every part shares; the outputs show the state."""
        cfg, L, H = self.cfg, self.cfg.num_layers, self.cfg.hidden_size
        st = _State(
            # x and the output register are datapath: read only after INPUT wrote them / while out.valid
            # says so, so they need no reset (which the mapping would turn into logic before each D).
            x=[Signal(signed(cfg.dac_bits), name=f"x_{k}", reset_less=True) for k in range(cfg.input_size)],
            h=[[Signal(signed(cfg.dac_bits), name=f"h_l{l}_{u}") for u in range(H)] for l in range(L)],
            c=[[Signal(cell_shape(cfg), name=f"c_l{l}_{u}") for u in range(H)] for l in range(L)],
            out=[Signal(signed(self.out_bits), name=f"out_{o}", reset_less=True) for o in range(cfg.output_size)],
            idle=Signal(),
            layer=Signal(range(max(L, 2)), name="layer"),
            issue=Signal(),
            # the tag of the group entering the lanes when issue is high: a register, so that the selection
            # muxes decode a flip-flop output, not the control's next-state logic
            tag=Signal(range(max(cfg.num_layers * self.groups, 2)), name="issue_tag"),
        )
        for o in range(cfg.output_size):
            m.d.comb += self.out.payload.outputs[o].eq(st.out[o])
        for l in range(L):
            for u in range(H):
                m.d.comb += self.out.payload.h[l][u].eq(st.h[l][u])
        return st

    def _array_rows(self, m: Module, st: _State) -> None:
        """Row vectors of every matrix: ``[x or h of layer l-1 | h of layer l | bias]``, head ``[h of the last
        layer | bias]``; the bias row carries the code dac_max."""
        cfg, L = self.cfg, self.cfg.num_layers
        dmax = Const(cfg.dac_max, signed(cfg.dac_bits))
        for l in range(L):
            vec = (st.x if l == 0 else st.h[l - 1]) + st.h[l] + [dmax]
            assert len(vec) == cfg.layer_rows(l)
            m.d.comb += [self.array.rows(l)[k].eq(v) for k, v in enumerate(vec)]
        vec = st.h[L - 1] + [dmax]
        assert len(vec) == cfg.head_rows
        m.d.comb += [self.array.rows(None)[k].eq(v) for k, v in enumerate(vec)]

    def _connect_lanes(self, m: Module, st: _State) -> None:
        """Lane q takes units q, q + lanes, ...: the issued group's column sums and the layer's gate scales
        in, its c_prev from the c state, its c and h into the state at the tags the bank returns."""
        cfg, bank = self.cfg, self.lane_bank
        L, H, G, lanes = cfg.num_layers, cfg.hidden_size, self.groups, self.lanes
        n_gates = len(_config.GATES)
        tag = st.tag
        m.d.comb += [bank.issue.eq(st.issue), bank.tag.eq(tag)]
        for g in range(n_gates):
            m.d.comb += bank.scale[g].eq(Array(self.regs.scale[l][g] for l in range(L))[st.layer])
        zero_acc = Const(0, signed(self.acc_width))
        zero_c = Const(0, cell_shape(cfg))
        for q in range(lanes):
            units = [k * lanes + q for k in range(G)]  # tag l * G + k selects unit units[k] of layer l
            for g in range(n_gates):
                choices = [self.array.acc(l)[g * H + u] if u < H else zero_acc for l in range(L) for u in units]
                m.d.comb += bank.acc[q][g].eq(Array(choices)[tag])
            c_choices = [st.c[l][u] if u < H else zero_c for l in range(L) for u in units]
            m.d.comb += bank.c_prev[q].eq(Array(c_choices)[bank.c_prev_tag])
            for l in range(L):
                for k, u in enumerate(units):
                    if u >= H:
                        continue
                    with m.If(bank.c_valid & (bank.c_tag == l * G + k)):
                        m.d.sync += st.c[l][u].eq(bank.c[q])
                    with m.If(bank.h_valid & (bank.h_tag == l * G + k)):
                        m.d.sync += st.h[l][u].eq(bank.h[q])

    def _control(self, m: Module, st: _State) -> None:
        """The control FSM (docs/rtl.md section 3): one timestep is INPUT, per layer READ, WAIT, ISSUE, DRAIN,
        then HEAD_READ, HEAD_WAIT, OUTPUT. WAIT lasts the array's latency, DRAIN the lane bank's."""
        cfg, L, G = self.cfg, self.cfg.num_layers, self.groups
        drain_cyc = self.lane_bank.latency_cyc
        remaining = Signal.like(self.seq_len)
        drain = Signal(range(max(drain_cyc, 2)))
        issue_group = Signal(range(max(G, 2)))  # next group to issue in ISSUE
        layer_valid = Array(self.array.valid[l] for l in range(L))[st.layer]
        m.d.comb += self.busy.eq(~st.idle)
        m.d.sync += self.done.eq(0)
        with m.If(~st.idle):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                m.d.comb += st.idle.eq(1)
                with m.If(self.clear):
                    for l in range(L):
                        m.d.sync += [s.eq(0) for s in st.h[l]] + [s.eq(0) for s in st.c[l]]
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
                        m.d.sync += st.x[k].eq(Mux(v < -cfg.dac_max, -cfg.dac_max, v))
                    m.d.sync += st.layer.eq(0)
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.array.read.eq((Const(1, L) << st.layer)[:L])
                m.d.sync += st.tag.eq(st.layer * G)  # group 0 of this layer
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(layer_valid):
                    m.d.comb += st.issue.eq(1)
                    m.d.sync += st.tag.eq(st.tag + 1)
                    if G == 1:
                        m.d.sync += drain.eq(0)
                        m.next = "DRAIN"
                    else:
                        m.d.sync += issue_group.eq(1)
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += st.issue.eq(1)
                m.d.sync += [issue_group.eq(issue_group + 1), st.tag.eq(st.tag + 1)]
                with m.If(issue_group == G - 1):
                    m.d.sync += drain.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):  # until the last group's h is in the state that the next read samples
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == drain_cyc - 1):
                    with m.If(st.layer == L - 1):
                        m.next = "HEAD_READ"
                    with m.Else():
                        m.d.sync += st.layer.eq(st.layer + 1)
                        m.next = "READ"
            with m.State("HEAD_READ"):
                m.d.comb += self.array.head_read.eq(1)
                m.next = "HEAD_WAIT"
            with m.State("HEAD_WAIT"):
                with m.If(self.array.head_valid):
                    m.d.sync += [r.eq(self.array.acc(None)[o]) for o, r in enumerate(st.out)]
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


@dataclass
class _State:
    """Registers and control signals shared by the parts of `NvmLstmAccelerator.elaborate`."""

    x: list  # x_t codes, latched in INPUT
    h: list  # h[l][u], the h state of every layer and unit
    c: list  # c[l][u], the cell state
    out: list  # the output register
    idle: Signal  # the FSM is in IDLE (comb)
    layer: Signal  # the layer being computed
    issue: Signal  # a group enters the lane bank this cycle (comb)
    tag: Signal  # its tag, layer * groups + group (a register the control advances)
