"""The RTL building blocks in the Amaranth simulator, each against the golden stage function it implements.

* `hdl.lanes.GateLane` over the whole activation-table domain (every index, both tables, saturation beyond
  both ends) and random (acc, scale) pairs, against `golden.datapath.gate_index` + `activation`;
* `hdl.lanes.CellLane` over every combination of a corner set and random values, against `cell_update`;
* `hdl.lanes.HiddenLane` over every c_t of the cell format, against `tanh_cell_index` / `activation` /
  `requant_h`;
* `hdl.macro.NvmArrayMacro` (its simulator model): programming, ``y``/``valid`` timing and the ADC codes;
* the accelerator's accumulation over row tiles and its lane pipeline, probed stage by stage against the
  golden trace, and against an untiled integer matrix product with a lossless ADC;
* the constructors' parameter validation (exact messages).

The blocks are driven as pipelines (new inputs every cycle); outputs are read ``latency_cyc`` edges after
their inputs, the latency coming from the block, never written here. Comparisons are integer equality.
Every random draw is seeded.
"""

from __future__ import annotations

import gc
import itertools
import warnings

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Instance, Module, UnusedElaboratable
from amaranth.sim import Simulator
from config_helpers import small_config
from hdl_helpers import simulate_with_macros

import nvmlstm.hdl.accelerator  # noqa: F401 - binds the submodule
import nvmlstm.hdl.sim  # noqa: F401 - binds the submodule
from nvmlstm import hdl
from nvmlstm.golden import LstmConfig, QuantizedModel, default_config, golden_forward, random_model
from nvmlstm.golden.config import GATES as GATE_ORDER
from nvmlstm.golden.datapath import (
    GATE_IS_TANH,
    activation,
    adc_convert,
    cell_update,
    gate_index,
    requant_h,
    tanh_cell_index,
)
from nvmlstm.golden.model import HeadParams, LayerParams
from nvmlstm.hdl.accelerator import NvmLstmAccelerator
from nvmlstm.hdl.array import MacroArray
from nvmlstm.hdl.lanes import CellLane, GateLane, HiddenLane, LaneBank
from nvmlstm.hdl.macro import NvmArrayMacro
from nvmlstm.hdl.progmap import ProgramMap
from nvmlstm.hdl.registers import ConfigRegisters, ProgramSignature, StepSignature
from nvmlstm.hdl.sim import run_accelerator

GATES = "".join(GATE_ORDER)
DEFAULT = default_config()


