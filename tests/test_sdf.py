"""Gate-level simulation with OpenSTA's SDF (docs/signoff.md, "Gate-level simulation with timing"): the foundry's
timing cell models (`nvmlstm.gen.timing_models`) annotated in Icarus, bit exact at the analysed clock period and
not at a period well below the critical path's.

Without the PDK or OpenSTA the tests that need them skip with the install line, unless
``NVMLSTM_REQUIRE_PDK=sky130`` (then they fail).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run

from nvmlstm.gen import GenError
from nvmlstm.gen import liberty as lib
from nvmlstm.gen.timing_models import TIMING_MODELS, delayed_copies, timing_models_text
from nvmlstm.sim import InputMismatch, SimError, run_regression, simulator_or_skip
from nvmlstm.sim import build as simbuild
from nvmlstm.sim.runner import annotatable_sdf, sdf_clock, sdf_run
from nvmlstm.sim.simulators import SimTool

# Scheduling hint for parallel workers: about 2 minutes of work (the `lut` case mapped, four SDF runs).
pytestmark = pytest.mark.slow(2)

#: The regression case simulated with its SDF: the smallest mapped netlist (about 10,000 cells).
CASE = "lut"

_SETUPHOLD_MODEL = """\
module ff (Q, CLK, D);
    output Q; input CLK; input D;
    wire CLK_delayed, D_delayed; reg notifier;
    udp dff0 (Q, D_delayed, CLK_delayed, notifier);
