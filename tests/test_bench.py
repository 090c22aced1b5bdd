"""The efficiency model (nvmlstm.bench, docs/efficiency.md): counts by hand, scaling, cycles against a
simulation, the technology file's validation, the literature table and the ``bench`` command."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
from cli_helpers import run
from config_helpers import small_config

from nvmlstm import golden
from nvmlstm.bench import counts as bcounts
from nvmlstm.bench.counts import Counts, macs_per_timestep, stage_ops, timestep_counts
from nvmlstm.bench.literature import PAPER_CLAIM, best_by_kind, digital_comparison, load_literature, ratios
from nvmlstm.bench.model import Timing, evaluate, timing_from_manifest, yosys_gate_equivalents
from nvmlstm.bench.technology import DEFAULT_TECH, SCHEMA, TechError, load_technology, parse_technology
from nvmlstm.golden import LstmConfig, random_model
from nvmlstm.golden.datapath import __all__ as DATAPATH_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: I=3, H=2, one layer, O=2 on 4 x 8 tiles: the layer matrix is 8 columns x 6 rows (3 + 2 + bias), two row
#: tiles (rows 0-3 and 4-5), one column tile; the head is 2 x 3, one tile.
TINY = small_config(hidden_size=2, num_layers=1, array_cols=8)


def _timing(cfg: LstmConfig, lanes: int | None = None, macro_latency: int = 2) -> Timing:
    from nvmlstm.timing import accelerator_timing

    return accelerator_timing(macro_latency)(cfg, lanes)


# ------------------------------------------------------------------------------------------------------
# Counts
def test_tiny_counts_by_hand():
    """Every count of TINY, worked out by hand (the derivation is in each comment)."""
    parts = timestep_counts(TINY)
    # layer array: tiles rows [0,4) and [4,6), 8 columns each; 2 devices per weight
    # per unit (frac_bits 7: gate values 9 bits; cell 11; dac 4; acc = bits of 2 * 7 plus sign = 5;
    # scale 12): adds 4 (gate rounding, 17 bits) + 2 (cell sum and rounding, 29) + 1 (tanh index, 11)
    # + 1 (h rounding, 22) = 8 adds of 68 + 58 + 11 + 22 = 159 bits; mults 4 x 5*12 + 9*11 + 9*9 + 9*9
    # + 9*2*4 = 573; tables 4 + 1; registers 4 x 9 + 2 x 11 + 2 x 4 = 66 bits in 8 writes
    assert parts["layer0"] == Counts(
        array_reads=2,
        active_cells=2 * (4 * 8 + 2 * 8),
        physical_cells=2 * 2 * 4 * 8,
        dac_conversions=4 + 2,
        adc_conversions=2 * 8,
        adc_conversions_used=16,
        adds=8 * 1 + 2 * 8,
        add_bits=8 * 5 + 2 * 159,  # one column-sum adder per column (2 row tiles)
        mults=2 * 8,
        mult_bits2=2 * 573,
        table_reads=2 * 5,
        register_writes=2 * 8,
        register_bits=2 * 66,
    )
    # head: 2 columns x 3 rows (2 + bias) in one 4 x 8 tile; output register 2 x 4 bits (7 needs 3 + sign)
    assert parts["head"] == Counts(
        array_reads=1,
        active_cells=2 * 3 * 2,
        physical_cells=2 * 4 * 8,
        dac_conversions=3,
        adc_conversions=8,
        adc_conversions_used=2,
        register_writes=2,
        register_bits=2 * 4,
    )
    assert parts["input"] == Counts(register_writes=3, register_bits=3 * 4)
    assert parts["total"] == parts["input"] + parts["layer0"] + parts["head"]
    assert macs_per_timestep(TINY) == 6 * 8 + 3 * 2


def test_stage_ops_cover_every_datapath_stage():
    """A new stage function in golden.datapath must be counted (or declared not per unit) here."""
    assert set(stage_ops(TINY, 5)) | set(bcounts.NOT_PER_UNIT) == set(DATAPATH_NAMES)


def test_counts_follow_the_golden_tiling(monkeypatch):
    """The counts come from golden.nvm.tile_grid: a different tiling changes them (no second description)."""
    real = golden.nvm.tile_grid
    before = timestep_counts(TINY)["total"]
    monkeypatch.setattr(bcounts, "tile_grid", lambda *a: real(*a)[:1])
    assert timestep_counts(TINY)["total"].array_reads == 2  # one tile per matrix instead of 2 + 1
    assert before.array_reads == 3


def test_energy_by_hand():
    """evaluate()'s energy and area of TINY with round technology figures, by hand."""
    doc = tomllib.loads(DEFAULT_TECH.read_text())
    set_ = lambda s, k, v: doc[s][k].__setitem__("value", v)  # noqa: E731
    for s, k, v in [
        ("node", "feature_nm", 45),
        ("node", "vdd", 0.9),
        ("adc", "walden_fom", 10.0),
        ("adc", "area_ref", 100.0),
        ("adc", "ref_bits", 4),
        ("dac", "energy_ref", 1.0),
        ("dac", "area_ref", 1.0),
        ("dac", "ref_bits", 1),
        ("nvm", "read_voltage", 1.0),
        ("nvm", "g_max", 20.0),
        ("nvm", "g_min", 0.0),
        ("nvm", "pulse", 1.0),
        ("nvm", "cell_area", 100.0),
        ("digital", "ref_node", 45),
        ("digital", "add8_energy", 0.8),
        ("digital", "mul8_energy", 6.4),
        ("digital", "register_bit_energy", 1.0),
        ("digital", "table_read_energy", 1.0),
        ("digital", "signoff_area", 1000.0),
        ("digital", "signoff_node", 45),
    ]:
        set_(s, k, v)
    tech = parse_technology(doc, "t")
    r = evaluate(TINY, tech, Timing(20, 10, 3, 2, 2), clock_mhz=100.0)
    e = r["energy_breakdown_pj"]
    assert e["adc"] == pytest.approx(24 * 10 * 16 * 1e-3)  # 24 conversions x 10 fJ x 2^4
    assert e["dac"] == pytest.approx(9 * 4 * 1.0)  # 9 rows driven x 4 bits x 1 pJ
    assert e["nvm_cells"] == pytest.approx(108 * 1 * 10 * 1 * 1e-3)  # 108 devices x 1 V^2 x 10 uS x 1 ns
    assert e["digital_add"] == pytest.approx(358 * 0.1)  # 358 adder bits x 0.8 / 8 pJ
    assert e["digital_mult"] == pytest.approx(1146 * 0.1)  # 1146 bit products x 6.4 / 64 pJ
    assert e["table_reads"] == 10 and e["registers"] == 152
    a = r["area_breakdown_um2"]
    assert a["nvm_arrays"] == pytest.approx(192 * 100 * 0.045**2)
    assert a["adc"] == pytest.approx(3 * 8 * 100.0) and a["dac"] == pytest.approx(3 * 4 * 4.0)
    assert a["digital"] == 1000.0 and r["digital_area_source"] == "sign-off area of the technology file"
    assert r["latency_ns_per_step"] == 200.0 and r["ops_per_step"] == 108
    assert r["gops"] == pytest.approx(108 / 200)
    assert r["tops_per_w"] == pytest.approx(108 / sum(e.values()))
    assert r["array_utilization"] == 3 / 20


