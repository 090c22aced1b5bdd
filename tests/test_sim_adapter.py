"""The one module that relies on cocotb internals, `nvmlstm.sim.cocotb_adapter`, fails loudly when cocotb
changes.

* The private methods it overrides (`PRIVATE_API`) still exist in ``cocotb_tools.runner`` with the
  parameters it assumes.
* The commands cocotb's runner composes still have the shape its additions rely on (checked on a dry run:
  the commands are recorded, not run): cocotb's ``--public-flat-rw`` and ``--trace`` come before the
  build arguments that override them, the Verilator build has one ``make`` command to extend, and the
  ``vvp`` command ends with cocotb's dumper flag so that an appended ``-vcd`` wins.
* An addition for a program cocotb did not run is an error, not a silent no-op.
* The installed cocotb is in the supported range, which equals the project's requirement; another version
  and the environment variables that would override the waveform settings are refused with one line.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path

import pytest
import tomllib

from nvmlstm.sim import cocotb_adapter
from nvmlstm.sim.build import TIMESCALE, VERILATOR_ARGS
from nvmlstm.sim.cocotb_adapter import PRIVATE_API, SUPPORTED_COCOTB, AdapterError, check_cocotb, make_runner
from nvmlstm.sim.simulators import simulator_or_skip

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def design(tmp_path):
    src = tmp_path / "t.v"
    src.write_text("module t(input clk); endmodule\n")
    return src


def test_the_private_methods_it_overrides_still_exist():
    import cocotb_tools.runner as cr

    for (cls_name, method), params in PRIVATE_API.items():
        cls = getattr(cr, cls_name, None)
        assert cls is not None, f"cocotb_tools.runner.{cls_name} is gone: update sim/cocotb_adapter.py"
        fn = getattr(cls, method, None)
        assert callable(fn), f"cocotb_tools.runner.{cls_name}.{method} is gone: update sim/cocotb_adapter.py"
        assert tuple(inspect.signature(fn).parameters) == params, (
            f"cocotb_tools.runner.{cls_name}.{method} changed its parameters: update sim/cocotb_adapter.py"
        )


def test_cocotb_version_is_supported_and_is_the_project_requirement():
    check_cocotb()
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = [
        r
        for deps in [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
        for r in deps
        if r.replace(" ", "").startswith("cocotb") and not r.startswith("cocotb-")
    ]
    assert reqs and all(r.replace(" ", "") == f"cocotb{SUPPORTED_COCOTB}" for r in reqs), (
        f"pyproject.toml requires {reqs}; sim/cocotb_adapter.py supports cocotb{SUPPORTED_COCOTB}"
    )


@pytest.mark.parametrize("version", ["2.0.1", "2.2.0", "3.0.0", "1.9.2"])
def test_another_cocotb_is_refused(monkeypatch, version):
    monkeypatch.setattr(cocotb_adapter, "cocotb_version", lambda: version)
    with pytest.raises(AdapterError) as exc:
        check_cocotb()
    assert str(exc.value) == (
        f"cocotb {version} is not supported (sim/cocotb_adapter.py was checked against "
        f"cocotb{SUPPORTED_COCOTB}): install it with `.venv/bin/pip install "
        f"'cocotb{SUPPORTED_COCOTB}'`"
    )
    with pytest.raises(AdapterError, match="is not supported"):
        make_runner("icarus")


@pytest.mark.parametrize("var", ["WAVES", "GUI"])
def test_cocotb_waveform_overrides_are_refused(monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(AdapterError) as exc:
        check_cocotb()
    assert str(exc.value) == (
        f"the environment sets {var}, which would override the waveform settings of every "
        f"cocotb build and run: unset it (`nvmlstm sim --waves` records waveforms)"
    )


def test_bad_adapter_arguments():
    with pytest.raises(AdapterError, match="no cocotb runner adapted for 'questa'"):
        make_runner("questa")
    with pytest.raises(AdapterError, match="executable applies to the Verilator runner only"):
        make_runner("icarus", executable="/bin/true")


def test_verilator_build_commands_have_the_expected_shape(design, tmp_path):
    runner = make_runner(
        "verilator",
        env={"VERILATOR_ROOT": "/opt/vroot"},
        path_first=["/opt/vroot/bin"],
        append={"make": ["OPT_FAST=-O0"]},
        executable="/opt/vroot/bin/verilator",
        execute=False,
    )
    runner.build(
        sources=[design],
        hdl_toplevel="t",
        build_args=[*VERILATOR_ARGS, "--trace-fst"],
        build_dir=tmp_path / "b",
        always=True,
        timescale=TIMESCALE,
        waves=True,
    )
    verilate, make = runner.commands
    assert verilate[0] == "/opt/vroot/bin/verilator"
    # Verilator's last option wins: ours must follow cocotb's
    assert verilate.index("--public-flat-rw") < verilate.index("--no-public-flat-rw")
    assert verilate.index("--trace") < verilate.index("--trace-fst")
    assert make[0] == "make" and "VM_TRACE=1" in make and make[-1] == "OPT_FAST=-O0"
    assert runner.env["VERILATOR_ROOT"] == "/opt/vroot"
    assert runner.env["PATH"].startswith("/opt/vroot/bin" + os.pathsep)


def test_icarus_run_command_ends_with_the_appended_dumper(design, tmp_path):
    simulator_or_skip("icarus")  # cocotb's Icarus runner checks for iverilog when it is made
    runner = make_runner("icarus", append={"vvp": ["-vcd"]}, execute=False)
    with contextlib.suppress(SystemExit):  # under pytest cocotb exits when the (not run) test left no results
        runner.test(
            test_module="m",
            hdl_toplevel="t",
            hdl_toplevel_lang="verilog",
            build_dir=tmp_path,
            test_dir=tmp_path,
            plusargs=["+nvmlstm_settings=x.json"],
            results_xml=str(tmp_path / "r.xml"),
        )
    (vvp,) = runner.commands
    assert "vvp" in vvp and "+nvmlstm_settings=x.json" in vvp
    assert vvp[-2:] == ["-none", "-vcd"]  # vvp's last dumper flag wins


def test_an_addition_for_a_program_cocotb_did_not_run_is_an_error(design, tmp_path):
    simulator_or_skip("icarus")
    runner = make_runner("icarus", append={"make": ["X=1"]}, execute=False)
    with pytest.raises(AdapterError, match=r"ran 0 `make` commands where sim/cocotb_adapter.py expects one"):
        runner.build(sources=[design], hdl_toplevel="t", build_dir=tmp_path / "b", always=True, timescale=TIMESCALE)