specify
$setuphold ( posedge CLK &&& awake , negedge D , 0:0:0 , 0:0:0 , notifier , awake , awake , CLK_delayed , D_delayed ) ;
endspecify
endmodule
"""


# --------------------------------------------------------------------------------------------------
# The timing models
def test_delayed_copies_follow_ieee_15_5_4():
    text, copies = delayed_copies(_SETUPHOLD_MODEL)
    assert copies == {"CLK_delayed": "CLK", "D_delayed": "D"}
    assert "$setuphold ( posedge CLK &&& awake , negedge D , 0:0:0 , 0:0:0 , notifier , awake , awake ) ;" in text
    assert text.index("assign CLK_delayed = CLK;") < text.index("specify") < text.index("$setuphold")
    assert delayed_copies("module m; endmodule\n") == ("module m; endmodule\n", {})
    # a delayed net that copies two different signals cannot be made a copy: refused
    bad = _SETUPHOLD_MODEL.replace(
        "endspecify", "$setuphold ( posedge D , negedge CLK , 0 , 0 , n , , , CLK_delayed , x ) ;\nendspecify"
    )
    with pytest.raises(GenError, match="CLK_delayed is the delayed copy of two signals"):
        delayed_copies(bad)


def test_timing_models_of_every_cell(pdk):
    text = timing_models_text(pdk)
    assert text == timing_models_text(pdk)  # deterministic
    assert "`include" not in text and "site-packages" not in text
    for cell in lib.CELLS:
        assert re.search(rf"^module {cell.verilog_name} \(", text, re.M), cell.verilog_name
    assert text.count("specify") >= 2 * len(lib.CELLS)  # specify ... endspecify in every cell
    assert "assign D_delayed = D;" in text and "assign CLK_delayed = CLK;" in text
    assert not re.search(r"\$setuphold\s*\([^;]*_delayed", text)


def test_build_names_match_the_generator():
    """sim.build names the files with literals (importing gen.rtl would load Amaranth); they must agree."""
    from nvmlstm.gen.rtl import CELL_MODELS_FILE

    assert simbuild.CELL_MODELS == CELL_MODELS_FILE
    assert simbuild.TIMING_MODELS == TIMING_MODELS
    assert simbuild.PREFIX == lib.PREFIX


_HAND_NETLIST = """\
`timescale 1ns/1ps
module dut (input clk, input a, input b, output q, output y);
    wire n1;
    sky130_fd_sc_hd__nand2_1 u1 (.A(a), .B(b), .Y(n1));
    sky130_fd_sc_hd__inv_1 u2 (.A(n1), .Y(y));
    sky130_fd_sc_hd__dfxtp_1 r (.CLK(clk), .D(y), .Q(q));
endmodule
module tb;
    reg clk = 0, a = 0, b = 0;
    wire q, y;
    dut d (.clk(clk), .a(a), .b(b), .q(q), .y(y));
    initial begin
        $sdf_annotate("hand.sdf", d);
        #5 a = 1; b = 1;
        #10 clk = 1; #10 clk = 0;
        #10 a = 0; #10 clk = 1; #10 clk = 0; #10 $finish;
    end
    always @(y or q) if ($time > 1) $display("T %0t y=%b q=%b", $realtime, y, q);
endmodule
"""

#: OpenSTA's form: ``(min::max)`` triples (no typical value), hierarchy divider ``/``, a timing check.
_HAND_SDF = """\
(DELAYFILE
 (SDFVERSION "3.0")
 (DESIGN "dut")
 (DIVIDER /)
 (TIMESCALE 1ns)
 (CELL (CELLTYPE "sky130_fd_sc_hd__nand2_1") (INSTANCE u1)
  (DELAY (ABSOLUTE (IOPATH A Y (0.500::0.500) (0.400::0.400)) (IOPATH B Y (0.500::0.500) (0.400::0.400)))))
 (CELL (CELLTYPE "sky130_fd_sc_hd__inv_1") (INSTANCE u2)
  (DELAY (ABSOLUTE (IOPATH A Y (0.300::0.300) (0.200::0.200)))))
 (CELL (CELLTYPE "sky130_fd_sc_hd__dfxtp_1") (INSTANCE r)
  (DELAY (ABSOLUTE (IOPATH CLK Q (0.700::0.700) (0.600::0.600))))
  (TIMINGCHECK (SETUP D (posedge CLK) (0.100::0.100)) (HOLD D (posedge CLK) (-0.050::-0.050))))
)
"""


def _hand_sim(tmp: Path, models: str, *args: str) -> tuple[str, list[str]]:
    (tmp / "cells.v").write_text(models)
    (tmp / "tb.v").write_text(_HAND_NETLIST)
    (tmp / "hand.sdf").write_text(_HAND_SDF)
    comp = subprocess.run(
        ["iverilog", "-g2012", "-gspecify", *args, "-s", "tb", "-o", "t.vvp", "tb.v", "cells.v"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert comp.returncode == 0, comp.stderr
    proc = subprocess.run(["vvp", "-n", "t.vvp"], cwd=tmp, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return comp.stderr, [ln for ln in proc.stdout.splitlines() if ln.startswith(("T ", "SDF"))]


def test_hand_sdf_delays_appear_in_icarus(pdk, need, tmp_path):
    """Three cells, a hand-written SDF in OpenSTA's form: the IOPATH delays of the SDF (not of the models: their
    specify blocks say 0) appear in the simulation; the timing check is parsed and ignored."""
    need("iverilog")
    cells = tuple(c for c in lib.CELLS if c.name in ("nand2", "inv", "dfxtp"))
    _, lines = _hand_sim(tmp_path, timing_models_text(pdk, cells), "-Tmax")
    # a = b = 1 at 5 ns: nand2 falls (0.4) then inv rises (0.3); clk at 15 ns: Q rises 0.7 later; a = 0 at
    # 35 ns: nand2 rises (0.5), inv falls (0.2); clk at 45 ns: Q falls 0.6 later
    assert lines == ["T 5700 y=1 q=x", "T 15700 y=1 q=1", "T 35700 y=0 q=1", "T 45600 y=0 q=0"]
    # The default -Ttyp selects OpenSTA's empty typical value: Icarus keeps the models' zero delays.
    _, lines = _hand_sim(tmp_path, timing_models_text(pdk, cells))
    assert lines == ["T 5000 y=1 q=x", "T 15000 y=1 q=1", "T 35000 y=0 q=1", "T 45000 y=0 q=0"]


def test_unchanged_foundry_flip_flop_is_dead_in_icarus(pdk, need, tmp_path):
    """Why `delayed_copies` exists: Icarus 11 leaves the $setuphold delayed nets undriven, so the foundry's
    flip-flop never clocks (Q stays X). (Newer Icarus drives them itself: then this is skipped.)"""
    need("iverilog")
    cells = tuple(c for c in lib.CELLS if c.name in ("nand2", "inv", "dfxtp"))
    raw = "".join(
        (pdk / "cells" / c.name / f"{c.verilog_name}.timing.v").read_text().replace('`include "../../models/', "// ")
        for c in cells
    )
    fixed = timing_models_text(pdk, cells)
    udp = fixed[fixed.index("primitive sky130_fd_sc_hd__udp_dff$P_pp$PG$N") :]
    udp = udp[: udp.index("endprimitive") + len("endprimitive")]
    warnings, lines = _hand_sim(tmp_path, raw + "\n" + udp + "\n", "-Tmax")
    if "will not be driven" not in warnings:
        pytest.skip("this Icarus drives the $setuphold delayed nets itself")
    assert lines and all(ln.endswith("q=x") for ln in lines)


