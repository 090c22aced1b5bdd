"""Reading the project's small text files (config files, manifests) with one wording for every failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_json_file"]


def read_json_file(path: Path, error: type[Exception], what: str, *, missing_hint: str = "") -> Any:
    """The parsed JSON of ``path``; a missing, unreadable, non-UTF-8 or invalid file raises ``error`` with one
    line naming the file and ``what`` it is: ``"cfg.json: config file not found"``,
    ``"m.json: manifest is not valid JSON: Expecting value at line 1 column 1"``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found{missing_hint}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
