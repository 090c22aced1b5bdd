"""Activity-based power (docs/signoff.md): VCD activity counts, the OpenSTA report, the manifest entry, and the
power of an idle window against a busy one of the same gate-level run.

The OpenSTA tests need the sky130 PDK, OpenSTA and the characterized library: without them they skip with the
install line, unless ``NVMLSTM_REQUIRE_PDK=sky130`` (then they fail).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from nvmlstm.gen import liberty as lib
from nvmlstm.gen.power import (
    PowerError,
    parse_power_report,
    power_commands,
    read_activities,
    read_activity,
    write_activity_file,
)
from nvmlstm.power_cmd import measure_power, power_entry

pytestmark = pytest.mark.slow(2)

#: clk period 10 (ps), start rises at 5, done pulses 45..55; cell _1_ (A, Y), a 2-bit vector, a glitch.
VCD = """$timescale 1ps $end
$scope module nvm_lstm_top $end
$var wire 1 ! clk $end
$var wire 1 " start $end
$var wire 1 # done $end
$var wire 2 $ bus [1:0] $end
$scope module sub $end
$scope module _1_ $end
$var wire 1 % A $end
$var wire 1 & Y $end
$upscope $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
0"
0#
bxx $
x%
1&
$end
#5
1"
0%
b00 $
#10
1!
1%
0&
#15
0!
0"
0%
1&
b01 $
#20
1!
1%
0%
#25
0!
bx1 $
#30
1!
b10 $
#35
0!
#40
1!
0&
#45
0!
1#
#50
1!
#55
0!
0#
1&
#60
1!
#65
0!
#70
1!
"""


def _vcd(tmp_path: Path, text: str = VCD) -> Path:
    path = tmp_path / "w.vcd"
    path.write_text(text)
    return path


def test_vcd_activity_counts_exactly(tmp_path):
    acts = read_activities(_vcd(tmp_path))
    busy = acts["busy"]
    # busy: (5, 55]: rising clk edges at 10, 20, 30, 40, 50
    assert (busy.window, busy.start_ps, busy.end_ps, busy.cycles) == ("busy", 5, 55, 5)
    # A: 0 at 5, 1 at 10, 0 at 15; at 20 "1 then 0" in one timestamp settles to 0: no toggle
    assert busy.toggles["sub/_1_/A"] == 2 and busy.high_ps["sub/_1_/A"] == 5
    # Y: 1 (from 0), 0 at 10, 1 at 15, 0 at 40, 1 at 55
    assert busy.toggles["sub/_1_/Y"] == 4 and busy.high_ps["sub/_1_/Y"] == 5 + 25
    # bus[0]: 0 at 5, 1 at 15 (x1 at 25 keeps it), 0 at 30; bus[1]: 0, x at 25, 1 at 30 (0 -> x -> 1: one toggle)
    assert busy.toggles["bus[0]"] == 2 and busy.toggles["bus[1]"] == 1
    assert busy.high_ps["bus[0]"] == 15 and busy.high_ps["bus[1]"] == 25
    assert busy.toggles["clk"] == 10
    assert busy.per_cycle("sub/_1_/Y") == (4 / 5, 30 / 50)
    assert busy.per_cycle("clk") == (2.0, 0.5)
    idle = acts["idle"]  # (55, 70]: edges at 60, 70; Y rose at 55 (outside), stays 1
    assert (idle.start_ps, idle.end_ps, idle.cycles) == (55, 70, 2)
    assert idle.toggles["sub/_1_/Y"] == 0 and idle.high_ps["sub/_1_/Y"] == 15
    assert read_activity(_vcd(tmp_path), "idle").toggles == idle.toggles


def test_a_dump_begun_at_the_start_rise_counts_the_same(tmp_path):
    """``waves="from-start"`` (`nvmlstm.sim.build.ICARUS_WAVES`): the VCD begins at the rise of start with every
    value; the busy window and its counts are those of the full dump. A second variable on a net's id code
    (a cell pin on the net, as Icarus writes them) gets the net's counts."""
    head, body = VCD.split("#0\n", 1)
    late = body[body.index("#10\n") :]
    at_start = '#5\n$dumpvars\n0!\n1"\n0#\nb00 $\n0%\n1&\n$end\n'  # the values after time 5 settled
    alias = head.replace("$var wire 1 & Y $end\n$upscope $end\n", "$var wire 1 & Y $end\n$upscope $end\n"
                         "$scope module _2_ $end\n$var wire 1 % B $end\n$upscope $end\n")  # fmt: skip
    full = read_activities(_vcd(tmp_path, alias + "#0\n" + body))
    (tmp_path / "late").mkdir()
    late_acts = read_activities(_vcd(tmp_path / "late", alias + at_start + late))
    assert late_acts["busy"] == full["busy"] and late_acts["idle"] == full["idle"]
    assert full["busy"].toggles["sub/_2_/B"] == full["busy"].toggles["sub/_1_/A"] == 2
    assert full["busy"].high_ps["sub/_2_/B"] == 5


def test_a_dump_from_the_start_rise_is_icarus_only(tmp_path):
    from nvmlstm.sim import SimError, run_regression

    with pytest.raises(SimError, match=r"^waves='from-start' is an Icarus VCD option; use icarus$"):
        run_regression(tmp_path, tmp_path, "verilator", waves="from-start")
    with pytest.raises(SimError, match=r"^waves must be True, False, 'on-failure' or 'from-start', not 'all'$"):
        run_regression(tmp_path, tmp_path, "icarus", waves="all")


def test_activity_file_and_commands(tmp_path):
    act = read_activity(_vcd(tmp_path))
    n = write_activity_file(act, tmp_path / "a.txt")
    lines = (tmp_path / "a.txt").read_text().splitlines()
    assert n == len(lines) == len(act.toggles)
    assert "sub/_1_/Y\t0.8\t0.6" in lines and lines == sorted(lines)
    cmds = power_commands(tmp_path / "a.txt")
    assert any("sta::set_power_pin_activity" in c for c in cmds) and cmds[-1] == "report_power -digits 6"
    with pytest.raises(PowerError, match=r"^path .* holds a brace"):
        power_commands("/tmp/{x}")


def test_unknown_pin_and_bad_vcd_give_one_line(tmp_path):
    act = read_activity(_vcd(tmp_path))
    with pytest.raises(PowerError, match=r"^no simulated activity for pin 'sub/_2_/Y'$"):
        act.per_cycle("sub/_2_/Y")
    with pytest.raises(PowerError, match=r"^window must be one of busy, idle, not 'all'$"):
        read_activity(_vcd(tmp_path), "all")
    cases = {
        "truncated": VCD.replace("$enddefinitions $end", "$enddefinitions"),
        "garbage": "$scope module nvm_lstm_top $end\n$var wire 1 ! clk $end\n#zz\n",
        "no done": VCD.replace("$var wire 1 # done $end\n", "").replace("1#\n", "").replace("0#\n", ""),
        "never started": VCD.replace('1"\n', ""),
    }
    for name, text in cases.items():
        with pytest.raises(PowerError) as exc:
            read_activity(_vcd(tmp_path, text))
        msg = str(exc.value)
        assert "\n" not in msg and str(tmp_path) in msg, (name, msg)
    with pytest.raises(PowerError, match=r"cannot read the VCD"):
        read_activity(tmp_path / "missing.vcd")


REPORT = """nvmlstm-activity 120 130 7
Group                    Internal    Switching      Leakage        Total
                            Power        Power        Power        Power
------------------------------------------------------------------------
Sequential           2.528147e-06 3.928082e-05 3.709988e-07 4.217996e-05  67.7%
Combinational        1.768148e-06 8.589603e-06 9.759869e-06 2.011762e-05  32.3%
Macro                0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00   0.0%
Pad                  0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00   0.0%
------------------------------------------------------------------------
Total                4.296295e-06 4.787042e-05 1.013103e-05 6.229775e-05 100.0%
                             6.9%        76.8%        16.3%
"""


def test_report_totals_and_manifest_entry():
    t = parse_power_report(REPORT)
    assert t["total_mw"] == pytest.approx(6.229775e-2) and t["leakage_mw"] == pytest.approx(1.013103e-2)
    assert (t["pins_set"], t["pins"], t["ports_set"]) == (120, 130, 7)
    act = {"source": "s", "sequences": 3, "timesteps": 24, "cycles": 270, "nets": 120}
    e = power_entry(t, corner="tt", clock_mhz=200.0, timestep_cyc=11, activity=act, report="power_tt.rpt")
    assert set(e) == {
        "corner",
        "clock_mhz",
        "period_ns",
        "activity",
        "internal_mw",
        "switching_mw",
        "leakage_mw",
        "total_mw",
        "timestep_cyc",
        "energy_per_timestep_pj",
        "report",
    }
    assert e["period_ns"] == 5.0 and e["energy_per_timestep_pj"] == pytest.approx(6.229775e-2 * 5.0 * 11)
    with pytest.raises(PowerError, match=r"^OpenSTA printed no power report \(Error: no design / x\)$"):
        parse_power_report("Error: no design\nx\n")
    with pytest.raises(PowerError):
        parse_power_report(REPORT.replace("Total ", "Totl "))