# --------------------------------------------------------------------------------------------------
# The runner's pieces
def test_sdf_period_choice(tmp_path):
    (tmp_path / "nvm_lstm_top.tt.sdf").write_text("(DELAYFILE)\n")
    corner = {"met": True, "fmax_mhz": 250.0, "sdf": "nvm_lstm_top.tt.sdf"}
    man = {"signoff": {"timing": {"period_ns": 5.0, "corners": {"tt": corner}}}}
    assert sdf_run(tmp_path, man, "tt", None).clock_ns == 5.0
    corner.update(met=False, fmax_mhz=137.0)  # 7.2993 ns: rounded up to the 2 ps grid
    r = sdf_run(tmp_path, man, "tt", None)
    assert (r.clock_ns, r.clock_source) == (7.3, "1000 / tt fmax_mhz")
    assert sdf_run(tmp_path, man, "tt", 3.0011).clock_ns == 3.002
    assert sdf_clock(4) == 4.0
    with pytest.raises(SimError, match="positive number of ns"):
        sdf_clock(0)
    with pytest.raises(InputMismatch, match=r"no analysed period for corner 'tt'"):
        sdf_run(tmp_path, {"signoff": {"timing": "not modelled"}}, "tt", None)
    with pytest.raises(InputMismatch, match=r"no SDF for corner 'ss' \(nvm_lstm_top.ss.sdf\).*opensta"):
        sdf_run(tmp_path, man, "ss", 5.0)


def test_sdf_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(SimError, match=r"^Verilator cannot annotate an SDF \(not supported"):
        run_regression(tmp_path, tmp_path, "verilator", gate_level=True, sdf_corner="tt")
    with pytest.raises(SimError, match=r"gate_level=True"):
        run_regression(tmp_path, tmp_path, "icarus", sdf_corner="tt")


def test_sdf_recipe_and_key(tmp_path):
    """An SDF build compiles the timing models with -gspecify -Tmax; the SDF's digest is part of its key."""
    tool = SimTool("icarus", "/bin/false", (11, 0), "iverilog x", {})
    a = simbuild.recipe(tool, False, True, sdf_sha256="a" * 64, timing_models="module m; endmodule\n")
    assert {"-gspecify", "-Tmax", "nvmlstm_sdf"} <= set(a.build_args)
    assert "-DUNIT_DELAY=#1" not in a.build_args and TIMING_MODELS in a.files
    b = simbuild.recipe(tool, False, True, sdf_sha256="b" * 64, timing_models="module m; endmodule\n")
    f = tmp_path / "x.v"
    f.write_text("module x; endmodule\n")
    keys = {simbuild._build_key(tool, [f], r, False) for r in (a, b, simbuild.recipe(tool, False, True))}
    assert len(keys) == 3
    with pytest.raises(simbuild.BuildError, match="needs Icarus"):
        simbuild.recipe(
            SimTool("verilator", "/bin/false", (5, 48), "v", {}), False, True, sdf_sha256="a", timing_models="m"
        )


