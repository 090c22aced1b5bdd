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
from amaranth.hdl import Fragment, Module, Signal, signed
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
from nvmlstm.hdl.lanes import CellLane, GateLane, rshift_round
from nvmlstm.hdl.progmap import ProgramMap
from nvmlstm.hdl.sim import run_accelerator

CFG = small_config()


def sim_values(m: Module, inputs: list[list[tuple]], outputs: list, *, sync: bool = False) -> list[list[int]]:
    """Drive each list of ``inputs`` ((signal, value) pairs) and read ``outputs``: at once (combinational;
    a testbench sees settled values) or after one clock edge with ``sync``."""
    seen: list[list[int]] = []

    async def bench(ctx):
        for vec in inputs:
            for sig, v in vec:
                ctx.set(sig, v)
            if sync:
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
    got = sim_values(m, [[(gl.acc, idx), (gl.scale, [unit] * 4)]], [gl.gates[k] for k in range(4)], sync=True)[0]
    assert got == [int(activation(i, t, cfg)) for i, t in zip(idx, PERMUTED_IS_TANH)]
    assert got[PERMUTED.index("g")] == int(activation(idx[PERMUTED.index("g")], True, cfg))

    cl = CellLane(cfg)
    m = Module()
    m.submodules.cl = cl
    named = {"i": 200, "f": 150, "g": -90, "o": 77}
    got = sim_values(m, [[(cl.gates, [named[n] for n in PERMUTED]), (cl.c_prev, 300)]], [cl.c, cl.o], sync=True)[0]
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
    assert (bank.c_prev_cyc, bank.c_cyc, bank.latency_cyc) == (2, 3, 4)
    assert base.lane_bank.latency_cyc == 3
    assert top.layer_step_cyc == base.layer_step_cyc + 1
    assert top.timestep_cyc == base.timestep_cyc + CFG.num_layers
    assert top.latency_formulas["layer_step_cyc"] == "macro_latency + ceil(hidden_size / lanes) + 4"
    assert base.latency_formulas["layer_step_cyc"] == "macro_latency + ceil(hidden_size / lanes) + 3"
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
    """The check above can fail: a control that kept a fixed 3-cycle drain (the old literal) breaks the
    deeper pipeline; the h of the last group would be read before it is written."""
    monkeypatch.setattr(hdl.lanes, "GateLane", SlowGateLane)
    top = NvmLstmAccelerator(CFG, lanes=2, macro_model="sim")
    monkeypatch.setattr(type(top.lane_bank), "latency_cyc", property(lambda self: 3))
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
