"""RTL generation (`gen`, ``nvmlstm generate``): the files, their determinism and portability, the manifest,
Verilator -Wall lint, Icarus compilation, Yosys synthesis, the weight images, the macro model against the
Amaranth simulator's macro model (hdl/sim.py), and the one-line error contract.

External tools: a missing Verilator / Icarus skips its tests with an install hint unless
``NVMLSTM_REQUIRE_SIMS`` names it (``verilator``, ``icarus``); a missing Yosys skips unless ``CI`` is set.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import time
import types
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Fragment, Module
from cli_helpers import assert_command_error, assert_error, run
from hdl_helpers import simulate_with_macros
from progress_helpers import HeartbeatProbe

from nvmlstm.cli import main
from nvmlstm.gen import GenError
from nvmlstm.gen.hexfile import parse_hex
from nvmlstm.gen.lint import TOP_WAIVERS, LintError, iverilog_compile, read_filelist, verilator_lint, waivers_vlt
from nvmlstm.gen.render import TEMPLATE_DIR, render_macro_model, render_macro_stub
from nvmlstm.gen.rtl import amaranth_yosys_label, build_top
from nvmlstm.gen.synth import SynthError, synthesize
from nvmlstm.golden.config import LstmConfig
from nvmlstm.golden.datapath import adc_convert
from nvmlstm.golden.io import load_model, save_model
from nvmlstm.golden.ptq import random_model
from nvmlstm.golden.vectors import input_rng, random_inputs
from nvmlstm.hdl.macro import NvmArrayMacro
from nvmlstm.hdl.progmap import ProgramMap

# Scheduling hint for parallel workers: about 2 minutes of work (tests/conftest.py starts the longest first).
pytestmark = pytest.mark.slow(2)

REPO = Path(__file__).resolve().parents[1]
FIXED_FILES = {
    "nvm_lstm_top.v",
    "nvm_array_macro.v",
    "nvm_array_macro_stub.v",
    "waivers.vlt",
    "filelist.f",
    "filelist_synth.f",
    "manifest.json",
}

# Three small accelerators, each quick to synthesize:
#  multi:  2 layers, several row and column tiles per matrix, lanes < hidden, with a model (weight images);
#  narrow: 2x2 arrays (many tiles), odd widths, a separate head ADC width, ragged lane groups, latency 1;
#  single: every matrix in one tile, latency 3, all lanes, checked with --lint by the generator itself.
# The shape of each case, in this order, then the further keys and the `generate` options.
SHAPE_KEYS = (
    "input_size hidden_size num_layers output_size weight_bits dac_bits adc_bits array_rows array_cols"
).split()
CASES = {
    name: (dict(zip(SHAPE_KEYS, shape, strict=True), **extra), args)
    for name, shape, extra, args in (
        ("multi", (3, 4, 2, 3, 4, 4, 4, 4, 8), {}, ["--lanes", "2", "--macro-latency", "2"]),
        (
            "narrow",
            (2, 3, 1, 2, 3, 5, 6, 2, 2),
            dict(head_adc_bits=5, lut_bits=6, lut_frac=3),
            ["--lanes", "2", "--macro-latency", "1"],
        ),
        ("single", (2, 2, 1, 1, 4, 4, 4, 16, 16), dict(lut_bits=6, lut_frac=3), ["--macro-latency", "3"]),
    )
}


# --------------------------------------------------------------------------------------------------
# Helpers. The tools (`need`, `have`) and the macro model under Icarus (`icarus_macro`) are fixtures of
# tests/conftest.py: a missing tool skips with its install command, or fails where the environment requires it.
def run_cli(*argv) -> None:
    """Run the CLI outside a capsys test (module fixtures); fail with its stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    assert rc == 0, err.getvalue()