def test_annotatable_sdf_leaves_out_the_macros(tmp_path):
    cell = ' (CELL\n  (CELLTYPE "{}")\n  (INSTANCE {})\n  (DELAY (ABSOLUTE (IOPATH A Y (0.1::0.1))))\n )\n'
    head = '(DELAYFILE\n (SDFVERSION "3.0")\n (DIVIDER /)\n'
    kept = head + cell.format("nvm_lstm_top", "") + cell.format("sky130_fd_sc_hd__inv_1", "a/_1_")
    src = tmp_path / "in.sdf"
    src.write_text(kept + ")\n")
    assert annotatable_sdf(src, "nvm_lstm_top", tmp_path / "out.sdf") == (src, {})
    src.write_text(kept + cell.format("nvm_array_macro_tt", "array/m0/macro") + ")\n")
    out, skipped = annotatable_sdf(src, "nvm_lstm_top", tmp_path / "out.sdf")
    assert skipped == {"nvm_array_macro_tt": 1} and out.read_text() == kept.rstrip() + "\n)\n"


# --------------------------------------------------------------------------------------------------
# The generated design with OpenSTA's SDF
def _sta_or_skip() -> None:
    from nvmlstm.gen.tools import ToolNotFound, find_sta

    try:
        find_sta()
    except ToolNotFound as exc:
        if lib.require_pdk_env():
            pytest.fail(f"{exc} ({lib.PDK_ENV}=sky130 requires it)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def timed(mapped):
    """(rtl_dir, vec_dir, signoff.timing) of the `CASE`, generated with ``--pdk sky130`` and OpenSTA."""
    _sta_or_skip()
    simulator_or_skip("icarus")
    rtl, vec = mapped(CASE)
    timing = json.loads((rtl / "manifest.json").read_text())["signoff"].get("timing")
    assert isinstance(timing, dict) and (rtl / timing["corners"]["tt"]["sdf"]).is_file(), (
        "`generate --pdk sky130` with OpenSTA installed wrote no SDF"
    )
    return rtl, vec, timing


def _cells_in(netlist: Path) -> int:
    return len(re.findall(r"^\s*sky130_fd_sc_hd__\w+\s+\S+\s*\(", netlist.read_text(), re.M))


def test_bit_exact_with_sdf_at_the_analysed_period(timed):
    rtl, vec, timing = timed
    rep = run_regression(rtl, vec, "icarus", gate_level=True, sdf_corner="tt", waves=False)
    assert rep["passed"] and rep["bit_exact"], rep["first_mismatch_text"] or rep["protocol_errors"][:3]
    sdf = rep["sdf"]
    tt = timing["corners"]["tt"]
    expected = timing["period_ns"] if tt["met"] else 1000 / tt["fmax_mhz"]
    assert expected <= sdf["clock_ns"] < expected + 0.002
    assert rep["clock_ns"] == sdf["clock_ns"]
    # every standard cell of the netlist has its delays in the SDF, and Icarus found every one of them
    assert sdf["annotation_messages"] == [] and sdf["annotation_message_count"] == 0
    assert sdf["cells"] - 1 - sum(sdf["skipped_cells"].values()) == _cells_in(rtl / "nvm_lstm_top.sky130.v")
    assert sdf["iopaths"] > sdf["cells"]


def test_far_below_the_critical_path_it_is_not_bit_exact(timed, tmp_path):
    """The annotation takes effect: at 40 % of the minimum period STA reports, the same build (the period is a run
    setting, not compiled in) gives wrong values or X on the handshakes. (Icarus does not check the SDF's setup
    and hold, so what shows is the wrong sampling itself.)"""
    rtl, vec, timing = timed
    short = round(0.4 * 1000 / timing["corners"]["tt"]["fmax_mhz"], 3)
    rep = run_regression(
        rtl, vec, "icarus", gate_level=True, sdf_corner="tt", clock_ns=short, waves=False, work_dir=tmp_path / "run"
    )
    assert rep["build"]["cached"]  # the build of the previous test
    assert not rep["passed"]
    assert rep["mismatches"] > 0 or rep["protocol_error_count"] > 0
    assert rep["sdf"]["annotation_message_count"] == 0 and rep["clock_ns"] == sdf_clock(short)


def test_an_sdf_naming_a_missing_instance_fails_the_run(timed, tmp_path):
    """An SDF that does not fit the netlist (an instance renamed) is reported and fails the run, bit exact or not."""
    rtl, vec, timing = timed
    bad = tmp_path / "rtl"
    shutil.copytree(rtl, bad)
    sdf = bad / timing["corners"]["tt"]["sdf"]
    text = sdf.read_text()
    inst = re.search(r'\(CELLTYPE "sky130_fd_sc_hd__dfxtp_1"\)\s*\(INSTANCE ([^)]+)\)', text).group(1)
    sdf.write_text(text.replace(f"(INSTANCE {inst})", f"(INSTANCE {inst}_renamed)", 1))
    man = json.loads((bad / "manifest.json").read_text())
    for name, entry in man["files"].items():  # the loader refuses edited files
        entry["sha256"] = hashlib.sha256((bad / name).read_bytes()).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(man, indent=2, sort_keys=True) + "\n")
    rep = run_regression(bad, vec, "icarus", gate_level=True, sdf_corner="tt", waves=False, work_dir=tmp_path / "run")
    assert not rep["passed"]
    assert rep["sdf"]["annotation_message_count"] == 1
    assert "_renamed" in rep["sdf"]["annotation_messages"][0]


