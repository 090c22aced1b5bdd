"""Standard-cell sign-off: the generated top mapped to sky130_fd_sc_hd cells (docs/signoff.md).

Yosys reads the library (`nvmlstm.gen.liberty`) as black boxes, synthesizes the top with the NVM macros kept as
black boxes, maps the flip-flops with ``dfflibmap`` (after ``dfflegalize`` to the plain rising-edge flip-flop:
the design's synchronous resets and enables become logic) and the logic with ``abc -liberty``, then asserts
that no generic cell is left. The netlist keeps the design's hierarchy (one module per Amaranth submodule),
which gives the area by block. Areas are computed here from the netlist and the Liberty areas, and checked
against Yosys' own ``stat -liberty`` total.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import GenError
from .liberty import CELLS, Cell, cell_area
from .synth import LATCH_CELLS
from .tools import Tool, find_yosys, run_tool

__all__ = [
    "SignoffError",
    "SignoffResult",
    "signoff_script",
    "ABC_CONSTRAINTS",
    "map_to_cells",
    "netlist_stats",
    "block_of",
    "expected_mapping_seconds",
]

#: The mapping's wall time against the size of the top's Verilog, ``MAP_OVERHEAD_S + MAP_S_PER_LINE * lines``.
#: Measured here (issue 25; 2-core VM, Yosys 0.23, CPU seconds of Yosys and ABC, which is the wall time of this
#: single-threaded step on an idle machine): 16-26 s for 6.5k lines, 38-42 s for 9.3-10.3k, 53 s for 12.7k,
#: 76 s for 15.4k, 227 s for 46.2k (the default config at 32 lanes; 293 s wall in docs/signoff_area.json); a
#: least-squares line through them gives 5.2 ms per line with no fixed part. On the idle machine 15.4k lines took
#: 51 s wall (3.3 ms per line) and 46.2k lines 293 s (6.3 ms: the time grows a little faster than the size).
MAP_OVERHEAD_S = 0.0
MAP_S_PER_LINE = 0.005


def expected_mapping_seconds(top_lines: int) -> float:
    """About how long `map_to_cells` takes for a top of ``top_lines`` lines on an idle machine (`MAP_S_PER_LINE`):
    the estimate `nvmlstm generate --pdk` prints before the mapping (within a factor of 1.5 of the measurements)."""
    return MAP_OVERHEAD_S + MAP_S_PER_LINE * top_lines


@dataclass(frozen=True)
class SignoffResult:
    """A mapped netlist and its statistics.

    Parameters
    ----------
    netlist : str
        The gate-level Verilog (Yosys ``write_verilog -noattr``), hierarchical.
    cells_by_type : dict
        Standard cells of the whole design by cell name (black boxes not included).
    area_um2 : float
        Total standard-cell area (the NVM macros are not included).
    flip_flops : int
        Flip-flop cells.
    area_by_block : dict
        Area per block (`block_of`), summing to ``area_um2``.
    blackboxes : dict
        Instances of each black-box module (the NVM macros).
    yosys : str
    seconds : float
        Wall time of the mapping (not in the manifest).
    """

    netlist: str
    cells_by_type: dict
    area_um2: float
    flip_flops: int
    area_by_block: dict
    blackboxes: dict
    yosys: str
    seconds: float

    def manifest_entry(self, script: list[str], liberty_file: str, pdk: str) -> dict:
        return {
            "pdk": pdk,
            "library": liberty_file,
            "tool": self.yosys,
            "script": script,
            "timing": "not modelled (the Liberty file has area and function only)",
            "cells": sum(self.cells_by_type.values()),
            "cells_by_type": self.cells_by_type,
            "flip_flops": self.flip_flops,
            "area_um2": self.area_um2,
            "area_by_block": self.area_by_block,
            "blackboxes": self.blackboxes,
        }


class SignoffError(GenError):
    """The mapping failed or its result does not add up."""


#: What ABC assumes at the boundary of each module when it maps for delay (``abc -constr``): a ``buf_2`` drives
#: the inputs, each output drives 0.01 pF (as `gen.sta`'s SDC assumes for the top's ports).
ABC_CONSTRAINTS = ("set_driving_cell sky130_fd_sc_hd__buf_2", "set_load 0.01")
ABC_CONSTR_FILE = "abc.constr"


def _variant_commands(blackbox: str, variants: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Give each macro parameter set its own module name and drop the parameters (OpenSTA reads no
    parameterized instances); every macro must end up renamed."""
    cmds = []
    for name, params in variants.items():
        sel = f"t:{blackbox} " + " ".join(f"r:{k}={v} %i" for k, v in params.items())
        cmds.append(f"chtype -set {name} {sel}")
        cmds.append("setparam " + " ".join(f"-unset {k}" for k in params) + f" t:{name}")
    return cmds + [f"select -assert-none t:{blackbox}"]


