"""The generated Verilog against the golden model, bit for bit, on Icarus Verilog and Verilator (cocotb).

For every configuration of `sim.cases.REGRESSION_CASES` (the ids spell sizes, bit widths, table
parameters, array size and tile counts, lanes and macro latency): a random model and vectors from the
golden model, the RTL from `gen.generate_rtl` (no synthesis), one cocotb simulation per simulator under
run-time stress (input gaps, output backpressure, sequences back to back or with idle cycles, sequences
split into chunks continued without ``clear``), and the assertion that every output code and every
layer's h code of every timestep equals the golden trace, every beat arrived once and ``cycles`` at each
``done`` is the documented latency plus the stall cycles. A separate test per case checks that the vectors
exercise the datapath (codes vary; ADC rails or cell limits are reached): vectors that do not prove little.

A missing simulator skips its tests with the install command, unless ``NVMLSTM_REQUIRE_SIMS`` names it.
Builds are cached (``NVMLSTM_SIM_CACHE``); stress settings can be overridden with ``NVMLSTM_SIM_SEED``,
``NVMLSTM_SIM_GAP_PROB``, ``NVMLSTM_SIM_BACKPRESSURE_PROB``, ``NVMLSTM_SIM_IDLE_MAX``,
``NVMLSTM_SIM_SPLIT_PROB``. docs/regression.md has the details.
"""

from __future__ import annotations

import pytest

from nvmlstm.golden import default_config, load_vectors
from nvmlstm.sim import SIMULATORS, run_regression, simulator_or_skip
from nvmlstm.sim.cases import REGRESSION_CASES, case_by_name, exercise_problems

CASES = REGRESSION_CASES
IDS = [c.id for c in CASES]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """RTL and vector directories per case, made once per session and shared by both simulators."""
    made: dict[str, tuple] = {}

    def get(case):
        if case.name not in made:
            made[case.name] = case.prepare(tmp_path_factory.mktemp(f"case-{case.name}"))
        return made[case.name]

    return get


def failure_text(rep: dict) -> str:
    """What went wrong, in one paragraph, for an assertion message."""
    parts = [f"{rep['simulator']}: {rep['mismatches']} of {rep['values_compared']} values differ"]
    if rep["first_mismatch_text"]:
        parts.append(f"first at {rep['first_mismatch_text']}")
    parts.append(f"beats {rep['beats']}")
    if rep["protocol_errors"]:
        parts.append(f"protocol: {rep['protocol_errors'][:3]}")
    if rep.get("waves"):
        parts.append(f"waves {rep['waves']}")
    parts.append(f"log {rep.get('log')}")
    return "; ".join(parts)


def test_cases_cover_the_required_configurations():
    """The default regression holds the configurations the issue names (a guard against trimming it)."""
    assert len(CASES) >= 8
    assert len(set(IDS)) == len(IDS)
    d = case_by_name("default")
    assert d.cfg() == default_config() and d.lanes == default_config().hidden_size
    cfgs = {c.name: c.cfg() for c in CASES}
    assert any(c.row_tiles(c.layer_rows(0)) > 1 and c.col_tiles(c.layer_cols) > 1 for c in cfgs.values())
    assert any(c.num_layers >= 2 for c in cfgs.values())
    assert any(c.hidden_size % case.lanes for case, c in zip(CASES, cfgs.values()))
    assert any((c.weight_bits, c.dac_bits, c.adc_bits) == (2, 3, 5) for c in cfgs.values())
    assert any((c.weight_bits, c.dac_bits, c.adc_bits) == (6, 8, 7) for c in cfgs.values())
    assert any(c.head_adc_bits_eff != c.adc_bits for c in cfgs.values())
    assert any((c.frac_bits, c.lut_bits, c.lut_frac) != (7, 8, 4) for c in cfgs.values())
    assert {case.macro_latency for case in CASES} >= {1, 2, 3}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vectors_exercise_the_datapath(case, prepared):
    _, vec = prepared(case)
    doc, trace = load_vectors(vec)
    problems = exercise_problems(doc["config"], trace)
    assert not problems, f"{case.id}: the vectors prove little ({'; '.join(problems)}): pick another seed"


@pytest.mark.slow(3)  # scheduling hint: about 3 minutes for all cases (tests/conftest.py)
@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bit_exact(case, simulator, prepared):
    simulator_or_skip(simulator)
    rtl, vec = prepared(case)
    cfg = case.cfg()
    rep = run_regression(rtl, vec, simulator, stress=case.stress.from_env())
    assert rep["passed"], failure_text(rep)
    # What "passed" rests on, spelled out:
    per_beat = cfg.output_size + cfg.num_layers * cfg.hidden_size
    n_beats = case.sequences * case.steps
    assert rep["bit_exact"] and rep["first_mismatch"] is None and rep["mismatches"] == 0
    assert rep["values_compared"] == n_beats * per_beat
    assert rep["beats"] == {"expected": n_beats, "received": n_beats, "missing": 0, "extra": 0, "duplicate": 0}
    assert rep["protocol_errors"] == [] and rep["protocol_error_count"] == 0
    c = rep["cycles"]
    assert c["done_sum"] == c["expected_done_sum"] > 0
    assert rep["runs"] >= case.sequences
    assert rep["simulator"] == simulator
