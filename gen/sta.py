"""Static timing analysis of the mapped netlist with OpenSTA (docs/signoff.md, "Static timing").

`nvmlstm generate --pdk sky130` writes an SDC (`sdc_text`), a Liberty timing model of the NVM macros
(`macro_liberty_text`: one cell per parameter set, a flip-flop-like boundary) and, when OpenSTA is installed, runs
it per corner (`analyse_corner`): the setup and hold checks, worst and total negative slack, the critical path and
the SDF of the netlist. Pre-layout: no parasitics, no wire load (`WIRE_LOAD`).

OpenSTA 2.0.17 (Debian) cannot read parameterized instances, so the mapping gives each macro parameter set its own
module name (`macro_variant_name`); `macro_wrapper_text` defines those modules for simulation as the behavioral
macro with the parameters, so the one netlist is simulated, analysed and annotated.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nvmlstm.hdl import macro as _macro

from .errors import GenError
from .liberty import CELLS, CORNERS, PREFIX, liberty_file_name
from .tools import Tool, find_sta, run_tool

__all__ = [
    "StaError",
    "MacroTiming",
    "MACRO_TIMING",
    "MACRO_MODULE",
    "IO_DELAY_FRACTION",
    "OUTPUT_LOAD_PF",
    "DRIVING_CELL",
    "WIRE_LOAD",
    "SDC_FILE",
    "macro_variant_name",
    "macro_variants",
    "macro_liberty_name",
    "macro_liberty_text",
    "macro_wrapper_text",
    "sdc_text",
    "sta_setup_commands",
    "run_sta_script",
    "report_commands",
    "parse_path",
    "parse_summary",
    "parse_cell_arcs",
    "check_cell_arcs",
    "analyse_corner",
    "fmax_mhz",
]

#: The behavioral/black-box macro module of the RTL (`hdl.macro`).
MACRO_MODULE = "nvm_array_macro"
SDC_FILE = "nvm_lstm_top.sdc"
#: The share of the clock period given to the logic outside the top on each side of a port: the top's ports face
#: synchronous logic on the same clock (a host bus, the next block), which needs part of the cycle for its own
#: flop and wire; 20 % in and 20 % out leaves 60 % for a port-to-port path and the whole period for register to
#: register paths, a common starting budget when the neighbours are not known.
IO_DELAY_FRACTION = 0.2
#: Load on every output port: about four ``inv_1``/``dfxtp_1`` inputs (each about 2 fF) plus a short wire.
OUTPUT_LOAD_PF = 0.01
#: What drives every input port (except the clock, which is ideal): a ``buf_2`` (``buf_1`` if the library has
#: none), as the neighbour's output would.
DRIVING_CELL = (f"{PREFIX}buf_{2 if any(c.name == 'buf' and c.drive == 2 for c in CELLS) else 1}", "X")
#: The wire-load assumption of the pre-layout analysis (the manifest's ``signoff.timing.wire_load``).
WIRE_LOAD = (
    "none: pre-layout, no parasitics (wire capacitance and resistance are zero; only pin capacitances load "
    "the nets; ideal clock without skew)"
)


class StaError(GenError):
    """OpenSTA failed, reported an error, or its output cannot be read."""


@dataclass(frozen=True)
class MacroTiming:
    """The macro boundary at one corner, as the Liberty timing model states it.

    The macro's inputs are sampled by its input registers at the read strobe and its outputs come from its ADC
    output register, so the digital boundary is a flip-flop's: setup and hold on every input w.r.t. the rising
    clock, clock-to-output on ``y`` and ``valid``. The analog read (DACs, array, ADC conversion) happens between
    those registers over the macro's ``READ_LATENCY`` cycles; whether that time fits is the efficiency model's
    check, not this one.

    Parameters
    ----------
    setup_ns, hold_ns : float
        Setup and hold constraint of every input pin.
    clk_to_q_ns : float
        Clock to ``y``/``valid``.
    transition_ns : float
        Output transition.
    input_cap_pf : float
        Capacitance of every input pin (one flip-flop D input); the clock pin has the same.
    """

    setup_ns: float
    hold_ns: float
    clk_to_q_ns: float
    transition_ns: float
    input_cap_pf: float


#: Per corner: the values of the characterized ``dfxtp_1`` (setup, hold, clock to Q at about 0.1 ns clock slew
#: and a fanout-of-4 load, docs/signoff.md), rounded up, with 0.1 ns (tt) / 0.2 ns (ss) added to the
#: clock-to-output for the output register's drive of the macro's output wiring.
MACRO_TIMING: dict[str, MacroTiming] = {
    "tt": MacroTiming(setup_ns=0.15, hold_ns=0.05, clk_to_q_ns=0.45, transition_ns=0.10, input_cap_pf=0.002),
    "ss": MacroTiming(setup_ns=0.35, hold_ns=0.10, clk_to_q_ns=1.00, transition_ns=0.25, input_cap_pf=0.002),
}

_PARAM_KEYS = (
    ("ROWS", "r"),
    ("COLS", "c"),
    ("WEIGHT_BITS", "w"),
    ("DAC_BITS", "d"),
    ("ADC_BITS", "a"),
    ("STEP_BITS", "s"),
    ("READ_LATENCY", "l"),
)


def macro_variant_name(params: Mapping[str, int]) -> str:
    """The module name of the macro with ``params`` in the netlist: ``nvm_array_macro_r4c8w4d4a6s16l2`` (rows,
    cols, weight, DAC and ADC bits, step bits, read latency)."""
    if sorted(params) != sorted(k for k, _ in _PARAM_KEYS):
        raise GenError(f"macro parameters must be {', '.join(k for k, _ in _PARAM_KEYS)}, not {', '.join(params)}")
    return MACRO_MODULE + "_" + "".join(f"{short}{int(params[k])}" for k, short in _PARAM_KEYS)


def macro_variants(params_list: list[Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Variant module name -> parameters, one per distinct parameter set, sorted by name."""
    out = {macro_variant_name(p): {k: int(p[k]) for k, _ in _PARAM_KEYS} for p in params_list}
    return dict(sorted(out.items()))


