"""The import direction of README "Layout", locked: imports point down, and the light packages stay light.

Every ``.py`` file of every package folder is parsed with `ast`; every static import (at module level or inside
a function, absolute or relative) is resolved to the ``nvmlstm`` package it reaches or the third-party library
it names, and checked against `ALLOWED` (the one table of permitted edges) and `NEVER` (heavy libraries a
package must not import at all, or not at module level). Dynamic imports (`importlib.import_module`) are not
seen; the runtime check at the end covers what actually gets loaded by ``import nvmlstm.golden, nvmlstm.tasks``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]

#: Package folder -> the other ``nvmlstm`` packages it may import ("cli" is the folder cli/, the package
#: ``nvmlstm`` itself: every ``nvmlstm.<x>`` that is not a subpackage). `artifacts` (generic helpers) and
#: `data` (the shipped data sets, no code) are below everything.
ALLOWED: dict[str, set[str]] = {
    "artifacts": set(),
    "data": set(),
    "golden": {"artifacts"},
    "tasks": {"golden", "artifacts", "data"},
    "hdl": {"golden", "artifacts"},
    "bench": {"golden", "artifacts"},
    "train": {"tasks", "golden", "artifacts", "data"},
    "sweep": {"tasks", "golden", "artifacts", "data"},
    "gen": {"hdl", "golden", "artifacts"},
    "sim": {"gen", "hdl", "golden", "artifacts"},
    "cli": {"golden", "tasks", "hdl", "bench", "train", "sweep", "gen", "sim", "artifacts", "data"},
}
PACKAGES = tuple(ALLOWED)
HEAVY = ("amaranth", "torch", "cocotb", "dask")
#: Package -> (libraries never imported, libraries never imported at module level, only inside a function).
NEVER: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "golden": (HEAVY, ("matplotlib",)),
    "tasks": (HEAVY, ("matplotlib",)),
    "artifacts": (HEAVY, ("matplotlib",)),
}


def _module_name(package: str, rel: Path) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of file ``rel`` inside folder ``package``."""
    parts = list(rel.with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    base = ["nvmlstm"] if package == "cli" else ["nvmlstm", package]
    return ".".join(base + parts), is_init


def _target_package(dotted: str) -> str | None:
    """The package folder an absolute ``nvmlstm...`` module name lives in; None for a third-party name."""
    parts = dotted.split(".")
    if parts[0] != "nvmlstm":
        return None
    if len(parts) > 1 and parts[1] in PACKAGES and parts[1] != "cli":
        return parts[1]
    return "cli"


def _imports(tree: ast.Module, module: str, is_init: bool) -> list[tuple[str, int, bool]]:
    """(absolute module name, line, at module level) of every static import in ``tree``."""
    func_nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            func_nodes.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        top = id(node) not in func_nodes
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = module.split(".") if is_init else module.split(".")[:-1]
                base = pkg[: len(pkg) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            # `from nvmlstm import golden` / `from .. import data`: the names may be subpackages themselves.
            out += [(f"{name}.{a.name}" if name == "nvmlstm" else name, node.lineno, top) for a in node.names]
    return out


def check_source(package: str, source: str, module: str, is_init: bool = False, where: str = "") -> list[str]:
    """Every violation of `ALLOWED` / `NEVER` by ``source`` (module ``module`` of folder ``package``)."""
    never, never_top = NEVER.get(package, ((), ()))
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"{where}:{exc.lineno}: not valid Python, its imports cannot be checked ({exc.msg})"]
    problems = []
    for name, line, top in _imports(tree, module, is_init):
        lib = name.split(".")[0]
        target = _target_package(name)
        if target is not None and target != package and target not in ALLOWED[package]:
            problems.append(f"{where}:{line}: nvmlstm.{package} imports {name} (package {target}): upward")
        if lib in never or (top and lib in never_top):
            kind = "at module level " if lib in never_top else ""
            problems.append(f"{where}:{line}: nvmlstm.{package} imports {lib} {kind}({name})")
    return problems


def check_package(package: str) -> list[str]:
    folder = REPO / package
    problems = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder)
        module, is_init = _module_name(package, rel)
        problems += check_source(
            package, path.read_text(encoding="utf-8"), module, is_init, str(path.relative_to(REPO))
        )
    return problems