def write_json(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------------------------------
# Generated directories, shared by the module
@pytest.fixture(scope="module")
def gen_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gen")


@pytest.fixture(scope="module")
def model_file(gen_root) -> Path:
    cfg = LstmConfig(**CASES["multi"][0])
    model, _ = random_model(cfg, 5, random_inputs(cfg, input_rng(5), 4, 6))
    path = gen_root / "models" / "m.npz"
    path.parent.mkdir()
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def rtl(have, gen_root, model_file) -> dict[str, Path]:
    """Each case generated once (with synthesis when Yosys is there); "multi" from the model file."""
    synth = [] if have("yosys") else ["--no-synth"]
    out = {}
    for name, (cfg, args) in CASES.items():
        d = gen_root / f"rtl_{name}"
        if name == "multi":
            src = ["--model", model_file]
        else:
            src = ["--config", write_json(gen_root / f"{name}.json", cfg)]
        lint = ["--lint"] if name == "single" and have("verilator") and have("iverilog") else []
        run_cli("generate", *src, "--out", d, *args, *synth, *lint)
        out[name] = d
    return out


@pytest.fixture(scope="module")
def rtl_again(have, gen_root, model_file, rtl) -> Path:
    """ "multi" again: another directory name, another working directory, a relative --out."""
    synth = [] if have("yosys") else ["--no-synth"]
    work = gen_root / "elsewhere"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        run_cli("generate", "--model", model_file, "--out", Path("nested") / "second_run", *CASES["multi"][1], *synth)
    finally:
        os.chdir(cwd)
    return work / "nested" / "second_run"


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def case_cfg(name: str) -> LstmConfig:
    return LstmConfig(**CASES[name][0])


# --------------------------------------------------------------------------------------------------
# Files, determinism, portability, manifest
@pytest.mark.parametrize("case", CASES)
def test_files_present_and_listed(rtl, case):
    d = rtl[case]
    man = manifest(d)
    names = {p.name for p in d.iterdir()}
    hexes = {f"{m['name']}.hex" for m in man["macros"]} if case == "multi" else set()
    assert names == FIXED_FILES | hexes
    assert set(man["files"]) == names - {"manifest.json"}
    assert read_filelist(d / "filelist.f") == ["waivers.vlt", "nvm_array_macro.v", "nvm_lstm_top.v"]
    assert read_filelist(d / "filelist_synth.f") == ["nvm_array_macro_stub.v", "nvm_lstm_top.v"]
    for m in man["macros"]:
        assert m["hex_file"] == (f"{m['name']}.hex" if case == "multi" else None)


@pytest.mark.parametrize("case", CASES)
def test_manifest_hashes_match_files(rtl, case):
    d = rtl[case]
    for name, entry in manifest(d)["files"].items():
        data = (d / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entry["bytes"] == len(data)


def test_two_runs_are_byte_identical(rtl, rtl_again):
    a, b = rtl["multi"], rtl_again
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_files_hold_no_paths_users_or_times(rtl, rtl_again, gen_root):
    user = getpass.getuser()
    now = time.time()
    forbidden = [str(gen_root), str(REPO), os.path.expanduser("~"), "second_run", "rtl_multi", "elsewhere"]
    for d in (*rtl.values(), rtl_again):
        for p in d.iterdir():
            text = p.read_text()
            for s in forbidden:
                if len(s) > 1:
                    assert s not in text, (p.name, s)
            assert not re.search(rf"(^|[^A-Za-z0-9_]){re.escape(user)}([^A-Za-z0-9_]|$)", text), p.name
            assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\b\d\d:\d\d:\d\d\b", text), p.name
            assert not re.search(r"\(\*[^*]*\bsrc\s*=", text), p.name  # no Amaranth/Yosys source attributes
            assert not re.search(r"(^|[\s\"'(=])/(home|tmp|root|usr|work|Users)/", text), p.name
        numbers: list[float] = []
        _numbers(manifest(d), numbers)
        for v in numbers:  # no epoch seconds or milliseconds of the last ten years
            assert not (now - 3.2e8 < v < now + 1e5), v
            assert not (1e3 * (now - 3.2e8) < v < 1e3 * (now + 1e5)), v


def _numbers(doc, out):
    if isinstance(doc, dict):
        for v in doc.values():
            _numbers(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _numbers(v, out)
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        out.append(float(doc))


@pytest.mark.parametrize("case", CASES)
def test_manifest_describes_the_top(rtl, case):
    d = rtl[case]
    man = manifest(d)
    cfg = case_cfg(case)
    args = CASES[case][1]
    lanes = int(args[args.index("--lanes") + 1]) if "--lanes" in args else cfg.hidden_size
    lat = int(args[args.index("--macro-latency") + 1])
    top = build_top(cfg, lanes, lat)
    Fragment.get(top, None)  # built for its properties: elaborate it, as an unused design warns
    assert (man["format"], man["schema_version"], man["top"]) == ("nvm-lstm-rtl", 1, "nvm_lstm_top")
    assert LstmConfig.from_dict(man["config"]) == cfg
    assert (man["lanes"], man["macro_latency"]) == (lanes, lat)
    for k in ("layer_step_cyc", "head_cyc", "timestep_cyc"):
        assert man["latency"][k]["value"] == getattr(top, k)
        assert man["latency"][k]["formula"]
    G = -(-cfg.hidden_size // lanes)
    # READ, the macro latency (its last cycle issues group 0), the other groups, the lane bank's composed latency
    assert man["latency"]["layer_step_cyc"]["value"] == 1 + lat + (G - 1) + top.lane_bank.latency_cyc
    assert man["latency"] == {
        k: {"formula": f, **({"value": getattr(top, k)} if k != "sequence_cyc" else {})}
        for k, f in top.latency_formulas.items()
    }
    # ports: from the Amaranth signature; the Verilog declares exactly these (the one cross-check of the rule)
    verilog = (d / "nvm_lstm_top.v").read_text()
    ports = {p["name"]: p for p in man["ports"]}
    assert {
        "clk",
        "rst",
        "inp__payload",
        "inp__valid",
        "inp__ready",
        "out__payload",
        "out__valid",
        "out__ready",
        "start",
        "seq_len",
        "clear",
        "busy",
        "done",
        "cycles",
        "prog_addr",
        "prog_data",
        "prog_we",
    } == set(ports)
    assert sorted(verilog_ports(verilog), key=lambda p: p["name"]) == sorted(man["ports"], key=lambda p: p["name"])
    for p in man["ports"]:
        rng = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
        assert re.search(rf"^\s*{p['direction']} {re.escape(rng)}{p['name']};", verilog, re.MULTILINE), p
    pm = ProgramMap(cfg)
    assert ports["prog_addr"]["width"] == pm.addr_bits and ports["prog_data"]["width"] == pm.data_bits
    inp = man["payload_layouts"]["inp__payload"]
    assert [f["field"] for f in inp["fields"]] == [f"x[{k}]" for k in range(cfg.input_size)]
    assert inp["width"] == ports["inp__payload"]["width"] == cfg.input_size * cfg.dac_bits
    outp = man["payload_layouts"]["out__payload"]
    fields = outp["fields"]
    assert outp["width"] == ports["out__payload"]["width"]
    assert sum(f["width"] for f in fields) == outp["width"]
    assert all(b["lsb"] == a["lsb"] + a["width"] for a, b in zip(fields, fields[1:]))
    assert [f["field"] for f in fields] == (
        [f"outputs[{o}]" for o in range(cfg.output_size)]
        + [f"h[{l}][{u}]" for l in range(cfg.num_layers) for u in range(cfg.hidden_size)]
    )
    # macros: one per tile, with the instance path that the Verilog holds
    assert len(man["macros"]) == len(pm.tiles)
    for m, ref in zip(man["macros"], pm.tiles):
        t = ref.tile
        assert (m["name"], m["global_index"], m["layer"]) == (ref.name, ref.global_index, ref.layer)
        assert (m["rows"], m["cols"]) == ([t.row_start, t.row_stop], [t.col_start, t.col_stop])
        assert m["instance"] == f"array.macro_{ref.name}.macro" == top.macro_instance_path(ref)
        assert f"module \\nvm_lstm_top.array.macro_{ref.name} (" in verilog
        adc = cfg.head_adc_bits_eff if ref.layer is None else cfg.adc_bits
        assert m["parameters"] == {
            "ROWS": cfg.array_rows,
            "COLS": cfg.array_cols,
            "WEIGHT_BITS": cfg.weight_bits,
            "DAC_BITS": cfg.dac_bits,
            "ADC_BITS": adc,
            "STEP_BITS": cfg.adc_step_bits,
            "READ_LATENCY": lat,
        }
    # the programming address map
    pmj = man["program_map"]
    assert (pmj["addr_bits"], pmj["data_bits"], pmj["select_bit"]) == (pm.addr_bits, pm.data_bits, pm.addr_bits - 1)
    wf = pmj["weight_fields"]
    assert pm.weight_address(3, 1, 1) == (3 << wf["tile"]["lsb"]) | (1 << wf["row"]["lsb"]) | (1 << wf["col"]["lsb"])
    assert [r["address"] for r in pmj["registers"]] == (
        [pm.step_address(l) for l in range(cfg.num_layers)]
        + [pm.step_address(None)]
        + [pm.scale_address(l, g) for l in range(cfg.num_layers) for g in range(4)]
    )
    assert set(man["tools"]) >= {"amaranth", "python", "amaranth_verilog_backend"}


def verilog_ports(text: str, module: str = "nvm_lstm_top") -> list[dict]:
    """Ports of ``module`` as the Verilog declares them (name, direction, width), in the order of its port
    list: read from the text, independently of the Amaranth signature the manifest comes from."""
    m = re.search(rf"^module {module}\(([^)]*)\);(.*?)^endmodule", text, re.MULTILINE | re.DOTALL)
    assert m is not None, f"module {module} not found"
    order = [p.strip() for p in m.group(1).split(",")]
    decl = {}
    for d, msb, name in re.findall(
        r"^\s*(input|output|inout)\s+(?:\[(\d+):0\]\s+)?(\S+?)\s*;", m.group(2), re.MULTILINE
    ):
        decl[name] = {"name": name, "direction": d, "width": int(msb) + 1 if msb else 1}
    assert all(p in decl for p in order), (order, sorted(decl))
    return [decl[p] for p in order]


def test_port_cross_check_can_fail(rtl):
    """A manifest port list with one port renamed, missing or resized no longer equals the Verilog's."""
    declared = sorted(verilog_ports((rtl["single"] / "nvm_lstm_top.v").read_text()), key=lambda p: p["name"])
    listed = sorted(manifest(rtl["single"])["ports"], key=lambda p: p["name"])
    assert declared == listed
    assert declared != listed[1:]
    assert declared != [dict(p, width=p["width"] + (p["name"] == "cycles")) for p in listed]
    assert declared != [dict(p, name=p["name"].replace("inp__payload", "inp_payload")) for p in listed]


def test_amaranth_yosys_adapter_answers():
    """The one private-API adapter (which Yosys Amaranth's back end runs): fails loudly when Amaranth changes
    rather than recording "unknown" in every manifest."""
    label = amaranth_yosys_label()
    assert re.fullmatch(r"yosys \d+\.\d+(\.\d+)* \((built-in|system)\)", label), label


# --------------------------------------------------------------------------------------------------
# Weight images
def test_hex_files_decode_to_the_model_weights(rtl, model_file):
    """Every cell of every image equals what the programming sequence writes to that cell."""
    d = rtl["multi"]
    model = load_model(model_file)
    cfg = model.config
    pm = ProgramMap(cfg)
    wmask, half = (1 << pm.data_bits) - 1, 1 << (cfg.weight_bits - 1)
    expect = {}
    for addr, data in pm.writes(model):
        if addr >> (pm.addr_bits - 1):
            continue  # a register
        tile = addr >> (pm.row_bits + pm.col_bits)
        row = (addr >> pm.col_bits) & ((1 << pm.row_bits) - 1)
        col = addr & ((1 << pm.col_bits) - 1)
        v = data & wmask & ((1 << cfg.weight_bits) - 1)
        expect[tile, row, col] = v - (1 << cfg.weight_bits) if v >= half else v
    for m in manifest(d)["macros"]:
        text = (d / m["hex_file"]).read_text()
        codes = parse_hex(text, cfg.weight_bits, cfg.array_rows, cfg.array_cols)
        got = {
            (m["global_index"], r, c): int(codes[r, c]) for r in range(cfg.array_rows) for c in range(cfg.array_cols)
        }
        assert got == {k: v for k, v in expect.items() if k[0] == m["global_index"]}, m["name"]
        # the words themselves: ceil(weight_bits / 4) hex digits, lower case, one per line
        words = [ln for ln in text.splitlines() if not ln.startswith("//")]
        assert all(re.fullmatch(r"[0-9a-f]", w) for w in words)
        # and directly against the weight matrix
        w = model.head.weights if m["layer"] is None else model.layers[m["layer"]].weights
        (r0, r1), (c0, c1) = m["rows"], m["cols"]
        assert np.array_equal(codes[: r1 - r0, : c1 - c0], w[c0:c1, r0:r1].T)
        assert not codes[r1 - r0 :, :].any() and not codes[:, c1 - c0 :].any()


# --------------------------------------------------------------------------------------------------
# Lint and compile
@pytest.mark.parametrize("case", CASES)
def test_verilator_lint_passes(need, rtl, case):
    need("verilator")
    verilator_lint(rtl[case], "filelist.f")


@pytest.mark.parametrize("case", CASES)
def test_iverilog_compiles(need, rtl, case):
    need("iverilog")
    iverilog_compile(rtl[case], "filelist.f")


def test_generate_lint_records_the_tools(need, have, rtl):
    if not (have("verilator") and have("iverilog")):
        need("verilator")
        need("iverilog")
    man = manifest(rtl["single"])
    assert man["lint"] is not None
    assert man["tools"]["verilator"] and man["tools"]["iverilog"]


def test_waivers_name_only_the_top_and_are_documented():
    text = waivers_vlt()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("//")]
    assert lines[0] == "`verilator_config"
    rules = []
    for ln in lines[1:]:
        m = re.fullmatch(r'lint_off -rule ([A-Z0-9]+) -file "\*nvm_lstm_top\.v"', ln)
        assert m, ln  # by rule and by file: never global, never the macro model
        rules.append(m.group(1))
    assert sorted(rules) == sorted(TOP_WAIVERS)
    assert "nvm_array_macro" not in "\n".join(lines)
    doc = (REPO / "docs" / "verilog.md").read_text()
    for rule in TOP_WAIVERS:
        assert f"`{rule}`" in doc, rule


def test_every_waiver_is_needed(need, rtl, tmp_path):
    """Dropping any one waiver makes the lint of the top fail on that rule: the list is no longer than needed."""
    need("verilator")
    for rule in TOP_WAIVERS:
        d = tmp_path / rule
        shutil.copytree(rtl["multi"], d)
        text = (d / "waivers.vlt").read_text()
        (d / "waivers.vlt").write_text("\n".join(ln for ln in text.splitlines() if f" {rule} " not in ln) + "\n")
        with pytest.raises(LintError, match=rule):
            verilator_lint(d, "filelist.f")


BROKEN = {
    # valid is one bit; assigning the whole pipeline vector is a width bug (READ_LATENCY > 1)
    "width": ("assign valid = pipe_v[READ_LATENCY - 1];", "assign valid = pipe_v;"),
    "syntax": ("    endfunction", "    endfunction;;\n    reg"),
    "unused": ("    integer i, k;", "    integer i, k, spare;"),
}


@pytest.mark.parametrize("bug", BROKEN)
def test_lint_fails_on_a_broken_macro_template(need, rtl, tmp_path, bug):
    """A bug injected into a copy of the macro template is caught: the lint check can fail."""
    need("verilator")
    old, new = BROKEN[bug]
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, tdir)
    src = (tdir / "nvm_array_macro.v.j2").read_text()
    assert old in src
    (tdir / "nvm_array_macro.v.j2").write_text(src.replace(old, new))
    d = tmp_path / "rtl"
    shutil.copytree(rtl["multi"], d)
    params = manifest(d)["macros"][0]["parameters"]
    (d / "nvm_array_macro.v").write_text(render_macro_model(params, template_dir=tdir))
    with pytest.raises(LintError, match=r"nvm_array_macro\.v"):
        verilator_lint(d, "filelist.f")


MACRO_SHAPES = [
    dict(ROWS=2, COLS=2, WEIGHT_BITS=2, DAC_BITS=2, ADC_BITS=2, STEP_BITS=1, READ_LATENCY=1),
    dict(ROWS=5, COLS=3, WEIGHT_BITS=4, DAC_BITS=4, ADC_BITS=6, STEP_BITS=16, READ_LATENCY=2),
    dict(ROWS=64, COLS=64, WEIGHT_BITS=16, DAC_BITS=16, ADC_BITS=16, STEP_BITS=24, READ_LATENCY=7),
]


@pytest.mark.parametrize("params", MACRO_SHAPES, ids=lambda p: f"{p['ROWS']}x{p['COLS']}_L{p['READ_LATENCY']}")
def test_macro_model_lints_clean_alone(need, tmp_path, params):
    """The macro model is -Wall clean with no waiver for any parameters, set both as defaults and via -G."""
    tool = need("verilator")
    (tmp_path / "nvm_array_macro.v").write_text(render_macro_model(params))
    from nvmlstm.gen.tools import run_tool

    for extra in ([], [f"-G{k}={v}" for k, v in MACRO_SHAPES[1].items()]):
        proc = run_tool(tool, ["--lint-only", "-Wall", *extra, "nvm_array_macro.v"], cwd=tmp_path)
        assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


def test_stub_has_the_model_interface():
    params = MACRO_SHAPES[1]
    model, stub = render_macro_model(params), render_macro_stub(params)

    def header(text):
        return text[text.index("module nvm_array_macro") : text.index(");", text.index("module nvm_array_macro")) + 2]

    assert header(model) == header(stub)
    body = stub[stub.index(header(stub)) + len(header(stub)) :]
    assert body.strip() == "endmodule"
    assert "(* blackbox *)\nmodule nvm_array_macro" in stub


# --------------------------------------------------------------------------------------------------
# Synthesis
@pytest.mark.parametrize("case", CASES)
def test_synthesis_counts_cells_without_latches(need, rtl, case):
    need("yosys")
    syn = manifest(rtl[case])["synthesis"]
    assert syn is not None
    n_macros = len(manifest(rtl[case])["macros"])
    assert syn["blackboxes"] == {"nvm_array_macro": n_macros}
    assert syn["latches"] == 0 and not any("LATCH" in k.upper() for k in syn["cells_by_type"])
    assert syn["cells"] == sum(syn["cells_by_type"].values())
    assert syn["flip_flops"] > 0 and syn["cells"] > syn["flip_flops"] + n_macros
    assert "synth -top nvm_lstm_top" in syn["script"] and "check -assert" in syn["script"]
    assert manifest(rtl[case])["tools"]["yosys"] == syn["tool"]


def test_synthesis_fails_loudly_without_statistics(need, rtl, monkeypatch):
    """Yosys exiting 0 before `stat` must not pass as a synthesis with no cells."""
    need("yosys")
    import nvmlstm.gen.synth  # noqa: F401 - binds the submodule
    from nvmlstm import gen

    real = gen.synth.synth_script
    monkeypatch.setattr(gen.synth, "synth_script", lambda *a, **k: [c for c in real(*a, **k) if "stat" not in c])
    with pytest.raises(SynthError, match="no statistics"):
        synthesize(rtl["single"], ["nvm_array_macro_stub.v", "nvm_lstm_top.v"], blackbox_module="nvm_array_macro")


def test_synthesis_rejects_latches_and_failures(need, tmp_path):
    need("yosys")
    (tmp_path / "bb.v").write_text("(* blackbox *) module bb(input a, output b); endmodule\n")
    (tmp_path / "latch.v").write_text(
        "module nvm_lstm_top(input en, input d, output reg q, output b);\n"
        "  always @* if (en) q = d;\n  bb u(.a(d), .b(b));\nendmodule\n"
    )
    with pytest.raises(SynthError, match="yosys failed"):
        synthesize(tmp_path, ["bb.v", "latch.v"], blackbox_module="bb")
    (tmp_path / "bad.v").write_text("module nvm_lstm_top(input a, output b); assign b = ; endmodule\n")
    with pytest.raises(SynthError, match="yosys failed"):
        synthesize(tmp_path, ["bb.v", "bad.v"], blackbox_module="bb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.v", "bb.v", "latch.v"]  # nothing written


# --------------------------------------------------------------------------------------------------
# The behavioral macro against the simulator's macro model (hdl/sim.py), cycle by cycle
def _random_ops(rng, p: dict, n: int) -> list[dict]:
    rb, cb = max(1, (p["ROWS"] - 1).bit_length()), max(1, (p["COLS"] - 1).bit_length())
    ops = []
    for k in range(n):
        op = {
            "rst": int(k == 0 or rng.random() < 0.04),
            "we": int(rng.random() < 0.5),
            "read": int(rng.random() < 0.4),
            "row": int(rng.integers(0, 1 << rb)),
            "col": int(rng.integers(0, 1 << cb)),
            "code": int(rng.integers(0, 1 << p["WEIGHT_BITS"])),
            "x": int(rng.integers(0, 1 << 62)) & ((1 << (p["ROWS"] * p["DAC_BITS"])) - 1),
            "step": int(rng.choice([0, 1, 2, 3, 4, 7, (1 << p["STEP_BITS"]) - 1])) & ((1 << p["STEP_BITS"]) - 1),
        }
        ops.append(op)
    return ops


def _amaranth_macro(p: dict, ops: list[dict]) -> list[tuple[int, int]]:
    mac = NvmArrayMacro(
        rows=p["ROWS"],
        cols=p["COLS"],
        weight_bits=p["WEIGHT_BITS"],
        dac_bits=p["DAC_BITS"],
        adc_bits=p["ADC_BITS"],
        adc_step_bits=p["STEP_BITS"],
        read_latency=p["READ_LATENCY"],
        model="sim",
    )
    m = Module()
    m.domains.sync = cd = ClockDomain()
    m.submodules.mac = mac
    seen = []

    async def testbench(ctx):
        for op in ops:
            ctx.set(cd.rst, op["rst"])
            ctx.set(mac.prog_we, op["we"])
            ctx.set(mac.prog_row, op["row"])
            ctx.set(mac.prog_col, op["col"])
            ctx.set(
                mac.prog_code,
                op["code"] - (1 << p["WEIGHT_BITS"]) if op["code"] >> (p["WEIGHT_BITS"] - 1) else op["code"],
            )
            ctx.set(mac.read, op["read"])
            ctx.set(mac.x, op["x"])
            ctx.set(mac.adc_step, op["step"])
            await ctx.tick()
            seen.append((int(ctx.get(mac.valid)), int(ctx.get(mac.y))))

    simulate_with_macros(m, [mac], testbench)
    return seen


SIM_SHAPES = [
    dict(ROWS=5, COLS=3, WEIGHT_BITS=4, DAC_BITS=4, ADC_BITS=6, STEP_BITS=3, READ_LATENCY=1),
    dict(ROWS=4, COLS=2, WEIGHT_BITS=3, DAC_BITS=5, ADC_BITS=3, STEP_BITS=4, READ_LATENCY=2),
    dict(ROWS=3, COLS=4, WEIGHT_BITS=4, DAC_BITS=4, ADC_BITS=8, STEP_BITS=2, READ_LATENCY=3),
]


@pytest.mark.parametrize("params", SIM_SHAPES, ids=lambda p: f"{p['ROWS']}x{p['COLS']}_L{p['READ_LATENCY']}")
def test_macro_model_matches_the_simulator_model(need, icarus_macro, tmp_path, params):
    """Random resets, writes (also out of range and together with reads), reads with every kind of step
    (0, ties, saturation): the Verilog model's y and valid equal hdl/sim.py's after every edge."""
    need("iverilog")
    ops = _random_ops(np.random.default_rng(params["ROWS"] * 10 + params["READ_LATENCY"]), params, 400)
    want = _amaranth_macro(params, ops)
    got = icarus_macro(tmp_path, params, ops)
    assert sum(v for v, _ in want) > 50  # many conversions were checked
    for n, (a, b) in enumerate(zip(want, got)):
        assert a == b, f"cycle {n}: simulator model (valid, y) = {a}, Verilog model = {b}"


def test_macro_model_loads_a_weight_image(need, icarus_macro, rtl, model_file, tmp_path):
    """INIT_FILE: the macro computes with the image's weights from the start, and keeps them over a reset."""
    need("iverilog")
    d = rtl["multi"]
    man = manifest(d)
    model = load_model(model_file)
    m = man["macros"][1]
    shutil.copy(d / m["hex_file"], tmp_path / m["hex_file"])
    p = m["parameters"]
    w = model.layers[m["layer"]].weights
    (r0, r1), (c0, c1) = m["rows"], m["cols"]
    codes = np.zeros((p["ROWS"], p["COLS"]), dtype=np.int64)
    codes[: r1 - r0, : c1 - c0] = w[c0:c1, r0:r1].T
    rng = np.random.default_rng(7)
    dmax = (1 << (p["DAC_BITS"] - 1)) - 1
    ops, expect = [], []
    for k in range(12):
        xs = rng.integers(-dmax, dmax + 1, p["ROWS"])
        step = int(rng.integers(1, 6))
        xbits = sum((int(v) & ((1 << p["DAC_BITS"]) - 1)) << (i * p["DAC_BITS"]) for i, v in enumerate(xs))
        # cycle 5 idles so no conversion is in flight at the reset in cycle 6 (a reset drops it)
        read = k not in (5, 6)
        ops.append(
            {"rst": int(k == 6), "we": 0, "read": int(read), "row": 0, "col": 0, "code": 0, "x": xbits, "step": step}
        )
        expect.append(adc_convert(xs @ codes, step, p["ADC_BITS"]) if read else None)
    ops += [dict(ops[0], read=0)] * p["READ_LATENCY"]
    got = icarus_macro(tmp_path, p, ops, init_file=m["hex_file"])
    amask = (1 << p["ADC_BITS"]) - 1
    for k, e in enumerate(expect):
        if e is None:
            continue
        valid, y = got[k + p["READ_LATENCY"] - 1]
        assert valid == 1
        ycodes = [((y >> (j * p["ADC_BITS"])) & amask) for j in range(p["COLS"])]
        ycodes = [v - (1 << p["ADC_BITS"]) if v >> (p["ADC_BITS"] - 1) else v for v in ycodes]
        assert ycodes == [int(v) for v in e], f"read {k}"


# --------------------------------------------------------------------------------------------------
# Errors: one line, exit status 2, no RTL_DIR
@pytest.fixture
def cfg_file(tmp_path) -> Path:
    return write_json(tmp_path / "c.json", CASES["single"][0])


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--lanes", "0"], r"lanes must be an integer from 1 to hidden_size \(2\), not 0"),
        (["--lanes", "3"], r"lanes must be an integer from 1 to hidden_size \(2\), not 3"),
        (["--lanes", "two"], r"argument --lanes: expected an integer, not 'two'"),
        (["--macro-latency", "0"], r"macro_latency must be an integer from 1 to 64, not 0"),
        (["--macro-latency", "65"], r"macro_latency must be an integer from 1 to 64, not 65"),
    ],
)
def test_error_bad_options(tmp_path, cfg_file, capsys, args, pattern):
    out = tmp_path / "rtl"
    assert_error(
        capsys,
        ["generate", "--config", cfg_file, "--out", out, "--no-synth", *args],
        r"nvmlstm generate: error: " + pattern,
        absent=out,
    )


