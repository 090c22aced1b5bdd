"""Reading the project's small text files (config files, manifests, data sets) with one wording for every failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_text_file", "read_json_file"]


def read_text_file(path: Path, error: type[Exception], what: str, *, missing_hint: str = "") -> str:
    """The UTF-8 text of ``path``; a missing, unreadable or non-UTF-8 file raises ``error`` with one line
    naming the file and ``what`` it is: ``"cfg.json: config file not found"``,
    ``"d: cannot read data file: Is a directory"``, ``"m.json: manifest is not UTF-8 text (byte 0)"``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found{missing_hint}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def read_json_file(path: Path, error: type[Exception], what: str, *, missing_hint: str = "") -> Any:
    """The parsed JSON of ``path`` (read by `read_text_file`); invalid JSON raises ``error`` naming the line
    and column: ``"m.json: manifest is not valid JSON: Expecting value at line 1 column 1"``."""
    text = read_text_file(path, error, what, missing_hint=missing_hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