def test_the_table_covers_every_package_folder_of_pyproject():
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    mapped = set(doc["tool"]["setuptools"]["package-dir"].values())
    assert mapped == set(PACKAGES), mapped
    assert all((REPO / p / "__init__.py").is_file() for p in PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package):
    problems = check_package(package)
    assert not problems, "\n".join(problems)


def test_every_package_is_checked_on_real_imports():
    """The parser sees the imports the tree has (a checker that sees nothing passes everything)."""
    seen = {
        p: {
            _target_package(n) for n, _, _ in _imports(ast.parse((REPO / p / f).read_text()), *_module_name(p, Path(f)))
        }
        for p, f in (("tasks", "loaders.py"), ("sim", "cases.py"), ("cli", "cli.py"))
    }
    assert {"golden", "data"} <= seen["tasks"]
    assert "gen" in seen["sim"]
    assert len(seen["cli"] - {None}) >= 3


@pytest.mark.parametrize(
    "package, module, source, expect",
    [
        # upward, absolute and relative, at module level and inside a function
        ("hdl", "nvmlstm.hdl.x", "from nvmlstm.gen.rtl import build_top\n", "imports nvmlstm.gen.rtl (package gen)"),
        ("hdl", "nvmlstm.hdl.x", "def f():\n    from ..sim import run\n", "imports nvmlstm.sim (package sim)"),
        ("golden", "nvmlstm.golden.x", "from .. import tasks\n", "imports nvmlstm.tasks (package tasks)"),
        ("tasks", "nvmlstm.tasks.x", "import nvmlstm.train.ckernel\n", "(package train)"),
        ("gen", "nvmlstm.gen.x", "from nvmlstm import main\n", "imports nvmlstm.main (package cli)"),
        ("artifacts", "nvmlstm.artifacts.x", "from nvmlstm.golden import io\n", "(package golden)"),
        # heavy libraries
        ("golden", "nvmlstm.golden.x", "import torch.nn\n", "imports torch (torch.nn)"),
        ("tasks", "nvmlstm.tasks.x", "def f():\n    import dask.distributed\n", "imports dask"),
        ("artifacts", "nvmlstm.artifacts.x", "from amaranth.hdl import Module\n", "imports amaranth"),
        ("golden", "nvmlstm.golden.x", "import cocotb\n", "imports cocotb"),
        ("golden", "nvmlstm.golden.x", "import matplotlib.pyplot as plt\n", "imports matplotlib at module level"),
    ],
)
def test_the_checker_reports_a_forbidden_import(package, module, source, expect):
    problems = check_source(package, source, module, where="synthetic.py")
    assert len(problems) == 1 and expect in problems[0], problems


@pytest.mark.parametrize(
    "package, module, source",
    [
        ("golden", "nvmlstm.golden.x", "def f():\n    import matplotlib.pyplot as plt\n"),  # only when called
        ("gen", "nvmlstm.gen.x", "from ..hdl import macro\nfrom nvmlstm.artifacts.files import sha256_file\n"),
        ("cli", "nvmlstm.cli", "from . import golden, sim, train\nimport torch\n"),
        ("tasks", "nvmlstm.tasks.loaders", "from .. import data\nfrom .generic import load_generic\n"),
    ],
)
def test_the_checker_accepts_allowed_imports(package, module, source):
    assert check_source(package, source, module) == []


def test_golden_and_tasks_load_no_heavy_library_at_runtime():
    code = (
        "import nvmlstm.golden, nvmlstm.tasks, nvmlstm.artifacts, sys; "
        "heavy = sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'torch', 'amaranth', 'cocotb', 'dask', 'matplotlib'}); "
        "assert not heavy, heavy"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
