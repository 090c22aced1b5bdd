"""Building a generated design for a simulator, and the build cache.

`build` builds the simulation model of an RTL directory with ``cocotb_tools.runner`` (through
`nvmlstm.sim.cocotb_adapter`) or reuses the cached build. The cache key hashes the contents of the simulation
files (``filelist.f``), the simulator and its version, cocotb, the Python and the recipe (`Recipe`: the exact
build arguments, make variables and extra files), so one build serves every model and vector set of the same
generated design. Builds are made in a temporary directory and renamed into place, trimmed to what running
needs, and after each new build the least recently used beyond `CACHE_ENTRIES` builds or `CACHE_MAX_BYTES`
bytes are deleted (`trim_cache`). A long build prints its expected time first and a line every 30 s.

The cache lives outside the repository (`cache_root`: ``~/.cache/nvmlstm/sim`` by default), so ``make clean``
leaves it; ``make clean-cache`` or `clear_cache` empties it, and deleting the directory by hand is safe when no
simulation runs.

Environment: ``NVMLSTM_SIM_CACHE``, the cache directory; ``NVMLSTM_SIM_CACHE_MB``, its size limit in MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvmlstm.artifacts.progress import format_duration, heartbeat

from . import cocotb_adapter
from .errors import BuildError, SimStopped, killed_by
from .protocol import TOP_MODULE, simulation_files
from .simulators import SimTool

#: The gate-level file list's functional cell models (``nvmlstm.gen.rtl.CELL_MODELS_FILE``), replaced by the
#: timing models (``nvmlstm.gen.timing_models.TIMING_MODELS``) in a build with an SDF.
CELL_MODELS = "sky130_fd_sc_hd_cells.v"
TIMING_MODELS = "sky130_fd_sc_hd_cells_timing.v"
PREFIX = "sky130_fd_sc_hd__"

__all__ = [
    "CACHE_ENV",
    "CACHE_ENTRIES",
    "TIMESCALE",
    "BuildInfo",
    "SDF_ARGS",
    "ICARUS_SDF",
    "SDF_PLUSARG",
    "timing_models_for",
    "Recipe",
    "recipe",
    "build",
    "cache_root",
    "CACHE_MAX_BYTES",
    "CacheEntry",
    "CacheClear",
    "cache_entries",
    "cache_max_bytes",
    "trim_cache",
    "clear_cache",
    "expected_build_seconds",
    "icarus_time0_kick",
    "verilator_make_fixes",
    "log_tail",
]

CACHE_ENV = "NVMLSTM_SIM_CACHE"
#: Builds kept in the cache; the least recently used beyond this are deleted after a new build (`trim_cache`).
CACHE_ENTRIES = 48
#: Bytes kept in the cache (the sum of its builds), likewise; ``$NVMLSTM_SIM_CACHE_MB`` overrides it.
CACHE_MAX_BYTES = 300_000_000
CACHE_MB_ENV = "NVMLSTM_SIM_CACHE_MB"
#: A build used (built or reused) less than this many seconds ago is never evicted: another process may be
#: about to run it (a mismatch re-runs the same Icarus build with waveforms minutes later).
CACHE_GRACE_S = 900.0
#: Failed builds' logs, and temporaries of builds whose process cannot be asked, are removed after a day.
LEFTOVER_S = 86400.0
#: In a build's temporary directory: the pid and host of the process building there.
OWNER_FILE = ".nvmlstm-owner"
_KIND = r"(?:icarus|verilator)(?:-trace)?(?:-gates)?(?:-sdf)?-[0-9a-f]{24}"
#: The names the cache writes: complete builds, failed builds' logs, builds in progress (``mkdtemp``).
_ENTRY = re.compile(rf"^{_KIND}$")
_FAILED = re.compile(rf"^failed-{_KIND}$")
_BUILDING = re.compile(rf"^\.{_KIND}\.[A-Za-z0-9_]+$")
#: Bump when the build changes in a way `Recipe` does not show (e.g. `icarus_time0_kick`): part of the key.
BUILD_RECIPE = 2
#: Gate-level builds (Icarus): the cells' flip-flop UDPs update their outputs one time unit (1 ns) after the
#: clock edge (the PDK models' ``UNIT_DELAY``), so no zero-delay race decides which flip-flop sees which
#: value; the testbench drives and samples on the falling edge, long after.
GATE_LEVEL_ARGS = ("-DUNIT_DELAY=#1",)
#: Gate-level builds with an SDF (Icarus): the foundry's timing models (`nvmlstm.gen.timing_models`) instead of
#: the functional ones, their specify blocks compiled (``-gspecify``), and the maximum of each SDF triple
#: selected (``-Tmax``): OpenSTA writes ``(min::max)``, with no typical value, and Icarus keeps a path's old
#: (zero) delay for an empty one, so the default ``-Ttyp`` would annotate nothing. Max is the setup-side delay,
#: the one the clock period is about. No ``UNIT_DELAY``: the timing models do not use it.
SDF_ARGS = ("-gspecify", "-Tmax")
#: The plusarg naming the SDF file to annotate (`ICARUS_SDF`).
SDF_PLUSARG = "nvmlstm_sdf"
TIMESCALE = ("1ns", "1ps")


def cache_root() -> Path:
    """The build cache directory: ``$NVMLSTM_SIM_CACHE``, else ``$XDG_CACHE_HOME/nvmlstm/sim``, else
    ``~/.cache/nvmlstm/sim``.

    How big: one build per design and simulator (and per FST tracing or gate level): 1-6 MB for Icarus RTL
    builds, 2-20 MB for Verilator, 10-100 MB for Icarus gate level (103 MB for the default config at 32 lanes),
    measured here. It is bounded: after each new build the least recently used builds beyond `CACHE_ENTRIES`
    (48) or beyond `CACHE_MAX_BYTES` (300 MB; ``$NVMLSTM_SIM_CACHE_MB`` sets it, 0 for none) are deleted
    (`trim_cache`; builds used in the last `CACHE_GRACE_S` seconds are kept even so, since a process may be
    about to run them). ``make clean-cache`` (`clear_cache`) empties it; ``make clean`` leaves it, as it is
    outside the repository.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nvmlstm" / "sim"


