"""``nvmlstm sim``: exit status 0 only when every value matched, 1 with the first difference printed, 2 with
one line on stderr when the run cannot start (vectors of another config, a missing simulator, bad options),
and no build or simulation in that case."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run

from nvmlstm.golden import load_model, load_vectors
from nvmlstm.golden.io import save_vectors
from nvmlstm.sim import simulator_or_skip
from nvmlstm.sim.cases import case_by_name


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """RTL and vectors of two small regression cases (different configs)."""
    root = tmp_path_factory.mktemp("cli")
    return {name: case_by_name(name).prepare(root / name) for name in ("multitile", "lanes3of7")}


def test_sim_passes_and_reports(dirs, tmp_path, capsys):
    simulator_or_skip("icarus")
    rtl, vec = dirs["multitile"]
    rc, out, err = run(
        capsys,
        "sim",
        "--rtl",
        rtl,
        "--vectors",
        vec,
        "--simulator",
        "icarus",
        "--seed",
        3,
        "--gap-prob",
        0.4,
        "--backpressure-prob",
        0.4,
        "--split-prob",
        0.5,
        "--idle-max",
        2,
        "--report",
        tmp_path / "r.json",
    )
    assert rc == 0, out + err
    case = case_by_name("multitile")
    cfg = case.cfg()
    n = case.sequences * case.steps * (cfg.output_size + cfg.num_layers * cfg.hidden_size)
    assert f"icarus: {n} values compared" in out and "PASS: bit exact" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["bit_exact"] and rep["values_compared"] == n and rep["first_mismatch"] is None
    assert rep["stress"]["seed"] == 3 and rep["stress"]["gap_prob"] == 0.4
    assert rep["cycles"]["done_sum"] == rep["cycles"]["expected_done_sum"]
    assert rep["cycles"]["simulated"] > rep["cycles"]["done_sum"]
    assert rep["run_dir"] is None  # a passing run leaves no temporary files
    assert rep["log"] is None  # and points at none of them
    # One simulator version, the one the build cache is keyed on (not cocotb's spelling of it besides).
    assert rep["simulator_version"].startswith("Icarus Verilog version ")
    assert not [k for k in rep if k.startswith("simulator_product")]


def test_sim_mismatch_exits_1_and_names_it(dirs, tmp_path, capsys):
    simulator_or_skip("icarus")
    rtl, vec = dirs["multitile"]
    doc, arrays = load_vectors(vec)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    arrays["l0_h"][2, 4, 5] += 1 if arrays["l0_h"][2, 4, 5] < 7 else -1
    bad = tmp_path / "vec"
    bad.mkdir()
    save_vectors(bad, load_model(vec / "model.npz"), arrays)
    for f in ("model.npz", "model.json"):
        (bad / f).write_bytes((vec / f).read_bytes())
    rc, out, err = run(
        capsys,
        "sim",
        "--rtl",
        rtl,
        "--vectors",
        bad,
        "--simulator",
        "icarus",
        "--work-dir",
        tmp_path / "work",
        "--report",
        tmp_path / "r.json",
    )
    assert rc == 1, out + err
    assert "MISMATCH: 1 of" in out and "first at sequence 2, timestep 4, layer 0 h[5]: expected" in out
    assert "waveforms: " in out and (tmp_path / "work" / "waves" / "waves.vcd").is_file()
    assert out.rstrip().endswith("FAIL")
    assert json.loads((tmp_path / "r.json").read_text())["log"] == str(tmp_path / "work" / "sim.log")
    assert (tmp_path / "work" / "sim.log").is_file()  # a kept run's log is there to read


def test_vectors_of_another_config_are_refused_before_simulating(dirs, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NVMLSTM_SIM_CACHE", str(cache))
    rtl, _ = dirs["multitile"]
    _, vec = dirs["lanes3of7"]
    rc, out, err = run(capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nvmlstm sim: error: ")
    assert "does not match" in err and "another config" in err
    assert not cache.exists()  # nothing was built


def test_missing_simulator_is_one_line_with_the_install_hint(dirs, tmp_path, capsys, monkeypatch):
    rtl, vec = dirs["multitile"]
    monkeypatch.setenv("PATH", str(tmp_path))
    rc, out, err = run(capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus")
    assert rc == 2 and err.count("\n") == 1
    assert "icarus not found" in err and "apt-get install -y iverilog" in err


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--gap-prob", "1"], "expected a number from 0 to 0.95"),
        (["--simulator", "vcs"], "invalid choice"),
        (["--seed", "-1"], "expected a non-negative integer"),
    ],
)
def test_bad_options(dirs, capsys, args, msg):
    rtl, vec = dirs["multitile"]
    argv = ["sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus"]
    if args[0] == "--simulator":
        argv = argv[:-2]
    rc, out, err = run(capsys, *argv, *args)
    assert rc == 2 and msg in err and err.count("\n") == 1


def test_waves_on_request(dirs, tmp_path, capsys):
    simulator_or_skip("icarus")
    rtl, vec = dirs["lanes3of7"]
    rc, out, err = run(
        capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus", "--waves", "--work-dir", tmp_path / "w"
    )
    assert rc == 0, out + err
    vcd = tmp_path / "w" / "waves.vcd"
    assert f"waveforms: {vcd}" in out
    text = vcd.read_text()
    assert text.lstrip().startswith("$") and "nvm_lstm_top" in text and "out__payload" in text


def test_relative_work_dir(dirs, tmp_path, capsys, monkeypatch):
    """A relative --work-dir (the flow passes one) names the same directory once the simulator runs inside it."""
    simulator_or_skip("icarus")
    rtl, vec = dirs["multitile"]
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "sim", "--rtl", rtl, "--vectors", vec, "--simulator", "icarus", "--work-dir", "w/run")
    assert rc == 0, out + err
    assert (tmp_path / "w/run/sim.log").is_file() and (tmp_path / "w/run/settings.json").is_file()