# ------------------------------------------------------------------------------------------------------
# Scaling
def _eval(cfg, tech=None, lanes=None):
    return evaluate(cfg, tech or load_technology(), _timing(cfg, lanes), clock_mhz=200.0)


def test_scaling_with_bits_and_sizes():
    cfg = golden.default_config()
    base = _eval(cfg)
    more = _eval(cfg.replace(adc_bits=5))
    # Walden: one more bit doubles each conversion's energy and (the stated rule) each ADC's area
    assert more["energy_breakdown_pj"]["adc"] == pytest.approx(2 * base["energy_breakdown_pj"]["adc"])
    assert more["area_breakdown_um2"]["adc"] == pytest.approx(2 * base["area_breakdown_um2"]["adc"])
    dac = _eval(cfg.replace(dac_bits=8))
    assert dac["energy_breakdown_pj"]["dac"] == pytest.approx(2 * base["energy_breakdown_pj"]["dac"])
    # twice the hidden units: the layer matrix is (8 + 64 + 1) x 256 instead of (8 + 32 + 1) x 128
    big = _eval(cfg.replace(hidden_size=64))
    assert big["ops_per_step"] == 2 * (73 * 256 + 65 * 10) and base["ops_per_step"] == 2 * (41 * 128 + 33 * 10)
    assert big["counts"]["total"]["active_cells"] == 2 * (73 * 256 + 65 * 10)
    # cell energy ~ V^2, cell area ~ F^2
    doc = tomllib.loads(DEFAULT_TECH.read_text())
    doc["nvm"]["read_voltage"]["value"] *= 2
    doc["node"]["feature_nm"]["value"] *= 2
    t2 = _eval(cfg, parse_technology(doc, "t2"))
    assert t2["energy_breakdown_pj"]["nvm_cells"] == pytest.approx(4 * base["energy_breakdown_pj"]["nvm_cells"])
    assert t2["area_breakdown_um2"]["nvm_arrays"] == pytest.approx(4 * base["area_breakdown_um2"]["nvm_arrays"])
    # digital energy ~ F (Horowitz scaled), digital area ~ F^2
    assert t2["energy_breakdown_pj"]["digital_mult"] == pytest.approx(2 * base["energy_breakdown_pj"]["digital_mult"])
    assert t2["area_breakdown_um2"]["digital"] == pytest.approx(4 * base["area_breakdown_um2"]["digital"])
    # fewer lanes: same energy per step, more cycles, less digital area, lower utilization
    one = _eval(cfg, lanes=1)
    assert one["energy_pj_per_step"] == pytest.approx(base["energy_pj_per_step"])
    assert one["latency_ns_per_step"] > base["latency_ns_per_step"]
    assert one["area_breakdown_um2"]["digital"] < base["area_breakdown_um2"]["digital"]
    assert one["array_utilization"] < base["array_utilization"]