# --------------------------------------------------------------------------------------------------
# Recipes
#: Icarus: a second root module that dumps a VCD when the plusarg names a file (the same build serves
#: runs with and without waveforms). cocotb's own dump module writes FST; this one writes VCD (the run
#: passes ``-vcd`` to vvp, `nvmlstm.sim.runner`).
#: The plusarg that makes `ICARUS_WAVES` begin the dump at the first rise of ``start``.
VCD_FROM_START_PLUSARG = "nvmlstm_vcd_from_start"
ICARUS_WAVES = f"""\
module nvmlstm_waves;
    string path;
    initial begin
        if ($value$plusargs("nvmlstm_vcd=%s", path)) begin
            $dumpfile(path);
            // Weight programming is most of a run's cycles and none of the power window: skip it on request.
            if ($test$plusargs("{VCD_FROM_START_PLUSARG}")) @(posedge nvm_lstm_top.start);
            $dumpvars(0, nvm_lstm_top);
        end
    end
endmodule
"""

#: Icarus with an SDF: a third root module annotates the top at time 0 with the file the plusarg names (the
#: runner passes the RTL directory's SDF; its digest is in the build key, `Recipe.sdf`).
ICARUS_SDF = f"""\
module nvmlstm_sdf;
    string path;
    initial begin
        if ($value$plusargs("{SDF_PLUSARG}=%s", path))
            $sdf_annotate(path, nvm_lstm_top);
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
        return (
            f"{m.group(0)}\n{ind}initial begin #0; {name} = 1'b1; #0; {name} = 1'b0; end"
            f"  // nvmlstm sim: time-0 evaluation of always @* under Icarus"
        )

    return _YOSYS_DUMMY.subn(kick, text)


#: Verilator: only the top's ports need VPI access (cocotb drives and samples nothing else), which keeps
#: the model far smaller and quicker to compile than cocotb's default --public-flat-rw on every signal
#: (turned off again by ``--no-public-flat-rw`` after it: Verilator's last option wins).
VERILATOR_PUBLIC = """\
`verilator_config
public_flat_rw -module "nvm_lstm_top" -var "*"
"""

#: Verilator gate-level builds: the cells' UDP tables become logic, the flip-flop UDP a clocked process; the
#: unit delay is left empty (without --timing Verilator would only warn about it and drop it).
VERILATOR_GATE_ARGS = ("-DUNIT_DELAY=",)

#: Verilator arguments (after cocotb's own).
VERILATOR_ARGS = ("--no-public-flat-rw",)

#: C++ optimization of the Verilated model, as make variables: -O0 compiles in about two thirds of the time
#: of verilated.mk's -Os and the regression's runs are short (the Python testbench dominates the run time).
#: (``-CFLAGS -O0`` would not do: Vtop.mk compiles cocotb's verilator.cpp with OPT_FAST after the user flags.)
VERILATOR_OPT = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")


def verilator_make_fixes(tool: SimTool) -> list[str]:
    """Make variables that the PyPI wheel's ``verilated.mk`` leaves empty (its configure ran elsewhere), with
    the values a configure on Linux/GCC or Clang sets. Without ``CFG_CXXFLAGS_PCH_I`` the precompiled header
    is passed as a plain file name and the C++ compile fails."""
    root = tool.env.get("VERILATOR_ROOT")
    if not root:
        try:
            root = subprocess.run(
                [tool.path, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True, timeout=60
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = ""
    try:
        text = (Path(root) / "include" / "verilated.mk").read_text(encoding="utf-8") if root else ""
    except OSError:
        text = ""
    defaults = {
        "CFG_CXXFLAGS_PCH_I": "-include",
        "CFG_LDLIBS_THREADS": "-pthread -lpthread -latomic",
        "CFG_CXXFLAGS_STD": "-std=gnu++17",
    }
    fixes = []
    for var, value in defaults.items():
        m = re.search(rf"^{var}\s*=(.*)$", text, re.MULTILINE)
        if m is not None and not m.group(1).strip():
            fixes.append(f"{var}={value}")
    return fixes


@dataclass(frozen=True)
class Recipe:
    """How one simulator builds the design: everything beyond the source files, all of it in the cache key.

    Parameters
    ----------
    build_args : tuple of str
        ``Runner.build(build_args=...)``.
    waves : bool
        ``Runner.build(waves=...)``: cocotb's trace build (Verilator only; Icarus uses `ICARUS_WAVES`).
    files : dict
        Extra files written into the build directory and compiled after the sources (name -> text).
    make_vars : tuple of str
        ``VAR=value`` appended to the Verilator build's ``make`` command (`cocotb_adapter`).
    kick : bool
        Compile `icarus_time0_kick` copies of the sources (Icarus).
    gate_level : bool
        The sources are the gate-level file list (``filelist_gate.f``).
    sdf : str
        With an SDF: the SHA-256 of the SDF file the run annotates (the cell models are in ``files``).
    """

    build_args: tuple[str, ...]
    waves: bool = False
    files: Mapping[str, str] = field(default_factory=dict)
    make_vars: tuple[str, ...] = ()
    kick: bool = False
    gate_level: bool = False
    sdf: str = ""


def recipe(
    tool: SimTool, trace: bool, gate_level: bool = False, *, sdf_sha256: str = "", timing_models: str = ""
) -> Recipe:
    """The `Recipe` of ``tool``; ``trace``: Verilator with FST tracing compiled in; ``gate_level``: the
    gate-level netlist (`GATE_LEVEL_ARGS` for Icarus, `VERILATOR_GATE_ARGS` for Verilator); ``sdf_sha256``
    (Icarus, gate level): the digest of the SDF to annotate, with ``timing_models`` (the text of
    `timing_models_for`) compiled in place of the functional cell models (`SDF_ARGS`, `ICARUS_SDF`)."""
    if sdf_sha256:
        if tool.name != "icarus" or not gate_level or not timing_models:
            raise BuildError("internal: an SDF build needs Icarus, the gate-level netlist and the timing models")
        return Recipe(
            ("-s", "nvmlstm_waves", "-s", "nvmlstm_sdf") + SDF_ARGS,
            files={"nvmlstm_waves.v": ICARUS_WAVES, "nvmlstm_sdf.v": ICARUS_SDF, TIMING_MODELS: timing_models},
            kick=True,
            gate_level=True,
            sdf=sdf_sha256,
        )
    if tool.name == "icarus":
        return Recipe(
            ("-s", "nvmlstm_waves") + (GATE_LEVEL_ARGS if gate_level else ()),
            files={"nvmlstm_waves.v": ICARUS_WAVES},
            kick=True,
            gate_level=gate_level,
        )
    # cocotb's trace build adds --trace (VCD); --trace-fst after it makes the format FST.
    return Recipe(
        VERILATOR_ARGS + (("--trace-fst",) if trace else ()) + (VERILATOR_GATE_ARGS if gate_level else ()),
        waves=trace,
        gate_level=gate_level,
        files={"nvmlstm_public.vlt": VERILATOR_PUBLIC},
        make_vars=VERILATOR_OPT + tuple(verilator_make_fixes(tool)),
    )


# --------------------------------------------------------------------------------------------------
# Builds
@dataclass
class BuildInfo:
    """A built simulation model: its directory (in the cache), key, and whether it was already there."""

    dir: Path
    key: str
    cached: bool
    seconds: float
    trace: bool


#: A cold build's wall time against the size of its sources, ``(overhead s, s per line)`` by simulator and gate
#: level; lines of the file list's files (the top or the netlist, the macro model; at gate level the cell models).
#: Measured here (issue 25; 2-core VM, Verilator 5.048 at -O0, Icarus 11/12) as CPU seconds of the build's
#: processes, since the machine was shared: Verilator RTL 21-79 s for 6.6-15.6k lines and 75 s for 46.3k (the
#: default config at 32 lanes), gate level 53-125 s for 63-222k lines and 352 s for 775k (the default config's
#: 121k cells); Icarus at most 0.5 s (RTL) and 7 s (gate level). Verilator's make -j2 gives an idle machine's
#: wall time about half the CPU time for small designs (2layer 13.4 s, multitile gate level 26 s, default
#: config 31.6 s: docs/performance.md, docs/signoff.md), equal to it for the largest (one big C++ file).
BUILD_RATES = {
    ("icarus", False): (0.5, 0.00001),
    ("icarus", True): (0.5, 0.00001),
    ("verilator", False): (15.0, 0.0004),
    ("verilator", True): (0.0, 0.00045),
}


def _source_lines(files: list[Path]) -> int:
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += sum(1 for _ in fh)
    return total


def expected_build_seconds(simulator: str, files: list[Path], *, gate_level: bool = False) -> float:
    """About how long a cold build of ``files`` takes (`BUILD_RATES`): the estimate `build` prints first."""
    overhead, per_line = BUILD_RATES[simulator, gate_level]
    return overhead + per_line * _source_lines(files)


def _build_key(tool: SimTool, files: list[Path], rec: Recipe, trace: bool) -> str:
    h = hashlib.sha256()
    meta = {
        "recipe": BUILD_RECIPE,
        "simulator": tool.name,
        "version": tool.version_text,
        "trace": trace,
        "cocotb": cocotb_adapter.cocotb_version(),
        "python": sys.executable,
        "timescale": TIMESCALE,
        "build_args": rec.build_args,
        "waves": rec.waves,
        "files": dict(rec.files),
        "make_vars": rec.make_vars,
        "kick": rec.kick,
        # only when set: the keys (and cached builds) of RTL builds stay what they were
        **({"gate_level": True} if rec.gate_level else {}),
        **({"sdf": rec.sdf} if rec.sdf else {}),
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def build(
    rtl_dir: str | Path,
    manifest: Mapping[str, Any],
    tool: SimTool,
    *,
    trace: bool = False,
    gate_level: bool = False,
    sdf: str | Path | None = None,
    cache: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildInfo:
    """Build the simulation model of ``rtl_dir`` with ``tool``, or reuse the cached build.

    An interrupted or concurrent build never leaves a half-built entry: the build is made in a temporary
    directory and renamed into place. A failed build's log is kept as ``failed-<entry>/build.log`` for a day.
    A long build says beforehand how long it should take (`expected_build_seconds`) and, while it runs, prints
    a line every 30 s (`nvmlstm.artifacts.progress.heartbeat`). After a new build the cache is trimmed
    (`trim_cache`).

    Parameters
    ----------
    rtl_dir : path
        An `nvmlstm generate` output.
    manifest : dict
        Its manifest (`nvmlstm.sim.protocol.load_manifest`).
    tool : SimTool
    trace : bool
        Verilator only: compile in FST tracing (a separate cache entry). Icarus builds always can dump VCD.
    gate_level : bool
        Build the gate-level netlist (``filelist_gate.f``; `recipe`).
    sdf : path, optional
        Icarus, gate level: the SDF the runs annotate. The build compiles the timing cell models
        (`timing_models_for`) with `SDF_ARGS` and `ICARUS_SDF`; the SDF's digest is part of the key (a separate
        entry, ``icarus-gates-sdf-...``). The clock period is not: it is a setting of the run, not compiled in.
    cache : path, optional
        Cache directory (default `cache_root`).
    log : callable, optional
        Receives one-line progress messages.

    Raises
    ------
    BuildError
        The simulator failed; the message names the kept build log.
    SimStopped
        A build command was killed by a signal (nothing is kept).
    """
    say = log or (lambda _m: None)
    cocotb_adapter.check_cocotb()
    files = simulation_files(rtl_dir, manifest, gate_level=gate_level)
    trace = trace and tool.name == "verilator"
    if sdf is not None:
        models, files = timing_models_for(rtl_dir, files)
        rec = recipe(tool, trace, gate_level, sdf_sha256=_sha256(Path(sdf)), timing_models=models)
    else:
        rec = recipe(tool, trace, gate_level)
    key = _build_key(tool, files, rec, trace)
    root = Path(cache) if cache is not None else cache_root()
    max_bytes = cache_max_bytes()  # a bad $NVMLSTM_SIM_CACHE_MB fails now, not after a long build
    kind = f"{'-trace' if trace else ''}{'-gates' if gate_level else ''}{'-sdf' if rec.sdf else ''}"
    final = root / f"{tool.name}{kind}-{key[:24]}"
    try:
        os.utime(final / "build.json")  # recently used: evicted last
        return BuildInfo(final, key, True, 0.0, trace)
    except FileNotFoundError:  # not built (or evicted by another process a moment ago)
        pass
    except OSError:  # a cache shared with another user: usable, but its time stamp is not ours to set
        if (final / "build.json").is_file():
            return BuildInfo(final, key, True, 0.0, trace)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        # Whose build this is: `clear_cache` and `trim_cache` leave the temporary of a live build alone.
        (tmp / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        what = f"{tool.name}{' (FST tracing)' if trace else ''}{' gate-level' if gate_level else ''}"
        what += f"{' (timing models, SDF)' if rec.sdf else ''} model"
        seconds, commands = _run_build(tmp, root / f"failed-{final.name}", rtl_dir, files, rec, tool, what, say)
        _prune(tmp, keep={TOP_MODULE, "sim.vvp", "build.log"})
        info = {
            "key": key,
            "simulator": tool.version_text,
            "rtl_files": [f.name for f in files],
            "trace": trace,
            "commands": commands,
            "seconds": round(seconds, 2),
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:  # a concurrent build of the same key won; use it
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / "build.json").is_file():
                raise
        say(f"built in {format_duration(seconds)}: {final}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    removed = trim_cache(root, max_bytes=max_bytes)
    if removed:
        limit = f"{CACHE_ENTRIES} builds" + (f" and {_mb(max_bytes)}" if max_bytes else "")
        say(
            f"build cache {root}: removed the {_count(len(removed), 'least recently used build')} "
            f"({_mb(sum(e.bytes for e in removed))}) to stay within {limit}"
        )
    return BuildInfo(final, key, False, seconds, trace)


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise BuildError(f"{path}: cannot read the SDF ({exc.strerror})") from None


_CELL_MODULE = re.compile(rf"^module\s+{re.escape(PREFIX)}(\w+)_(\d+)\s*\(", re.MULTILINE)


def timing_models_for(rtl_dir: str | Path, files: list[Path]) -> tuple[str, list[Path]]:
    """The timing cell models for the gate-level ``files`` of ``rtl_dir``, and ``files`` without the functional
    cell models they replace. The RTL directory's own ``sky130_fd_sc_hd_cells_timing.v`` when it has one, else
    `nvmlstm.gen.timing_models.timing_models_text` of the cells its functional models file defines (which
    needs the PDK).

    Raises
    ------
    BuildError
        No functional cell models in ``files``, or the PDK is needed and missing (with the install line).
    """
    from nvmlstm.gen.liberty import Cell, PdkNotFound, find_pdk
    from nvmlstm.gen.timing_models import timing_models_text

    functional = [f for f in files if f.name == CELL_MODELS]
    if not functional:
        raise BuildError(f"{rtl_dir}: the gate-level file list has no {CELL_MODELS} to replace by timing models")
    rest = [f for f in files if f.name != CELL_MODELS]
    own = Path(rtl_dir) / TIMING_MODELS
    if own.is_file():
        return own.read_text(encoding="utf-8"), rest
    cells = tuple(
        Cell(name, "", (), "", drive=int(drive))
        for name, drive in dict.fromkeys(_CELL_MODULE.findall(functional[0].read_text(encoding="utf-8")))
    )
    try:
        return timing_models_text(find_pdk(), cells), rest
    except PdkNotFound as exc:
        raise BuildError(f"the timing cell models need the sky130 PDK: {exc}") from None


def _run_build(
    tmp: Path,
    failed: Path,
    rtl_dir: str | Path,
    files: list[Path],
    rec: Recipe,
    tool: SimTool,
    what: str,
    say: Callable[[str], None],
) -> tuple[float, list]:
    """Build into ``tmp`` with cocotb's runner, announcing the expected time and beating every 30 s; returns the
    build's seconds and commands. A failed build's log is moved to ``failed`` and `BuildError` raised."""
    sources = _build_sources(tmp, files, rec)
    runner = cocotb_adapter.make_runner(
        tool.name,
        env=tool.env,
        path_first=[tool.bin_dir],
        append={"make": rec.make_vars} if rec.make_vars else None,
        executable=tool.path if tool.name == "verilator" else None,
    )
    expected = expected_build_seconds(tool.name, files, gate_level=rec.gate_level)
    lines = _source_lines(files)
    say(
        f"building {what} of {Path(rtl_dir).name} ({lines:,} lines of Verilog; "
        f"about {format_duration(expected)} expected) ..."
    )
    try:
        with heartbeat(say, f"building the {what}", expected) as beat:
            runner.build(
                sources=sources,
                hdl_toplevel=TOP_MODULE,
                build_args=list(rec.build_args),
                build_dir=tmp,
                always=True,
                timescale=TIMESCALE,
                waves=rec.waves,
                log_file=tmp / "build.log",
            )
    except (RuntimeError, subprocess.CalledProcessError, SystemExit) as exc:
        signame = killed_by(exc)
        if signame is not None:  # stopped, not failed: nothing to keep (the caller removes the temporary)
            raise SimStopped(f"the {tool.name} build of {rtl_dir} was ended by {signame}: nothing built") from None
        # Only the log is kept: a failed Verilator build directory holds ~150 MB of objects.
        shutil.rmtree(failed, ignore_errors=True)
        _prune(tmp, keep={"build.log"})
        try:
            os.rename(tmp, failed)
        except OSError:  # a concurrent failed build of the same key kept its log there first
            pass
        tail = log_tail(failed / "build.log", 3)
        if rec.waves and "lz4.h" in tail:
            raise BuildError(
                "Verilator FST tracing needs the lz4 headers: install them with "
                "`apt-get update && apt-get install -y liblz4-dev`"
            ) from None
        raise BuildError(f"{tool.name} build of {rtl_dir} failed ({exc}); log {failed / 'build.log'}: {tail}") from None
    return beat.elapsed, runner.commands


def _build_sources(build_dir: Path, files: list[Path], rec: Recipe) -> list[str]:
    """The source files the simulator compiles: the RTL files (copied with the time-0 kick where the recipe asks
    for it, Verilator waivers left out then) and the recipe's own files, written into ``build_dir``."""
    sources: list[str] = []
    if rec.kick:
        (build_dir / "src").mkdir()
        for f in files:
            if f.suffix == ".vlt":  # Verilator waivers
                continue
            text, _ = icarus_time0_kick(f.read_text(encoding="utf-8"))
            (build_dir / "src" / f.name).write_text(text, encoding="utf-8")
            sources.append(str(build_dir / "src" / f.name))
    else:
        sources = [str(f) for f in files]
    for name, text in rec.files.items():
        (build_dir / name).write_text(text, encoding="utf-8")
        sources.append(str(build_dir / name))
    return sources


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


# --------------------------------------------------------------------------------------------------
# The cache: size, trimming, clearing
@dataclass(frozen=True)
class CacheEntry:
    """A complete build in the cache: its directory, its size on disk and when it was last used."""

    path: Path
    bytes: int
    last_used: float


@dataclass(frozen=True)
class CacheClear:
    """What `clear_cache` did.

    Parameters
    ----------
    root : Path
        The cache directory.
    removed : int
        Complete builds removed.
    leftovers : int
        Failed builds' logs and leftovers of interrupted builds removed.
    freed_bytes : int
        The size of both.
    in_progress : int
        Builds of running processes, left alone.
    """

    root: Path
    removed: int
    leftovers: int
    freed_bytes: int
    in_progress: int

    def summary(self) -> str:
        """One line for the user."""
        text = f"simulator build cache {self.root}: removed {_count(self.removed, 'build')}"
        if self.leftovers:
            text += f" and {_count(self.leftovers, 'leftover')} of failed or interrupted builds"
        text += f" ({_mb(self.freed_bytes)})"
        if self.in_progress:
            text += f"; left {_count(self.in_progress, 'build')} in progress alone"
        return text


def cache_max_bytes() -> int:
    """The cache's size limit in bytes: ``$NVMLSTM_SIM_CACHE_MB`` megabytes, else `CACHE_MAX_BYTES`; 0 is no
    limit (the `CACHE_ENTRIES` limit stays).

    Raises
    ------
    BuildError
        The variable is not a whole number of megabytes.
    """
    text = os.environ.get(CACHE_MB_ENV, "").strip()
    if not text:
        return CACHE_MAX_BYTES
    if not text.isdigit():
        raise BuildError(f"{CACHE_MB_ENV}={text!r}: expected a whole number of megabytes (0: no size limit)")
    return int(text) * 1_000_000


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:.1f} MB"


def _tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 for what vanishes meanwhile: another process may be removing it)."""
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def cache_entries(root: str | Path | None = None) -> list[CacheEntry]:
    """The complete builds of the cache ``root`` (default `cache_root`), the most recently used first."""
    root = Path(root) if root is not None else cache_root()
    entries = []
    for p in _listdir(root):
        if _ENTRY.match(p.name):
            try:
                used = (p / "build.json").stat().st_mtime
            except OSError:  # not a build (yet), or removed meanwhile
                continue
            entries.append(CacheEntry(p, _tree_bytes(p), used))
    return sorted(entries, key=lambda e: (-e.last_used, e.path.name))


def _listdir(root: Path) -> list[Path]:
    try:
        return sorted(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _discard(path: Path) -> bool:
    """Remove a cache directory so that no process ever sees it half-deleted: rename it to a hidden
    ``.evicted-`` name (atomic: the entry is complete under its own name or gone), then delete that.
    False if another process removed or renamed it first."""
    trash = path.with_name(f".evicted-{path.name}-{secrets.token_hex(4)}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _build_owner_alive(tmp: Path) -> bool:
    """Whether the process that is building in the temporary directory ``tmp`` still runs (on this host)."""
    try:
        owner = json.loads((tmp / OWNER_FILE).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():  # a shared cache directory: another machine's build, judged by its age
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _leftovers(root: Path, now: float) -> tuple[list[Path], int]:
    """What no build needs any more, and how many builds are in progress: failed builds' logs older than
    `LEFTOVER_S`, ``.evicted-`` directories (a removal that was interrupted), and temporary build
    directories whose process is gone (or, without an owner to ask, older than `LEFTOVER_S`)."""
    out, running = [], 0
    for p in _listdir(root):
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if p.name.startswith(".evicted-") or (_FAILED.match(p.name) and age > LEFTOVER_S):
            out.append(p)
        elif _BUILDING.match(p.name):
            alive = _build_owner_alive(p) if (p / OWNER_FILE).exists() else age < LEFTOVER_S
            if alive and age < LEFTOVER_S:
                running += 1
            else:
                out.append(p)
    return out, running


def trim_cache(
    root: str | Path | None = None,
    *,
    max_entries: int | None = None,
    max_bytes: int | None = None,
    grace_s: float = CACHE_GRACE_S,
    now: float | None = None,
) -> list[CacheEntry]:
    """Remove the least recently used builds of ``root`` beyond ``max_entries`` builds or ``max_bytes`` bytes,
    and the leftovers of failed and interrupted builds; returns the builds removed.

    Safe while other processes build and run: a build is renamed away before it is deleted (`_discard`), and a
    build used less than ``grace_s`` ago is kept even beyond the limits, since a process may be about to run it
    (the limits then hold again at the next build after that). Builds in progress are not counted.

    Parameters
    ----------
    root : path, optional
        Cache directory (default `cache_root`).
    max_entries : int, optional
        Builds kept at most (default `CACHE_ENTRIES`).
    max_bytes : int, optional
        Bytes kept at most (default `cache_max_bytes`; 0: no limit).
    grace_s : float
        Seconds after its last use during which a build is never removed (default `CACHE_GRACE_S`).
    now : float, optional
        The present as ``time.time()`` (a parameter for the tests).
    """
    root = Path(root) if root is not None else cache_root()
    now = time.time() if now is None else now
    max_bytes = cache_max_bytes() if max_bytes is None else max_bytes
    max_entries = CACHE_ENTRIES if max_entries is None else max_entries
    for p in _leftovers(root, now)[0]:
        if p.name.startswith(".evicted-"):
            shutil.rmtree(p, ignore_errors=True)
        else:
            _discard(p)
    removed, count, total = [], 0, 0
    for e in cache_entries(root):  # the most recently used first: keep while within both limits
        count, total = count + 1, total + e.bytes
        over = count > max_entries or (max_bytes > 0 and total > max_bytes)
        if not over or now - e.last_used < grace_s:
            continue
        if _discard(e.path):
            removed.append(e)
        count, total = count - 1, total - e.bytes
    return removed


def clear_cache(root: str | Path | None = None) -> CacheClear:
    """Remove every build of the cache ``root`` (default `cache_root`), failed builds' logs and leftovers;
    builds in progress in running processes are left alone (they finish and are kept).

    Only the cache's own names are touched (``icarus-<key>``, ``verilator-<key>``, ``failed-...``, the hidden
    temporaries), never anything else in the directory; the directory itself is removed once empty. A process
    that runs a build at that moment fails and says so: clear the cache between runs.
    """
    root = Path(root) if root is not None else cache_root()
    removed, left, freed = 0, 0, 0
    leftovers, running = _leftovers(root, time.time())
    for e in cache_entries(root):
        if _discard(e.path):
            removed, freed = removed + 1, freed + e.bytes
    for p in _listdir(root):
        if _FAILED.match(p.name) or p in leftovers:  # failed builds' logs of any age
            size = _tree_bytes(p)
            if p.name.startswith(".evicted-"):
                shutil.rmtree(p, ignore_errors=True)
            elif not _discard(p):
                continue
            left, freed = left + 1, freed + size
    try:
        root.rmdir()
    except OSError:  # not empty (builds in progress, other files) or not there
        pass
    return CacheClear(root, removed, left, freed, running)


def log_tail(path: Path, n: int) -> str:
    """The last ``n`` error lines of a log (or its last lines), joined into one line."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    errs = [ln for ln in lines if re.search(r"error|%Error|Traceback|Exception", ln, re.IGNORECASE)]
    return " | ".join((errs or lines)[-n:])
