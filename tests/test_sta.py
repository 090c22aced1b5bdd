"""Static timing analysis (docs/signoff.md, "Static timing"): the SDC, the macro timing model, the OpenSTA runs and
their parsing, the characterized libraries in OpenSTA, a negative-slack case and the manifest's ``signoff.timing``.

Without OpenSTA (or the PDK) the tests that need it skip with the install line, unless ``NVMLSTM_REQUIRE_PDK=sky130``
(then they fail).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from nvmlstm.gen import liberty as lib
from nvmlstm.gen import sta as st
from nvmlstm.gen.tools import ToolNotFound, find_sta

pytestmark = pytest.mark.slow(1)


@pytest.fixture(scope="session")
def sta_tool():
    """OpenSTA; missing: skip with the install line (fail with ``NVMLSTM_REQUIRE_PDK=sky130``)."""
    try:
        return find_sta()
    except ToolNotFound as exc:
        if lib.require_pdk_env():
            pytest.fail(f"{exc} ({lib.PDK_ENV}=sky130 requires it)", pytrace=False)
        pytest.skip(str(exc))


def unit_delay_liberty(pdk, delay: float = 0.1) -> str:
    """A hand-written timing library of `lib.CELLS`: every arc ``delay`` ns, the flip-flop 0.3 ns clock to Q,
    0.1 ns setup, 0 hold (scalar tables). Independent of the characterized files."""
    head = ["library (unit) {", "  delay_model : table_lookup;", '  time_unit : "1ns";', '  voltage_unit : "1V";']
    head += ['  current_unit : "1mA";', '  pulling_resistance_unit : "1kohm";', "  capacitive_load_unit (1, pf);"]
    for e in ("rise", "fall"):
        head += [f"  input_threshold_pct_{e} : 50;", f"  output_threshold_pct_{e} : 50;"]
        head += [f"  slew_lower_threshold_pct_{e} : 20;", f"  slew_upper_threshold_pct_{e} : 80;"]

    def arc(rel: str, kind: str, v: float) -> list[str]:
        tables = ("rise_constraint", "fall_constraint") if "_rising" in kind else ("cell_rise", "cell_fall")
        tables += () if "_rising" in kind else ("rise_transition", "fall_transition")
        body = [f'        {t} (scalar) {{ values ("{v}"); }}' for t in tables]
        return [
            "      timing () {",
            f'        related_pin : "{rel}";',
            f"        timing_type : {kind};",
            *body,
            "      }",
        ]

    lines = head
    for c in lib.CELLS:
        lines += [f"  cell ({c.verilog_name}) {{", f"    area : {lib.cell_area(pdk, c)};"]
        ins = [f"    pin ({i}) {{ direction : input; capacitance : 0.002; }}" for i in c.inputs]
        if c.sequential:
            clk, d = c.inputs
            lines += [
                f'    ff (IQ, IQN) {{ next_state : "{d}"; clocked_on : "{clk}"; }}',
                ins[0][:-2] + "clock : true; }",
            ]
            lines += [f"    pin ({d}) {{ direction : input; capacitance : 0.002;"]
            lines += arc(clk, "setup_rising", 0.1) + arc(clk, "hold_rising", 0.0) + ["    }"]
            lines += [f'    pin ({c.output}) {{ direction : output; function : "IQ";', *arc(clk, "rising_edge", 0.3)]
        else:
            lines += ins + [f'    pin ({c.output}) {{ direction : output; function : "{c.function}";']
            lines += [ln for i in c.inputs for ln in arc(i, "combinational", delay)]
        lines += ["    }", "  }"]
    return "\n".join(lines + ["}"]) + "\n"


# --------------------------------------------------------------------------------------------------
# Text: SDC, macro model, parsing (no tool)
PORTS = [
    {"name": "clk", "direction": "input", "width": 1},
    {"name": "rst", "direction": "input", "width": 1},
    {"name": "inp__payload", "direction": "input", "width": 12},
    {"name": "out__valid", "direction": "output", "width": 1},
    {"name": "cycles", "direction": "output", "width": 32},
]


def test_sdc_content():
    text = st.sdc_text(PORTS, 5.0)
    assert "create_clock -name clk -period 5.0000 [get_ports clk]\n" in text
    assert "set_input_delay 1.0000 -clock clk [get_ports {rst inp__payload[*]}]\n" in text  # 20 %, not the clock
    assert "set_output_delay 1.0000 -clock clk [get_ports {out__valid cycles[*]}]\n" in text
    assert re.search(
        r"^set_driving_cell -lib_cell sky130_fd_sc_hd__buf_\d -pin X \[get_ports \{rst inp__payload", text, re.M
    )
    assert "set_load 0.0100 [get_ports {out__valid cycles[*]}]\n" in text
    assert text == st.sdc_text(PORTS, 5.0)
    with pytest.raises(st.GenError, match=r"^the clock period must be a positive number of ns, not 0.0$"):
        st.sdc_text(PORTS, 0.0)


PARAMS = {"ROWS": 4, "COLS": 8, "WEIGHT_BITS": 4, "DAC_BITS": 4, "ADC_BITS": 6, "STEP_BITS": 16, "READ_LATENCY": 2}


def test_macro_variants_and_model():
    assert st.macro_variant_name(PARAMS) == "nvm_array_macro_r4c8w4d4a6s16l2"
    other = dict(PARAMS, ADC_BITS=4)
    v = st.macro_variants([PARAMS, other, PARAMS])
    assert list(v) == ["nvm_array_macro_r4c8w4d4a4s16l2", "nvm_array_macro_r4c8w4d4a6s16l2"]
    libt = st.macro_liberty_text(v, "ss")
    assert libt.count("cell (nvm_array_macro_") == 2 and "bit_width : 48;" in libt and "bit_width : 32;" in libt
    assert 'cell_rise (scalar) { values ("1.0000"); }' in libt  # ss clock to y/valid
    assert libt.count("timing_type : setup_rising;") == 2 * 8  # rst and the 7 signal inputs, per variant
    wrap = st.macro_wrapper_text(v)
    assert "module nvm_array_macro_r4c8w4d4a6s16l2 (" in wrap and "output wire [47:0] y" in wrap
    assert ".ADC_BITS(6)" in wrap and ".READ_LATENCY(2)" in wrap
    with pytest.raises(st.GenError, match="^macro parameters must be ROWS, COLS"):
        st.macro_variant_name({"ROWS": 4})


#: Captured from OpenSTA 2.0.17 (`report_checks -path_delay max -fields {slew capacitance} -digits 3`), shortened.
CAPTURED = """\
Startpoint: lane_bank/cell_lane_0/_1257_
            (rising edge-triggered flip-flop clocked by clk)