# ------------------------------------------------------------------------------------------------------
# Cycles against the RTL
@pytest.mark.parametrize("lanes", [1, 2])
def test_cycles_equal_a_measured_simulation(lanes):
    """The cycles the bench model uses (accelerator_timing, the command's source) equal the cycles counter
    of an Amaranth simulation of the accelerator; a model with one cycle more per step would fail."""
    import numpy as np

    from nvmlstm.hdl.accelerator import NvmLstmAccelerator
    from nvmlstm.hdl.sim import run_accelerator

    cfg = small_config(hidden_size=4, array_cols=8)
    T = 3
    x = np.random.default_rng(lanes).integers(-cfg.dac_max, cfg.dac_max + 1, size=(1, T, cfg.input_size))
    model, _ = random_model(cfg, lanes, x)
    run = run_accelerator(NvmLstmAccelerator(cfg, lanes=lanes, macro_latency=2, macro_model="sim"), model, x)
    t = _timing(cfg, lanes)
    r = evaluate(cfg, load_technology(), t, clock_mhz=100.0)
    assert run.cycles == [T * t.timestep_cyc]
    assert r["latency_ns_per_step"] * T == run.cycles[0] * 10.0  # 100 MHz: 10 ns per cycle
    assert run.cycles != [T * (t.timestep_cyc + 1)]


