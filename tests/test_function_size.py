"""Every function of the package is at most `MAX_LINES` lines long, not counting its docstring.

A longer function is split into steps with names; the rare one that cannot be split says why in its docstring,
with the phrase `EXEMPT` ("must be one function", and the reason). Lines are counted from the ``def`` line to
the last line of the body (nested functions count toward the function holding them, and are checked themselves).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("artifacts", "golden", "tasks", "hdl", "gen", "sim", "train", "sweep", "bench", "cli")
MAX_LINES = 100
EXEMPT = "must be one function"


def function_sizes(source: str, where: str = "") -> list[tuple[str, int, bool]]:
    """(``where:line qualified.name``, lines without the docstring, exempt) of every function in ``source``."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(child, clean=False)
                lines = child.end_lineno - child.lineno + 1
                if doc is not None:
                    first = child.body[0]
                    lines -= first.end_lineno - first.lineno + 1
                name = f"{prefix}{child.name}"
                out.append((f"{where}:{child.lineno} {name}", lines, doc is not None and EXEMPT in doc))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def oversized(source: str, where: str = "") -> list[str]:
    return [f"{name}: {n} lines" for name, n, exempt in function_sizes(source, where) if n > MAX_LINES and not exempt]


@pytest.mark.parametrize("folder", PACKAGE_FOLDERS)
def test_functions_are_at_most_100_lines(folder):
    paths = sorted((REPO / folder).rglob("*.py"))
    assert paths
    found = []
    for path in paths:
        found += oversized(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not found, (
        f"longer than {MAX_LINES} lines (split them, or say in the docstring why it {EXEMPT}):\n" + "\n".join(found)
    )


def _function(body_lines: int, doc: str | None = None, indent: str = "") -> str:
    head = [f"{indent}def f(x):"]
    if doc is not None:
        head += [f'{indent}    """{doc}', f"{indent}    more of the docstring", f'{indent}    """']
    return "\n".join(head + [f"{indent}    x = x + {k}" for k in range(body_lines)]) + "\n"


def test_the_limit_excludes_the_docstring_and_can_fail():
    assert oversized(_function(99, "A docstring.")) == []  # 100 lines with the def, 3 more of docstring
    assert oversized(_function(100, "A docstring.")) == [":1 f: 101 lines"]
    assert oversized(_function(100)) == [":1 f: 101 lines"]
    method = "class C:\n    pass\n\n    class D:\n" + _function(120, indent="        ")
    assert oversized(method, "m.py") == ["m.py:5 C.D.f: 121 lines"]
    nested = "def outer():\n" + _function(101, indent="    ")
    assert oversized(nested) == [":1 outer: 103 lines", ":2 outer.f: 102 lines"]


def test_a_function_that_says_why_it_must_be_one_function_is_exempt():
    assert oversized(_function(150, "The state machine must be one function: its states share locals.")) == []
    assert oversized(_function(150, "The state machine is long.")) == [":1 f: 151 lines"]