# --------------------------------------------------------------------------------------------------
# OpenSTA on a mapped design
@pytest.fixture(scope="module")
def opensta():
    """OpenSTA and the characterized library, or skip (fail with NVMLSTM_REQUIRE_PDK=sky130)."""
    from nvmlstm.gen import GenError

    try:
        from nvmlstm.gen.tools import find_sta

        lib.characterized_liberty("tt")
        return find_sta()
    except (GenError, ImportError, AttributeError) as exc:
        if lib.require_pdk_env():
            pytest.fail(f"{exc} ({lib.PDK_ENV}=sky130 requires it)", pytrace=False)
        pytest.skip(str(exc))


def _report(rtl: Path, act, corner: str = "tt", period_ns: float = 10.0) -> dict:
    from nvmlstm.gen.sta import run_sta_script, sta_setup_commands

    manifest = json.loads((rtl / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        write_activity_file(act, Path(tmp) / "a.txt")
        cmds = sta_setup_commands(manifest, corner)
        cmds.append(f"create_clock -name clk -period {period_ns} [get_ports clk]")
        return parse_power_report(run_sta_script(rtl, cmds + power_commands(Path(tmp) / "a.txt")))


def test_power_changes_with_activity_and_is_recorded(mapped, opensta, tmp_path):
    from nvmlstm.sim import run_regression, simulator_or_skip

    simulator_or_skip("icarus")
    src, vec = mapped("lut")
    rtl = tmp_path / "rtl"
    shutil.copytree(src, rtl)
    rep = run_regression(rtl, vec, "icarus", gate_level=True, waves=True, work_dir=tmp_path / "sim")
    acts = read_activities(rep["waves"])
    busy, idle = _report(rtl, acts["busy"]), _report(rtl, acts["idle"])
    # every leaf pin of the hierarchy is walked (at least 2 per cell: the lanes are modules, not the top's
    # cells only), and nearly every one got its simulated activity
    cells = json.loads((rtl / "manifest.json").read_text())["signoff"]["cells"]
    assert busy["pins"] >= 2 * cells and busy["pins_set"] > 0.9 * busy["pins"]
    # Every pin held: what the clock alone burns (its net and the flip-flops' clock pins: most of this small
    # design's power). The data's share is what the busy window adds to it, and the idle window adds far less.
    held = _report(
        rtl, type(acts["busy"])("busy", 0, 1, 1, dict.fromkeys(acts["busy"].toggles, 0), acts["busy"].high_ps)
    )
    assert busy["switching_mw"] > idle["switching_mw"] >= held["switching_mw"] > 0
    assert busy["switching_mw"] - held["switching_mw"] > 2 * (idle["switching_mw"] - held["switching_mw"])
    assert busy["internal_mw"] > idle["internal_mw"]
    assert busy["leakage_mw"] == idle["leakage_mw"] > 0

    entry = measure_power(rtl, vec, clock_mhz=100.0, work_dir=tmp_path / "power", log=lambda m: None)
    # its VCD begins at the start rise (waves="from-start"): smaller, and the same busy activity
    short = tmp_path / "power" / "sim" / "waves.vcd"
    assert short.stat().st_size < Path(rep["waves"]).stat().st_size
    assert read_activity(short, "busy").toggles == acts["busy"].toggles
    man = json.loads((rtl / "manifest.json").read_text())
    assert man["signoff"]["power"] == entry and entry["report"] == "power_tt.rpt"
    assert entry["energy_per_timestep_pj"] == pytest.approx(
        entry["total_mw"] * entry["period_ns"] * man["latency"]["timestep_cyc"]["value"], rel=1e-6
    )
    assert entry["activity"]["cycles"] == acts["busy"].cycles and entry["activity"]["timesteps"] == 24
    assert entry["total_mw"] == pytest.approx(busy["total_mw"] * 1.0, rel=0.5)  # 100 MHz here, 100 MHz above
    first = (rtl / "power_tt.rpt").read_bytes()
    assert str(tmp_path) not in first.decode() and man["files"]["power_tt.rpt"]["bytes"] == len(first)
    measure_power(rtl, vec, clock_mhz=100.0, log=lambda m: None)
    assert (rtl / "power_tt.rpt").read_bytes() == first  # deterministic
