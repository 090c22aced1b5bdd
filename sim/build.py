"""Building a generated design for a simulator, and the build cache.

`build` builds the simulation model of an RTL directory with ``cocotb_tools.runner`` (through
`nvmlstm.sim.cocotb_adapter`) or reuses the cached build. The cache key hashes the contents of the simulation
files (``filelist.f``), the simulator and its version, cocotb, the Python and the recipe (`Recipe`: the exact
build arguments, make variables and extra files), so one build serves every model and vector set of the same
generated design. Builds are made in a temporary directory and renamed into place, trimmed to what running
needs, and the least recently used beyond `CACHE_ENTRIES` are deleted.

Environment: ``NVMLSTM_SIM_CACHE``, the cache directory (default ``$XDG_CACHE_HOME/nvmlstm/sim`` or
``~/.cache/nvmlstm/sim``); delete it at will.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cocotb_adapter
from .errors import BuildError
from .protocol import TOP_MODULE, simulation_files
from .simulators import SimTool

__all__ = [
    "CACHE_ENV",
    "CACHE_ENTRIES",
    "TIMESCALE",
    "BuildInfo",
    "Recipe",
    "recipe",
    "build",
    "cache_root",
    "icarus_time0_kick",
    "verilator_make_fixes",
    "log_tail",
]

CACHE_ENV = "NVMLSTM_SIM_CACHE"
#: Builds kept in the cache; the least recently used beyond this are deleted before a new build.
CACHE_ENTRIES = 48
#: Bump when the build changes in a way `Recipe` does not show (e.g. `icarus_time0_kick`): part of the key.
BUILD_RECIPE = 2
#: Gate-level builds (Icarus): the cells' flip-flop UDPs update their outputs one time unit (1 ns) after the
#: clock edge (the PDK models' ``UNIT_DELAY``), so no zero-delay race decides which flip-flop sees which
#: value; the testbench drives and samples on the falling edge, long after.
GATE_LEVEL_ARGS = ("-DUNIT_DELAY=#1",)
TIMESCALE = ("1ns", "1ps")


def cache_root() -> Path:
    """``$NVMLSTM_SIM_CACHE``, else a per-user cache directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nvmlstm" / "sim"


# --------------------------------------------------------------------------------------------------
# Recipes
#: Icarus: a second root module that dumps a VCD when the plusarg names a file (the same build serves
#: runs with and without waveforms). cocotb's own dump module writes FST; this one writes VCD (the run
#: passes ``-vcd`` to vvp, `nvmlstm.sim.runner`).
ICARUS_WAVES = """\
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
    """

    build_args: tuple[str, ...]
    waves: bool = False
    files: Mapping[str, str] = field(default_factory=dict)
    make_vars: tuple[str, ...] = ()
    kick: bool = False
    gate_level: bool = False


def recipe(tool: SimTool, trace: bool, gate_level: bool = False) -> Recipe:
    """The `Recipe` of ``tool``; ``trace``: Verilator with FST tracing compiled in; ``gate_level``: the
    gate-level netlist (`GATE_LEVEL_ARGS` for Icarus, `VERILATOR_GATE_ARGS` for Verilator)."""
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
    cache: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildInfo:
    """Build the simulation model of ``rtl_dir`` with ``tool``, or reuse the cached build.

    An interrupted or concurrent build never leaves a half-built entry: the build is made in a temporary
    directory and renamed into place. A failed build is kept as ``failed-<entry>`` for a day (its log).

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
    cache : path, optional
        Cache directory (default `cache_root`).
    log : callable, optional
        Receives one-line progress messages.

    Raises
    ------
    BuildError
        The simulator failed; the message names the kept build log.
    """
    say = log or (lambda _m: None)
    cocotb_adapter.check_cocotb()
    files = simulation_files(rtl_dir, manifest, gate_level=gate_level)
    trace = trace and tool.name == "verilator"
    rec = recipe(tool, trace, gate_level)
    key = _build_key(tool, files, rec, trace)
    root = Path(cache) if cache is not None else cache_root()
    final = root / f"{tool.name}{'-trace' if trace else ''}{'-gates' if gate_level else ''}-{key[:24]}"
    if (final / "build.json").is_file():
        os.utime(final / "build.json")  # recently used: evicted last
        return BuildInfo(final, key, True, 0.0, trace)
    root.mkdir(parents=True, exist_ok=True)
    _evict(root, CACHE_ENTRIES - 1)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    t0 = time.monotonic()
    try:
        sources = _build_sources(tmp, files, rec)
        runner = cocotb_adapter.make_runner(
            tool.name,
            env=tool.env,
            path_first=[tool.bin_dir],
            append={"make": rec.make_vars} if rec.make_vars else None,
            executable=tool.path if tool.name == "verilator" else None,
        )
        say(
            f"building {tool.name}{' (FST tracing)' if trace else ''}{' gate-level' if gate_level else ''} model "
            f"of {Path(rtl_dir).name} ..."
        )
        try:
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
            kept = root / f"failed-{final.name}"
            shutil.rmtree(kept, ignore_errors=True)
            os.rename(tmp, kept)
            tail = log_tail(kept / "build.log", 3)
            if trace and "lz4.h" in tail:
                raise BuildError(
                    "Verilator FST tracing needs the lz4 headers: install them with "
                    "`apt-get update && apt-get install -y liblz4-dev`"
                ) from None
            raise BuildError(
                f"{tool.name} build of {rtl_dir} failed ({exc}); log {kept / 'build.log'}: {tail}"
            ) from None
        seconds = time.monotonic() - t0
        _prune(tmp, keep={TOP_MODULE, "sim.vvp", "build.log"})
        (tmp / "build.json").write_text(
            json.dumps(
                {
                    "key": key,
                    "simulator": tool.version_text,
                    "rtl_files": [f.name for f in files],
                    "trace": trace,
                    "commands": runner.commands,
                    "seconds": round(seconds, 2),
                },
                indent=2,
            )
            + "\n"
        )
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


def log_tail(path: Path, n: int) -> str:
    """The last ``n`` error lines of a log (or its last lines), joined into one line."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    errs = [ln for ln in lines if re.search(r"error|%Error|Traceback|Exception", ln, re.IGNORECASE)]
    return " | ".join((errs or lines)[-n:])