def _ports(params: Mapping[str, int]) -> list[tuple[str, str, int]]:
    """(name, "input"/"output", width) of the macro's ports for ``params``."""
    ports = [(name, "input", 1) for name, _doc in _macro.MACRO_CLOCK_PORTS]
    for p in _macro.MACRO_PORTS:
        direction = "input" if p.flow == _macro.Flow.In else "output"
        ports.append((p.name, direction, p.width.value(dict(params))))
    return ports


def macro_wrapper_text(variants: Mapping[str, Mapping[str, int]]) -> str:
    """Verilog of each variant module as the behavioral ``nvm_array_macro`` with its parameters (simulation of
    the netlist: ``filelist_gate.f``)."""
    out = [
        "// The NVM macro variants of the gate-level netlist: each is the behavioral nvm_array_macro with one",
        "// parameter set (OpenSTA reads no parameterized instances, so the netlist names one module per set).",
        "// Generated by `nvmlstm generate --pdk sky130` (gen/sta.py); do not edit. Simulation only.",
    ]
    for name, params in variants.items():
        ports = _ports(params)
        decl = ",\n".join(f"    {d} wire {'' if w == 1 else f'[{w - 1}:0] '}{p}" for p, d, w in ports)
        plist = ", ".join(f".{k}({params[k]})" for k, _ in _PARAM_KEYS)
        conns = ", ".join(f".{p}({p})" for p, _d, _w in ports)
        out += ["", f"module {name} (", decl, ");", f"  {MACRO_MODULE} #({plist}) macro ({conns});", "endmodule"]
    return "\n".join(out) + "\n"


