"""The Verilog NVM macro against its one definition and against the golden ADC transfer.

* The port list the templates render comes from `hdl.macro.MACRO_PORTS`, the definition of the Amaranth
  macro's signature: for several parameter sets, Yosys elaborates the rendered module and its ports (name,
  direction, width) equal the ports of the Amaranth ``Instance``; changing the definition changes both.
* The ADC transfer of the behavioral model (``gen/templates/nvm_array_macro.v.j2``) equals
  `golden.datapath.adc_convert` over its whole input domain for a small macro: every dot product p the array
  can produce and every ADC step 0 .. 2**STEP_BITS - 1, simulated in Icarus, compared with ``==``; a
  template with a corrupted rounding fails the same check.

External tools: a missing Yosys skips unless ``CI`` is set; a missing Icarus skips unless
``NVMLSTM_REQUIRE_SIMS`` names it (the `need` fixture, tests/conftest.py).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib.wiring import Flow

import nvmlstm.hdl.macro  # noqa: F401 - binds the submodule
from nvmlstm import hdl
from nvmlstm.gen.render import TEMPLATE_DIR, macro_ports, render_macro_stub
from nvmlstm.gen.tools import run_tool
from nvmlstm.golden.datapath import adc_convert
from nvmlstm.hdl.macro import MACRO_PARAMETERS, MacroPort, NvmArrayMacro, PortWidth

# --------------------------------------------------------------------------------------------------
# The port list: one definition, elaborated on both sides
PORT_PARAMS = [
    dict(ROWS=2, COLS=2, WEIGHT_BITS=2, DAC_BITS=2, ADC_BITS=2, STEP_BITS=1, READ_LATENCY=1),
    dict(ROWS=5, COLS=3, WEIGHT_BITS=4, DAC_BITS=4, ADC_BITS=6, STEP_BITS=16, READ_LATENCY=2),
    dict(ROWS=32, COLS=64, WEIGHT_BITS=4, DAC_BITS=4, ADC_BITS=5, STEP_BITS=16, READ_LATENCY=3),
    dict(ROWS=33, COLS=17, WEIGHT_BITS=7, DAC_BITS=3, ADC_BITS=9, STEP_BITS=24, READ_LATENCY=7),
]


def amaranth_ports(params: dict) -> dict[str, tuple[str, int]]:
    """name -> (direction, width) of the ``nvm_array_macro`` Instance the Amaranth macro elaborates to."""
    args = {arg: params[name] for name, arg, _ in MACRO_PARAMETERS}
    mac = NvmArrayMacro(**args)
    ((inst, _, _),) = Fragment.get(mac, None).subfragments
    assert dict(inst.parameters) == params
    return {name: ({"i": "input", "o": "output"}[kind], len(value)) for name, (value, kind) in inst.ports.items()}


def yosys_ports(yosys, tmp: Path, text: str) -> dict[str, tuple[str, int]]:
    """name -> (direction, width) of module ``nvm_array_macro`` in ``text`` as ``yosys`` (the found tool, from
    the ``need`` fixture) elaborates it (the module's parameter defaults are the parameter set under test)."""
    # The stub's body is empty; without its blackbox attribute Yosys elaborates the port widths.
    (tmp / "macro.v").write_text(text.replace("(* blackbox *)", ""))
    proc = run_tool(
        yosys, ["-q", "-p", "read_verilog macro.v; hierarchy -top nvm_array_macro; write_json ports.json"], cwd=tmp
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    mod = json.loads((tmp / "ports.json").read_text())["modules"]["nvm_array_macro"]
    return {name: (p["direction"], len(p["bits"])) for name, p in mod["ports"].items()}


@pytest.mark.parametrize("params", PORT_PARAMS, ids=lambda p: f"{p['ROWS']}x{p['COLS']}")
def test_template_ports_equal_the_amaranth_macro(need, tmp_path, params):
    want = amaranth_ports(params)
    assert list(want) == [p["name"] for p in macro_ports()]  # the same order, too
    assert yosys_ports(need("yosys"), tmp_path, render_macro_stub(params)) == want


def test_port_comparison_can_fail(need, tmp_path):
    """A template whose range of x is off by one row no longer equals the Amaranth macro."""
    params = PORT_PARAMS[1]
    text = render_macro_stub(params)
    assert "[ROWS*DAC_BITS-1:0]" in text
    wrong = text.replace("[ROWS*DAC_BITS-1:0]", "[ROWS*DAC_BITS:0]")
    assert yosys_ports(need("yosys"), tmp_path, wrong) != amaranth_ports(params)


def test_changing_the_definition_changes_both_sides(need, tmp_path, monkeypatch):
    """One more port in `hdl.macro.MACRO_PORTS`: the Amaranth signature, the Instance and the rendered
    templates all gain it, with the same width."""
    spare = MacroPort("spare", Flow.Out, PortWidth(("COLS", "STEP_BITS")), False, "a port added by the test")
    monkeypatch.setattr(hdl.macro, "MACRO_PORTS", (*hdl.macro.MACRO_PORTS, spare))
    params = PORT_PARAMS[1]
    sig = NvmArrayMacro.Signature(rows=5, cols=3, weight_bits=4, dac_bits=4, adc_bits=6, adc_step_bits=16)
    assert Shape.cast(sig.members["spare"].shape).width == 3 * 16 and sig.members["spare"].flow == Flow.Out
    want = amaranth_ports(params)
    assert want["spare"] == ("output", 48)
    assert macro_ports()[-1] == {
        "name": "spare",
        "direction": "output",
        "range": "[COLS*STEP_BITS-1:0]",
        "doc": "a port added by the test",
    }
    assert yosys_ports(need("yosys"), tmp_path, render_macro_stub(params)) == want


def test_port_widths_follow_verilog_clog2():
    """`PortWidth` with clog2 is Verilog's $clog2 for every n the macro allows near the powers of two."""
    w = PortWidth(("ROWS",), clog2=True)
    for n in [*range(2, 70), 255, 256, 257, 65535, 65536]:
        assert w.value({"ROWS": n}) == (n - 1).bit_length()  # $clog2(n) = ceil(log2 n)
    assert w.verilog_range() == "[$clog2(ROWS)-1:0]"
    assert PortWidth().value({}) == 1 and PortWidth().verilog_range() == ""


# --------------------------------------------------------------------------------------------------
# The ADC transfer over its whole domain
ADC = dict(ROWS=2, COLS=4, WEIGHT_BITS=3, DAC_BITS=3, ADC_BITS=5, STEP_BITS=3, READ_LATENCY=1)
#: Weights of the four columns: (row 0, row 1) per column, chosen so that together they reach every p.
COLUMN_WEIGHTS = [(-4, -4), (-4, -3), (-4, -2), (-4, -1)]


def _codes(bits: int) -> range:
    return range(-(1 << (bits - 1)), 1 << (bits - 1))


def achievable_products(p: dict) -> set[int]:
    """Every dot product the array can produce: any weight codes, any row codes (two's complement)."""
    vals = set()
    for w in itertools.product(_codes(p["WEIGHT_BITS"]), repeat=p["ROWS"]):
        for x in itertools.product(_codes(p["DAC_BITS"]), repeat=p["ROWS"]):
            vals.add(sum(a * b for a, b in zip(w, x)))
    return vals


def icarus_adc_sweep(
    icarus_macro, tmp: Path, p: dict, template_dir: Path | None = None
) -> list[tuple[list[int], int, list[int]]]:
    """Program `COLUMN_WEIGHTS`, then read every row-code vector with every step; returns per read
    (x codes, step, the ADC codes of all columns) as the Verilog model (run by the ``icarus_macro`` fixture)
    produced them."""
    wmask, dmask = (1 << p["WEIGHT_BITS"]) - 1, (1 << p["DAC_BITS"]) - 1
    idle = {"rst": 0, "we": 0, "read": 0, "row": 0, "col": 0, "code": 0, "x": 0, "step": 0}
    ops = [
        dict(idle, we=1, row=r, col=c, code=w & wmask) for c, ws in enumerate(COLUMN_WEIGHTS) for r, w in enumerate(ws)
    ]
    n_prog = len(ops)
    reads = []
    for xs in itertools.product(_codes(p["DAC_BITS"]), repeat=p["ROWS"]):
        xbits = sum((v & dmask) << (k * p["DAC_BITS"]) for k, v in enumerate(xs))
        for step in range(1 << p["STEP_BITS"]):
            reads.append((list(xs), step))
            ops.append(dict(idle, read=1, x=xbits, step=step))
    assert p["READ_LATENCY"] == 1  # the codes of a read are on y after its own edge
    seen = icarus_macro(tmp, p, ops, template_dir=template_dir)[n_prog:]
    amask, half = (1 << p["ADC_BITS"]) - 1, 1 << (p["ADC_BITS"] - 1)
    result = []
    for (xs, step), (valid, y) in zip(reads, seen, strict=True):
        assert valid == 1
        codes = [(y >> (j * p["ADC_BITS"])) & amask for j in range(p["COLS"])]
        result.append((xs, step, [c - (1 << p["ADC_BITS"]) if c & half else c for c in codes]))
    return result


def adc_mismatches(p: dict, sweep) -> tuple[list[str], set[tuple[int, int]]]:
    """Every read whose codes differ from `adc_convert` (as text), and the (p, step) pairs covered."""
    w = np.array(COLUMN_WEIGHTS, dtype=np.int64).T  # (rows, cols)
    bad, seen = [], set()
    for xs, step, codes in sweep:
        prods = np.array(xs, dtype=np.int64) @ w
        want = [int(v) for v in adc_convert(prods, max(step, 1), p["ADC_BITS"])]
        seen |= {(int(v), step) for v in prods}
        if codes != want:
            bad.append(f"x = {xs}, step {step}: p = {prods.tolist()}, Verilog {codes}, golden {want}")
    return bad, seen


def test_adc_transfer_equals_golden_over_the_whole_domain(icarus_macro, tmp_path):
    p = ADC
    sweep = icarus_adc_sweep(icarus_macro, tmp_path, p)
    bad, seen = adc_mismatches(p, sweep)
    assert not bad, f"{len(bad)} reads differ, first: {bad[:3]}"
    # the domain really is covered: every achievable p with every step, including 0 (acts as 1)
    domain = {(v, s) for v in achievable_products(p) for s in range(1 << p["STEP_BITS"])}
    assert seen >= domain, sorted(domain - seen)[:5]
    # and it exercises saturation at both ends and ties (p an odd multiple of step / 2)
    qmax = (1 << (p["ADC_BITS"] - 1)) - 1
    assert any(abs(v) > qmax * max(s, 1) for v, s in domain)
    assert any(s >= 2 and s % 2 == 0 and v % s == s // 2 for v, s in domain)


@pytest.mark.parametrize(
    "old, new",
    [
        ("q = (2 * mag + step) / (2 * step);", "q = (2 * mag + step - 1) / (2 * step);"),  # ties round down
        ("if (q > ADC_MAX) q = ADC_MAX;", "if (q > ADC_MAX + 1) q = ADC_MAX;"),  # saturation one too late
    ],
)
def test_adc_check_fails_on_a_corrupted_template(icarus_macro, tmp_path, old, new):
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, tdir)
    src = (tdir / "nvm_array_macro.v.j2").read_text()
    assert old in src
    (tdir / "nvm_array_macro.v.j2").write_text(src.replace(old, new))
    bad, _ = adc_mismatches(ADC, icarus_adc_sweep(icarus_macro, tmp_path, ADC, template_dir=tdir))
    assert bad
