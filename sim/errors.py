"""The errors of the regression. Every message is one line saying what is wrong: `nvmlstm sim` prints it as
is and exits 2, the tests show it as the reason of a failure or skip."""

from __future__ import annotations

__all__ = ["SimError", "InputMismatch", "BuildError"]


class SimError(Exception):
    """A regression that could not run: the message is one line saying what is wrong."""


class InputMismatch(SimError):
    """The vector directory does not belong to the RTL directory (config, model), or one of them is invalid."""


class BuildError(SimError):
    """The simulator could not build the design; the message names the build log."""