def signoff_script(
    files: list[str],
    top: str,
    liberty: str,
    netlist: str,
    stat_path: str,
    *,
    delay_ps: float | None = None,
    constr: str = ABC_CONSTR_FILE,
    blackbox: str = "nvm_array_macro",
    variants: Mapping[str, Mapping[str, int]] | None = None,
) -> list[str]:
    """The Yosys commands of the mapping (file names as given: relative in the manifest).

    With ``delay_ps`` (a library with timing) ABC maps for that delay target and then buffers, upsizes and
    downsizes (its ``-constr`` script: ``buffer; upsize; dnsize``); ``variants`` (module name -> parameters)
    renames the ``blackbox`` instances per parameter set."""
    cmds = [f"read_liberty -lib {liberty}"]  # cell ports and directions, for hierarchy and check
    cmds += [f"read_verilog -DSYNTHESIS {f}" for f in files]
    abc = f"abc -liberty {liberty}"
    if delay_ps is not None:
        abc = f"abc -D {int(round(delay_ps))} -constr {constr} -liberty {liberty}"
    cmds += [
        f"hierarchy -check -top {top}",
        f"synth -top {top}",
        "select -assert-none " + " ".join(f"t:{t}" for t in LATCH_CELLS),
        # Only the plain rising-edge flip-flop exists in the library: resets and enables become logic.
        "dfflegalize -cell $_DFF_P_ 01",
        f"dfflibmap -liberty {liberty}",
        abc,
        "opt_clean -purge",
        # Everything is a library cell or a black box now; no multiple drivers, undriven inputs or loops.
        "select -assert-none t:$*",
        "check -assert",
        f"tee -q -o {stat_path} stat -liberty {liberty}",
    ]
    if variants:
        cmds += _variant_commands(blackbox, variants)
    # -simple-lhs: no concatenation on the left of an assign (OpenSTA 2.0.17 cannot read it)
    cmds.append(f"write_verilog -noattr -simple-lhs {netlist}")
    return cmds


_MODULE = re.compile(r"^module\s+(\S+)\s*\(.*?^endmodule", re.MULTILINE | re.DOTALL)
_INSTANCE = re.compile(
    r"^\s*(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)\s+(?:#\(.*?\)\s*)?(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)\s*\(",
    re.MULTILINE | re.DOTALL,
)
_KEYWORDS = {"module", "input", "output", "inout", "wire", "reg", "assign", "endmodule", "parameter", "localparam"}


