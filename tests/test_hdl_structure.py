"""One definition per rule in the RTL, everything else derived from it (issue 8), each shown by changing the
definition and watching the derived form follow:

* the gate order (`golden.config.GATES`): lanes, register map and manifest names follow a permuted order;
* the latencies: a gate stage one register deeper moves the lane bank's delays, the control's drain count,
  the latency properties and the manifest formula, and the accelerator stays bit exact with the golden model
  and takes exactly the cycles its properties say;
* the top-level port list (`gen.rtl.top_ports`): Amaranth's own Verilog port naming, checked against
  ``amaranth.back.verilog.convert`` on a component with nested and array members;
* the Amaranth half-up right shift `hdl.lanes.rshift_round` against `golden.quant.rshift_round` over every
  value of its input for every shift, and a corrupted shift caught.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from config_helpers import small_config

import nvmlstm.golden.config  # noqa: F401 - binds the submodule
import nvmlstm.golden.datapath  # noqa: F401 - binds the submodule
import nvmlstm.hdl.lanes  # noqa: F401 - binds the submodule
from nvmlstm import golden, hdl
from nvmlstm.gen.rtl import _program_map, top_ports
from nvmlstm.golden import golden_forward, random_model
from nvmlstm.golden.datapath import activation, cell_update
from nvmlstm.golden.quant import rshift_round as golden_rshift_round
from nvmlstm.hdl.accelerator import NvmLstmAccelerator
from nvmlstm.hdl.lanes import CellLane, GateLane, HiddenLane, LaneBank, round_saturate, rshift_round
from nvmlstm.hdl.progmap import ProgramMap
from nvmlstm.hdl.sim import run_accelerator

CFG = small_config()


def sim_values(m: Module, inputs: list[list[tuple]], outputs: list, *, sync: int = 0) -> list[list[int]]:
    """Drive each list of ``inputs`` ((signal, value) pairs) and read ``outputs``: at once (combinational;
    a testbench sees settled values) or after ``sync`` clock edges (a registered block's latency)."""
    seen: list[list[int]] = []

    async def bench(ctx):
        for vec in inputs:
            for sig, v in vec:
                ctx.set(sig, v)
            for _ in range(sync):
                await ctx.tick()
            seen.append([int(ctx.get(o)) for o in outputs])

    sim = Simulator(m)
    if sync:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


# --------------------------------------------------------------------------------------------------
# Gate order
PERMUTED = ("o", "g", "f", "i")
PERMUTED_IS_TANH = tuple(n == "g" for n in PERMUTED)


@pytest.fixture
def permuted_gates(monkeypatch):
    """`golden.config.GATES` (and golden's positional tanh flags with it) in another order."""
    assert golden.config.GATES == ("i", "f", "g", "o")
    monkeypatch.setattr(golden.config, "GATES", PERMUTED)
    monkeypatch.setattr(golden.datapath, "GATE_IS_TANH", PERMUTED_IS_TANH)


def test_register_map_and_manifest_follow_the_gate_order(permuted_gates):
    pm = ProgramMap(CFG)
    names = [r["name"] for r in _program_map(pm, CFG)["registers"]]
    assert names[CFG.num_layers + 1 :] == [f"scale_l{l}_{g}" for l in range(CFG.num_layers) for g in PERMUTED]
    assert [r["index"] for r in _program_map(pm, CFG)["registers"]] == list(range(pm.n_regs))


def test_lanes_follow_the_gate_order(permuted_gates):
    """With the gates in another order, element k of the lanes' gate arrays is gate PERMUTED[k]: the tanh
    table serves the element of g, and the cell update takes i, f, g from their new places."""
    cfg = CFG
    gl = GateLane(cfg, 8)
    idx = [-3, 2, 5, -7]  # scale 2**scale_shift: index = acc
    unit = 1 << cfg.scale_shift
    m = Module()
    m.submodules.gl = gl
    got = sim_values(
        m, [[(gl.acc, idx), (gl.scale, [unit] * 4)]], [gl.gates[k] for k in range(4)], sync=gl.latency_cyc
    )[0]
    assert got == [int(activation(i, t, cfg)) for i, t in zip(idx, PERMUTED_IS_TANH)]
    assert got[PERMUTED.index("g")] == int(activation(idx[PERMUTED.index("g")], True, cfg))

    cl = CellLane(cfg)
    m = Module()
    m.submodules.cl = cl
    named = {"i": 200, "f": 150, "g": -90, "o": 77}
    got = sim_values(
        m, [[(cl.gates, [named[n] for n in PERMUTED]), (cl.c_prev, 300)]], [cl.c, cl.o], sync=cl.latency_cyc
    )[0]
    assert got == [int(cell_update(named["f"], 300, named["i"], named["g"], cfg)), named["o"]]


# --------------------------------------------------------------------------------------------------
# Latencies: composed from the parts
class SlowGateLane(GateLane):
    """A gate stage with one more register after the activation tables (latency 2)."""

    @property
    def latency_cyc(self) -> int:
        return super().latency_cyc + 1

    def elaborate(self, platform):
        m = Module()
        inner = GateLane(self.cfg, self.acc_width)
        m.submodules.inner = inner
        m.d.comb += [inner.acc.eq(self.acc), inner.scale.eq(self.scale)]
        m.d.sync += self.gates.eq(inner.gates)
        return m


def test_a_deeper_lane_stage_moves_every_derived_latency(monkeypatch):
    base = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    Fragment.get(base, None)  # built for its properties: elaborated so that it is not an unused design
    monkeypatch.setattr(hdl.lanes, "GateLane", SlowGateLane)
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    bank = top.lane_bank
    was = base.lane_bank
    assert bank.gate_lanes[0].latency_cyc == was.gate_lanes[0].latency_cyc + 1 == 4
    assert bank.input_cyc == was.input_cyc
    assert (bank.c_prev_cyc, bank.cell_in_cyc, bank.c_cyc, bank.latency_cyc) == (
        was.c_prev_cyc + 1,
        was.cell_in_cyc + 1,
        was.c_cyc + 1,
        was.latency_cyc + 1,
    )
    assert top.layer_step_cyc == base.layer_step_cyc + 1
    assert top.timestep_cyc == base.timestep_cyc + CFG.num_layers
    extra = was.latency_cyc  # READ_CYC - 1 + the bank's latency
    assert top.latency_formulas["layer_step_cyc"] == f"macro_latency + ceil(hidden_size / lanes) + {extra + 1}"
    assert base.latency_formulas["layer_step_cyc"] == f"macro_latency + ceil(hidden_size / lanes) + {extra}"
    # the design with the deeper stage still computes the golden model, in exactly the cycles it states
    rng = np.random.default_rng(31)
    x = rng.integers(-CFG.dac_max, CFG.dac_max + 1, size=(2, 3, CFG.input_size))
    model, _ = random_model(CFG, 31, x)
    trace = golden_forward(model, x)
    run = run_accelerator(top, model, x)
    assert np.array_equal(run.outputs, trace["outputs"])
    for l in range(CFG.num_layers):
        assert np.array_equal(run.h[:, :, l], trace[f"l{l}_h"])
    assert run.cycles == [top.sequence_cyc(3)] * 2


def test_the_composed_latency_is_what_the_design_does(monkeypatch):
    """The check above can fail: a control that kept the drain of the shallower pipeline (a literal) breaks
    the deeper one; the h of the last group would be read before it is written."""
    shallow = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim").lane_bank.latency_cyc
    monkeypatch.setattr(hdl.lanes, "GateLane", SlowGateLane)
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    monkeypatch.setattr(type(top.lane_bank), "latency_cyc", property(lambda self: shallow))
    rng = np.random.default_rng(32)
    x = rng.integers(-CFG.dac_max, CFG.dac_max + 1, size=(1, 3, CFG.input_size))
    model, _ = random_model(CFG, 32, x)
    trace = golden_forward(model, x)
    run = run_accelerator(top, model, x)
    assert not (
        np.array_equal(run.outputs, trace["outputs"])
        and all(np.array_equal(run.h[:, :, l], trace[f"l{l}_h"]) for l in range(CFG.num_layers))
    )


# --------------------------------------------------------------------------------------------------
# Top-level ports: Amaranth's naming rule
class _Toy(wiring.Component):
    def __init__(self):
        super().__init__(
            {
                "inp": In(stream.Signature(data.ArrayLayout(signed(3), 2))),
                "out": Out(stream.Signature(4)),
                "flag": Out(1).array(2),
                "nested": In(wiring.Signature({"a": Out(5), "b": In(2)})),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.out.payload.eq(self.inp.payload.as_value()),
            self.out.valid.eq(self.inp.valid),
            self.inp.ready.eq(self.out.ready),
            self.flag[0].eq(self.nested.a[0]),
            self.flag[1].eq(1),
            self.nested.b.eq(3),
        ]
        r = Signal()
        m.d.sync += r.eq(~r)
        return m


def test_top_ports_follow_amaranths_naming():
    """`top_ports` names, directions and widths equal the module ports `amaranth.back.verilog.convert`
    writes, for stream, array and nested members; adding a member adds its port."""
    toy = _Toy()
    text = verilog.convert(toy, name="toy", emit_src=False)
    decl = {
        name: {"name": name, "direction": d, "width": int(msb) + 1 if msb else 1}
        for d, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\S+?)\s*;", text, re.M)
    }
    ports = top_ports(toy)
    assert sorted(ports, key=lambda p: p["name"]) == sorted(decl.values(), key=lambda p: p["name"])
    assert {"inp__payload", "flag__0", "flag__1", "nested__a", "nested__b"} <= {p["name"] for p in ports}


# --------------------------------------------------------------------------------------------------
# rshift_round: the Amaranth form against the contract
WIDTH = 9


def shifted_values(shift_fn) -> dict[int, list[int]]:
    """``shift_fn(v, s)`` for every WIDTH-bit signed v and every shift 0..WIDTH, evaluated by Amaranth."""
    v = Signal(signed(WIDTH))
    outs = [Signal(signed(WIDTH + 1), name=f"r{s}") for s in range(WIDTH + 1)]
    m = Module()
    m.d.comb += [o.eq(shift_fn(v, s)) for s, o in enumerate(outs)]
    domain = list(range(-(1 << (WIDTH - 1)), 1 << (WIDTH - 1)))
    rows = sim_values(m, [[(v, x)] for x in domain], outs)
    return {s: [r[s] for r in rows] for s in range(WIDTH + 1)}


def test_rshift_round_equals_the_golden_contract_everywhere():
    domain = np.arange(-(1 << (WIDTH - 1)), 1 << (WIDTH - 1), dtype=np.int64)
    got = shifted_values(rshift_round)
    for s, vals in got.items():
        assert vals == golden_rshift_round(domain, s).tolist(), f"shift {s}"


def test_rshift_round_check_can_fail():
    """A truncating shift (no rounding) differs from the contract for every shift >= 1."""
    domain = np.arange(-(1 << (WIDTH - 1)), 1 << (WIDTH - 1), dtype=np.int64)
    got = shifted_values(lambda v, s: v >> s)
    assert got[0] == golden_rshift_round(domain, 0).tolist()
    assert all(got[s] != golden_rshift_round(domain, s).tolist() for s in range(1, WIDTH + 1))


# --------------------------------------------------------------------------------------------------
# Timing structure (issue 20): register ranks as latency properties, reset-less datapath registers
def test_lane_latencies_compose_from_the_register_ranks():
    """Each stage's latency is its register ranks; the bank's delays are their sums; the top's cycle counts
    follow from the bank's."""
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    Fragment.get(top, None)
    bank = top.lane_bank
    gate, cell, hidden = bank.gate_lanes[0], bank.cell_lanes[0], bank.hidden_lanes[0]
    assert (gate.latency_cyc, cell.latency_cyc, hidden.latency_cyc) == (3, 2, 2)
    assert (gate.REGISTERS, cell.REGISTERS, hidden.REGISTERS) == (3, 2, 2)
    assert bank.input_cyc == bank.INPUT_REGISTERS == 0
    assert bank.cell_in_cyc == bank.input_cyc + gate.latency_cyc
    assert bank.c_prev_cyc == bank.cell_in_cyc - bank.C_PREV_REGISTERS
    assert bank.c_cyc == bank.cell_in_cyc + cell.latency_cyc
    assert bank.latency_cyc == bank.c_cyc + hidden.latency_cyc == 7
    assert top.layer_step_cyc == top.READ_CYC + top.array.latency_cyc + top.groups - 1 + bank.latency_cyc


def test_a_changed_register_count_moves_layer_step(monkeypatch):
    """One rank more in the hidden stage, or one input register more, is one cycle more per layer-timestep
    (the properties are read at once: a class attribute patched later would change them too)."""

    def delays():
        top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
        Fragment.get(top, None)  # built for its properties
        b = top.lane_bank
        return b.c_prev_cyc, b.c_cyc, b.latency_cyc, top.layer_step_cyc

    base = delays()
    monkeypatch.setattr(HiddenLane, "REGISTERS", HiddenLane.REGISTERS + 1)
    deeper = delays()
    assert deeper == (base[0], base[1], base[2] + 1, base[3] + 1)
    monkeypatch.setattr(HiddenLane, "REGISTERS", HiddenLane.REGISTERS - 1)  # the logic has two ranks
    monkeypatch.setattr(LaneBank, "INPUT_REGISTERS", LaneBank.INPUT_REGISTERS + 1)
    wider = delays()
    assert wider == tuple(v + 1 for v in base)
    # the bank with two input registers still computes the golden model in the cycles it states
    rng = np.random.default_rng(33)
    x = rng.integers(-CFG.dac_max, CFG.dac_max + 1, size=(1, 3, CFG.input_size))
    model, _ = random_model(CFG, 33, x)
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    run = run_accelerator(top, model, x)
    trace = golden_forward(model, x)
    assert np.array_equal(run.outputs, trace["outputs"])
    assert run.cycles == [top.sequence_cyc(3)] and top.layer_step_cyc == base[3] + 1


def sync_registers(elaboratable) -> dict[str, bool]:
    """Every signal a ``sync`` statement drives in the design's fragment tree: hierarchical name -> whether it
    has a reset (``not reset_less``)."""
    found: dict[str, bool] = {}

    def walk(frag, path):
        for stmt in frag.statements.get("sync", []):
            for sig in stmt._lhs_signals():
                found[".".join((*path, sig.name))] = not sig.reset_less
        for sub, name, _ in frag.subfragments:
            walk(sub, (*path, name or "?"))

    walk(Fragment.get(elaboratable, None), ())
    return found


#: Registers whose reset the protocol needs: valid bits, the control, the c/h state (cleared after reset,
#: docs/rtl.md section 3) and the run-time registers (ADC steps 1, scales 0 after reset).
CONTROL = re.compile(
    r"(^|\.)(p\d+_valid|issue_tag|ctrl_state|cycles|done|remaining|drain|issue_group|layer|[ch]_l\d+_\d+|"
    r"steps__.*|scale)$"
)


def reset_problems(found: dict[str, bool]) -> list[str]:
    """Registers whose reset disagrees with the rule: datapath reset-less, control (`CONTROL`) with reset."""
    return [
        f"{name}: {'has a reset' if has_reset else 'has no reset'}"
        for name, has_reset in sorted(found.items())
        if has_reset != bool(CONTROL.search(name))
    ]


def test_datapath_registers_have_no_reset_control_keeps_it():
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    found = sync_registers(top)
    assert reset_problems(found) == []
    lanes = {n for n in found if n.startswith("lane_bank.")}
    assert any(n.endswith("prod_i_r") for n in lanes) and any(n.endswith("p1_tag") for n in lanes)
    assert not any(found[n] for n in lanes if "_valid" not in n)  # the whole lane datapath is reset-less
    assert found["lane_bank.p1_valid"] and found["c_l0_0"] and found["h_l0_0"] and not found["x_0"]


def test_reset_check_catches_a_datapath_register_with_reset(monkeypatch):
    """The check above can fail: a gate stage whose index register keeps its reset is reported."""

    def with_reset(m, value, shape, name):
        reg = Signal(shape, name=name)
        m.d.sync += reg.eq(value)
        return reg

    monkeypatch.setattr(hdl.lanes, "datapath_register", with_reset)
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    problems = reset_problems(sync_registers(top))
    assert "lane_bank.gate_lane_0.prod_i_r: has a reset" in problems


def round_saturated(fn, lo: int, hi: int) -> dict[int, list[int]]:
    """``fn(m, v, s, lo, hi, shape, name)`` for every WIDTH-bit signed v and every shift 0..WIDTH."""
    v = Signal(signed(WIDTH))
    m = Module()
    shape = signed(max(abs(lo), abs(hi)).bit_length() + 1)
    outs = [fn(m, v, s, lo, hi, shape, f"r{s}") for s in range(WIDTH + 1)]
    domain = list(range(-(1 << (WIDTH - 1)), 1 << (WIDTH - 1)))
    rows = sim_values(m, [[(v, x)] for x in domain], outs)
    return {s: [r[s] for r in rows] for s in range(WIDTH + 1)}


ROUND_SAT_BOUNDS = [(-3, 3), (-7, 7), (-128, 127), (-1023, 1023), (0, 5), (-1, 0)]


@pytest.mark.parametrize("lo, hi", ROUND_SAT_BOUNDS)
def test_round_saturate_equals_the_golden_contract_everywhere(lo, hi):
    """`round_saturate` (bounds compared before the rounding) == clip(golden rshift_round) for every value
    of a 9-bit input, every shift and bounds inside, at and beyond its range."""
    domain = np.arange(-(1 << (WIDTH - 1)), 1 << (WIDTH - 1), dtype=np.int64)
    got = round_saturated(round_saturate, lo, hi)
    for s, vals in got.items():
        assert vals == np.clip(golden_rshift_round(domain, s), lo, hi).tolist(), f"shift {s}"


def test_round_saturate_check_can_fail():
    """Thresholds off by one (``>`` for ``>=``) differ from the contract for some value at every shift >= 1."""

    def off_by_one(m, value, shift, lo, hi, shape, name):
        if shift == 0:
            return round_saturate(m, value, shift, lo, hi, shape, name)
        half = 1 << (shift - 1)
        out = Signal(shape, name=name)
        over, under = value > ((hi + 1) << shift) - half, value < (lo << shift) - half
        m.d.comb += out.eq(Mux(under, lo, Mux(over, hi, rshift_round(value, shift))))
        return out

    domain = np.arange(-(1 << (WIDTH - 1)), 1 << (WIDTH - 1), dtype=np.int64)
    got = round_saturated(off_by_one, -7, 7)
    want = {s: np.clip(golden_rshift_round(domain, s), -7, 7).tolist() for s in got}
    assert got[0] == want[0]
    assert all(got[s] != want[s] for s in range(1, 6))  # from shift 6 on a 9-bit input never reaches 7.5 * 2**s