Endpoint: lane_bank/hidden_lane_0/_754_
          (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

     Cap     Slew    Delay     Time   Description
---------------------------------------------------------------------------
            0.000    0.000    0.000   clock clk (rise edge)
                     0.000    0.000   clock network delay (ideal)
            0.000    0.000    0.000 ^ lane_bank/cell_lane_0/_1257_/CLK (sky130_fd_sc_hd__dfxtp_1)
   0.012    0.300    0.300    0.300 v lane_bank/cell_lane_0/_1257_/Q (sky130_fd_sc_hd__dfxtp_1)
   0.010    0.100    0.100    0.400 v lane_bank/hidden_lane_0/_379_/X (sky130_fd_sc_hd__and3_1)
   0.006    0.100    0.100    0.500 ^ lane_bank/hidden_lane_0/_382_/Y (sky130_fd_sc_hd__nand3_1)
            0.100    0.000    0.500 ^ lane_bank/hidden_lane_0/_754_/D (sky130_fd_sc_hd__dfxtp_1)
                              0.500   data arrival time

            0.000    0.400    0.400   clock clk (rise edge)
                     0.000    0.400   clock network delay (ideal)
                              0.400 ^ lane_bank/hidden_lane_0/_754_/CLK (sky130_fd_sc_hd__dfxtp_1)
                    -0.100    0.300   library setup time
                              0.300   data required time
---------------------------------------------------------------------------
                              0.300   data required time
                             -0.500   data arrival time
---------------------------------------------------------------------------
                             -0.200   slack (VIOLATED)

"""


def test_parse_captured_report():
    p = st.parse_path(CAPTURED)
    assert p == {
        "start": "lane_bank/cell_lane_0/_1257_",
        "end": "lane_bank/hidden_lane_0/_754_",
        "cells": 3,  # the launching flop, and3, nand3; not the capturing flop
        "delay_ns": 0.5,
        "slack_ns": -0.2,
    }
    assert st.parse_summary("worst slack -0.200\ntns -1.250\n") == (-0.2, -1.25)
    assert st.fmax_mhz(0.4, -0.2) == pytest.approx(1000 / 0.6)
    with pytest.raises(st.StaError, match="no timing path"):
        st.parse_path("No paths found.\n")
    with pytest.raises(st.StaError, match="no worst slack"):
        st.parse_summary("worst slack INF\ntns 0.000\n")


def test_cell_arc_census_catches_untimed_cells():
    cells, nolib = st.parse_cell_arcs("nvmlstm-cell a_1 10 2\nnvmlstm-cell b_1 3 0\nnvmlstm-nolib x/macro\n")
    assert cells == {"a_1": (10, 2), "b_1": (3, 0)} and nolib == ["x/macro"]
    with pytest.raises(st.StaError, match=r"^1 instances have no Liberty cell, e.g. x/macro$"):
        st.check_cell_arcs(cells, nolib)
    with pytest.raises(st.StaError, match=r"^library cells without timing arcs in the netlist: b_1$"):
        st.check_cell_arcs(cells, [])
    st.check_cell_arcs({"a_1": (10, 2)}, [])


# --------------------------------------------------------------------------------------------------
# OpenSTA on the libraries and on a tiny mapped design
@pytest.mark.parametrize("corner", sorted(lib.CORNERS))
def test_characterized_liberty_loads_in_opensta(corner, tmp_path, sta_tool):
    text = lib.characterized_liberty(corner)
    (tmp_path / "c.lib").write_text(text)
    (tmp_path / "m.lib").write_text(st.macro_liberty_text(st.macro_variants([PARAMS]), corner))
    out = st.run_sta_script(
        tmp_path,
        ["read_liberty c.lib", "read_liberty m.lib", "report_lib_cell sky130_fd_sc_hd__nand2_1"],
        sta=sta_tool,
    )
    assert "nand2" in out
    for cell in lib.CELLS:
        assert f"cell ({cell.verilog_name})" in text and "cell_rise" in text


def test_opensta_errors_are_one_line(tmp_path, sta_tool):
    (tmp_path / "bad.lib").write_text("library (bad) { cell (x) { area : ; } \n")
    with pytest.raises(st.StaError, match=r"^OpenSTA: "):
        st.run_sta_script(tmp_path, ["read_liberty bad.lib"], sta=sta_tool)
    with pytest.raises(st.StaError, match=r"^OpenSTA: "):
        st.run_sta_script(tmp_path, ["no_such_command"], sta=sta_tool)


_TINY = """\
(* blackbox *) module nvm_array_macro #(parameter integer ROWS = 2) (input clk, input [3:0] x, output [3:0] y);
endmodule
module tiny (input clk, input rst, input en, input [3:0] a, output [3:0] y, output [3:0] z);
    reg [3:0] q;
    reg [3:0] r;
    always @(posedge clk) begin
        if (rst) q <= 4'd0; else if (en) q <= q * a + 4'd1;
        r <= q;
    end
    nvm_array_macro #(.ROWS(2)) m0 (.clk(clk), .x(q ^ a), .y(y));
    assign z = r;
endmodule
"""


def _tiny_timing(tmp_path, pdk, sta_tool, period_ns: float, arcs_lib: str | None = None):
    """Map `_TINY` with the unit-delay library (macro renamed to a variant), then time it at ``period_ns``."""
    from nvmlstm.gen.signoff import map_to_cells

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tiny.v").write_text(_TINY)
    (tmp_path / "sky130_fd_sc_hd_nvmlstm_tt.lib").write_text(arcs_lib or unit_delay_liberty(pdk))
    shutil.copy(tmp_path / "sky130_fd_sc_hd_nvmlstm_tt.lib", tmp_path / "sky130_fd_sc_hd_nvmlstm_ss.lib")
    variants = {"tinymacro": {"ROWS": 2}}
    res, _ = map_to_cells(
        tmp_path, ["tiny.v"], "sky130_fd_sc_hd_nvmlstm_tt.lib", pdk, top="tiny", blackbox_module="nvm_array_macro",
        netlist_name="tiny.gates.v", delay_ps=None if arcs_lib else period_ns * 1000, variants=variants,
    )  # fmt: skip
    (tmp_path / "tiny.gates.v").write_text(res.netlist)
    assert res.blackboxes == {"tinymacro": 1}
    thresholds = [ln for ln in unit_delay_liberty(pdk).splitlines() if "_pct_" in ln]
    macro = ["library (m) {", *thresholds, "  cell (tinymacro) {", "    pin (clk) { direction : input; clock : true; }"]
    macro += ["    bus (x) { bus_type : w4; direction : input;", *st._constraint("setup", 0.1), "    }"]
    macro += ["    bus (y) { bus_type : w4; direction : output;", *st._output_arc(st.MACRO_TIMING["tt"]), "    }"]
    typ = "  type (w4) { base_type : array; data_type : bit; bit_width : 4; bit_from : 3; bit_to : 0; downto : true; }"
    (tmp_path / "nvm_array_macro_tt.lib").write_text("\n".join([macro[0], typ, *macro[1:], "  }", "}"]) + "\n")
    ports = [{"name": n, "direction": "input", "width": w} for n, w in (("clk", 1), ("rst", 1), ("en", 1), ("a", 4))]
    ports += [{"name": n, "direction": "output", "width": 4} for n in ("y", "z")]
    (tmp_path / "tiny.sdc").write_text(st.sdc_text(ports, period_ns))
    man = {"top": "tiny", "ports": ports, "signoff": {"timing": {"netlist": "tiny.gates.v", "sdc": "tiny.sdc"}}}
    return st.analyse_corner(tmp_path, man, "tt", period_ns, sta=sta_tool)


def test_tiny_design_slack_and_fmax(tmp_path, pdk, sta_tool):
    slow, report = _tiny_timing(tmp_path / "slow", pdk, sta_tool, 50.0)
    assert slow["met"] and slow["wns_ns"] > 0 and slow["whs_ns"] >= 0
    cp = slow["critical_path"]
    assert cp["cells"] >= 2 and cp["delay_ns"] > 0.3  # the flop's 0.3 ns clock to Q and at least one gate
    # at 50 ns the worst path starts at an input port (10 ns budget outside): fmax is where the slack is zero
    # with the port budgets scaled, not 1000 / (50 - wns)
    assert slow["fmax_mhz"] > 1000 / (50.0 - slow["wns_ns"])
    at_fmax, _ = _tiny_timing(tmp_path / "at_fmax", pdk, sta_tool, 1000 / slow["fmax_mhz"])
    assert abs(at_fmax["wns_ns"]) <= 0.003 and at_fmax["fmax_mhz"] == pytest.approx(slow["fmax_mhz"], rel=1e-3)
    assert f"Startpoint: {cp['start']}" in report and f"Endpoint: {cp['end']}" in report
    assert (tmp_path / "slow" / "nvm_lstm_top.tt.sdf").read_text().startswith("(DELAYFILE")
    assert "DATE" not in (tmp_path / "slow" / "nvm_lstm_top.tt.sdf").read_text()  # deterministic
    fast, report = _tiny_timing(tmp_path / "fast", pdk, sta_tool, 0.2)  # far below the path's delay
    assert not fast["met"] and fast["wns_ns"] < 0 and fast["tns_ns"] < 0
    assert "slack (VIOLATED)" in report and f"Endpoint: {fast['critical_path']['end']}" in report


def test_untimed_library_is_refused(tmp_path, pdk, sta_tool):
    """The area-only library (no timing arcs, no thresholds): OpenSTA's analysis of it is refused."""
    with pytest.raises(st.StaError):
        _tiny_timing(tmp_path, pdk, sta_tool, 5.0, arcs_lib=lib.liberty_text(pdk))


# --------------------------------------------------------------------------------------------------
# The generated design: `nvmlstm generate --pdk sky130 --clock-mhz 2000` (far too fast) and the same netlist re-timed
@pytest.fixture(scope="module")
def fast_design(tmp_path_factory, pdk, sta_tool):
    from nvmlstm.gen import generate_rtl
    from nvmlstm.sim.cases import case_by_name

    case = case_by_name("lut")
    out = tmp_path_factory.mktemp("sta") / "rtl"
    res = generate_rtl(out, case.cfg(), lanes=case.lanes, macro_latency=case.macro_latency, synth=False, pdk="sky130",
                       clock_mhz=2000.0)  # fmt: skip
    return out, res.manifest


def test_negative_slack_at_2000_mhz(fast_design):
    rtl, man = fast_design
    t = man["signoff"]["timing"]
    assert t["clock_mhz"] == 2000.0 and t["period_ns"] == 0.5 and t["netlist"] == "nvm_lstm_top.sky130.v"
    assert t["tool"] == "OpenSTA 2.0.17" and t["sdc"] == "nvm_lstm_top.sdc" and t["wire_load"].startswith("none")
    assert set(t["corners"]) == {"tt", "ss"}
    for e in t["corners"].values():
        assert e["wns_ns"] < 0 and e["tns_ns"] < 0 and e["met"] is False
        assert e["fmax_mhz"] < 2000
        report = (rtl / e["report"]).read_text()
        cp = e["critical_path"]
        assert "slack (VIOLATED)" in report
        assert f"Startpoint: {cp['start']}" in report and f"Endpoint: {cp['end']}" in report
        assert re.search(rf"^\s+{cp['delay_ns']:.3f}\s+data arrival time", report, re.M)
        assert man["files"][e["sdf"]]["bytes"] > 1000 and e["library"] in man["files"]
    assert t["corners"]["ss"]["fmax_mhz"] < t["corners"]["tt"]["fmax_mhz"]  # the slow corner is slower


def test_same_netlist_meets_a_slow_clock(fast_design, tmp_path, sta_tool):
    rtl, man = fast_design
    slow = tmp_path / "rtl"
    shutil.copytree(rtl, slow)
    (slow / "nvm_lstm_top.sdc").write_text(st.sdc_text(man["ports"], 100.0))
    entry, _ = st.analyse_corner(slow, man, "tt", 100.0, sta=sta_tool)
    assert entry["met"] and entry["wns_ns"] > 0
    fast = man["signoff"]["timing"]["corners"]["tt"]
    # the same fmax, whatever the clock analysed first: at 100 ns a port path is the worst (its 20 ns budget),
    # the iteration (gen.sta.settled_fmax_mhz) finds the period at which the worst slack is zero
    assert entry["fmax_mhz"] == pytest.approx(fast["fmax_mhz"], rel=0.01)
    assert entry["fmax_mhz"] > 1000 / (100.0 - entry["wns_ns"]) * 2


def test_every_cell_of_the_netlist_has_timing(fast_design, sta_tool):
    rtl, man = fast_design
    out = st.run_sta_script(rtl, st.sta_setup_commands(man, "tt") + st.report_commands("tt")[-2:], sta=sta_tool)
    cells, nolib = st.parse_cell_arcs(out)
    assert nolib == []
    assert sum(n for n, _ in cells.values()) == man["signoff"]["cells"] + len(man["macros"])
    assert all(arcs > 0 for _, arcs in cells.values())
    assert {st.macro_variant_name(m["parameters"]) for m in man["macros"]} <= set(cells)


def test_generate_without_opensta_says_skipped(tmp_path, pdk, monkeypatch, capsys):
    from cli_helpers import run

    import nvmlstm.gen.rtl as rtl
    from nvmlstm.sim.cases import case_by_name

    def missing():
        raise ToolNotFound("opensta")

    monkeypatch.setattr(rtl, "find_sta", missing)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(case_by_name("lut").config))
    rc, out, err = run(capsys, "generate", "--config", cfg, "--out", tmp_path / "rtl", "--lanes", 4, "--no-synth",
                       "--pdk", "sky130", "--clock-mhz", "150")  # fmt: skip
    assert rc == 0, err
    line = "skipped: OpenSTA not found: install it with `sudo apt-get install -y opensta`"
    assert f"\ntiming: {line}\n" in out
    man = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert man["signoff"]["timing"] == line
    assert not list((tmp_path / "rtl").glob("*.sdf")) and (tmp_path / "rtl" / "nvm_lstm_top.sdc").is_file()