def test_latency_only_build_is_silent():
    """accelerator_timing builds the accelerator for its properties only; no UnusedElaboratable warning may
    follow (it filters Amaranth's public warning category while the accelerator is built and collected)."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _timing(TINY, 1)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, UnusedElaboratable)]
    # the check itself can fail: an accelerator built and dropped outside accelerator_timing warns
    from nvmlstm.hdl.accelerator import NvmLstmAccelerator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NvmLstmAccelerator(TINY, lanes=1)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, UnusedElaboratable)]


# ------------------------------------------------------------------------------------------------------
# The technology file
def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tech.toml"
    p.write_text(text)
    return p


def _edited(old: str, new: str) -> str:
    text = DEFAULT_TECH.read_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('walden_fom = { value = 6.1, unit = "fJ/step" }', "", "missing key adc.walden_fom (unit fJ/step)"),
        (
            'g_max = { value = 100.0, unit = "uS" }',
            'g_max = { value = -100.0, unit = "uS" }',
            "nvm.g_max: value must be > 0, not -100.0",
        ),
        (
            'register_bit_energy = { value = 0.005, unit = "pJ" }',
            'register_bit_energy = { value = -1, unit = "pJ" }',
            "digital.register_bit_energy: value must be >= 0, not -1",
        ),
        (
            'pulse = { value = 10.0, unit = "ns" }',
            'pulse = { value = 10.0, unit = "us" }',
            "nvm.pulse: unit must be 'ns', not 'us'",
        ),
        (
            'ref_bits = { value = 8, unit = "bits" }',
            'ref_bits = { value = 8.5, unit = "bits" }',
            "adc.ref_bits: value must be an integer from 1 to 16, not 8.5",
        ),
        (
            'pulse = { value = 10.0, unit = "ns" }',
            "pulse = 10.0",
            'nvm.pulse: expected { value = number, unit = "ns" }, not 10.0',
        ),
        (
            'pulse = { value = 10.0, unit = "ns" }',
            'pulse = { value = 10.0, unit = "ns" }\nwidth = { value = 1, unit = "ns" }',
            "unknown key nvm.width; valid keys are nvm.read_voltage, nvm.g_max, nvm.g_min, nvm.pulse, nvm.cell_area",
        ),
        (
            'g_min = { value = 10.0, unit = "uS" }',
            'g_min = { value = 100.0, unit = "uS" }',
            "nvm.g_min: value must be below nvm.g_max (100.0), not 100.0",
        ),
        ("version = 1", "version = 2", "version: must be 1, not 2"),
        (
            'vdd = { value = 0.9, unit = "V" }',
            'vdd = { value = nan, unit = "V" }',
            "node.vdd: value must be a finite number, not nan",
        ),
    ],
)
def test_malformed_technology_files(tmp_path, old, new, message):
    p = _write(tmp_path, _edited(old, new))
    with pytest.raises(TechError) as exc:
        load_technology(p)
    assert str(exc.value) == f"{p}: {message}"


def test_technology_file_errors_of_the_file(tmp_path):
    with pytest.raises(TechError, match=r"^.*nope\.toml: technology file not found$"):
        load_technology(tmp_path / "nope.toml")
    p = _write(tmp_path, "version = \n")
    with pytest.raises(TechError, match=r"tech\.toml: not valid TOML \("):
        load_technology(p)
    with pytest.raises(TechError, match=r"^t: missing section \[node\]$"):
        parse_technology({"version": 1}, "t")
    with pytest.raises(TechError, match=r"^t: missing key node.feature_nm \(unit nm\)$"):
        parse_technology({"version": 1, "node": {}}, "t")
    with pytest.raises(TechError, match=r"^t: unknown key cpu; valid sections are node, adc, dac, nvm, digital$"):
        parse_technology({"version": 1, "cpu": {}}, "t")


def test_default_technology_documents_every_key():
    """Every key of the schema is in the default file, each entry preceded by a comment with its source."""
    text = DEFAULT_TECH.read_text()
    tech = load_technology()
    assert set(tech.values) == set(SCHEMA)
    for section, keys in SCHEMA.items():
        assert set(tech.values[section]) == set(keys)
    blocks = re.split(r"\n\s*\n", text)
    assert all("#" in b for b in blocks if "value =" in b), "an entry without a source comment"


# ------------------------------------------------------------------------------------------------------
# Literature and the Yosys estimate
def test_literature_table():
    rows = load_literature()
    assert {r["kind"] for r in rows} == {"gpu", "fpga", "asic", "nvm"}
    assert all(r["citation"] and r["ops_convention"] and r["verified"] for r in rows)
    best = best_by_kind(rows, "tops_per_w")
    assert best["digital"]["tops_per_w"] == max(
        r["tops_per_w"] for r in rows if r["kind"] != "nvm" and r["tops_per_w"] is not None
    )
    rr = ratios({"tops_per_w": 2 * best["digital"]["tops_per_w"], "tops_per_mm2": 1.0}, rows)
    assert rr["tops_per_w"]["digital"]["ratio"] == pytest.approx(2.0)


_HEADER = "kind,design,citation,node_nm,precision,gops,power_w,area_mm2,density,ops_convention,verified,note\n"


def test_digital_comparison_by_hand():
    # Two digital designs with both figures and one FPGA without area; an NVM row takes no part.
    text = _HEADER + (
        "asic,A,c,64,8,100,1,10,dense,x,abstract,\n"  # 0.1 TOPS/W, 0.01 TOPS/mm^2, 64 nm
        "asic,B,c,32,8,100,0.5,20,dense,x,abstract,\n"  # 0.2 TOPS/W, 0.005 TOPS/mm^2, 32 nm
        "fpga,C,c,16,8,100,10,,sparse-effective,x,abstract,\n"  # 0.01 TOPS/W, no area
        "nvm,D,c,14,8,1000,0.001,0.001,dense,x,abstract,\n"
    )
    rows = load_literature(text)
    ours = {"tops_per_w": 1.0, "tops_per_mm2": 0.3}
    c = digital_comparison(ours, rows, feature_nm=32)
    w, a = c["tops_per_w"], c["tops_per_mm2"]
    assert w["designs"] == 3 and a["designs"] == 2
    assert w["best"]["design"] == "B" and w["best"]["ratio"] == pytest.approx(5.0) and w["holds"] is True
    assert w["range"] == pytest.approx([5.0, 100.0])
    # Scaled to 32 nm: A (64 nm) gains 2x in TOPS/W (0.2, ratio 5) and 4x in TOPS/mm^2 (0.04, ratio 7.5); C (16 nm)
    # loses 2x. The lowest ratio at one node is the lower end of the range.
    assert w["at_our_node"]["ratio"] == pytest.approx(5.0) and w["at_our_node"]["design"] == "A"
    assert a["best"]["design"] == "A" and a["best"]["ratio"] == pytest.approx(30.0) and a["holds"] is False
    assert a["at_our_node"]["ratio"] == pytest.approx(7.5) and a["holds_at_our_node"] is False
    assert w["claim"] == PAPER_CLAIM["tops_per_w"] == 2.4 and a["claim"] == 40.0
    no_area = digital_comparison(ours, load_literature(_HEADER + "fpga,C,c,16,8,100,10,,dense,x,abstract,\n"), 32)
    assert no_area["tops_per_mm2"] is None and no_area["tops_per_w"]["designs"] == 1


@pytest.mark.parametrize(
    "edit, message",
    [
        (("gpu,", "cpu,"), "kind must be one of gpu, fpga, asic, nvm, not 'cpu'"),
        ((",dense,", ",half,"), "density must be dense or sparse-effective, not 'half'"),
        ((",840,", ",-840,"), "gops: must be > 0, not '-840'"),
    ],
)
def test_literature_table_rejects_bad_rows(edit, message):
    from importlib import resources

    text = resources.files("nvmlstm.bench").joinpath("literature.csv").read_text()
    with pytest.raises(ValueError, match=re.escape(message)):
        load_literature(text.replace(*edit, 1))


def test_yosys_gate_equivalents():
    ge, skipped = yosys_gate_equivalents(
        {"$_NAND_": 10, "$_XOR_": 3, "$_DFF_P_": 2, "$_SDFFE_PP0P_": 1, "nvm_array_macro": 4}
    )
    assert ge == pytest.approx(10 + 3 * 2.33 + 2 * 4.5 + 6.5)
    assert skipped == ["nvm_array_macro"]


def test_digital_area_from_an_rtl_directorys_signoff():
    """Priority: the technology file's sign-off area, else the RTL directory's sky130 area (scaled by
    (F / signoff_node)^2), else Yosys gate equivalents, else the component estimate."""
    tech = load_technology()
    timing = _timing(TINY, 1)
    scale = (tech.feature_nm / tech["digital.signoff_node"]) ** 2
    synth = {"cells_by_type": {"$_NAND_": 100}}
    r = evaluate(TINY, tech, timing, clock_mhz=200.0, synthesis=synth, signoff={"area_um2": 5000.0})
    assert r["area_breakdown_um2"]["digital"] == pytest.approx(5000.0 * scale)
    assert r["digital_area_source"].startswith("standard-cell sign-off of the RTL directory")
    r = evaluate(TINY, tech, timing, clock_mhz=200.0, synthesis=synth)
    assert r["area_breakdown_um2"]["digital"] == pytest.approx(100 * tech.nand2_area_um2())
    doc = tomllib.loads(DEFAULT_TECH.read_text())
    doc["digital"]["signoff_area"]["value"] = 700.0
    own = parse_technology(doc, "own")
    r = evaluate(TINY, own, timing, clock_mhz=200.0, signoff={"area_um2": 5000.0})
    assert r["area_breakdown_um2"]["digital"] == pytest.approx(700.0 * scale)
    assert r["digital_area_source"] == "sign-off area of the technology file"


def test_timing_validation():
    with pytest.raises(ValueError, match=r"^timestep_cyc must be a positive integer, not 0$"):
        Timing(0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"^timestep_cyc must be at least layer_step_cyc \+ head_cyc \(8\), not 7$"):
        Timing(7, 5, 3, 1, 1)
    with pytest.raises(ValueError, match=r"^clock_mhz must be a finite number > 0, not 0$"):
        evaluate(TINY, load_technology(), Timing(20, 10, 3, 2, 2), clock_mhz=0)
    with pytest.raises(ValueError, match=r"incomplete"):
        timing_from_manifest({"latency": {}, "lanes": 1, "macro_latency": 2})


# ------------------------------------------------------------------------------------------------------
# The command, through the real `nvmlstm` entry point
def _bench(capsys, *argv) -> tuple[int, str, str]:
    return run(capsys, "bench", *argv)


def test_bench_command_writes_identical_files(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(TINY.to_json())
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        rc, stdout, err = _bench(capsys, "--config", cfg, "--lanes", 1, "--out", out)
        assert rc == 0, err
        assert "TOPS/W" in stdout
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == ["bench.json", "bench.md", "breakdown.png", "efficiency.png", "sensitivity.png"]
    for name in ("bench.json", "bench.md"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    doc = json.loads((outs[0] / "bench.json").read_text())
    for key in (
        "gops",
        "tops_per_w",
        "tops_per_mm2",
        "latency_ns_per_step",
        "array_utilization",
        "energy_breakdown_pj",
        "area_breakdown_um2",
        "ratios",
    ):
        assert key in doc
    assert doc["timing"] == dataclasses.asdict(_timing(TINY, 1))
    assert set(doc["ratios"]["tops_per_w"]) >= {"gpu", "fpga", "asic", "digital"}
    assert set(doc["sensitivity"]) == {"adc_bits", "array_size", "hidden_size", "lanes"}


def test_bench_command_rejects_a_bad_technology_file(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(TINY.to_json())
    tech = _write(tmp_path, _edited('pulse = { value = 10.0, unit = "ns" }', 'pulse = { value = 10.0, unit = "s" }'))
    out = tmp_path / "out"
    rc, stdout, err = _bench(capsys, "--config", cfg, "--tech", tech, "--out", out)
    assert rc == 2 and stdout == ""
    assert err == f"nvmlstm bench: error: {tech}: nvm.pulse: unit must be 'ns', not 's'\n"
    assert not out.exists()
    rc, _, err = _bench(capsys, "--config", cfg, "--lanes", 3, "--out", out)
    assert rc == 2 and err == "nvmlstm bench: error: lanes must be an integer from 1 to hidden_size (2), not 3\n"


def test_bench_command_reads_an_rtl_directory(tmp_path, capsys):
    """--rtl takes config, lanes and cycles from the manifest, and refuses one whose cycles are not the
    formula's (a tampered manifest)."""
    from nvmlstm.gen import generate_rtl

    rtl = tmp_path / "rtl"
    generate_rtl(rtl, TINY, lanes=1, macro_latency=3, synth=False)
    rc, _, err = _bench(capsys, "--rtl", rtl, "--no-charts", "--out", tmp_path / "o")
    assert rc == 0, err
    doc = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert doc["timing"] == dataclasses.asdict(_timing(TINY, 1, 3))
    assert doc["source"] == {"kind": "rtl", "dir": "rtl"}
    man = json.loads((rtl / "manifest.json").read_text())
    man["latency"]["timestep_cyc"]["value"] += 1
    (rtl / "manifest.json").write_text(json.dumps(man))
    rc, _, err = _bench(capsys, "--rtl", rtl, "--no-charts", "--out", tmp_path / "p")
    assert rc == 2 and "differ from the cycle formula" in err and not (tmp_path / "p").exists()
    rc, _, err = _bench(capsys, "--rtl", rtl, "--lanes", 1, "--out", tmp_path / "p")
    assert rc == 2 and "do not combine them with --rtl" in err


