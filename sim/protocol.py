"""What the testbench knows about a generated RTL directory, read from its ``manifest.json`` only.

The regression drives the design from the manifest that `gen.generate_rtl` wrote (port names, payload bit
layouts, the programming address map, latencies), never from `hdl` itself: a manifest that misdescribes the
Verilog makes the regression fail. Pure Python (numpy for the model arrays), so the cocotb test module, the
runner and the tests share it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import nvmlstm.golden.config as golden_config
from nvmlstm.artifacts.files import sha256_file

__all__ = [
    "RTL_FORMAT",
    "RTL_SCHEMA",
    "TOP_MODULE",
    "ManifestError",
    "Field",
    "PayloadLayout",
    "load_manifest",
    "simulation_files",
    "program_writes",
]

RTL_FORMAT = "nvm-lstm-rtl"
RTL_SCHEMA = 1
TOP_MODULE = "nvm_lstm_top"

#: Top-level ports the testbench drives or samples (docs/rtl.md section 2).
REQUIRED_PORTS = (
    "clk",
    "rst",
    "inp__valid",
    "inp__ready",
    "inp__payload",
    "out__valid",
    "out__ready",
    "out__payload",
    "start",
    "seq_len",
    "clear",
    "busy",
    "done",
    "cycles",
    "prog_addr",
    "prog_data",
    "prog_we",
)


class ManifestError(ValueError):
    """An RTL directory whose manifest is missing, of another format, inconsistent, or whose files do not
    match their recorded sha256."""


@dataclass(frozen=True)
class Field:
    """One element of a payload: its bit offset, width and signedness."""

    lsb: int
    width: int
    signed: bool

    def extract(self, value: int) -> int:
        v = (value >> self.lsb) & ((1 << self.width) - 1)
        if self.signed and v >> (self.width - 1):
            v -= 1 << self.width
        return v

    def insert(self, code: int) -> int:
        return (int(code) & ((1 << self.width) - 1)) << self.lsb


class PayloadLayout:
    """The bit layouts of ``inp.payload`` (``x[k]``) and ``out.payload`` (``outputs[o]``, ``h[l][u]``) as the
    manifest records them.

    Parameters
    ----------
    manifest : dict
        A loaded RTL manifest (`load_manifest`).
    """

    _X = re.compile(r"^x\[(\d+)\]$")
    _OUT = re.compile(r"^outputs\[(\d+)\]$")
    _H = re.compile(r"^h\[(\d+)\]\[(\d+)\]$")

    def __init__(self, manifest: Mapping[str, Any]):
        cfg = manifest["config"]
        I, H, L, O = cfg["input_size"], cfg["hidden_size"], cfg["num_layers"], cfg["output_size"]
        lays = manifest["payload_layouts"]
        self.x: list[Field | None] = [None] * I
        self.outputs: list[Field | None] = [None] * O
        self.h: list[list[Field | None]] = [[None] * H for _ in range(L)]
        for f in lays["inp__payload"]["fields"]:
            m = self._X.match(f["field"])
            if m is None or int(m.group(1)) >= I:
                raise ManifestError(f"inp__payload: unexpected field {f['field']!r}")
            self.x[int(m.group(1))] = Field(f["lsb"], f["width"], f["signed"])
        for f in lays["out__payload"]["fields"]:
            fld = Field(f["lsb"], f["width"], f["signed"])
            if (m := self._OUT.match(f["field"])) and int(m.group(1)) < O:
                self.outputs[int(m.group(1))] = fld
            elif (m := self._H.match(f["field"])) and int(m.group(1)) < L and int(m.group(2)) < H:
                self.h[int(m.group(1))][int(m.group(2))] = fld
            else:
                raise ManifestError(f"out__payload: unexpected field {f['field']!r}")
        missing = (
            [f"x[{k}]" for k, f in enumerate(self.x) if f is None]
            + [f"outputs[{o}]" for o, f in enumerate(self.outputs) if f is None]
            + [f"h[{l}][{u}]" for l in range(L) for u, f in enumerate(self.h[l]) if f is None]
        )
        if missing:
            raise ManifestError(f"payload layouts lack {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        self.inp_width = lays["inp__payload"]["width"]
        self.out_width = lays["out__payload"]["width"]

    def pack_x(self, codes) -> int:
        """``inp.payload`` for one timestep's x codes (two's complement per element)."""
        v = 0
        for fld, c in zip(self.x, codes):
            v |= fld.insert(int(c))
        return v

    def unpack_out(self, value: int) -> tuple[list[int], list[list[int]]]:
        """``(outputs, h)`` codes of one ``out.payload`` value; ``h[l][u]``."""
        return ([f.extract(value) for f in self.outputs], [[f.extract(value) for f in row] for row in self.h])


def load_manifest(rtl_dir: str | Path, *, verify: bool = True) -> dict:
    """Read ``RTL_DIR/manifest.json`` and check that it describes an RTL directory the testbench can drive.

    With ``verify``, every file the manifest lists must exist with its recorded sha256 (a hand-edited or
    half-copied RTL directory is refused rather than simulated).

    Raises
    ------
    ManifestError
        One line naming the directory and the problem.
    """
    rtl_dir = Path(rtl_dir)
    path = rtl_dir / "manifest.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: not found (RTL_DIR must be an `nvmlstm generate` output)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != RTL_FORMAT:
        raise ManifestError(
            f"{path}: format is {doc.get('format') if isinstance(doc, dict) else None!r}, expected {RTL_FORMAT!r}"
        )
    if doc.get("schema_version") != RTL_SCHEMA:
        raise ManifestError(
            f"{path}: schema_version {doc.get('schema_version')!r} is not supported (this testbench reads {RTL_SCHEMA})"
        )
    for key in ("config", "ports", "payload_layouts", "program_map", "macros", "latency", "filelists", "files"):
        if key not in doc:
            raise ManifestError(f"{path}: key {key!r} is missing")
    if doc.get("top") != TOP_MODULE:
        raise ManifestError(f"{path}: top module is {doc.get('top')!r}, expected {TOP_MODULE!r}")
    names = {p["name"] for p in doc["ports"]}
    missing = [p for p in REQUIRED_PORTS if p not in names]
    if missing:
        raise ManifestError(f"{path}: top-level port{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing")
    if verify:
        for name, entry in sorted(doc["files"].items()):
            f = rtl_dir / name
            if not f.is_file():
                raise ManifestError(f"{rtl_dir}: file {name} listed in the manifest is missing")
            if sha256_file(f) != entry["sha256"]:
                raise ManifestError(f"{rtl_dir}: {name} does not match the sha256 in manifest.json (edited?)")
    return doc


def simulation_files(rtl_dir: str | Path, manifest: Mapping[str, Any], *, gate_level: bool = False) -> list[Path]:
    """The files of the simulation file list (``filelist.f``: waivers, macro model, top), in order; with
    ``gate_level``, of the gate-level list (``filelist_gate.f``: cell models, macro model, netlist)."""
    rtl_dir = Path(rtl_dir)
    if gate_level and "gate_level" not in manifest["filelists"]:
        raise ManifestError(f"{rtl_dir}: no gate-level netlist; generate it with `nvmlstm generate --pdk sky130`")
    flist = rtl_dir / manifest["filelists"]["gate_level" if gate_level else "simulation"]
    names = []
    for line in flist.read_text(encoding="utf-8").splitlines():
        line = line.split("//", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise ManifestError(f"{flist}: empty file list")
    return [rtl_dir / n for n in names]


def program_writes(manifest: Mapping[str, Any], model, *, skip_zero_weights: bool = True) -> list[tuple[int, int]]:
    """The ``(prog_addr, prog_data)`` writes that load ``model``, computed from the manifest's address map.

    Weights: for every macro, cell (row, col) holds matrix entry ``W[cols[0] + col, rows[0] + row]`` of its
    layer (or the head); the address is ``{0, tile, row, col}`` with the manifest's field offsets, the data the
    two's-complement code. Zero weights are skipped with ``skip_zero_weights`` (the macros reset to 0), so a
    model loads in as many cycles as it has non-zero weights. Registers: every entry of
    ``program_map.registers`` by name (``adc_step_l{l}``, ``adc_step_head``, ``scale_l{l}_{i|f|g|o}``).

    Parameters
    ----------
    manifest : dict
    model : golden.QuantizedModel
        Its config must equal the manifest's (checked by the caller).
    skip_zero_weights : bool
    """
    pm = manifest["program_map"]
    wf = pm["weight_fields"]
    mask = (1 << pm["data_bits"]) - 1
    writes: list[tuple[int, int]] = []
    for mac in manifest["macros"]:
        w = np.asarray(model.head.weights if mac["layer"] is None else model.layers[mac["layer"]].weights)
        r0, r1 = mac["rows"]
        c0, c1 = mac["cols"]
        # (columns, rows) of the whole tile; cells beyond the matrix edge hold 0
        block = np.zeros((mac["parameters"]["COLS"], mac["parameters"]["ROWS"]), dtype=np.int64)
        block[: c1 - c0, : r1 - r0] = w[c0:c1, r0:r1]
        base = mac["global_index"] << wf["tile"]["lsb"]
        rows_cols = np.nonzero(block.T) if skip_zero_weights else np.indices(block.T.shape).reshape(2, -1)
        for row, col in zip(*rows_cols):  # row-major, as hdl.progmap orders them
            addr = base | (int(row) << wf["row"]["lsb"]) | (int(col) << wf["col"]["lsb"])
            writes.append((addr, int(block[col, row]) & mask))
    # scale_l{l}_{gate}: the gate order is golden's one definition, read at call time like hdl.lanes reads it
    gates = golden_config.GATES
    reg_re = re.compile(rf"^(?:adc_step_l(\d+)|adc_step_head|scale_l(\d+)_({'|'.join(map(re.escape, gates))}))$")
    for reg in pm["registers"]:
        m = reg_re.match(reg["name"])
        if m is None:
            raise ManifestError(f"program_map: unknown register {reg['name']!r}")
        if m.group(1) is not None:
            val = model.layers[int(m.group(1))].adc_step
        elif m.group(2) is not None:
            val = model.layers[int(m.group(2))].gate_scale[gates.index(m.group(3))]
        else:
            val = model.head.adc_step
        writes.append((int(reg["address"]), int(val) & mask))
    return writes