def macro_liberty_name(corner: str) -> str:
    """``nvm_array_macro_<corner>.lib``."""
    liberty_file_name(corner)  # validates the corner
    return f"{MACRO_MODULE}_{corner}.lib"


def _constraint(kind: str, value: float) -> list[str]:
    return [
        "      timing () {",
        '        related_pin : "clk";',
        f"        timing_type : {kind}_rising;",
        f'        rise_constraint (scalar) {{ values ("{value:.4f}"); }}',
        f'        fall_constraint (scalar) {{ values ("{value:.4f}"); }}',
        "      }",
    ]


def _output_arc(t: MacroTiming) -> list[str]:
    return [
        "      timing () {",
        '        related_pin : "clk";',
        "        timing_type : rising_edge;",
        f'        cell_rise (scalar) {{ values ("{t.clk_to_q_ns:.4f}"); }}',
        f'        cell_fall (scalar) {{ values ("{t.clk_to_q_ns:.4f}"); }}',
        f'        rise_transition (scalar) {{ values ("{t.transition_ns:.4f}"); }}',
        f'        fall_transition (scalar) {{ values ("{t.transition_ns:.4f}"); }}',
        "      }",
    ]


def _macro_cell(name: str, params: Mapping[str, int], t: MacroTiming) -> list[str]:
    lines = [f"  cell ({name}) {{", "    area : 0;", "    dont_use : true;", "    dont_touch : true;"]
    for pin, direction, width in _ports(params):
        group = f"pin ({pin})" if width == 1 else f"bus ({pin})"
        lines.append(f"    {group} {{")
        if width > 1:
            lines.append(f"      bus_type : w{width};")
        lines.append(f"      direction : {direction};")
        if pin == "clk":
            lines += ["      clock : true;", f"      capacitance : {t.input_cap_pf:.4f};"]
        elif direction == "input":
            lines.append(f"      capacitance : {t.input_cap_pf:.4f};")
            lines += _constraint("setup", t.setup_ns) + _constraint("hold", t.hold_ns)
        else:
            lines += _output_arc(t)
        lines.append("    }")
    return lines + ["  }"]


def macro_liberty_text(variants: Mapping[str, Mapping[str, int]], corner: str) -> str:
    """The Liberty timing model of the macro variants at ``corner`` (`MACRO_TIMING`): area 0 (the manifest's
    areas exclude the macros), setup/hold on every input and clock-to-output on ``y``/``valid``, all w.r.t. the
    rising ``clk``; scalar values (no slew or load dependence)."""
    c = CORNERS[corner]
    t = MACRO_TIMING[corner]
    widths = sorted({w for p in variants.values() for _n, _d, w in _ports(p) if w > 1})
    lines = [
        f"/* Timing model of the NVM array macro variants, corner {c.label}. Generated by `nvmlstm generate --pdk",
        "   sky130` (gen/sta.py, MACRO_TIMING; docs/signoff.md): a flip-flop-like boundary (input registers at the",
        "   read strobe, the ADC output register on y/valid); the analog read time is the efficiency model's check. */",
        f"library (nvm_array_macro_{corner}) {{",
        "  delay_model : table_lookup;",
        '  time_unit : "1ns";',
        '  voltage_unit : "1V";',
        '  current_unit : "1mA";',
        '  pulling_resistance_unit : "1kohm";',
        '  leakage_power_unit : "1nW";',
        "  capacitive_load_unit (1, pf);",
        "  nom_process : 1.0;",
        f"  nom_temperature : {c.temp_c:.1f};",
        f"  nom_voltage : {c.vdd:.2f};",
    ]
    for edge in ("rise", "fall"):
        lines += [
            f"  input_threshold_pct_{edge} : 50;",
            f"  output_threshold_pct_{edge} : 50;",
            f"  slew_lower_threshold_pct_{edge} : 20;",
            f"  slew_upper_threshold_pct_{edge} : 80;",
        ]
    for w in widths:
        lines += [
            f"  type (w{w}) {{",
            "    base_type : array;",
            "    data_type : bit;",
            f"    bit_width : {w};",
            f"    bit_from : {w - 1};",
            "    bit_to : 0;",
            "    downto : true;",
            "  }",
        ]
    for name, params in variants.items():
        lines += _macro_cell(name, params, t)
    return "\n".join(lines + ["}"]) + "\n"


