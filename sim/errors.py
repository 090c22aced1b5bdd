"""The errors of the regression. Every message is one line saying what is wrong: `nvmlstm sim` prints it as
is and exits 2, the tests show it as the reason of a failure or skip."""

from __future__ import annotations

import re
import signal
import subprocess

__all__ = ["SimError", "InputMismatch", "BuildError", "SimStopped", "killed_by"]


class SimError(Exception):
    """A regression that could not run: the message is one line saying what is wrong."""


class InputMismatch(SimError):
    """The vector directory does not belong to the RTL directory (config, model), or one of them is invalid."""


class BuildError(SimError):
    """The simulator could not build the design; the message names the build log."""


class SimStopped(SimError):
    """The simulator was killed by a signal or ended its simulation before the testbench finished (SIGTERM to
    ``vvp`` does that): the run has no result. Never a mismatch, and never re-run with waveforms."""


_RETURN_CODE = re.compile(r"return code:? (-?\d+)")


def killed_by(exc: BaseException) -> str | None:
    """The signal that killed the command behind ``exc`` (``"SIGTERM"``), or None when it exited by itself.

    ``exc`` is what cocotb's runner raises for a failed command: ``RuntimeError("Command failed with return
    code: -15")`` (cocotb 2.1; tests/test_stop.py checks the text against the installed cocotb) or a
    `subprocess.CalledProcessError`; a negative return code is a signal.
    """
    if isinstance(exc, subprocess.CalledProcessError):
        code = exc.returncode
    else:
        m = _RETURN_CODE.search(str(exc))
        code = int(m.group(1)) if m else 0
    if code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