def test_sim_cli_with_sdf(timed, capsys):
    rtl, vec, _ = timed
    rc, out, err = run(
        capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus", "--gate-level", "--sdf", "tt"
    )
    assert rc == 0, out + err
    assert re.search(
        r"^\[sim\] SDF tt: \d+ cells, \d+ IOPATHs annotated at a [\d.]+ ns clock .*; no annotation warnings$", out, re.M
    )
    assert out.rstrip().endswith("[sim] PASS: bit exact")
    rc, out, err = run(
        capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "verilator", "--gate-level", "--sdf", "tt"
    )
    assert rc == 2 and out == "" and err.count("\n") == 1 and "Verilator cannot annotate an SDF" in err


def _io_slacks(rtl: Path, man: dict, period: float) -> list[float]:
    """Worst setup slack of the input-to-register and of the register-to-output paths when inputs arrive, and
    outputs are needed, half a period after the rising edge (OpenSTA, the SDC's load and drive)."""
    from nvmlstm.gen.sta import run_sta_script, sta_setup_commands

    ins = "[delete_from_list [all_inputs] [get_ports clk]]"
    out = run_sta_script(
        rtl,
        sta_setup_commands(man, "tt")
        + [
            f"create_clock -name clk -period {period} [get_ports clk]",
            f"set_input_delay {period / 2} -clock clk {ins}",
            f"set_output_delay {period / 2} -clock clk [all_outputs]",
            f"report_checks -path_delay max -digits 3 -format end -from {ins}",
            "report_checks -path_delay max -digits 3 -format end -to [all_outputs]",
        ],
    )
    slacks = [float(m) for m in re.findall(r"(-?\d+\.\d+) \((?:MET|VIOLATED)\)", out)]
    assert len(slacks) == 2, out
    return slacks


def test_testbench_samples_after_the_io_paths_settle(timed):
    """The testbench drives inputs and samples outputs at the falling edge, P/2 after the rising one: that is valid
    only if every input-to-register path meets setup in P/2 and every register-to-output path settles in P/2.
    STA with exactly these constraints says so at the simulated period (and not at a tenth of it): so a mismatch
    at that period would be the design's, not the testbench's."""
    rtl, _, _ = timed
    man = json.loads((rtl / "manifest.json").read_text())
    period = sdf_run(rtl, man, "tt", None).clock_ns
    assert min(_io_slacks(rtl, man, period)) >= 0
    assert min(_io_slacks(rtl, man, period / 10)) < 0