# ------------------------------------------------------------------------------------------------------
# Charts: readable (no text over text), colours named in a legend, one quantity with its unit per axis
def _drawn_texts(fig) -> list:
    """(text, display bbox) of every text the Agg renderer actually draws for ``fig`` (tick labels outside the
    view are never drawn, so they are not collected)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg

    canvas = FigureCanvasAgg(fig)
    drawn = {}
    orig = RendererAgg.draw_text

    def record(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and s.strip():
            drawn[id(mtext)] = mtext
        return orig(self, gc, x, y, s, prop, angle, ismath, mtext)

    RendererAgg.draw_text = record
    try:
        canvas.draw()
    finally:
        RendererAgg.draw_text = orig
    renderer = canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn.values()]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of drawn texts whose boxes overlap by more than a pixel each way."""
    boxes = _drawn_texts(fig)
    out = []
    for i, (s1, b1) in enumerate(boxes):
        for s2, b2 in boxes[i + 1 :]:
            if min(b1.x1, b2.x1) - max(b1.x0, b2.x0) > 1 and min(b1.y1, b2.y1) - max(b1.y0, b2.y0) > 1:
                out.append((s1, s2))
    return out


@pytest.fixture(scope="module")
def bench_doc():
    from nvmlstm.bench.report import bench_report
    from nvmlstm.timing import accelerator_timing

    return bench_report(TINY, load_technology(), accelerator_timing(2), lanes=1, clock_mhz=200.0)