def test_error_bad_configs(tmp_path, capsys):
    write_json(tmp_path / "small.json", dict(CASES["single"][0], array_rows=1))
    write_json(tmp_path / "narrow.json", dict(CASES["single"][0], array_cols=1))
    (tmp_path / "junk.json").write_text("{not json")
    for name, pattern in (
        ("nope", r".*nope\.json: config file not found"),
        ("small", r".*small\.json: array_rows must be an integer from 2 to 65536, not 1"),
        ("narrow", r".*array_cols must be an integer from 2 to 65536, not 1"),
        ("junk", r".*junk\.json: config file is not valid JSON.*"),
    ):
        assert_command_error(capsys, "generate", ["--config", tmp_path / f"{name}.json"], tmp_path / "rtl", pattern)


def test_error_bad_model_files(tmp_path, capsys, model_file):
    out, none = tmp_path / "rtl", tmp_path / "none.npz"
    assert_command_error(capsys, "generate", ["--model", none], out, r".*none\.npz: model file not found")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    shutil.copy(model_file.with_suffix(".json"), bad.with_suffix(".json"))
    assert_command_error(capsys, "generate", ["--model", bad], out, r".*bad\.npz: not a readable \.npz file.*")
    lone = tmp_path / "lone.npz"
    shutil.copy(model_file, lone)
    assert_command_error(capsys, "generate", ["--model", lone], out, r".*lone\.json: manifest not found.*")


