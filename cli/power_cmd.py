"""``nvmlstm power``: activity-based power of the sky130 netlist at the analysed clock.

`measure_power` simulates the gate-level netlist on the golden vectors (Icarus, with a VCD), reads the
switching activity of the busy window (`nvmlstm.gen.power`), runs OpenSTA's ``report_power`` with it on the
STA netlist (`nvmlstm.gen.sta`), and writes ``power_<corner>.rpt`` and ``signoff.power`` into the RTL
directory's manifest. Exit status: 0 on success, 2 for anything that stopped it (one line on stderr: no
OpenSTA with the install command, a simulation that is not bit exact, an unreadable VCD, ...).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .argtypes import pos_float as _pos_float

__all__ = ["add_power_parser", "cmd_power", "measure_power", "power_entry"]


def add_power_parser(sub) -> argparse.ArgumentParser:
    """Add the ``power`` subcommand to the subparsers action ``sub``."""
    s = sub.add_parser("power", help="activity-based power of the sky130 netlist (gate-level VCD + OpenSTA)")
    s.add_argument("--rtl", type=Path, required=True, help="RTL directory (`nvmlstm generate --pdk sky130` output)")
    s.add_argument("--vectors", type=Path, required=True, help="vector directory (`nvmlstm golden` output)")
    s.add_argument("--corner", default="tt", choices=("tt", "ss"), help="library corner (default tt)")
    s.add_argument(
        "--clock-mhz",
        type=_pos_float,
        help="clock of the power analysis (default: the manifest's signoff.timing.clock_mhz)",
    )
    s.add_argument("--work-dir", type=Path, help="keep the simulation, VCD and OpenSTA script here")
    s.set_defaults(func=cmd_power)
    return s


def cmd_power(args: argparse.Namespace) -> int:
    from nvmlstm.gen import GenError
    from nvmlstm.sim import SimError

    from . import stopping

    try:
        entry = measure_power(
            args.rtl,
            args.vectors,
            corner=args.corner,
            clock_mhz=args.clock_mhz,
            work_dir=args.work_dir,
            log=lambda m: print(f"[power] {m}"),
        )
    except (GenError, SimError) as exc:
        if stopping.stop_signal() is not None:
            raise
        print(f"nvmlstm power: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"[power] {entry['corner']} at {entry['clock_mhz']:g} MHz: total {entry['total_mw']:.4g} mW (internal "
        f"{entry['internal_mw']:.4g}, switching {entry['switching_mw']:.4g}, leakage {entry['leakage_mw']:.4g}); "
        f"{entry['energy_per_timestep_pj']:.4g} pJ per timestep ({entry['timestep_cyc']} cycles)"
    )
    print(f"[power] report: {Path(args.rtl) / entry['report']}")
    return 0


def _clock_mhz(manifest: dict, clock_mhz: float | None, rtl_dir: Path) -> float:
    from nvmlstm.gen.power import PowerError

    if clock_mhz is not None:
        if not clock_mhz > 0:
            raise PowerError(f"clock must be a positive frequency in MHz, not {clock_mhz!r}")
        return float(clock_mhz)
    timing = (manifest.get("signoff") or {}).get("timing")
    if not isinstance(timing, dict) or not isinstance(timing.get("clock_mhz"), (int, float)):
        raise PowerError(
            f"{rtl_dir}: no analysed clock in manifest.json (signoff.timing.clock_mhz); generate with "
            "`nvmlstm generate --pdk sky130` where OpenSTA is installed, or pass --clock-mhz"
        )
    return float(timing["clock_mhz"])


def power_entry(totals: dict, *, corner: str, clock_mhz: float, timestep_cyc: int, activity: dict, report: str) -> dict:
    """The ``signoff.power`` manifest entry (docs/signoff.md) from the parsed report totals (mW):
    ``energy_per_timestep_pj`` = total_mw * period_ns * timestep_cyc (mW x ns = pJ)."""
    period_ns = 1000.0 / clock_mhz
    keys = ("internal_mw", "switching_mw", "leakage_mw", "total_mw")
    out = {k: round(float(totals[k]), 9) for k in keys}
    out.update(
        corner=corner,
        clock_mhz=round(clock_mhz, 6),
        period_ns=round(period_ns, 6),
        activity=dict(activity),
        timestep_cyc=int(timestep_cyc),
        energy_per_timestep_pj=round(out["total_mw"] * period_ns * timestep_cyc, 6),
        report=report,
    )
    return out


def _simulate(rtl_dir: Path, vec_dir: Path, work: Path, log: Callable[[str], None]) -> dict:
    from nvmlstm.gen.power import PowerError
    from nvmlstm.sim import run_regression

    rep = run_regression(
        rtl_dir, vec_dir, "icarus", gate_level=True, waves="from-start", work_dir=work / "sim", log=log
    )
    if not rep["passed"]:
        raise PowerError(
            f"the gate-level simulation is not bit exact ({rep.get('first_mismatch_text') or 'beats missing'}); "
            "no power from a failing run"
        )
    if not rep.get("waves"):
        raise PowerError("the gate-level simulation wrote no VCD")
    return rep


def _run_opensta(rtl_dir: Path, manifest: dict, corner: str, period_ns: float, act_file: Path, work: Path) -> str:
    """OpenSTA's output for the power script (the STA helper's setup, the analysed clock, the activity)."""
    from nvmlstm.gen.power import power_commands
    from nvmlstm.gen.sta import run_sta_script, sta_setup_commands
    from nvmlstm.gen.tools import find_sta

    sta = find_sta()  # ToolNotFound (a GenError) names the apt line
    commands = sta_setup_commands(manifest, corner)
    # The analysed clock replaces the SDC's target clock on the same port (create_clock without -add).
    commands.append(f"create_clock -name clk -period {period_ns:.6g} [get_ports clk]")
    commands += power_commands(act_file)
    (work / f"power_{corner}.tcl").write_text("\n".join(commands) + "\n", encoding="utf-8")
    return run_sta_script(rtl_dir, commands, sta=sta)


def measure_power(
    rtl_dir: str | Path,
    vec_dir: str | Path,
    *,
    corner: str = "tt",
    clock_mhz: float | None = None,
    work_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Activity-based power of the RTL directory's sky130 netlist; writes ``power_<corner>.rpt`` and the
    manifest's ``signoff.power`` and returns that entry.

    Parameters
    ----------
    rtl_dir : path
        `nvmlstm generate --pdk sky130` output, with the STA netlist and libraries.
    vec_dir : path
        The golden vectors simulated (their busy window gives the activity).
    corner : str
        ``"tt"`` or ``"ss"``.
    clock_mhz : float, optional
        The analysis clock (default: ``signoff.timing.clock_mhz`` of the manifest).
    work_dir : path, optional
        Keep the simulation run, the VCD, the activity file and the OpenSTA script here (default: a temporary
        directory, removed at the end).
    log : callable
        Receives one-line progress messages.

    Raises
    ------
    GenError
        ``PowerError`` (unreadable VCD, no clock, failed simulation, no report), ``ToolNotFound`` (OpenSTA).
    SimError
        The simulation could not run.
    """
    from nvmlstm.gen.power import read_activity, write_activity_file

    rtl_dir, vec_dir = Path(rtl_dir), Path(vec_dir)
    manifest = _load_manifest(rtl_dir)
    mhz = _clock_mhz(manifest, clock_mhz, rtl_dir)
    from nvmlstm.gen.tools import find_sta

    find_sta()  # before minutes of simulation: a missing OpenSTA is one line now
    work = Path(tempfile.mkdtemp(prefix="nvmlstm-power-")) if work_dir is None else Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        rep = _simulate(rtl_dir, vec_dir, work, log)
        act = read_activity(rep["waves"], "busy")
        log(f"activity: busy window {act.cycles} cycles ({len(act.toggles)} simulated pins and nets)")
        act_file = work / "activity.txt"
        write_activity_file(act, act_file)
        text = _run_opensta(rtl_dir, manifest, corner, 1000.0 / mhz, act_file, work)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return _record(rtl_dir, manifest, text, corner=corner, clock_mhz=mhz, rep=rep, cycles=act.cycles, vec=vec_dir)


