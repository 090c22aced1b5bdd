"""The regression of one RTL directory against one vector directory: `run_regression` and its report.

`run_regression` checks that the vector directory belongs to the RTL directory (`check_inputs`, before
anything is built), finds the simulator (`nvmlstm.sim.simulators`), builds the design or reuses the cached
build (`nvmlstm.sim.build`), runs the cocotb testbench `nvmlstm.sim.tb` with the requested `Stress` and
returns its JSON report; on a failure it re-runs with waveforms (VCD on Icarus, FST on Verilator) and records
their path. A simulator killed by a signal, or one that ended the simulation under the testbench, gives no
report but `SimStopped` (`killed_by`, `ended_early`): a stopped run is not a mismatch. docs/regression.md
describes it all. A gate-level run on Icarus can annotate OpenSTA's SDF of a corner and run at the analysed clock
period (`sdf_run`, `annotatable_sdf`, `sdf_messages`; docs/signoff.md, "Gate-level simulation with timing").

The testbench runs inside the simulator's Python and imports ``nvmlstm.sim.tb`` from the installed package;
this module hands it its settings as a JSON file named by the plusarg ``+nvmlstm_settings=FILE``.

Environment: ``NVMLSTM_SIM_SEED``, ``NVMLSTM_SIM_GAP_PROB``, ``NVMLSTM_SIM_BACKPRESSURE_PROB``,
``NVMLSTM_SIM_IDLE_MAX``, ``NVMLSTM_SIM_SPLIT_PROB`` override the stress settings of the tests
(`Stress.from_env`); ``NVMLSTM_SIM_CACHE`` and ``NVMLSTM_REQUIRE_SIMS`` are read by `nvmlstm.sim.build` and
`nvmlstm.sim.simulators`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from nvmlstm.artifacts.progress import heartbeat

from . import cocotb_adapter
from .build import SDF_PLUSARG, VCD_FROM_START_PLUSARG, BuildInfo, build, log_tail
from .errors import InputMismatch, SimError, SimStopped, killed_by
from .protocol import TOP_MODULE, ManifestError, load_manifest
from .simulators import SimTool, find_simulator

__all__ = ["Stress", "check_inputs", "run_regression", "ended_early"]
__all__ += ["TB_MODULE", "SETTINGS_PLUSARG", "CLOCK_NS", "SdfRun", "sdf_run", "sdf_clock", "sdf_messages"]
__all__ += ["annotatable_sdf"]

#: The cocotb test module, imported by the simulator's Python from the installed package.
TB_MODULE = "nvmlstm.sim.tb"
#: The plusarg naming the settings file (read by `nvmlstm.sim.tb` from ``cocotb.plusargs``).
SETTINGS_PLUSARG = "nvmlstm_settings"
#: The cocotb clock period without an SDF (the design has one clock; only cycle counts matter then).
CLOCK_NS = 10
#: Clock periods are whole multiples of this (ns): two time steps of the 1 ps precision, so that both halves of
#: the period are whole time steps.
CLOCK_GRID_NS = 0.002


# --------------------------------------------------------------------------------------------------
# Stress settings
_PROB_MAX = 0.95  # a stall probability of 1 would never let a beat through


@dataclass(frozen=True)
class Stress:
    """Run-time stress of one simulation (all random choices derive from ``seed``).

    Parameters
    ----------
    seed : int
        Seeds every random stream of the testbench.
    gap_prob : float
        Per cycle in which ``inp.ready`` waits for a beat, the probability that none is offered (0 to 0.95).
    backpressure_prob : float
        Per cycle, the probability that ``out.ready`` is low (0 to 0.95).
    idle_max : int
        Idle cycles after each ``done`` are drawn from 0..idle_max (0: sequences back to back).
    split_prob : float
        Probability that a sequence runs as two chunks, the second started without ``clear``.
    early_prob : float
        Per cycle before ``inp.ready`` rises, the probability that the pending beat is already offered.
    """

    seed: int = 0
    gap_prob: float = 0.0
    backpressure_prob: float = 0.0
    idle_max: int = 0
    split_prob: float = 0.0
    early_prob: float = 0.25

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SimError(f"seed must be a non-negative integer, not {self.seed!r}")
        for name in ("gap_prob", "backpressure_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= _PROB_MAX:
                raise SimError(f"{name} must be a number from 0 to {_PROB_MAX}, not {v!r}")
        for name in ("split_prob", "early_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
                raise SimError(f"{name} must be a number from 0 to 1, not {v!r}")
        if isinstance(self.idle_max, bool) or not isinstance(self.idle_max, int) or not 0 <= self.idle_max <= 10000:
            raise SimError(f"idle_max must be an integer from 0 to 10000, not {self.idle_max!r}")

    _ENV = {
        "seed": ("NVMLSTM_SIM_SEED", int),
        "gap_prob": ("NVMLSTM_SIM_GAP_PROB", float),
        "backpressure_prob": ("NVMLSTM_SIM_BACKPRESSURE_PROB", float),
        "idle_max": ("NVMLSTM_SIM_IDLE_MAX", int),
        "split_prob": ("NVMLSTM_SIM_SPLIT_PROB", float),
    }

    def from_env(self) -> Stress:
        """These settings with any ``NVMLSTM_SIM_*`` environment overrides applied."""
        changes = {}
        for name, (var, kind) in self._ENV.items():
            text = os.environ.get(var)
            if text:
                try:
                    changes[name] = kind(text)
                except ValueError:
                    raise SimError(f"{var}={text!r} is not {'an integer' if kind is int else 'a number'}") from None
        return replace(self, **changes)


# --------------------------------------------------------------------------------------------------
# Inputs
def _config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in keys[:4]) + (" ..." if len(keys) > 4 else "")


def check_inputs(rtl_dir: str | Path, vec_dir: str | Path) -> tuple[dict, dict]:
    """Check that ``vec_dir`` (vectors + model, `nvmlstm golden`) belongs to ``rtl_dir`` (`nvmlstm
    generate`); returns (RTL manifest, vectors manifest). Nothing is simulated.

    Raises
    ------
    InputMismatch
        One line: which directory, what differs (config fields, model hash) or what is invalid.
    """
    from nvmlstm.golden.config import ConfigError, LstmConfig
    from nvmlstm.golden.io import FileFormatError, load_model, load_vectors

    rtl_dir, vec_dir = Path(rtl_dir), Path(vec_dir)
    try:
        manifest = load_manifest(rtl_dir)
        rcfg = LstmConfig.from_dict(manifest["config"], where=f"{rtl_dir}/manifest.json: config")
    except (ManifestError, ConfigError) as exc:
        raise InputMismatch(str(exc)) from None
    if not vec_dir.is_dir():
        raise InputMismatch(f"{vec_dir}: vector directory not found")
    try:
        doc, arrays = load_vectors(vec_dir)
        model = load_model(vec_dir / "model.npz")
    except FileFormatError as exc:
        raise InputMismatch(str(exc)) from None
    vcfg = doc["config"]
    if vcfg != rcfg:
        raise InputMismatch(
            f"{vec_dir} does not match {rtl_dir}: the vectors are for another config "
            f"({_config_diff(vcfg.to_dict(), rcfg.to_dict())}; vectors vs RTL)"
        )
    if model.config != vcfg:
        raise InputMismatch(
            f"{vec_dir}: model.npz is for another config than vectors.npz "
            f"({_config_diff(model.config.to_dict(), vcfg.to_dict())})"
        )
    if doc.get("model_sha256") != model.digest():
        raise InputMismatch(
            f"{vec_dir}: vectors.npz was made with another model than model.npz "
            f"({str(doc.get('model_sha256'))[:16]} vs {model.digest()[:16]})"
        )
    rmodel = manifest.get("model")
    if rmodel and rmodel.get("sha256") and rmodel["sha256"] != model.digest():
        raise InputMismatch(
            f"{vec_dir} does not match {rtl_dir}: the RTL holds weight images of model "
            f"{rmodel['sha256'][:16]}, the vectors are for model {model.digest()[:16]}"
        )
    S, T = arrays["inputs"].shape[:2]
    if S == 0 or T == 0:
        raise InputMismatch(f"{vec_dir}: no timesteps to simulate ({S} sequences x {T} steps)")
    seq_bits = next(p["width"] for p in manifest["ports"] if p["name"] == "seq_len")
    if T >= 1 << seq_bits:
        raise InputMismatch(f"{vec_dir}: {T} steps per sequence exceed the {seq_bits}-bit seq_len port")
    return manifest, doc


# --------------------------------------------------------------------------------------------------
# SDF
@dataclass(frozen=True)
class SdfRun:
    """A gate-level run with an SDF: the corner, the file, the clock period and where the period came from.

    Parameters
    ----------
    corner : str
        ``tt`` or ``ss`` (``signoff.timing.corners``).
    path : Path
        The SDF (``nvm_lstm_top.<corner>.sdf`` in the RTL directory).
    clock_ns : float
        The simulated clock period.
    clock_source : str
        Why this period: given, the analysed period, or the corner's fmax.
    """

    corner: str
    path: Path
    clock_ns: float
    clock_source: str


def sdf_clock(ns: float) -> float:
    """A clock period of ``ns`` rounded up to `CLOCK_GRID_NS` (never faster than asked).

    Raises
    ------
    SimError
        Not a positive number.
    """
    if isinstance(ns, bool) or not isinstance(ns, (int, float)) or not math.isfinite(ns) or ns <= 0:
        raise SimError(f"the clock period must be a positive number of ns, not {ns!r}")
    return round(math.ceil(round(ns / CLOCK_GRID_NS, 6)) * CLOCK_GRID_NS, 3)


def sdf_run(rtl_dir: Path, manifest: Mapping[str, Any], corner: str, clock_ns: float | None) -> SdfRun:
    """The SDF of ``corner`` and the period to simulate it at: ``clock_ns`` if given, else the manifest's analysed
    period ``signoff.timing.period_ns`` when the corner meets timing there, else the corner's minimum period
    1000 / ``fmax_mhz`` (the period at which its worst path just meets setup); rounded up to `CLOCK_GRID_NS`.

    Raises
    ------
    InputMismatch
        No SDF for the corner, or no period given and none in the manifest.
    """
    timing = (manifest.get("signoff") or {}).get("timing")
    timing = timing if isinstance(timing, dict) else {}  # "not modelled" before the timing sign-off
    entry = (timing.get("corners") or {}).get(corner) or {}
    path = rtl_dir / entry.get("sdf", f"nvm_lstm_top.{corner}.sdf")
    if not path.is_file():
        raise InputMismatch(
            f"{rtl_dir}: no SDF for corner {corner!r} ({path.name}); generate it with `nvmlstm generate --pdk sky130` "
            f"and OpenSTA installed (`sudo apt-get install -y opensta`)"
        )
    if clock_ns is not None:
        return SdfRun(corner, path, sdf_clock(clock_ns), "given")
    if entry.get("met") and timing.get("period_ns"):
        return SdfRun(corner, path, sdf_clock(float(timing["period_ns"])), "signoff.timing.period_ns (met)")
    if entry.get("fmax_mhz"):
        return SdfRun(corner, path, sdf_clock(1000.0 / float(entry["fmax_mhz"])), f"1000 / {corner} fmax_mhz")
    raise InputMismatch(
        f"{rtl_dir}: manifest.json has no analysed period for corner {corner!r}: give the clock period (`--clock-ns`)"
    )


#: OpenSTA's ``write_sdf`` starts every cell on a line of its own: `` (CELL``.
_SDF_CELL = re.compile(r"^\s*\(CELL\s*$", re.MULTILINE)
_SDF_CELLTYPE = re.compile(r'\(CELLTYPE\s+"([^"]*)"\)')
#: The cells Icarus can annotate: the timing models' (with specify blocks) and the top's (its INTERCONNECTs).
CELL_PREFIX = "sky130_fd_sc_hd__"


def annotatable_sdf(sdf: Path, top: str, out: Path) -> tuple[Path, dict[str, int]]:
    """The SDF Icarus annotates: ``sdf`` itself, or, when it has cells of other types (the NVM macros, whose
    behavioral model has no specify block to annotate: Icarus would warn for every path), a copy in ``out``
    without them. Returns the file and the skipped cells by type.

    Raises
    ------
    SimError
        The file cannot be read.
    """
    try:
        text = sdf.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimError(f"{sdf}: cannot read the SDF ({exc})") from None
    starts = [m.start() for m in _SDF_CELL.finditer(text)]
    if not starts:
        return sdf, {}
    keep, skipped = [text[: starts[0]]], Counter()
    tail = text.rstrip().rstrip(")").rstrip()  # the DELAYFILE's closing parenthesis follows the last cell
    for a, b in zip(starts, starts[1:] + [len(tail)]):
        m = _SDF_CELLTYPE.search(text, a, b)
        kind = m.group(1) if m else ""
        if kind.startswith(CELL_PREFIX) or kind == top:
            keep.append(text[a:b])
        else:
            skipped[kind] += 1
    if not skipped:
        return sdf, {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(keep).rstrip() + "\n)\n", encoding="utf-8")
    return out, dict(sorted(skipped.items()))


_SDF_MESSAGE = re.compile(r"SDF (?:WARNING|ERROR)|Syntax error in|Unable to open SDF")


def sdf_messages(log_file: Path) -> list[str]:
    """Icarus' SDF warnings and errors in a simulation log: instances or paths it could not annotate."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [f"no simulation log {log_file}"]
    return [ln.strip() for ln in text.splitlines() if _SDF_MESSAGE.search(ln)]