def _port_ref(port: Mapping) -> str:
    return f"{port['name']}[*]" if int(port["width"]) > 1 else str(port["name"])


def sdc_text(ports: list[Mapping], period_ns: float, *, clock: str = "clk") -> str:
    """The timing constraints of the top (``ports``: the manifest's ``ports``, name/direction/width).

    One clock at ``period_ns``, ideal (pre-layout); every other input arrives `IO_DELAY_FRACTION` of the period
    after the edge from a `DRIVING_CELL`; every output must be there that long before the next edge and drives
    `OUTPUT_LOAD_PF`. The macros need nothing here: their Liberty model carries their setup and clock-to-output.
    """
    if not (period_ns > 0 and math.isfinite(period_ns)):
        raise GenError(f"the clock period must be a positive number of ns, not {period_ns}")
    io = IO_DELAY_FRACTION * period_ns
    ins = " ".join(_port_ref(p) for p in ports if p["direction"] == "input" and p["name"] != clock)
    outs = " ".join(_port_ref(p) for p in ports if p["direction"] == "output")
    lines = [
        "# Timing constraints of nvm_lstm_top, generated by `nvmlstm generate --pdk sky130` (gen/sta.py).",
        "# Pre-layout: ideal clock (no latency, skew or uncertainty), no parasitics. The NVM macros are timed by",
        "# their Liberty model (nvm_array_macro_<corner>.lib): setup on their inputs, clock to y/valid.",
        f"create_clock -name {clock} -period {period_ns:.4f} [get_ports {clock}]",
        f"# Ports: {IO_DELAY_FRACTION:.0%} of the period belongs to the synchronous logic outside, on each side.",
        f"set_input_delay {io:.4f} -clock {clock} [get_ports {{{ins}}}]",
        f"set_output_delay {io:.4f} -clock {clock} [get_ports {{{outs}}}]",
        f"set_driving_cell -lib_cell {DRIVING_CELL[0]} -pin {DRIVING_CELL[1]} [get_ports {{{ins}}}]",
        f"set_load {OUTPUT_LOAD_PF:.4f} [get_ports {{{outs}}}]",
    ]
    return "\n".join(lines) + "\n"


def sta_setup_commands(rtl_dir_manifest: Mapping, corner: str) -> list[str]:
    """The OpenSTA commands that load the design of an RTL directory at ``corner``: the cell and macro
    libraries, the netlist (``signoff.timing.netlist``), ``link_design`` and the SDC; file names relative to the
    RTL directory (run with it as the working directory)."""
    timing = (rtl_dir_manifest.get("signoff") or {}).get("timing")
    if not isinstance(timing, Mapping):
        raise StaError("the manifest has no signoff.timing entry; generate with `nvmlstm generate --pdk sky130`")
    top = rtl_dir_manifest.get("top", "nvm_lstm_top")
    return [
        f"read_liberty {liberty_file_name(corner)}",
        f"read_liberty {macro_liberty_name(corner)}",
        f"read_verilog {timing['netlist']}",
        f"link_design {top}",
        f"read_sdc {timing['sdc']}",
    ]


_ERROR = re.compile(r"^Error: (.*)$", re.MULTILINE)
_BLACKBOX = re.compile(r"^Warning: .*module (\S+) not found\.\s+Creating black box", re.MULTILINE)


def run_sta_script(rtl_dir, commands: list[str], *, sta: Tool | None = None, timeout: float = 3600.0) -> str:
    """Run ``commands`` in OpenSTA with ``rtl_dir`` as the working directory; returns its standard output.

    Raises `StaError` (one line) if OpenSTA exits with an error status, prints an ``Error:`` line, or links a
    module it has no cell or model for (it would time nothing through it)."""
    sta = sta or find_sta()
    with tempfile.TemporaryDirectory(prefix="nvmlstm-sta-") as work:
        script = Path(work) / "run.tcl"
        script.write_text("\n".join(commands) + "\n", encoding="utf-8")
        proc = run_tool(sta, ["-no_splash", "-exit", str(script)], cwd=rtl_dir, timeout=timeout)
    text = proc.stdout + proc.stderr
    errs = _ERROR.findall(text)
    if errs:
        raise StaError(f"OpenSTA: {errs[0].strip()}" + (f" (and {len(errs) - 1} more errors)" if len(errs) > 1 else ""))
    boxes = sorted(set(_BLACKBOX.findall(text)))
    if boxes:
        raise StaError(f"OpenSTA found no library cell or model for {', '.join(boxes)}")
    if proc.returncode != 0:
        tail = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
        raise StaError(f"OpenSTA failed (exit status {proc.returncode}): {tail[0].strip()}")
    return proc.stdout


#: A Tcl procedure that prints, for every library cell the netlist uses, its instance count and the number of
#: timing arc sets in its Liberty cell, and every leaf instance without a Liberty cell.
_CELL_ARCS_TCL = """\
proc nvmlstm_cell_arcs {} {
  set used [dict create]
  set nolib {}
  foreach inst [get_cells -hierarchical *] {
    if {![$inst is_leaf]} continue
    set lc [$inst liberty_cell]
    if {$lc == "NULL"} { lappend nolib [get_full_name $inst]; continue }
    set name [get_name $lc]
    if {![dict exists $used $name]} {
      set iter [$lc timing_arc_set_iterator]
      set arcs 0
      while {[$iter has_next]} { $iter next; incr arcs }
      $iter finish
      dict set used $name [list 0 $arcs]
    }
    lassign [dict get $used $name] count arcs
    dict set used $name [list [expr {$count + 1}] $arcs]
  }
  foreach c [lsort [dict keys $used]] { puts "nvmlstm-cell $c [join [dict get $used $c]]" }
  foreach i [lsort $nolib] { puts "nvmlstm-nolib $i" }
}"""

_SECTION = "nvmlstm-section"


def report_commands(corner: str, sdf: str | None = None) -> list[str]:
    """The analysis after `sta_setup_commands`: worst setup and hold paths (3 decimals, ns), worst slack, total
    negative slack, the cell timing-arc census (`parse_cell_arcs`) and, if ``sdf`` is given, its SDF."""
    cmds = [
        f'puts "{_SECTION} setup"',
        "report_checks -path_delay max -fields {slew capacitance} -digits 3",
        f'puts "{_SECTION} hold"',
        "report_checks -path_delay min -digits 3",
        f'puts "{_SECTION} summary"',
        "report_worst_slack -digits 3",
        "report_tns -digits 3",
        f'puts "{_SECTION} arcs"',
        _CELL_ARCS_TCL,
        "nvmlstm_cell_arcs",
    ]
    if sdf is not None:
        cmds.append(f"write_sdf -no_timestamp -no_version -divider / -digits 4 {sdf}")
    return cmds