def _load_manifest(rtl_dir: Path) -> dict:
    from nvmlstm.gen.power import PowerError

    path = rtl_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PowerError(f"{path}: cannot read the RTL manifest ({exc})") from None
    if "gate_level" not in manifest.get("filelists", {}):
        raise PowerError(f"{rtl_dir}: no gate-level netlist; generate it with `nvmlstm generate --pdk sky130`")
    return manifest


def _record(rtl_dir: Path, manifest: dict, text: str, *, corner, clock_mhz, rep, cycles, vec) -> dict:
    """Write ``power_<corner>.rpt`` and ``signoff.power`` (atomic, sorted keys); return the entry."""
    from nvmlstm.artifacts.files import sha256_bytes, write_text_atomic
    from nvmlstm.gen.power import parse_power_report, report_section

    totals = parse_power_report(text)
    activity = {
        "source": f"gate-level simulation (icarus) of {Path(vec).name}",
        "sequences": int(rep["sequences"]),
        "timesteps": int(rep["sequences"]) * int(rep["steps"]),
        "cycles": int(cycles),
        "nets": int(totals.get("pins_set", 0)),
    }
    report = f"power_{corner}.rpt"
    entry = power_entry(
        totals,
        corner=corner,
        clock_mhz=clock_mhz,
        timestep_cyc=manifest["latency"]["timestep_cyc"]["value"],
        activity=activity,
        report=report,
    )
    head = (
        f"# nvmlstm power: corner {corner}, clock {clock_mhz:g} MHz (period {entry['period_ns']:g} ns)\n"
        f"# activity: {activity['source']}, busy window (first start to last done) of {cycles} cycles; "
        f"{totals.get('pins_set', 0)} of {totals.get('pins', 0)} pins and {totals.get('ports_set', 0)} input "
        "ports from the simulation, the rest OpenSTA's defaults\n"
        "# powers in W (OpenSTA report_power)\n"
    )
    rpt = head + report_section(text)
    write_text_atomic(rtl_dir / report, rpt)
    manifest.setdefault("files", {})[report] = {
        "bytes": len(rpt.encode()),
        "role": f"activity-based power report, {corner} corner (nvmlstm power)",
        "sha256": sha256_bytes(rpt.encode()),
    }
    manifest.setdefault("signoff", {})["power"] = entry
    write_text_atomic(rtl_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry
