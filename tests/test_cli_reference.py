"""The CLI reference (docs/cli.md, and the usage lines in README.md) is the parser's own ``--help``.

``python tests/test_cli_reference.py`` rewrites docs/cli.md from the parser; the test fails when the file and
the parser disagree, so an option added without its documentation (or the reverse) is caught.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI_MD = REPO / "docs" / "cli.md"
WIDTH = "100"  # argparse wraps at $COLUMNS; fixed so the text does not depend on the terminal


def _parsers():
    from nvmlstm.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return p, sub


def reference() -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        p, sub = _parsers()
        helps = {a.dest: a.help for a in sub._choices_actions}
        out = [
            "# Command-line reference",
            "",
            "Generated from the parser (`python tests/test_cli_reference.py`; `tests/test_cli_reference.py` "
            "fails when this file and `nvmlstm --help` disagree). Every command prints one line on stderr "
            "and exits 2 on bad input, and writes its outputs whole or not at all.",
            "",
            "```text",
            p.format_help().rstrip(),
            "```",
            "",
        ]
        for name, sp in sub.choices.items():
            usage = ["```text", sp.format_help().rstrip(), "```"]  # text: not a command (tests/test_docs_commands.py)
            out += [f"## `nvmlstm {name}`", "", helps.get(name, ""), "", *usage, ""]
        return "\n".join(out)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_docs_cli_md_is_the_parsers_help():
    # Compared up to whitespace: argparse's wrapping differs between Python versions, the words must not.
    assert _norm(CLI_MD.read_text()) == _norm(reference()), (
        "docs/cli.md is stale: run python tests/test_cli_reference.py"
    )


def test_readme_has_every_commands_usage():
    readme = _norm((REPO / "README.md").read_text())
    _, sub = _parsers()
    missing = [n for n, sp in sub.choices.items() if _norm(sp.format_usage()) not in readme]
    assert missing == [], f"README.md lacks the usage of: {missing} (copy it from docs/cli.md)"


def test_the_reference_check_can_fail(tmp_path):
    # A reference with one option less is not the parser's help.
    text = reference()
    assert "--vectors" in text
    assert _norm(text.replace("--vectors", "--vector")) != _norm(reference())


if __name__ == "__main__":
    CLI_MD.write_text(reference())
    print(f"wrote {CLI_MD.relative_to(REPO)}")
    sys.exit(0)