def test_the_overlap_checker_catches_the_old_efficiency_labels():
    # The chart the issue complained about: every design's name written next to its point. Two designs lie
    # close together (CHIPMUNK at peak throughput and the IBM 64-core chip), so their names overlap.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in load_literature():
        if r["tops_per_w"] is not None and r["tops_per_mm2"] is not None:
            ax.scatter(r["tops_per_w"], r["tops_per_mm2"])
            ax.annotate(r["design"], (r["tops_per_w"], r["tops_per_mm2"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    assert ("CHIPMUNK (peak throughput)", "IBM 64-core PCM IMC chip") in overlapping_texts(fig)
    plt.close(fig)


def test_efficiency_chart_names_every_colour_and_has_no_overlapping_text(bench_doc):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from nvmlstm.bench.report import KIND_COLORS, efficiency_figure

    fig = efficiency_figure(bench_doc)
    assert overlapping_texts(fig) == []
    (legend,) = fig.legends
    entries = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles)}
    for r in bench_doc["literature"]:
        if r["tops_per_w"] is None:
            continue  # no point to name
        name = next(k for k in entries if k.startswith(f"{r['kind'].upper()}: {r['design']}"))
        h = entries[name]
        color = h.get_color() if hasattr(h, "get_color") else h.get_facecolor()[0]
        assert to_rgba(color) == to_rgba(KIND_COLORS[r["kind"]]), name
    assert "this build" in entries and any(k.startswith("paper's claim") for k in entries)
    ax = fig.axes[0]
    assert "TOPS/W" in ax.get_xlabel() and "TOPS/mm^2" in ax.get_ylabel()
    plt.close(fig)


def test_sensitivity_chart_has_one_quantity_with_its_unit_per_axis(bench_doc):
    import matplotlib.pyplot as plt

    from nvmlstm.bench.report import sensitivity_figure

    fig = sensitivity_figure(bench_doc)
    assert overlapping_texts(fig) == []
    rows = [
        ("TOPS/W", "tops_per_w", 1),
        ("TOPS/mm^2", "tops_per_mm2", 1),
        ("array utilization (%)", "array_utilization", 100),
    ]
    grid = fig.axes
    assert len(grid) == 3 * 4
    for i, ax in enumerate(grid):
        label, key, factor = rows[i // 4]
        if i % 4 == 0:
            assert ax.get_ylabel() == label
        sweep = list(bench_doc["sensitivity"].values())[i % 4]
        data = [ln for ln in ax.get_lines() if ln.get_label() != "as built"]
        assert len(data) == 1  # one quantity on this axis
        assert list(data[0].get_ydata()) == pytest.approx([factor * p[key] for p in sweep])
    assert [ax.get_xlabel() for ax in grid[-4:]] == [
        "ADC bits (head ADCs too)",
        "array size (rows x columns)",
        "hidden size",
        "lanes",
    ]
    plt.close(fig)


def test_bench_md_tests_the_papers_claim(bench_doc):
    from nvmlstm.bench.report import render_markdown

    text = render_markdown(bench_doc)
    w = bench_doc["vs_digital"]["tops_per_w"]
    assert "## The paper's claim" in text
    assert f"TOPS/W: {w['best']['ratio']:.3g}x the best digital design ({w['best']['design']}" in text
    assert f"with every design scaled to {bench_doc['feature_nm']:g} nm" in text


# ------------------------------------------------------------------------------------------------------
# The sky130 sign-off: the clock from the timing analysis, the digital energy from the measured power
def timing_entry(target: float = 200.0, wns_tt: float = -2.4, wns_ss: float = -4.0) -> dict:
    """A ``signoff.timing`` as `nvmlstm generate --pdk sky130` writes it (docs/signoff.md), made up."""
    period = 1e3 / target

    def corner(cond: str, wns: float) -> dict:
        path = {"start": "ctrl/state_reg[1]", "end": "lane0/gate_reg[3]", "cells": 31, "delay_ns": period - wns}
        return {
            "conditions": cond,
            "library": "lib",
            "macro_library": "macro.lib",
            "wns_ns": wns,
            "tns_ns": min(wns, 0.0) * 10,
            "whs_ns": 0.05,
            "met": wns >= 0,
            "fmax_mhz": round(1e3 / (period - wns), 3),
            "critical_path": path,
            "report": "timing.rpt",
            "sdf": "top.sdf",
        }

    return {
        "tool": "OpenSTA 2.0.17",
        "clock_mhz": target,
        "period_ns": period,
        "corners": {"tt": corner("tt, 25 C, 1.80 V", wns_tt), "ss": corner("ss, 100 C, 1.60 V", wns_ss)},
    }


def power_entry(timestep_cyc: int, clock_mhz: float = 125.0, parts=(4.0, 1.5, 0.01)) -> dict:
    """A ``signoff.power`` as `nvmlstm power` writes it, made up (energy = total x timestep cycles / clock)."""
    total = sum(parts)
    return {
        "corner": "tt",
        "clock_mhz": clock_mhz,
        "period_ns": 1e3 / clock_mhz,
        "activity": {"source": "gate-level simulation (icarus) of vec", "sequences": 4, "timesteps": 8},
        "internal_mw": parts[0],
        "switching_mw": parts[1],
        "leakage_mw": parts[2],
        "total_mw": total,
        "timestep_cyc": timestep_cyc,
        "energy_per_timestep_pj": total * timestep_cyc * 1e3 / clock_mhz,
        "report": "power_tt.rpt",
    }


VDD = {"tt": 1.8, "ss": 1.6}


def test_the_clock_comes_from_the_timing_analysis():
    from nvmlstm.bench.signoff import choose_clock, parse_timing

    t = parse_timing(timing_entry(wns_tt=-2.4, wns_ss=-4.0), "m.json")
    c = choose_clock(t, None)
    assert c.mhz == pytest.approx(1e3 / 7.4, rel=1e-4) and c.conservative_mhz == pytest.approx(1e3 / 9, rel=1e-4)
    assert c.source == "timing analysis" and c.text.startswith("clock: 135.1 MHz nominal = min(target 200 MHz, tt fmax")
    # A corner that meets the target runs at the target, not faster: the clock the design was constrained for.
    c = choose_clock(parse_timing(timing_entry(wns_tt=1.0, wns_ss=-1.0), "m.json"), None)
    assert c.mhz == 200.0 and c.conservative_mhz == pytest.approx(1e3 / 6, rel=1e-4)
    # An explicit clock overrides the analysis and says so, and whether the analysis says it holds.
    c = choose_clock(t, 150.0)
    assert (c.mhz, c.conservative_mhz, c.source) == (150.0, None, "--clock-mhz")
    assert c.text.endswith("above the tt fmax: timing violated at this clock")
    # Without an analysis (none, or the string a manifest has when it was not made): 200 MHz, said to be assumed.
    for entry in (None, "skipped: sta not found: sudo apt-get install -y opensta"):
        c = choose_clock(parse_timing(entry, "m.json"), None)
        assert (c.mhz, c.text) == (200.0, "clock: assumed 200 MHz (no timing analysis)")


def test_a_met_corner_below_its_first_fmax_estimate_is_refused():
    """A met corner's fmax is at least 1000 / (period - wns) (gen/sta.py settled_fmax_mhz), never below."""
    from nvmlstm.bench.signoff import SignoffEntryError, parse_timing

    entry = timing_entry(wns_tt=1.0, wns_ss=-1.0)
    parse_timing(entry, "m.json")
    entry["corners"]["tt"]["fmax_mhz"] = 240.0  # 1000 / (5 - 1) = 250
    with pytest.raises(SignoffEntryError, match=r"^m.json: signoff.timing.corners.tt.fmax_mhz: 240 is below 1000 / "):
        parse_timing(entry, "m.json")
    entry["corners"]["tt"]["fmax_mhz"] = 270.0  # above: a port path's budget grew with a shorter period
    assert parse_timing(entry, "m.json")["corners"]["tt"]["fmax_mhz"] == 270.0


def _broken(entry: dict, path: str, value) -> dict:
    """``entry`` with the dotted ``path`` set to ``value`` (deleted when value is ``...``)."""
    entry = json.loads(json.dumps(entry))
    *parents, last = path.split(".")
    d = entry
    for p in parents:
        d = d[p]
    if value is ...:
        del d[last]
    else:
        d[last] = value
    return entry


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("corners.ss", ..., "signoff.timing.corners.ss: missing"),
        ("corners.tt.fmax_mhz", "fast", "signoff.timing.corners.tt.fmax_mhz: expected a finite number, not 'fast'"),
        (
            "corners.tt.fmax_mhz",
            250.0,
            r"signoff.timing.corners.tt.fmax_mhz: 250 is above the clock, 200 MHz, of a corner that does not meet it",
        ),
        ("corners.tt.met", True, r"signoff.timing.corners.tt.met: True contradicts wns_ns -2.4 \(met means >= 0\)"),
        (
            "corners.tt.critical_path.cells",
            2.5,
            "signoff.timing.corners.tt.critical_path.cells: expected an integer >= 0, not 2.5",
        ),
        ("period_ns", 4.0, r"signoff.timing.period_ns: 4 disagrees with 1000 / clock_mhz = 5"),
        ("corners", [], "signoff.timing.corners: expected a JSON object, not list"),
    ],
)
def test_a_malformed_timing_entry_is_one_line(path, value, message):
    from nvmlstm.bench.signoff import SignoffEntryError, parse_timing

    parse_timing(timing_entry(), "rtl/manifest.json")  # the entry the cases break is fine
    with pytest.raises(SignoffEntryError, match=rf"^rtl/manifest.json: {message}"):
        parse_timing(_broken(timing_entry(), path, value), "rtl/manifest.json")


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("total_mw", 9.0, r"signoff.power.total_mw: 9 disagrees with internal_mw \+ switching_mw \+ leakage_mw"),
        ("energy_per_timestep_pj", 1.0, "signoff.power.energy_per_timestep_pj: 1 disagrees with total_mw x"),
        ("timestep_cyc", 19, r"signoff.power.timestep_cyc: 19, but the manifest's latency is 18 cycles per timestep"),
        ("corner", "ff", "signoff.power.corner: expected one of tt, ss, not 'ff'"),
        ("clock_mhz", -1, r"signoff.power.clock_mhz: expected a finite number > 0, not -1"),
        ("internal_mw", ..., "signoff.power.internal_mw: missing"),
    ],
)
def test_a_malformed_power_entry_is_one_line(path, value, message):
    from nvmlstm.bench.signoff import SignoffEntryError, parse_power

    assert parse_power(power_entry(18), "m.json", timestep_cyc=18, vdd_by_corner=VDD).energy_pj > 0
    with pytest.raises(SignoffEntryError, match=rf"^m.json: {message}"):
        parse_power(_broken(power_entry(18), path, value), "m.json", timestep_cyc=18, vdd_by_corner=VDD)