def _strip_escape(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def block_of(module: str, top: str) -> str:
    """The block a module of the hierarchy belongs to: its path below ``top``, at most two levels, each level's
    index suffix dropped (``nvm_lstm_top.lane_bank.gate_lane_3`` -> ``lane_bank.gate_lane``,
    ``nvm_lstm_top.array.macro_l0_t1`` -> ``array.macro``); the top's own logic is ``top``."""
    if module == top:
        return "top"
    parts = module[len(top) + 1 :].split(".")[:2] if module.startswith(top + ".") else [module]
    parts = [re.sub(r"_(?:l\d+_)?(?:t\d+|head_t\d+|\d+)$", "", p) for p in parts]
    return ".".join(parts)


def netlist_stats(netlist: str, top: str, areas: dict[str, float]) -> tuple[dict, dict, dict]:
    """Cells by type, area by block and black-box instances of the hierarchical ``netlist`` under ``top``.

    ``areas`` maps each library cell name to its area; an instance of a module that is neither defined in the
    netlist nor a library cell is a black box. Every module is weighted by how often the hierarchy
    instantiates it."""
    modules: dict[str, list[str]] = {}
    for m in _MODULE.finditer(netlist):
        body = m.group(0).split(";", 1)[1] if ";" in m.group(0) else ""
        types = [_strip_escape(t) for t, _inst in _INSTANCE.findall(body) if t not in _KEYWORDS]
        modules[_strip_escape(m.group(1))] = types
    if top not in modules:
        raise SignoffError(f"module {top} not in the mapped netlist")
    by_type: dict[str, int] = {}
    blocks: dict[str, float] = {}
    boxes: dict[str, int] = {}

    def walk(mod: str, depth: int) -> None:
        if depth > 64:
            raise SignoffError(f"the netlist hierarchy under {top} is too deep (a loop?)")
        blk = block_of(mod, top)
        for t in modules[mod]:
            if t in modules:
                walk(t, depth + 1)
            elif t in areas:
                by_type[t] = by_type.get(t, 0) + 1
                blocks[blk] = blocks.get(blk, 0.0) + areas[t]
            else:
                boxes[t] = boxes.get(t, 0) + 1

    walk(top, 0)
    return (
        dict(sorted(by_type.items())),
        {k: round(v, 4) for k, v in sorted(blocks.items())},
        dict(sorted(boxes.items())),
    )


_CHIP_AREA = re.compile(r"Chip area for (?:top )?module '\\?([^']+)':\s*([0-9.]+)")


def map_to_cells(
    rtl_dir: str | Path,
    files: list[str],
    liberty: str,
    pdk: Path,
    *,
    top: str = "nvm_lstm_top",
    blackbox_module: str,
    netlist_name: str,
    cells: tuple[Cell, ...] = CELLS,
    yosys: Tool | None = None,
    timeout: float = 7200.0,
    delay_ps: float | None = None,
    variants: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[SignoffResult, list[str]]:
    """Map ``files`` (relative to ``rtl_dir``, which also holds the Liberty file ``liberty``) to the cells.

    Returns the result (with the netlist text) and the script as recorded (relative names). Writes nothing
    into ``rtl_dir``. Raises `SignoffError` on any failure or if the areas do not add up to Yosys' total.
    ``delay_ps`` and ``variants`` are those of `signoff_script`; with ``variants`` the black boxes are the
    variant modules.
    """
    yosys = yosys or find_yosys()
    rtl_dir = Path(rtl_dir)
    areas = {c.verilog_name: cell_area(pdk, c) for c in cells}
    flop_names = {c.verilog_name for c in cells if c.sequential}
    with tempfile.TemporaryDirectory(prefix="nvmlstm-signoff-") as work:
        w = Path(work)
        opts = dict(delay_ps=delay_ps, blackbox=blackbox_module, variants=variants)
        script = signoff_script(files, top, liberty, netlist_name, "stat.txt", **opts)
        run_script = signoff_script(
            files, top, liberty, str(w / "netlist.v"), str(w / "stat.txt"), constr=str(w / ABC_CONSTR_FILE), **opts
        )
        (w / ABC_CONSTR_FILE).write_text("\n".join(ABC_CONSTRAINTS) + "\n", encoding="utf-8")
        (w / "map.ys").write_text("\n".join(run_script) + "\n", encoding="utf-8")
        t0 = time.monotonic()
        proc = run_tool(
            yosys, ["-q", "-l", str(w / "yosys.log"), "-s", str(w / "map.ys")], cwd=rtl_dir, timeout=timeout
        )
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            errs = [ln for ln in lines if "ERROR" in ln] or lines[-3:]
            raise SignoffError(f"yosys mapping failed (exit status {proc.returncode}): {' | '.join(errs[-3:])}")
        try:
            netlist = (w / "netlist.v").read_text(encoding="utf-8")
            stat = (w / "stat.txt").read_text(encoding="utf-8")
        except OSError as exc:
            raise SignoffError(f"yosys wrote no netlist or statistics ({exc.strerror})") from None
    by_type, by_block, boxes = netlist_stats(netlist, top, areas)
    total = round(sum(by_block.values()), 4)
    chip = {m: float(a) for m, a in _CHIP_AREA.findall(stat)}
    if top not in chip:
        raise SignoffError(f"yosys stat -liberty reported no chip area for {top}")
    if abs(chip[top] - total) > max(1e-3, 1e-7 * total):  # Yosys prints 6 decimals, sums in double
        raise SignoffError(f"area mismatch: the netlist's cells add up to {total} um^2, yosys says {chip[top]}")
    expected = set(variants) if variants else {blackbox_module}
    if not boxes or not set(boxes) <= expected:
        want = ", ".join(sorted(expected))
        raise SignoffError(f"expected only {want} black boxes in the mapped netlist, found {boxes}")
    flops = sum(n for t, n in by_type.items() if t in flop_names)
    return SignoffResult(netlist, by_type, total, flops, by_block, boxes, yosys.version, seconds), script
