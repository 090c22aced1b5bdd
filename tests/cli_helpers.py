"""Running the ``nvmlstm`` CLI in-process from tests, and its error contract, shared by the CLI tests."""

from __future__ import annotations

import re
from pathlib import Path

from nvmlstm.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    """Run ``nvmlstm *argv`` in-process; return (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_error(capsys, argv, pattern: str, *, absent: Path) -> str:
    """The error contract: exit status 2, exactly one line on stderr matching ``pattern``, nothing on
    stdout, and neither the output directory ``absent`` nor a temporary sibling of it left behind."""
    rc, out, err = run(capsys, *argv)
    assert rc == 2, err
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    line = err.rstrip("\n")
    assert re.fullmatch(pattern, line), line
    assert not absent.exists()
    assert not any(p.name.startswith(f".{absent.name}.tmp") for p in absent.parent.iterdir())
    return line


def assert_command_error(capsys, command: str, args: list, out: Path, pattern: str) -> str:
    """``nvmlstm {command} *args --out {out}`` fails by the error contract (see `assert_error`) with the line
    ``nvmlstm {command}: error: `` followed by ``pattern``."""
    return assert_error(capsys, [command, *args, "--out", out], rf"nvmlstm {command}: error: {pattern}", absent=out)
