"""Fixtures shared by the test files: optional external tools, and the Verilog macro model under Icarus.

The rule for an optional external tool: when it is missing the test is SKIPPED with the tool's message, which
names the command that installs it (`nvmlstm.gen.tools`), unless the environment requires the tool; then the
test FAILS. Required tools:

* ``NVMLSTM_REQUIRE_SIMS`` (comma-separated, any case) naming ``verilator`` or ``icarus``;
* Yosys whenever ``CI`` is set.

Simulators run through `nvmlstm.sim` use `nvmlstm.sim.simulator_or_skip`, which applies the same rule; the
sky130 PDK (``NVMLSTM_REQUIRE_PDK``) has the ``pdk`` fixture below, with the sign-off fixtures ``mapped`` and
``gate_level_bit_exact`` that tests/test_signoff.py and tests/test_signoff_default.py share.

Tests request ``need`` (returns the found tool, or skips / fails) and ``have`` (a bool, never skips); project
modules are imported inside the fixtures, so collecting a test that uses none of them stays light.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from config_helpers import small_config

TOOLS = ("verilator", "yosys", "iverilog")


def _finder(tool: str) -> Callable:
    from nvmlstm.gen import tools

    return {"verilator": tools.find_verilator, "yosys": tools.find_yosys, "iverilog": tools.find_iverilog}[tool]


def _required(tool: str) -> bool:
    """Whether this environment requires ``tool`` (its absence fails the test instead of skipping it)."""
    from nvmlstm.sim.simulators import required_simulators  # the one reading of NVMLSTM_REQUIRE_SIMS

    if tool in ("verilator", "iverilog"):
        return {"verilator": "verilator", "iverilog": "icarus"}[tool] in required_simulators()
    return bool(os.environ.get("CI"))  # yosys: required on CI


def _need(tool: str):
    from nvmlstm.gen.tools import ToolNotFound

    try:
        return _finder(tool)()
    except ToolNotFound as exc:
        if _required(tool):
            pytest.fail(f"{exc} (required in this environment)")
        pytest.skip(str(exc))


def _have(tool: str) -> bool:
    from nvmlstm.gen.tools import ToolNotFound

    try:
        _finder(tool)()
        return True
    except ToolNotFound:
        return False


@pytest.fixture(scope="session")
def need() -> Callable:
    """``need(tool)`` (one of `TOOLS`): the found tool; a missing one skips the test with its install
    command, or fails it where the environment requires the tool."""
    return _need


@pytest.fixture(scope="session")
def have() -> Callable[[str], bool]:
    """``have(tool)``: whether ``tool`` (one of `TOOLS`) is installed; never skips."""
    return _have


@pytest.fixture(name="small_config", scope="session")
def small_config_fixture() -> Callable:
    """``small_config(**changes)``: the shared small `LstmConfig` with ``changes`` (`config_helpers.small_config`)."""
    return small_config


def _icarus_macro(
    tmp: Path, p: dict, ops: list[dict], init_file: str | None = None, template_dir: Path | None = None
) -> list[tuple[int, int]]:
    from nvmlstm.gen.lint import iverilog_compile
    from nvmlstm.gen.render import render_macro_model

    _need("iverilog")
    (tmp / "nvm_array_macro.v").write_text(render_macro_model(p, template_dir=template_dir))
    rb, cb = max(1, (p["ROWS"] - 1).bit_length()), max(1, (p["COLS"] - 1).bit_length())
    params = ", ".join(f".{k}({v})" for k, v in p.items())
    if init_file is not None:
        params += f', .INIT_FILE("{init_file}")'
    lines = [
        "module tb;",  # no `timescale: the model has none either (iverilog -Wall flags a mix)
        "  reg clk = 1'b0, rst = 1'b0, prog_we = 1'b0, read = 1'b0;",
        f"  reg [{rb - 1}:0] prog_row = 0;",
        f"  reg [{cb - 1}:0] prog_col = 0;",
        f"  reg [{p['WEIGHT_BITS'] - 1}:0] prog_code = 0;",
        f"  reg [{p['ROWS'] * p['DAC_BITS'] - 1}:0] x = 0;",
        f"  reg [{p['STEP_BITS'] - 1}:0] adc_step = 0;",
        f"  wire [{p['COLS'] * p['ADC_BITS'] - 1}:0] y;",
        "  wire valid;",
        f"  nvm_array_macro #({params}) dut (.clk(clk), .rst(rst), .prog_row(prog_row), .prog_col(prog_col),",
        "    .prog_code(prog_code), .prog_we(prog_we), .x(x), .adc_step(adc_step), .read(read), .y(y), .valid(valid));",
        "  always #5 clk = ~clk;",
        "  initial begin",
        "    #1;",
    ]
    for op in ops:
        lines.append(
            f"    rst = {op['rst']}; prog_we = {op['we']}; read = {op['read']}; prog_row = {op['row']}; "
            f"prog_col = {op['col']}; prog_code = {op['code']}; x = 'h{op['x']:x}; adc_step = {op['step']};"
        )
        lines.append('    @(posedge clk); #1 $display("%0d %0h", valid, y);')
    lines += ["    $finish;", "  end", "endmodule", ""]
    (tmp / "tb.v").write_text("\n".join(lines))
    (tmp / "tb.f").write_text("nvm_array_macro.v\ntb.v\n")
    iverilog_compile(tmp, "tb.f", output=tmp / "sim.vvp")
    proc = subprocess.run(["vvp", "-n", "sim.vvp"], cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = [ln.split() for ln in proc.stdout.splitlines() if re.fullmatch(r"[01] [0-9a-fx]+", ln.strip())]
    assert len(out) == len(ops), proc.stdout[-2000:]
    return [(int(v), int(y, 16)) for v, y in out]


@pytest.fixture(scope="session")
def icarus_macro() -> Callable[..., list[tuple[int, int]]]:
    """``icarus_macro(tmp, params, ops, init_file=None, template_dir=None)``: run the generated macro model
    (from ``template_dir``, default the package's templates) under Icarus with the given per-cycle inputs
    (dicts with rst, we, read, row, col, code, x, step); (valid, y) after each clock edge. Needs Icarus
    (skips or fails as `need`)."""
    return _icarus_macro


@pytest.fixture(scope="session")
def pdk():
    """The sky130 cell library; a missing one skips the test with the install line, or fails it when
    ``NVMLSTM_REQUIRE_PDK=sky130``."""
    from nvmlstm.gen import liberty as lib

    try:
        return lib.find_pdk()
    except lib.PdkNotFound as exc:
        if lib.require_pdk_env():
            pytest.fail(f"{exc} ({lib.PDK_ENV}=sky130 requires it)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mapped(tmp_path_factory, pdk):
    """``mapped(name)``: (rtl_dir, vec_dir) of a `nvmlstm.sim.cases` case, generated with ``pdk="sky130"`` once
    per session (per worker in a parallel run)."""
    from nvmlstm.sim.cases import case_by_name

    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str):
        if name not in made:
            made[name] = case_by_name(name).prepare(tmp_path_factory.mktemp(f"signoff-{name}"), pdk="sky130")
        return made[name]

    return get


def _gate_level_bit_exact(name: str, simulator: str, mapped: Callable) -> None:
    from nvmlstm.sim import run_regression, simulator_or_skip
    from nvmlstm.sim.cases import case_by_name

    simulator_or_skip(simulator)
    case = case_by_name(name)
    rtl, vec = mapped(name)
    cfg = case.cfg()
    rep = run_regression(rtl, vec, simulator, stress=case.stress.from_env(), gate_level=True)
    assert rep["passed"], rep["first_mismatch_text"]
    n_beats = case.sequences * case.steps
    assert rep["gate_level"] is True
    assert rep["bit_exact"] and rep["first_mismatch"] is None and rep["mismatches"] == 0
    assert rep["values_compared"] == n_beats * (cfg.output_size + cfg.num_layers * cfg.hidden_size)
    assert rep["beats"] == {"expected": n_beats, "received": n_beats, "missing": 0, "extra": 0, "duplicate": 0}
    assert rep["protocol_errors"] == []
    assert rep["cycles"]["done_sum"] == rep["cycles"]["expected_done_sum"] > 0


@pytest.fixture(scope="session")
def gate_level_bit_exact() -> Callable:
    """``gate_level_bit_exact(name, simulator, mapped)``: the mapped netlist of a case equals the golden model
    on every output and h code, with every beat and the documented cycle count (the sim report's fields)."""
    return _gate_level_bit_exact


def _minutes(item: pytest.Item) -> float:
    mark = item.get_closest_marker("slow")
    return 0.0 if mark is None else float(mark.args[0] if mark.args else 1)


def pytest_collection_modifyitems(config, items):
    """The longest work first: tests marked ``slow(minutes)`` by that hint, descending, then all others, each
    group in collected order (a stable sort).

    ``make test`` runs two pytest-xdist workers with ``--dist loadfile --no-loadscope-reorder``: whole test files
    (so a file's module fixtures are made once) handed out in this order. A file of several minutes handed out
    last would leave the other worker idle at the end; handed out first, the short files fill the gaps. A
    file's ``slow`` mark is its ``pytestmark``, so its tests stay together in the order (no module fixture is
    torn down and made again); a serial run executes the same order.
    """
    items.sort(key=lambda item: -_minutes(item))
