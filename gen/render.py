"""Jinja2 rendering of the Verilog templates in ``gen/templates`` (the NVM macro model and its stub)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jinja2

__all__ = ["TEMPLATE_DIR", "MACRO_PARAMS", "MACRO_PORTS", "render_template", "render_macro_model", "render_macro_stub"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

#: Ports of ``nvm_array_macro`` in the order of hdl/macro.py, with their Verilog ranges in terms of the
#: module parameters (the single list both templates render).
MACRO_PORTS: tuple[dict[str, str], ...] = (
    {"name": "clk", "direction": "input", "range": "", "doc": "clock (rising edge)"},
    {"name": "rst", "direction": "input", "range": "", "doc": "synchronous reset, active high"},
    {"name": "prog_row", "direction": "input", "range": "[$clog2(ROWS)-1:0]", "doc": "programming: cell row"},
    {"name": "prog_col", "direction": "input", "range": "[$clog2(COLS)-1:0]", "doc": "programming: cell column"},
    {"name": "prog_code", "direction": "input", "range": "[WEIGHT_BITS-1:0]",
     "doc": "programming: weight code, two's complement"},
    {"name": "prog_we", "direction": "input", "range": "", "doc": "programming: write enable"},
    {"name": "x", "direction": "input", "range": "[ROWS*DAC_BITS-1:0]",
     "doc": "row k's DAC code in bits [k*DAC_BITS +: DAC_BITS]"},
    {"name": "adc_step", "direction": "input", "range": "[STEP_BITS-1:0]", "doc": "ADC step (0 acts as 1)"},
    {"name": "read", "direction": "input", "range": "", "doc": "read strobe: sample x and adc_step"},
    {"name": "y", "direction": "output", "range": "[COLS*ADC_BITS-1:0]",
     "doc": "column j's ADC code in bits [j*ADC_BITS +: ADC_BITS]"},
    {"name": "valid", "direction": "output", "range": "", "doc": "high for one cycle when y is new"},
)


#: Parameters of ``nvm_array_macro``: the seven of `hdl.macro.NvmArrayMacro.verilog_parameters` plus INIT_FILE.
MACRO_PARAMS: tuple[dict[str, str], ...] = (
    {"name": "ROWS", "doc": "word lines (array inputs), >= 2"},
    {"name": "COLS", "doc": "differential columns, one ADC each, >= 2"},
    {"name": "WEIGHT_BITS", "doc": "signed weight codes (two's complement)"},
    {"name": "DAC_BITS", "doc": "signed row input codes"},
    {"name": "ADC_BITS", "doc": "signed column output codes"},
    {"name": "STEP_BITS", "doc": "unsigned ADC step"},
    {"name": "READ_LATENCY", "doc": "clock edges from the sampling edge to valid, >= 1"},
)


def _params(defaults: Mapping[str, int]) -> list[dict[str, str]]:
    names = [p["name"] for p in MACRO_PARAMS]
    if sorted(defaults) != sorted(names):
        raise ValueError(f"macro parameter defaults must name exactly {', '.join(names)}, "
                         f"not {', '.join(sorted(defaults))}")
    out = [dict(p, type="integer", default=str(int(defaults[p["name"]]))) for p in MACRO_PARAMS]
    out.append({"name": "INIT_FILE", "type": "", "default": '""',
                "doc": "$readmemh weight image; \"\" = cells start at 0"})
    return out


def _environment(template_dir: Path) -> jinja2.Environment:
    # StrictUndefined: a missing variable is an error, never an empty string in the Verilog.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, autoescape=False)


def render_template(name: str, context: Mapping[str, Any], *, template_dir: str | Path | None = None) -> str:
    """Render template ``name`` from ``template_dir`` (default: the package's templates)."""
    env = _environment(Path(template_dir) if template_dir is not None else TEMPLATE_DIR)
    return env.get_template(name).render(**context)


def render_macro_model(defaults: Mapping[str, int], *, template_dir: str | Path | None = None) -> str:
    """The behavioral ``nvm_array_macro`` with parameter defaults ``defaults`` (the macro's Verilog parameters)."""
    return render_template("nvm_array_macro.v.j2", {"params": _params(defaults), "ports": MACRO_PORTS},
                           template_dir=template_dir)


def render_macro_stub(defaults: Mapping[str, int], *, template_dir: str | Path | None = None) -> str:
    """The black-box ``nvm_array_macro`` stub (same parameters and ports as the model)."""
    return render_template("nvm_array_macro_stub.v.j2", {"params": _params(defaults), "ports": MACRO_PORTS},
                           template_dir=template_dir)
