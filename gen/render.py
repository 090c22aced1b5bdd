"""Jinja2 rendering of the Verilog templates in ``gen/templates`` (the NVM macro model and its stub)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from amaranth.lib.wiring import Flow

from nvmlstm.hdl import macro as _macro  # read at call time: hdl.macro is the one definition

__all__ = ["TEMPLATE_DIR", "macro_params", "macro_ports", "render_template", "render_macro_model", "render_macro_stub"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def macro_ports() -> list[dict[str, str]]:
    """Ports of ``nvm_array_macro`` for the templates, from its one definition in `hdl.macro`: clock and
    reset, then every member of `hdl.macro.NvmArrayMacro.Signature` with its Verilog range."""
    ports = [{"name": name, "direction": "input", "range": "", "doc": doc} for name, doc in _macro.MACRO_CLOCK_PORTS]
    for p in _macro.MACRO_PORTS:
        ports.append(
            {
                "name": p.name,
                "direction": "input" if p.flow == Flow.In else "output",
                "range": p.width.verilog_range(),
                "doc": p.doc,
            }
        )
    return ports


def macro_params(defaults: Mapping[str, int]) -> list[dict[str, str]]:
    """Parameters of ``nvm_array_macro`` for the templates: `hdl.macro.MACRO_PARAMETERS` with the given
    defaults (exactly those names), then ``INIT_FILE``."""
    names = [name for name, _, _ in _macro.MACRO_PARAMETERS]
    if sorted(defaults) != sorted(names):
        raise ValueError(
            f"macro parameter defaults must name exactly {', '.join(names)}, not {', '.join(sorted(defaults))}"
        )
    out = [
        {"name": name, "type": "integer", "default": str(int(defaults[name])), "doc": doc}
        for name, _, doc in _macro.MACRO_PARAMETERS
    ]
    out.append(
        {"name": "INIT_FILE", "type": "", "default": '""', "doc": '$readmemh weight image; "" = cells start at 0'}
    )
    return out


def _environment(template_dir: Path) -> jinja2.Environment:
    # StrictUndefined: a missing variable is an error, never an empty string in the Verilog.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_template(name: str, context: Mapping[str, Any], *, template_dir: str | Path | None = None) -> str:
    """Render template ``name`` from ``template_dir`` (default: the package's templates)."""
    env = _environment(Path(template_dir) if template_dir is not None else TEMPLATE_DIR)
    return env.get_template(name).render(**context)


def render_macro_model(defaults: Mapping[str, int], *, template_dir: str | Path | None = None) -> str:
    """The behavioral ``nvm_array_macro`` with parameter defaults ``defaults`` (the macro's Verilog parameters)."""
    return render_template(
        "nvm_array_macro.v.j2", {"params": macro_params(defaults), "ports": macro_ports()}, template_dir=template_dir
    )


def render_macro_stub(defaults: Mapping[str, int], *, template_dir: str | Path | None = None) -> str:
    """The black-box ``nvm_array_macro`` stub (same parameters and ports as the model)."""
    return render_template(
        "nvm_array_macro_stub.v.j2",
        {"params": macro_params(defaults), "ports": macro_ports()},
        template_dir=template_dir,
    )