def test_the_measured_periphery_energy_replaces_the_digital_terms():
    from nvmlstm.bench.model import DIGITAL_TERMS
    from nvmlstm.bench.signoff import parse_power

    tech = load_technology()
    timing = _timing(TINY, 1)
    model = evaluate(TINY, tech, timing, clock_mhz=200.0)
    m = parse_power(power_entry(timing.timestep_cyc), "m", timestep_cyc=timing.timestep_cyc, vdd_by_corner=VDD)
    r = evaluate(TINY, tech, timing, clock_mhz=200.0, measured_digital=m)
    e, d = r["energy_breakdown_pj"], r["digital_energy_pj"]
    # sky130 (130 nm, tt 1.8 V) to the default node (32 nm, 0.9 V) by the model's own digital rule.
    factor = (32 / 130) * (0.9 / 1.8) ** 2
    assert d["measured"] == pytest.approx(5.51 * timing.timestep_cyc * 1e3 / 125.0)
    assert e["digital_periphery"] == pytest.approx(factor * d["measured"]) == d["measured_at_model_node"]
    assert not set(DIGITAL_TERMS) & set(e) and d["source"] == "measured"
    # The model's estimate is kept beside it, and is what the model alone says.
    assert d["model"] == pytest.approx(sum(model["energy_breakdown_pj"][k] for k in DIGITAL_TERMS))
    assert model["digital_energy_pj"]["source"] == "model" and model["digital_energy_pj"]["measured"] is None
    analog = sum(model["energy_breakdown_pj"][k] for k in ("adc", "dac", "nvm_cells"))
    assert r["energy_pj_per_step"] == pytest.approx(analog + factor * d["measured"])
    assert d["tops_per_w"]["model"] == pytest.approx(model["tops_per_w"])
    assert d["tops_per_w"]["measured"] == pytest.approx(r["tops_per_w"])
    assert "(32/130) x (0.9/1.8)^2" in d["scaling"]