# ------------------------------------------------------------------------------------------------------
# Helpers
def simulate(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def run_pipeline(dut, latency: int, vectors: list[dict], outputs: list[str], expected: list[dict]) -> list[str]:
    """Drive ``vectors[n]`` (port name -> int, or a list of ints for an array port) in cycle n; the outputs
    after edge n + latency - 1 must equal ``expected[n]`` (an array port element by element, named
    ``port[k]``). Returns every mismatch as text (empty: all equal)."""
    problems: list[str] = []
    assert latency >= 1

    async def testbench(ctx):
        for n in range(len(vectors) + latency - 1):
            if n < len(vectors):
                for port, value in vectors[n].items():
                    ctx.set(getattr(dut, port), [int(v) for v in value] if isinstance(value, list) else int(value))
            await ctx.tick()
            k = n - latency + 1
            if k >= 0:
                for port in outputs:
                    want = expected[k][port]
                    if isinstance(want, list):
                        items = [(f"{port}[{j}]", getattr(dut, port)[j], w) for j, w in enumerate(want)]
                    else:
                        items = [(port, getattr(dut, port), want)]
                    for name, sig, w in items:
                        got = ctx.get(sig)
                        if got != int(w):
                            problems.append(f"vector {k} {vectors[k]}: {name} = {got}, golden {int(w)}")

    simulate(dut, testbench)
    return problems


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


# ------------------------------------------------------------------------------------------------------
# GateLane
GATE_CONFIGS = [
    pytest.param(DEFAULT, id="default"),
    pytest.param(DEFAULT.replace(lut_bits=6, lut_frac=2, frac_bits=5, cell_bits=7, scale_shift=0), id="shift0"),
    pytest.param(
        DEFAULT.replace(lut_bits=10, lut_frac=6, frac_bits=9, cell_bits=12, scale_bits=5, scale_shift=3), id="lut10"
    ),
    pytest.param(
        DEFAULT.replace(lut_bits=5, lut_frac=3, frac_bits=3, cell_bits=5, scale_bits=3, scale_shift=4),
        id="shift_ge_scale_bits",
    ),
    pytest.param(
        DEFAULT.replace(lut_bits=2, lut_frac=0, frac_bits=1, cell_bits=3, scale_bits=1, scale_shift=0), id="tiny"
    ),
]


def gate_expected(acc: dict, scale: dict, cfg: LstmConfig) -> tuple[dict, dict]:
    idx = {g: int(gate_index(acc[g], scale[g], cfg)) for g in GATES}
    out = {g: int(activation(idx[g], GATE_IS_TANH[k], cfg)) for k, g in enumerate(GATES)}
    return idx, out


@pytest.mark.parametrize("cfg", GATE_CONFIGS)
def test_gate_lane_every_table_index_and_random_pairs(cfg: LstmConfig):
    # scale = 2**scale_shift makes idx = acc; if that scale does not fit scale_bits, scale = 1 and
    # acc = idx << scale_shift. The sweep runs 3 past each end of the table (saturation).
    if cfg.scale_shift < cfg.scale_bits:
        unit_scale, acc_of = 1 << cfg.scale_shift, (lambda i: i)
    else:
        unit_scale, acc_of = 1, (lambda i: i << cfg.scale_shift)
    acc_width = cfg.lut_bits + cfg.scale_shift + 3
    lane = GateLane(cfg, acc_width)
    sweep = list(range(cfg.lut_min - 3, cfg.lut_max + 4))
    n = len(sweep)
    vectors, expected, seen = [], [], {g: set() for g in GATES}
    for k in range(n):  # the four gates walk the sweep at different phases
        acc = {g: acc_of(sweep[(k + q * n // 4) % n]) for q, g in enumerate(GATES)}
        scale = {g: unit_scale for g in GATES}
        idx, out = gate_expected(acc, scale, cfg)
        for g in GATES:
            assert idx[g] == max(cfg.lut_min, min(cfg.lut_max, sweep[(k + GATES.index(g) * n // 4) % n]))
            seen[g].add(idx[g])
        vectors.append({"acc": [acc[g] for g in GATES], "scale": [scale[g] for g in GATES]})
        expected.append({"gates": [out[g] for g in GATES]})
    for g in GATES:  # the sweep reaches every table entry of both tables
        assert seen[g] == set(range(cfg.lut_min, cfg.lut_max + 1))

    rng = np.random.default_rng(1000 + cfg.lut_bits)
    lo, hi = signed_range(acc_width)
    for _ in range(600):
        acc = {g: int(rng.integers(lo, hi + 1)) for g in GATES}
        scale = {g: int(rng.choice([0, 1, cfg.scale_max, rng.integers(0, cfg.scale_max + 1)])) for g in GATES}
        _, out = gate_expected(acc, scale, cfg)
        vectors.append({"acc": [acc[g] for g in GATES], "scale": [scale[g] for g in GATES]})
        expected.append({"gates": [out[g] for g in GATES]})

    problems = run_pipeline(lane, lane.latency_cyc, vectors, ["gates"], expected)
    assert not problems, f"{len(problems)} mismatches, first: {problems[:3]}"


def test_gate_lane_checker_catches_a_wrong_expectation():
    """The pipeline checker fails when one expected value is off (so the tests above can fail)."""
    cfg = DEFAULT.replace(lut_bits=4, lut_frac=2, frac_bits=4, cell_bits=6, scale_shift=0)
    lane = GateLane(cfg, 6)
    vectors, expected = [], []
    for a in range(-8, 8):
        acc = {g: a for g in GATES}
        scale = {g: 1 for g in GATES}
        vectors.append({"acc": [a] * len(GATES), "scale": [1] * len(GATES)})
        out = gate_expected(acc, scale, cfg)[1]
        expected.append({"gates": [out[g] for g in GATES]})
    assert run_pipeline(lane, lane.latency_cyc, vectors, ["gates"], expected) == []
    wrong = list(expected)
    k = GATES.index("g")
    wrong[5] = {"gates": [v + (j == k) for j, v in enumerate(expected[5]["gates"])]}
    problems = run_pipeline(lane, lane.latency_cyc, vectors, ["gates"], wrong)
    assert len(problems) == 1 and problems[0].startswith("vector 5 ") and f": gates[{k}] = " in problems[0]
    # Reading one edge late (a wrong latency) is caught too.
    assert run_pipeline(lane, lane.latency_cyc + 1, vectors, ["gates"], expected) != []


# ------------------------------------------------------------------------------------------------------
# CellLane
CELL_CONFIGS = [
    pytest.param(DEFAULT, id="default"),
    pytest.param(DEFAULT.replace(frac_bits=3, lut_frac=3, cell_bits=5), id="F3_cell5"),
    pytest.param(DEFAULT.replace(frac_bits=10, cell_bits=16), id="F10_cell16"),
    pytest.param(DEFAULT.replace(frac_bits=14, cell_bits=24), id="F14_cell24"),
]


@pytest.mark.parametrize("cfg", CELL_CONFIGS)
def test_cell_lane_corners_and_random(cfg: LstmConfig):
    lane = CellLane(cfg)
    one, cmax = cfg.one, cfg.cell_max
    gate_corners = [-one, -one + 1, -1, 0, 1, one - 1, one]
    cell_corners = [-cmax, -cmax + 1, -1, 0, 1, cmax - 1, cmax]
    rng = np.random.default_rng(2000 + cfg.frac_bits)
    rows = [(f, c, i, g) for f, c, i, g in itertools.product(gate_corners, cell_corners, gate_corners, gate_corners)]
    for _ in range(1500):  # the ranges the lane sees: sigmoid in [0, 1], tanh in [-1, 1], c in +-cell_max
        rows.append(
            (
                int(rng.integers(0, one + 1)),
                int(rng.integers(-cmax, cmax + 1)),
                int(rng.integers(0, one + 1)),
                int(rng.integers(-one, one + 1)),
            )
        )
    glo, ghi = signed_range(cfg.frac_bits + 2)
    for _ in range(500):  # anything the ports can carry
        rows.append(
            (
                int(rng.integers(glo, ghi + 1)),
                int(rng.integers(-cmax, cmax + 1)),
                int(rng.integers(glo, ghi + 1)),
                int(rng.integers(glo, ghi + 1)),
            )
        )
    vectors, expected = [], []
    for n, (f, c, i, g) in enumerate(rows):
        o = gate_corners[n % len(gate_corners)]
        named = {"i": i, "f": f, "g": g, "o": o}
        vectors.append({"gates": [named[n] for n in GATES], "c_prev": c})
        expected.append({"c": int(cell_update(f, c, i, g, cfg)), "o": o})
    # the corner set reaches both saturation limits
    cs = {e["c"] for e in expected}
    assert {-cmax, cmax} <= cs
    problems = run_pipeline(lane, lane.latency_cyc, vectors, ["c", "o"], expected)
    assert not problems, f"{len(problems)} mismatches, first: {problems[:3]}"


# ------------------------------------------------------------------------------------------------------
# HiddenLane
HIDDEN_CONFIGS = [
    pytest.param(DEFAULT, id="default"),
    pytest.param(DEFAULT.replace(frac_bits=4, lut_frac=4, lut_bits=6, cell_bits=6, dac_bits=2), id="shift0_dac2"),
    pytest.param(DEFAULT.replace(frac_bits=6, lut_frac=1, lut_bits=4, cell_bits=9, dac_bits=8), id="tidx_saturates"),
    pytest.param(DEFAULT.replace(frac_bits=8, lut_frac=5, lut_bits=9, cell_bits=10, dac_bits=16), id="dac16"),
]


@pytest.mark.parametrize("cfg", HIDDEN_CONFIGS)
def test_hidden_lane_every_cell_value(cfg: LstmConfig):
    lane = HiddenLane(cfg)
    one = cfg.one
    rng = np.random.default_rng(3000 + cfg.cell_bits)
    o_values = [0, 1, one // 2, one - 1, one, -one, int(rng.integers(0, one + 1))]
    vectors, expected, tidx_seen = [], [], set()
    for o in o_values:
        for c in range(-cfg.cell_max, cfg.cell_max + 1):
            tidx = int(tanh_cell_index(c, cfg))
            tidx_seen.add(tidx)
            tc = int(activation(tidx, True, cfg))
            vectors.append({"c": c, "o": o})
            expected.append({"h": int(requant_h(o, tc, cfg))})
    if (cfg.cell_max >> (cfg.frac_bits - cfg.lut_frac)) > cfg.lut_max:
        assert {cfg.lut_min, cfg.lut_max} <= tidx_seen  # the index saturates at both ends
    hs = {e["h"] for e in expected}
    assert min(hs) < 0 and 0 in hs and max(hs) > 0
    problems = run_pipeline(lane, lane.latency_cyc, vectors, ["h"], expected)
    assert not problems, f"{len(problems)} mismatches, first: {problems[:3]}"


# ------------------------------------------------------------------------------------------------------
# NvmArrayMacro (simulator model)
def pack(codes, bits: int) -> int:
    mask = (1 << bits) - 1
    return sum((int(c) & mask) << (k * bits) for k, c in enumerate(codes))


def unpack(value: int, n: int, bits: int) -> list[int]:
    out = []
    for k in range(n):
        v = (value >> (k * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def run_macro(mac: NvmArrayMacro, weights: np.ndarray, ops: list) -> list[tuple]:
    """Program ``weights`` (rows, cols), then in cycle n apply ``ops[n]``: ``None`` (idle), a read
    ``(x codes, step)``, or a dict with any of ``read`` (x, step), ``write`` (row, col, code), ``reset``.

    Returns per cycle after the programming ``(valid, y codes)`` as seen after that cycle's edge.
    """
    seen = []
    m = Module()  # the "sim" model has no logic of its own: give it a sync domain
    m.domains.sync = cd = ClockDomain()
    m.submodules.mac = mac

    async def testbench(ctx):
        for r in range(mac.rows):
            for c in range(mac.cols):
                ctx.set(mac.prog_row, r)
                ctx.set(mac.prog_col, c)
                ctx.set(mac.prog_code, int(weights[r, c]))
                ctx.set(mac.prog_we, 1)
                await ctx.tick()
        ctx.set(mac.prog_we, 0)
        for op in ops:
            op = {} if op is None else op if isinstance(op, dict) else {"read": op}
            ctx.set(mac.read, int("read" in op))
            if "read" in op:
                ctx.set(mac.x, pack(op["read"][0], mac.dac_bits))
                ctx.set(mac.adc_step, op["read"][1])
            ctx.set(mac.prog_we, int("write" in op))
            if "write" in op:
                r, c, code = op["write"]
                ctx.set(mac.prog_row, r)
                ctx.set(mac.prog_col, c)
                ctx.set(mac.prog_code, code)
            ctx.set(cd.rst, int(op.get("reset", False)))
            await ctx.tick()
            seen.append((ctx.get(mac.valid), unpack(ctx.get(mac.y), mac.cols, mac.adc_bits)))

    simulate_with_macros(m, [mac], testbench)
    return seen


def test_macro_model_write_first_and_reset():
    """A write and a read at one edge: the read sees the new code (as the Verilog model does). Reset
    drops a conversion in flight and clears the weights; y holds."""
    mac = NvmArrayMacro(
        rows=2, cols=2, weight_bits=4, dac_bits=4, adc_bits=6, adc_step_bits=4, read_latency=2, model="sim"
    )
    w = np.array([[1, -2], [3, 4]])
    x = np.array([5, -7])
    w2 = w.copy()
    w2[1, 0] = -6
    seen = run_macro(
        mac,
        w,
        [
            {"read": (x, 1), "write": (1, 0, -6)},
            None,  # write first
            {"read": (x, 1)},
            {"reset": True},
            None,
            None,  # reset drops the read in flight
            {"read": (x, 1)},
            None,  # weights are 0 after reset
        ],
    )
    y1 = [int(v) for v in adc_convert(x @ w2, 1, 6)]
    assert y1 != [int(v) for v in adc_convert(x @ w, 1, 6)]
    assert seen[1] == (1, y1)
    assert [v for v, _ in seen[2:6]] == [0, 0, 0, 0] and all(y == y1 for _, y in seen[2:6])
    assert seen[7] == (1, [0, 0])


@pytest.mark.parametrize("read_latency", [1, 2, 3, 5])
def test_macro_model_timing_and_codes(read_latency: int):
    shape = dict(rows=5, cols=3, weight_bits=4, dac_bits=4, adc_bits=3)
    rows, cols, wb, db, ab = shape.values()
    mac = NvmArrayMacro(**shape, adc_step_bits=8, read_latency=read_latency, model="sim")
    assert mac.latency_cyc == read_latency
    rng = np.random.default_rng(4000 + read_latency)
    wmax, dmax = (1 << (wb - 1)) - 1, (1 << (db - 1)) - 1
    w = rng.integers(-wmax, wmax + 1, size=(rows, cols))
    reads: list = []
    for _ in range(60):  # back-to-back reads, isolated reads, gaps; steps include 0 (acts as 1) and 1
        if rng.random() < 0.6:
            reads.append((rng.integers(-dmax, dmax + 1, size=rows), int(rng.choice([0, 1, 2, 5, 17, 255]))))
        else:
            reads.append(None)
    reads += [None] * read_latency
    seen = run_macro(mac, w, reads)
    y_now = [0] * cols
    n_valid = 0
    for m, (valid, y) in enumerate(seen):
        k = m - mac.latency_cyc + 1  # the read whose result is due after edge m
        due = k >= 0 and reads[k] is not None
        assert valid == int(due), f"cycle {m}: valid = {valid}, expected {int(due)}"
        if due:
            x, step = reads[k]
            y_now = [int(v) for v in adc_convert(x @ w, max(step, 1), ab)]
            n_valid += 1
        assert y == y_now, f"cycle {m}: y = {y}, golden {y_now}"  # y holds between conversions
    assert n_valid == sum(r is not None for r in reads)
    assert any(y != [0] * cols for _, y in seen)


def test_macro_instance_parameters():
    mac = NvmArrayMacro(rows=32, cols=64, weight_bits=4, dac_bits=4, adc_bits=5, adc_step_bits=16, read_latency=3)
    assert mac.model == "instance"
    assert mac.latency_cyc == 3
    params = {
        "ROWS": 32,
        "COLS": 64,
        "WEIGHT_BITS": 4,
        "DAC_BITS": 4,
        "ADC_BITS": 5,
        "STEP_BITS": 16,
        "READ_LATENCY": 3,
    }
    assert mac.verilog_parameters() == params
    ((inst, name, _),) = Fragment.get(mac, None).subfragments
    assert isinstance(inst, Instance) and inst.type == "nvm_array_macro" and name == "macro"
    assert dict(inst.parameters) == params
    assert list(inst.ports) == [
        "clk",
        "rst",
        "prog_row",
        "prog_col",
        "prog_code",
        "prog_we",
        "x",
        "adc_step",
        "read",
        "y",
        "valid",
    ]
    assert len(mac.x) == 32 * 4 and len(mac.y) == 64 * 5
    assert len(mac.prog_row) == 5 and len(mac.prog_col) == 6


# ------------------------------------------------------------------------------------------------------
# Accumulation over row tiles and the lane pipeline inside the accelerator
def probe_run(monkeypatch, top: NvmLstmAccelerator, model: QuantizedModel, x: np.ndarray, **kw):
    """`run_accelerator` with a probe that samples every lane's ports at every clock edge.

    Returns the run and, per layer, a dict of what passed through the lanes: ``acc`` and ``gates``
    (S, T, 4H, gate-major like the golden trace), ``c`` and ``h`` (S, T, H). The k-th read of layer l's
    macros is (sequence, step) = divmod(k, T); group g of that read is issued g edges after the one where
    ``valid`` is high, reaches the gate stage ``input_cyc`` edges later, and each later stage is sampled
    ``latency_cyc`` edges after the one before.
    """
    bank = top.lane_bank
    gls, cls_, hls = bank.gate_lanes, bank.cell_lanes, bank.hidden_lanes
    cfg, L = top.cfg, top.cfg.num_layers
    n_gates = len(GATES)
    valids = [top.macros[top.pmap.layer_tiles(l)[0].global_index].valid for l in range(L)]
    samples: list[tuple] = []
    real_add = hdl.sim.add_macro_models

    def add_with_probe(sim, dut):
        real_add(sim, dut)
        assert len(gls) == len(cls_) == len(hls) == top.lanes
        sigs = list(valids)
        for q in range(top.lanes):
            sigs += [gls[q].acc[g] for g in range(n_gates)] + [gls[q].gates[g] for g in range(n_gates)]
            sigs += [cls_[q].c, hls[q].h]

        async def probe(ctx):
            async for _, _, *vals in ctx.tick().sample(*sigs):
                samples.append(tuple(int(v) for v in vals))

        sim.add_process(probe)

    monkeypatch.setattr(hdl.sim, "add_macro_models", add_with_probe)
    run = run_accelerator(top, model, x, **kw)

    S, T, _ = x.shape
    H, G, lanes = cfg.hidden_size, top.groups, top.lanes
    lat_i, lat_g, lat_c, lat_h = bank.input_cyc, gls[0].latency_cyc, cls_[0].latency_cyc, hls[0].latency_cyc
    per_lane = 10
    got = [
        {
            k: np.full((S, T, 4 * H if k in ("acc", "gates") else H), -999999, dtype=np.int64)
            for k in ("acc", "gates", "c", "h")
        }
        for _ in range(L)
    ]
    for l in range(L):
        edges = [e for e, s in enumerate(samples) if s[l]]
        assert len(edges) == S * T, f"layer {l}: {len(edges)} macro reads, expected {S * T}"
        for n, e in enumerate(edges):
            s, t = divmod(n, T)
            for k in range(G):
                for q in range(lanes):
                    u = k * lanes + q
                    if u >= H:
                        continue
                    base = L + q * per_lane

                    def at(edge, j, base=base):
                        return samples[edge][base + j]

                    e_gate = e + k + lat_i  # the edge the gate stage samples this group's inputs
                    for gi in range(n_gates):
                        got[l]["acc"][s, t, gi * H + u] = at(e_gate, gi)
                        got[l]["gates"][s, t, gi * H + u] = at(e_gate + lat_g, n_gates + gi)
                    got[l]["c"][s, t, u] = at(e_gate + lat_g + lat_c, 8)
                    got[l]["h"][s, t, u] = at(e_gate + lat_g + lat_c + lat_h, 9)
    return run, got


def assert_stages_equal(got: list[dict], trace: dict) -> None:
    for l, stages in enumerate(got):
        for stage, key in (("acc", "acc"), ("gates", "gates"), ("c", "c"), ("h", "h")):
            want = trace[f"l{l}_{key}"].astype(np.int64)
            bad = np.argwhere(stages[stage] != want)
            if bad.size:
                at = tuple(int(i) for i in bad[0])
                raise AssertionError(
                    f"layer {l} {stage} differs first at (s, t, column) {at}: {stages[stage][at]} != golden {want[at]}"
                )


def test_lane_pipeline_stages_match_golden_trace(monkeypatch):
    """Many row and column tiles, lanes not dividing H: acc, gates, c, h of every unit at every step."""
    cfg = small_config(input_size=5, output_size=3, adc_bits=5, array_rows=3, array_cols=4)
    top = NvmLstmAccelerator(cfg, lanes=2, macro_latency=2, macro_model="sim")
    assert cfg.row_tiles(cfg.layer_rows(0)) == 4 and cfg.col_tiles(cfg.layer_cols) == 5
    rng = np.random.default_rng(5)
    x = rng.integers(-cfg.dac_max, cfg.dac_max + 1, size=(2, 3, cfg.input_size))
    model, _ = random_model(cfg, 5, x)
    trace = golden_forward(model, x)
    run, got = probe_run(monkeypatch, top, model, x, seed=5, input_gap_prob=0.2, backpressure_prob=0.2)
    assert np.array_equal(run.outputs, trace["outputs"])
    # the trace really accumulates several row tiles of nonzero codes
    assert (np.count_nonzero(trace["l0_adc"], axis=2) >= 2).any()
    assert_stages_equal(got, trace)


def test_probe_catches_a_corrupted_stage(monkeypatch):
    cfg = small_config(input_size=2, hidden_size=3, num_layers=1, array_rows=3, array_cols=4)
    top = NvmLstmAccelerator(cfg, lanes=3, macro_latency=1, macro_model="sim")
    rng = np.random.default_rng(6)
    x = rng.integers(-cfg.dac_max, cfg.dac_max + 1, size=(1, 3, cfg.input_size))
    model, _ = random_model(cfg, 6, x)
    trace = golden_forward(model, x)
    _, got = probe_run(monkeypatch, top, model, x)
    assert_stages_equal(got, trace)
    bad = dict(trace)
    bad["l0_c"] = trace["l0_c"].copy()
    bad["l0_c"][0, 2, 1] += 1
    with pytest.raises(AssertionError, match=r"layer 0 c differs first at \(s, t, column\) \(0, 2, 1\)"):
        assert_stages_equal(got, bad)


def test_row_tile_accumulation_lossless_adc_equals_untiled_product(monkeypatch):
    """adc_step 1 and an ADC wide enough for any tile sum: the accumulated codes must be the exact,
    untiled integer matrix product, computed here directly from the weights and the run's own h."""
    cfg = small_config(input_size=5, hidden_size=3, adc_bits=12, array_rows=2, array_cols=3, scale_shift=4)
    assert cfg.array_rows * cfg.weight_max * cfg.dac_max <= cfg.adc_max  # lossless
    rng = np.random.default_rng(7)
    layers = tuple(
        LayerParams(
            rng.integers(-cfg.weight_max, cfg.weight_max + 1, size=(cfg.layer_cols, cfg.layer_rows(l))),
            1,
            rng.integers(1, 8, size=4),
        )
        for l in range(cfg.num_layers)
    )
    head = HeadParams(rng.integers(-cfg.weight_max, cfg.weight_max + 1, size=(cfg.output_size, cfg.head_rows)), 1)
    model = QuantizedModel(cfg, layers, head)
    x = rng.integers(-cfg.dac_max, cfg.dac_max + 1, size=(2, 4, cfg.input_size))
    top = NvmLstmAccelerator(cfg, lanes=2, macro_latency=3, macro_model="sim")
    run, got = probe_run(monkeypatch, top, model, x, seed=7)
    S, T, _ = x.shape
    H, dmax = cfg.hidden_size, cfg.dac_max
    for s in range(S):
        for t in range(T):
            for l in range(cfg.num_layers):
                inp = x[s, t] if l == 0 else run.h[s, t, l - 1]
                h_prev = run.h[s, t - 1, l] if t else np.zeros(H, dtype=np.int64)
                vec = np.concatenate([inp, h_prev, [dmax]]).astype(np.int64)
                assert np.array_equal(got[l]["acc"][s, t], model.layers[l].weights.astype(np.int64) @ vec)
            vec = np.concatenate([run.h[s, t, -1], [dmax]]).astype(np.int64)
            assert np.array_equal(run.outputs[s, t], model.head.weights.astype(np.int64) @ vec)
    trace = golden_forward(model, x)
    assert_stages_equal(got, trace)
    assert np.array_equal(run.outputs, trace["outputs"])


# ------------------------------------------------------------------------------------------------------
# Parameter validation
def constructor_error(make) -> tuple[type, str]:
    """Call ``make()``, which must raise; return the exception's type and message. The half-built
    components it leaves behind would warn "created but never used"; that warning is expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            make()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result = (type(exc), str(exc))
        else:
            raise AssertionError("no exception")
        gc.collect()
    return result


MACRO_ARGS = dict(rows=4, cols=4, weight_bits=4, dac_bits=4, adc_bits=4, adc_step_bits=16, read_latency=2)


@pytest.mark.parametrize(
    "change, exc, message",
    [
        ({"rows": 1}, ValueError, "rows must be an integer from 2 to 65536, not 1"),
        ({"cols": 70000}, ValueError, "cols must be an integer from 2 to 65536, not 70000"),
        ({"read_latency": 0}, ValueError, "read_latency must be an integer from 1 to 64, not 0"),
        ({"adc_bits": 17}, ValueError, "adc_bits must be an integer from 2 to 16, not 17"),
        ({"model": "x"}, ValueError, "model must be 'instance' or 'sim', not 'x'"),
        ({"rows": 4.0}, TypeError, "rows must be an integer, not 4.0"),
        ({"read_latency": True}, TypeError, "read_latency must be an integer, not True"),
    ],
)
def test_macro_parameter_validation(change, exc, message):
    assert constructor_error(lambda: NvmArrayMacro(**{**MACRO_ARGS, **change})) == (exc, message)


def test_lane_parameter_validation():
    assert constructor_error(lambda: GateLane(DEFAULT, 1)) == (
        ValueError,
        "acc_width must be an integer from 2 to 64, not 1",
    )
    assert constructor_error(lambda: GateLane(DEFAULT, 65)) == (
        ValueError,
        "acc_width must be an integer from 2 to 64, not 65",
    )
    for cls, args in ((GateLane, (8,)), (CellLane, ()), (HiddenLane, ())):
        assert constructor_error(lambda cls=cls, args=args: cls({"hidden_size": 4}, *args)) == (
            TypeError,
            "cfg must be an LstmConfig, not dict",
        )
    bank = dict(lanes=2, acc_width=8, n_tags=3)
    assert constructor_error(lambda: LaneBank({"hidden_size": 4}, **bank)) == (
        TypeError,
        "cfg must be an LstmConfig, not dict",
    )
    assert constructor_error(lambda: LaneBank(DEFAULT, **{**bank, "lanes": 0})) == (
        ValueError,
        "lanes must be a positive integer, not 0",
    )
    assert constructor_error(lambda: LaneBank(DEFAULT, **{**bank, "acc_width": 1})) == (
        ValueError,
        "acc_width must be an integer from 2 to 64, not 1",
    )
    assert constructor_error(lambda: LaneBank(DEFAULT, **{**bank, "n_tags": 1.0})) == (
        TypeError,
        "n_tags must be an integer, not 1.0",
    )


def test_interface_and_part_validation():
    """The signatures and the accelerator's parts check their arguments at once, with exact messages."""
    assert constructor_error(lambda: ProgramSignature(addr_bits=0, data_bits=4)) == (
        ValueError,
        "addr_bits must be an integer from 1 to 64, not 0",
    )
    assert constructor_error(lambda: ProgramSignature(addr_bits=4, data_bits="4")) == (
        TypeError,
        "data_bits must be an integer, not '4'",
    )
    assert constructor_error(lambda: StepSignature(num_layers=0, step_bits=4)) == (
        ValueError,
        "num_layers must be a positive integer, not 0",
    )
    assert constructor_error(lambda: StepSignature(num_layers=1, step_bits=25)) == (
        ValueError,
        "step_bits must be an integer from 1 to 24, not 25",
    )
    assert constructor_error(lambda: ConfigRegisters(DEFAULT)) == (
        TypeError,
        "pmap must be a ProgramMap, not LstmConfig",
    )
    assert constructor_error(lambda: MacroArray(DEFAULT, macro_latency=2)) == (
        TypeError,
        "pmap must be a ProgramMap, not LstmConfig",
    )
    assert constructor_error(lambda: MacroArray(ProgramMap(SMALL), macro_latency=65)) == (
        ValueError,
        "macro_latency must be an integer from 1 to 64, not 65",
    )
    assert constructor_error(lambda: MacroArray(ProgramMap(SMALL), macro_latency=1, macro_model="rtl")) == (
        ValueError,
        "model must be 'instance' or 'sim', not 'rtl'",
    )
    sig = dict(rows=4, cols=4, weight_bits=4, dac_bits=4, adc_bits=4, adc_step_bits=16)
    assert constructor_error(lambda: NvmArrayMacro.Signature(**{**sig, "adc_step_bits": 0})) == (
        ValueError,
        "adc_step_bits must be an integer from 1 to 24, not 0",
    )
    # equal parameters, equal signatures (what wiring.connect compares)
    assert NvmArrayMacro.Signature(**sig) == NvmArrayMacro.Signature(**sig)
    assert NvmArrayMacro.Signature(**sig) != NvmArrayMacro.Signature(**{**sig, "cols": 5})
    assert repr(NvmArrayMacro.Signature(**sig)) == (
        "NvmArrayMacro.Signature(rows=4, cols=4, weight_bits=4, dac_bits=4, adc_bits=4, adc_step_bits=16)"
    )
    assert ProgramSignature(addr_bits=3, data_bits=4) == ProgramSignature(addr_bits=3, data_bits=4)
    assert ProgramSignature(addr_bits=3, data_bits=4) != ProgramSignature(addr_bits=3, data_bits=5)


SMALL = small_config(num_layers=1)


@pytest.mark.parametrize(
    "cfg, kwargs, exc, message",
    [
        (SMALL, {"lanes": 0}, ValueError, "lanes must be an integer from 1 to hidden_size (5), not 0"),
        (SMALL, {"lanes": 6}, ValueError, "lanes must be an integer from 1 to hidden_size (5), not 6"),
        (SMALL, {"lanes": 2.5}, TypeError, "lanes must be an integer, not 2.5"),
        (SMALL, {"lanes": 2, "macro_latency": 0}, ValueError, "macro_latency must be an integer from 1 to 64, not 0"),
        (SMALL, {"lanes": 2, "macro_model": "x"}, ValueError, "model must be 'instance' or 'sim', not 'x'"),
        (SMALL, {"lanes": 2, "cycle_bits": 4}, ValueError, "cycle_bits must be an integer from 8 to 64, not 4"),
        (SMALL, {"lanes": 2, "seq_len_bits": 33}, ValueError, "seq_len_bits must be an integer from 1 to 32, not 33"),
        (SMALL, {"lanes": True}, TypeError, "lanes must be an integer, not True"),
        (SMALL.to_dict(), {"lanes": 2}, TypeError, "cfg must be an LstmConfig, not dict"),
        (None, {"lanes": 2}, TypeError, "cfg must be an LstmConfig, not NoneType"),
    ],
)
def test_accelerator_parameter_validation(cfg, kwargs, exc, message):
    assert constructor_error(lambda: NvmLstmAccelerator(cfg, **kwargs)) == (exc, message)
    # the same one check, callable before anything is built (gen turns it into its one-line error)
    assert constructor_error(lambda: NvmLstmAccelerator.check_parameters(cfg, **kwargs)) == (exc, message)