def _sections(text: str) -> dict[str, str]:
    parts = re.split(rf"^{_SECTION} (\w+)\n", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


_PATH_LINE = re.compile(r"(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+[\^v]\s+(\S+)\s+\(([^)]+)\)\s*$")


def parse_path(report: str) -> dict:
    """The first path of a ``report_checks`` text: ``start``, ``end`` (pin or port names), ``cells`` (instances the
    data passes through, the launching flip-flop included, the capturing one not), ``delay_ns`` (data arrival
    time) and ``slack_ns``. Raises `StaError` if there is no path."""
    start = re.search(r"^Startpoint: (\S+)", report, re.MULTILINE)
    end = re.search(r"^Endpoint: (\S+)", report, re.MULTILINE)
    arrival = re.search(r"^\s*(-?\d+\.\d+)\s+data arrival time", report, re.MULTILINE)
    slack = re.search(r"^\s*(-?\d+\.\d+)\s+slack \((MET|VIOLATED)\)", report, re.MULTILINE)
    if not (start and end and arrival and slack):
        raise StaError("OpenSTA reported no timing path (is the clock constrained?)")
    lines = [m for m in map(_PATH_LINE.search, report[: arrival.start()].splitlines()) if m]
    if lines and lines[-1].group(4) != "out":
        lines = lines[:-1]  # the capturing pin (a flip-flop's D, a macro input) is not a stage of the path
    insts: list[str] = []
    for m in lines:
        if m.group(4) != "in" and "/" in m.group(3):
            inst = m.group(3).rsplit("/", 1)[0]
            if inst not in insts:
                insts.append(inst)
    cells = len(insts)
    return {
        "start": start.group(1),
        "end": end.group(1),
        "cells": cells,
        "delay_ns": float(arrival.group(1)),
        "slack_ns": float(slack.group(1)),
    }


def parse_summary(text: str) -> tuple[float, float]:
    """(worst slack, total negative slack) in ns from ``report_worst_slack`` and ``report_tns``."""
    ws = re.search(r"^worst slack (-?[\d.]+|INF)", text, re.MULTILINE)
    tns = re.search(r"^tns (-?[\d.]+)", text, re.MULTILINE)
    if not (ws and tns) or ws.group(1) == "INF":
        raise StaError("OpenSTA reported no worst slack (no constrained path)")
    return float(ws.group(1)), float(tns.group(1))


def parse_cell_arcs(text: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """The census printed by the cell-arcs procedure: library cell -> (instances, timing arc sets), and the leaf
    instances without a Liberty cell."""
    cells = {
        m.group(1): (int(m.group(2)), int(m.group(3)))
        for m in re.finditer(r"^nvmlstm-cell (\S+) (\d+) (\d+)$", text, re.M)
    }
    nolib = re.findall(r"^nvmlstm-nolib (\S+)$", text, re.MULTILINE)
    return cells, nolib


def check_cell_arcs(cells: Mapping[str, tuple[int, int]], nolib: list[str]) -> None:
    """Raise `StaError` unless every leaf instance has a Liberty cell with timing arcs."""
    if nolib:
        raise StaError(f"{len(nolib)} instances have no Liberty cell, e.g. {nolib[0]}")
    bare = sorted(c for c, (_n, arcs) in cells.items() if arcs == 0)
    if bare:
        raise StaError(f"library cells without timing arcs in the netlist: {', '.join(bare)}")
    if not cells:
        raise StaError("OpenSTA found no cell instances in the netlist")


def fmax_mhz(period_ns: float, wns_ns: float) -> float:
    """The clock at which the worst path just meets setup if its delay does not depend on the period:
    ``1000 / (period - worst slack)``. Exact for register-to-register paths; `settled_fmax_mhz` iterates it for
    the port paths, whose budget is a fraction of the period."""
    return 1000.0 / (period_ns - wns_ns)


#: `settled_fmax_mhz`: stop when the worst slack is within this of zero (the reports' 3 decimals), or after
#: `FMAX_ITERATIONS` analyses (a port path's error shrinks by its budget fraction, 0.2 or 0.4, per step).
FMAX_TOLERANCE_NS = 0.002
FMAX_ITERATIONS = 8


def settled_fmax_mhz(
    rtl_dir, manifest: Mapping, corner: str, period_ns: float, wns_ns: float, *, sta: Tool | None = None
) -> float:
    """The clock at which ``corner``'s worst setup slack is zero, with the port budgets (`sdc_text`) scaled with
    the period; ``wns_ns`` is the worst slack already analysed at ``period_ns``.

    `fmax_mhz` alone is right when the worst path runs from register to register; a path from an input port
    has ``IO_DELAY_FRACTION`` of the period before it starts, so at a shorter period it has more time and a
    different path may become the worst. So the analysis is repeated at ``period - wns`` (the SDC rewritten for
    it in a temporary directory; ``rtl_dir`` is not touched) until the worst slack is within
    `FMAX_TOLERANCE_NS` of zero (or `FMAX_ITERATIONS` analyses); the result is `fmax_mhz` of the last one.
    """
    ports = manifest.get("ports")
    if not isinstance(ports, list):
        raise StaError("the manifest has no port list to write the constraints of another clock period from")
    period, wns, runs = period_ns, wns_ns, 0
    with tempfile.TemporaryDirectory(prefix="nvmlstm-fmax-") as work:
        sdc = Path(work) / "fmax.sdc"
        setup = sta_setup_commands(manifest, corner)[:-1]  # all but read_sdc
        while abs(wns) > FMAX_TOLERANCE_NS and runs < FMAX_ITERATIONS:
            period -= wns
            sdc.write_text(sdc_text(ports, period))
            summary = ["report_worst_slack -digits 4", "report_tns -digits 4"]
            wns, _ = parse_summary(run_sta_script(rtl_dir, [*setup, f"read_sdc {{{sdc}}}", *summary], sta=sta))
            runs += 1
    return fmax_mhz(period, wns)


def analyse_corner(
    rtl_dir, manifest: Mapping, corner: str, period_ns: float, *, sta: Tool | None = None
) -> tuple[dict, str]:
    """Run the timing analysis of ``corner`` in ``rtl_dir`` (which holds the netlist, the libraries and the
    SDC named by ``manifest``): writes ``nvm_lstm_top.<corner>.sdf`` there and returns the manifest entry of the
    corner (without the ``report`` name's file, which the caller writes) and the report text."""
    from .liberty import CORNERS as _corners

    sdf = f"nvm_lstm_top.{corner}.sdf"
    out = run_sta_script(rtl_dir, sta_setup_commands(manifest, corner) + report_commands(corner, sdf), sta=sta)
    sec = _sections(out)
    if not {"setup", "hold", "summary", "arcs"} <= set(sec):
        raise StaError("OpenSTA's output is incomplete (a report section is missing)")
    check_cell_arcs(*parse_cell_arcs(sec["arcs"]))
    setup = parse_path(sec["setup"])
    hold = parse_path(sec["hold"])
    wns, tns = parse_summary(sec["summary"])
    entry = {
        "conditions": _corners[corner].label,
        "library": liberty_file_name(corner),
        "macro_library": macro_liberty_name(corner),
        "wns_ns": wns,
        "tns_ns": tns,
        "whs_ns": hold["slack_ns"],
        "met": wns >= 0 and hold["slack_ns"] >= 0,
        "fmax_mhz": round(settled_fmax_mhz(rtl_dir, manifest, corner, period_ns, wns, sta=sta), 2),
        "critical_path": {k: setup[k] for k in ("start", "end", "cells", "delay_ns")},
        "report": f"timing_{corner}.rpt",
        "sdf": sdf,
    }
    report = "\n".join(
        [
            f"# Static timing of nvm_lstm_top at {_corners[corner].label}, clock period {period_ns:.4f} ns",
            f"# OpenSTA, pre-layout ({WIRE_LOAD}).",
            "",
            "## Worst setup path",
            sec["setup"].strip("\n"),
            "",
            "## Worst hold path",
            sec["hold"].strip("\n"),
            "",
            "## Summary",
            sec["summary"].strip("\n"),
            f"fmax {entry['fmax_mhz']:.2f} MHz (the clock at which the worst slack is zero, port budgets scaled with"
            " the period: gen/sta.py settled_fmax_mhz)",
            "",
        ]
    )
    return entry, report