def _rtl_with_signoff(tmp_path, timing=None, power=None) -> Path:
    from nvmlstm.gen import generate_rtl

    rtl = tmp_path / "rtl"
    generate_rtl(rtl, TINY, lanes=1, synth=False)
    man = json.loads((rtl / "manifest.json").read_text())
    man["signoff"] = {"pdk": "sky130", "area_um2": 5000.0, "timing": timing or "not modelled"}
    if power is not None:
        man["signoff"]["power"] = power(man["latency"]["timestep_cyc"]["value"])
    (rtl / "manifest.json").write_text(json.dumps(man))
    return rtl


def test_bench_command_takes_clock_and_digital_energy_from_the_signoff(tmp_path, capsys):
    rtl = _rtl_with_signoff(tmp_path, timing_entry(), power_entry)
    rc, out, err = _bench(capsys, "--rtl", rtl, "--no-charts", "--out", tmp_path / "o")
    assert rc == 0, err
    doc = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert doc["clock"]["source"] == "timing analysis" and doc["clock_mhz"] == pytest.approx(135.135)
    assert set(doc["corners"]) == {"nominal", "conservative"}
    nom, con = doc["corners"]["nominal"], doc["corners"]["conservative"]
    assert con["clock_mhz"] == pytest.approx(111.111) and con["gops"] / nom["gops"] == pytest.approx(111.111 / 135.135)
    assert nom["gops"] == pytest.approx(doc["gops"]) and con["tops_per_w"] == doc["tops_per_w"]
    assert doc["digital_energy_pj"]["source"] == "measured"
    assert "[bench] clock: 135.1 MHz nominal" in out and "[bench] digital energy: measured" in out
    md = (tmp_path / "o" / "bench.md").read_text()
    assert "| figure | nominal (135.1 MHz) | conservative (111.1 MHz) |" in md and "**measured**" in md
    # An explicit clock overrides the analysis and says so.
    rc, out, err = _bench(capsys, "--rtl", rtl, "--no-charts", "--clock-mhz", 100, "--out", tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "bench.json").read_text())
    assert rc == 0 and doc["clock_mhz"] == 100.0 and list(doc["corners"]) == ["nominal"]
    assert "[bench] clock: 100 MHz (--clock-mhz); the timing analysis gives tt fmax 135.1 MHz" in out
    # A malformed entry is one line naming the file and the key, and writes nothing.
    man = json.loads((rtl / "manifest.json").read_text())
    man["signoff"]["timing"]["corners"]["ss"]["fmax_mhz"] = None
    (rtl / "manifest.json").write_text(json.dumps(man))
    rc, out, err = _bench(capsys, "--rtl", rtl, "--no-charts", "--out", tmp_path / "p")
    assert (rc, out) == (2, "") and not (tmp_path / "p").exists()
    assert err == (
        f"nvmlstm bench: error: {rtl}/manifest.json: signoff.timing.corners.ss.fmax_mhz: expected a finite "
        f"number, not None\n"
    )


def test_bench_command_without_timing_says_the_clock_is_assumed(tmp_path, capsys):
    rtl = _rtl_with_signoff(tmp_path)
    rc, out, err = _bench(capsys, "--rtl", rtl, "--no-charts", "--out", tmp_path / "o")
    assert rc == 0, err
    assert "[bench] clock: assumed 200 MHz (no timing analysis)" in out
    doc = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert doc["clock_mhz"] == 200.0 and doc["clock"]["source"] == "assumed"
    assert doc["digital_energy_pj"]["source"] == "model"
    assert "Clock: assumed 200 MHz (no timing analysis)." in (tmp_path / "o" / "bench.md").read_text()