def test_error_out_is_a_file_or_foreign_dir(tmp_path, cfg_file, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = run(capsys, "generate", "--config", cfg_file, "--out", f, "--no-synth")
    assert rc == 2 and re.fullmatch(r"nvmlstm generate: error: .*file: exists and is not a directory\n", err), err
    d = tmp_path / "busy"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    rc, out, err = run(capsys, "generate", "--config", cfg_file, "--out", d, "--no-synth")
    assert rc == 2 and "not an earlier `nvmlstm generate` output (found notes.txt)" in err, err
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]


def test_error_yosys_missing_says_how_to_install(tmp_path, cfg_file, capsys, monkeypatch):
    import nvmlstm.gen.tools  # noqa: F401 - binds the submodule
    from nvmlstm import gen

    real_which = shutil.which
    monkeypatch.setattr(gen.tools.shutil, "which", lambda name, *a, **k: None if name == "yosys" else real_which(name))
    out = tmp_path / "rtl"
    line = assert_command_error(capsys, "generate", ["--config", cfg_file], out, r"yosys not found: .*")
    assert "apt-get install -y yosys" in line and "--no-synth" in line
    rc, _, err = run(capsys, "generate", "--config", cfg_file, "--out", out, "--no-synth")
    assert (rc, err) == (0, "")
    assert manifest(out)["synthesis"] is None and "yosys" not in manifest(out)["tools"]


def test_failed_check_leaves_nothing(tmp_path, cfg_file, capsys, monkeypatch):
    """A synthesis failure after the files were written: no RTL_DIR, no temporary directory."""
    import nvmlstm.gen.rtl  # noqa: F401 - binds the submodule
    from nvmlstm import gen

    def broken(*a, **k):
        raise SynthError("yosys failed (exit status 1): injected")

    monkeypatch.setattr(gen.rtl, "synthesize", broken)
    monkeypatch.setattr(gen.rtl, "find_yosys", lambda: types.SimpleNamespace(version="Yosys (stand-in)"))
    out = tmp_path / "deep" / "rtl"
    rc, _, err = run(capsys, "generate", "--config", cfg_file, "--out", out)
    assert rc == 2 and err == "nvmlstm generate: error: yosys failed (exit status 1): injected\n"
    assert not (tmp_path / "deep").exists()


def test_synthesis_says_its_estimate_and_beats_until_it_ends(tmp_path, monkeypatch):
    """The synthesis step says its size and expected time first and a line every interval while Yosys runs;
    when it fails the heartbeat stops: no line after the error (a stand-in Yosys waits for two beats)."""
    import nvmlstm.gen.rtl  # noqa: F401 - binds the submodule
    from nvmlstm import gen
    from nvmlstm.artifacts import progress
    from nvmlstm.gen.synth import expected_synth_seconds

    probe = HeartbeatProbe(monkeypatch)
    lines = probe.lines
    monkeypatch.setattr(gen.rtl, "synthesize", probe.failing(SynthError("yosys failed (exit status 1): injected")))
    monkeypatch.setattr(gen.rtl, "find_yosys", lambda: types.SimpleNamespace(version="Yosys (stand-in)"))
    with pytest.raises(SynthError, match="injected"):
        gen.rtl.generate_rtl(tmp_path / "rtl", case_cfg("single"), log=probe.say)
    probe.assert_silent()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("synthesizing with Yosys (stand-in) ("))
    announce = r"synthesizing with Yosys \(stand-in\) \(([\d,]+) lines of Verilog; about (.+) expected\) \.\.\."
    m = re.fullmatch(announce, lines[start])
    assert m, lines[start]
    assert m.group(2) == progress.format_duration(expected_synth_seconds(int(m.group(1).replace(",", ""))))
    assert all(
        re.fullmatch(r"still synthesizing: (\d+|under 1) s elapsed, (about|longer than the) .+ expected", ln)
        for ln in lines[start + 1 :]
    )
    assert len(lines) - start - 1 >= 2


def test_regenerating_replaces_an_earlier_output(tmp_path, capsys, model_file):
    """An earlier RTL_DIR is updated in place; weight images the new run does not write are removed."""
    out = tmp_path / "rtl"
    rc, _, err = run(capsys, "generate", "--model", model_file, "--out", out, "--no-synth")
    assert (rc, err) == (0, "")
    assert any(p.suffix == ".hex" for p in out.iterdir())
    cfg = write_json(tmp_path / "c.json", CASES["multi"][0])
    rc, _, err = run(capsys, "generate", "--config", cfg, "--out", out, "--no-synth")
    assert (rc, err) == (0, "")
    assert {p.name for p in out.iterdir()} == FIXED_FILES
    assert all(m["hex_file"] is None for m in manifest(out)["macros"])


def test_api_rejects_a_model_of_another_config(tmp_path, model_file):
    from nvmlstm.gen import generate_rtl

    with pytest.raises(GenError, match="config differs"):
        generate_rtl(tmp_path / "x", case_cfg("single"), model=load_model(model_file), synth=False)
    assert not (tmp_path / "x").exists()


def test_api_argument_errors_are_the_accelerators(tmp_path):
    """generate_rtl does not re-check the build arguments: the accelerator's one check raises, turned into a
    `GenError` with the same message, before anything is built or written."""
    from nvmlstm.gen import generate_rtl
    from nvmlstm.hdl.accelerator import NvmLstmAccelerator

    cfg = case_cfg("single")
    for kwargs, message in [
        ({"lanes": 3}, "lanes must be an integer from 1 to hidden_size (2), not 3"),
        ({"lanes": 1.5}, "lanes must be an integer, not 1.5"),
        ({"macro_latency": 0}, "macro_latency must be an integer from 1 to 64, not 0"),
    ]:
        with pytest.raises(GenError) as info:
            generate_rtl(tmp_path / "x", cfg, synth=False, **kwargs)
        assert str(info.value) == message
        with pytest.raises((TypeError, ValueError)) as direct:
            NvmLstmAccelerator.check_parameters(cfg, **kwargs)
        assert str(direct.value) == message
    with pytest.raises(GenError, match=r"^cfg must be an LstmConfig, not dict$"):
        generate_rtl(tmp_path / "x", cfg.to_dict(), synth=False)
    assert not (tmp_path / "x").exists()
