"""The CLI's user-error type, imported by every command module (never by way of `nvmlstm.cli`, which imports them)."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""