# --------------------------------------------------------------------------------------------------
# Runs
def ended_early(results_xml: Path) -> bool:
    """Whether cocotb's JUnit results record that the simulator ended before the test finished (a failure of
    type ``SimFailure``: Icarus' ``vvp`` ends its simulation cleanly on SIGTERM, exit status 0)."""
    try:
        root = ElementTree.parse(results_xml).getroot()
    except (OSError, ElementTree.ParseError):
        return False
    return any(f.get("type", "").rsplit(".", 1)[-1] == "SimFailure" for f in root.iter("failure"))


def _simulate(
    binfo: BuildInfo,
    tool: SimTool,
    rtl_dir: Path,
    vec_dir: Path,
    stress: Stress,
    run_dir: Path,
    waves: bool,
    log: Callable[[str], None] | None = None,
    sdf: SdfRun | None = None,
    clock_ns: float = CLOCK_NS,
    from_start: bool = False,
) -> dict:
    """One simulation in ``run_dir``; returns the testbench's report (plus ``waves`` and ``log``). ``log``
    receives a line every 30 s while the simulator runs (a gate-level run takes minutes). ``sdf``: annotate
    it (the build has `nvmlstm.sim.build.ICARUS_SDF`) and run at its clock period. ``from_start`` (Icarus,
    with ``waves``): the VCD begins at the first rise of ``start`` (`nvmlstm.sim.build.ICARUS_WAVES`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = run_dir / "tb_report.json"
    report_path.unlink(missing_ok=True)
    settings = {
        "rtl_dir": str(rtl_dir.resolve()),
        "vec_dir": str(vec_dir.resolve()),
        "report": str(report_path),
        "stress": asdict(stress),
        "clock_ns": clock_ns,
        "simulator": tool.name,
    }
    settings_path = run_dir / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    plusargs = [f"+{SETTINGS_PLUSARG}={settings_path}"]
    skipped: dict[str, int] = {}
    if sdf is not None:
        path, skipped = annotatable_sdf(sdf.path, TOP_MODULE, run_dir / f"annotated.{sdf.corner}.sdf")
        plusargs.append(f"+{SDF_PLUSARG}={path.resolve()}")
    test_args: list[str] = []
    append: dict[str, list[str]] = {}
    wave_file = None
    if waves and tool.name == "icarus":
        # The build's nvmlstm_waves module dumps when the plusarg names a file; -vcd selects vvp's VCD
        # writer over the -none cocotb passes (cocotb's own dumping is FST only).
        wave_file = run_dir / "waves.vcd"
        plusargs.append(f"+nvmlstm_vcd={wave_file}")
        if from_start:
            plusargs.append(f"+{VCD_FROM_START_PLUSARG}")
        append = {"vvp": ["-vcd"]}
    elif waves:
        if not binfo.trace:
            raise SimError("internal: waveforms on Verilator need a tracing build")
        wave_file = run_dir / "waves.fst"  # the tracing build writes FST; cocotb's waves=True adds --trace
        test_args = ["--trace-file", str(wave_file)]
    runner = cocotb_adapter.make_runner(tool.name, append=append)
    log_file = run_dir / "sim.log"
    results_xml = run_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    beat = heartbeat(log, f"simulating on {tool.name}") if log else contextlib.nullcontext()
    try:
        with beat:
            runner.test(
                test_module=TB_MODULE,
                hdl_toplevel=TOP_MODULE,
                hdl_toplevel_lang="verilog",
                build_dir=binfo.dir,
                test_dir=run_dir,
                plusargs=plusargs,
                test_args=test_args,
                waves=waves and tool.name == "verilator",
                seed=stress.seed,
                log_file=log_file,
                results_xml=str(results_xml),
            )
    except SystemExit:
        pass  # a failing cocotb test exits under pytest; the report says why
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        signame = killed_by(exc)
        if signame is not None:
            raise SimStopped(
                f"the {tool.name} simulator was ended by {signame}: no result (not a mismatch); log {log_file}"
            ) from None
        if not report_path.is_file():
            raise SimError(
                f"{tool.name} simulation failed to run ({exc}); log {log_file}: {log_tail(log_file, 3)}"
            ) from None
    if ended_early(results_xml):
        # The testbench's report, written as the simulation ended under it, would read as missing beats.
        raise SimStopped(
            f"the {tool.name} simulator ended the simulation before the testbench finished (stopped by a signal "
            f"such as SIGTERM): no result (not a mismatch); log {log_file}"
        )
    if not report_path.is_file():
        raise SimError(f"{tool.name} simulation wrote no report; log {log_file}: {log_tail(log_file, 3)}")
    rep = json.loads(report_path.read_text(encoding="utf-8"))
    rep["log"] = str(log_file)
    rep["clock_ns"] = clock_ns
    if sdf is not None:
        rep["sdf"] = _sdf_report(sdf, log_file, skipped)
        if rep["sdf"]["annotation_messages"]:  # a partly annotated netlist proves nothing about the timing
            rep["passed"] = False
    if wave_file is not None:
        if not wave_file.is_file() or wave_file.stat().st_size == 0:
            raise SimError(f"{tool.name} wrote no waveform file {wave_file}")
        rep["waves"] = str(wave_file)
    return rep


def _sdf_report(sdf: SdfRun, log_file: Path, skipped: dict[str, int]) -> dict:
    """The report's ``sdf`` entry: the file, its size in cells and delay paths, the cells left out
    (`annotatable_sdf`), the period, and what Icarus said while annotating (nothing when every instance and path
    it was given was found)."""
    text = sdf.path.read_text(encoding="utf-8", errors="replace")
    msgs = sdf_messages(log_file)
    return {
        "corner": sdf.corner,
        "file": str(sdf.path),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "cells": len(re.findall(r"\(CELL\b", text)),
        "iopaths": len(re.findall(r"\(IOPATH\b", text)),
        "interconnects": len(re.findall(r"\(INTERCONNECT\b", text)),
        "skipped_cells": skipped,
        "clock_ns": sdf.clock_ns,
        "clock_source": sdf.clock_source,
        "annotation_messages": msgs[:20],
        "annotation_message_count": len(msgs),
    }


def _waves_run(
    rep: dict,
    rtl_dir: Path,
    vec_dir: Path,
    manifest: dict,
    tool: SimTool,
    stress: Stress,
    run_dir: Path,
    gate_level: bool,
    cache: str | Path | None,
    log: Callable[[str], None] | None,
    sdf: SdfRun | None = None,
    clock_ns: float = CLOCK_NS,
) -> None:
    """Re-run a failed simulation with waveforms and the same seed; record their path (or why there are none)
    in ``rep``. A stopped simulator (`SimStopped`) is not a failure: it propagates, nothing is re-run."""
    if log:
        log(f"failed: re-running with waveforms ({'FST' if tool.name == 'verilator' else 'VCD'})")
    try:
        wbuild = build(
            rtl_dir, manifest, tool, trace=True, gate_level=gate_level, sdf=sdf and sdf.path, cache=cache, log=log
        )
        again = _simulate(
            wbuild, tool, rtl_dir, vec_dir, stress, run_dir / "waves", True, log, sdf=sdf, clock_ns=clock_ns
        )
    except SimStopped:
        raise
    except SimError as exc:  # the failure report stands; say why it has no waveforms
        rep["waves_error"] = str(exc)
    else:
        rep["waves"] = again["waves"]
        rep["waves_run_first_mismatch"] = again["first_mismatch"]  # the same seed: the same place


def run_regression(
    rtl_dir: str | Path,
    vec_dir: str | Path,
    simulator: str,
    *,
    stress: Stress | None = None,
    waves: bool | str = "on-failure",
    report: str | Path | None = None,
    work_dir: str | Path | None = None,
    cache: str | Path | None = None,
    gate_level: bool = False,
    sdf_corner: str | None = None,
    clock_ns: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Simulate the RTL directory against the golden vectors and return the report.

    Parameters
    ----------
    rtl_dir : path
        An `nvmlstm generate` output (manifest.json, filelist.f, ...).
    vec_dir : path
        An `nvmlstm golden` output (vectors.npz/json, model.npz/json).
    simulator : str
        ``"icarus"`` or ``"verilator"``.
    stress : Stress, optional
        Run-time stress (default: none, seed 0).
    waves : bool, "on-failure" or "from-start"
        Record waveforms (VCD on Icarus, FST on Verilator): always, never, or by re-running a failed
        simulation with the same seed (default). ``"from-start"`` (Icarus): a VCD that begins at the first
        rise of ``start``, without the weight programming before it (most of a run's cycles; the power
        measurement's window begins at that rise). The report's ``waves`` is the file's path.
    report : path, optional
        Also write the report here (JSON).
    work_dir : path, optional
        Where the run's files go (settings, log, waveforms). Default: a temporary directory, removed after a
        passing run without waveforms and kept otherwise (the report names it).
    cache : path, optional
        Build cache (default `nvmlstm.sim.build.cache_root`).
    gate_level : bool
        Simulate the sky130 gate-level netlist (``nvmlstm generate --pdk sky130``) instead of the RTL, with the
        same testbench and report (docs/signoff.md).
    sdf_corner : str, optional
        With ``gate_level``, on Icarus: annotate the corner's SDF (``nvm_lstm_top.<corner>.sdf``, OpenSTA's
        ``write_sdf``) on the foundry's timing cell models and run at ``clock_ns`` (default: the analysed period,
        `sdf_run`). The report's ``sdf`` says what was annotated and lists Icarus' SDF warnings; any warning
        fails the run (``passed`` false), since a partly annotated netlist proves nothing about the timing.
    clock_ns : float, optional
        The clock period in ns (default `CLOCK_NS` without an SDF), rounded up to `CLOCK_GRID_NS`.
    log : callable, optional
        Receives one-line progress messages.

    Returns
    -------
    dict
        The testbench's report (``bit_exact``, ``values_compared``, ``first_mismatch``, ``cycles``, ``beats``,
        ...) plus ``build``, ``waves``, ``run_dir``, ``log`` (None when the temporary run directory was
        removed), ``simulator_version``, ``wall_seconds``.

    Raises
    ------
    InputMismatch
        Before anything is built: the vectors do not belong to the RTL (or either is invalid).
    SimulatorMissing
        The simulator is not installed (with the install hint).
    AdapterError
        The installed cocotb is not supported, or ``WAVES``/``GUI`` is set (`nvmlstm.sim.cocotb_adapter`).
    SimStopped
        The simulator was killed by a signal, or ended the simulation before the testbench finished (SIGTERM
        to ``vvp``): no result, never reported as a mismatch nor re-run with waveforms.
    BuildError, SimError
        The build or the simulation could not run.
    """
    if waves not in (True, False, "on-failure", "from-start"):
        raise SimError(f"waves must be True, False, 'on-failure' or 'from-start', not {waves!r}")
    if waves == "from-start" and simulator != "icarus":
        raise SimError("waves='from-start' is an Icarus VCD option; use icarus")
    t0 = time.monotonic()
    stress = stress or Stress()
    rtl_dir, vec_dir = Path(rtl_dir), Path(vec_dir)
    if sdf_corner is not None and simulator == "verilator":
        raise SimError("Verilator cannot annotate an SDF (not supported: it has no $sdf_annotate); use icarus")
    if sdf_corner is not None and not gate_level:
        raise SimError("an SDF annotates the gate-level netlist: give gate_level=True (`--gate-level`)")
    manifest, _ = check_inputs(rtl_dir, vec_dir)
    if gate_level and "gate_level" not in manifest["filelists"]:
        raise InputMismatch(f"{rtl_dir}: no gate-level netlist; generate it with `nvmlstm generate --pdk sky130`")
    sdf = sdf_run(rtl_dir, manifest, sdf_corner, clock_ns) if sdf_corner is not None else None
    period = sdf.clock_ns if sdf is not None else CLOCK_NS if clock_ns is None else sdf_clock(clock_ns)
    tool = find_simulator(simulator)
    binfo = build(
        rtl_dir, manifest, tool, trace=waves is True, gate_level=gate_level, sdf=sdf and sdf.path, cache=cache, log=log
    )
    own_dir = work_dir is None
    # Resolved: the simulator runs inside run_dir, where a relative path would no longer point at it.
    run_dir = Path(tempfile.mkdtemp(prefix="nvmlstm-sim-")) if own_dir else Path(work_dir).resolve()
    t_sim = time.monotonic()
    try:
        rep = _simulate(
            binfo, tool, rtl_dir, vec_dir, stress, run_dir, waves in (True, "from-start"), log, sdf=sdf,
            clock_ns=period, from_start=waves == "from-start",
        )  # fmt: skip
        sim_seconds = time.monotonic() - t_sim
        if not rep["passed"] and waves == "on-failure":
            _waves_run(rep, rtl_dir, vec_dir, manifest, tool, stress, run_dir, gate_level, cache, log, sdf, period)
    except KeyboardInterrupt:  # the command was stopped: the run has no result, so no files worth keeping
        if own_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    rep.setdefault("waves", None)
    rep.update(
        {
            "rtl_dir": str(rtl_dir),
            "vec_dir": str(vec_dir),
            "simulator": tool.name,
            "simulator_version": tool.version_text,
            "cocotb": cocotb_adapter.cocotb_version(),
            "gate_level": gate_level,
            "build": {"dir": str(binfo.dir), "cached": binfo.cached, "seconds": round(binfo.seconds, 2)},
            "sim_seconds": round(sim_seconds, 3),
            "wall_seconds": round(time.monotonic() - t0, 3),
        }
    )
    keep = not own_dir or not rep["passed"] or rep["waves"] is not None
    rep["run_dir"] = str(run_dir) if keep else None
    if not keep:  # the log goes with the temporary directory: the report must not point at a deleted file
        shutil.rmtree(run_dir, ignore_errors=True)
        rep["log"] = None
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return rep
