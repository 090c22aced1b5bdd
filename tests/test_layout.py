"""The installed layout: one top-level package, no shadowing by a user's files, one name per module.

The repository keeps the design card's folders (`SUBPACKAGES`: golden/, hdl/, gen/, ...) and cli/ as the
package ``nvmlstm`` itself; ``pyproject.toml`` maps them to ``nvmlstm.*`` (README, Layout). These tests run
the installed command and the Python API from a directory full of same-named files, build the wheel and use
it on its own, and prove that importing a folder under its own name fails loudly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("golden", "hdl", "gen", "sim", "train", "bench", "data", "tasks", "sweep", "artifacts")
#: What a user's working directory may hold: every generic name our subpackages (and the CLI folder) have.
SHADOW_NAMES = (*SUBPACKAGES, "cli", "nvm")

API_SCRIPT = """
import importlib.resources, importlib.util
import nvmlstm.golden as g, nvmlstm.gen.render as r, nvmlstm.hdl.accelerator as a
import nvmlstm.sim.protocol
cfg = g.default_config()
import numpy as np
x = np.ones((1, 2, cfg.input_size), dtype=np.int64)
m, _ = g.random_model(cfg, 1, x)
print("outputs", g.golden_forward(m, x)["outputs"].shape)
print("template", "module nvm_array_macro" in r.render_macro_stub(a.NvmLstmAccelerator(
    cfg, lanes=4).macros[0].verilog_parameters()))
d = importlib.resources.files("nvmlstm.data")
print("data", d.joinpath("declaration.txt").is_file(), d.joinpath("cycles.csv").is_file())
import nvmlstm.tasks as t  # numpy only: no torch needed
assert t.DEFAULT_DATA["charlm"].is_file() and t.DEFAULT_DATA["timeseries"].is_file()
import sys
print("generic", sorted(n for n in sys.modules if n.split(".")[0] in %r))
"""


def _shadow_dir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    for name in SHADOW_NAMES:
        (d / f"{name}.py").write_text(f"raise SystemExit('imported the user\\'s {name}.py instead of nvmlstm')\n")
    return d


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _run(argv: list, *, timeout: int, cwd: Path | None = None, env: dict | None = None):
    """Run ``argv`` (by default without PYTHONPATH), capturing its text output."""
    return subprocess.run(
        argv, cwd=cwd, env=_env() if env is None else env, capture_output=True, text=True, timeout=timeout
    )


def _check_api_output(out: str) -> None:
    assert "outputs (1, 2, 10)" in out
    assert "template True" in out
    assert "data True True" in out
    assert "generic []" in out, out


def test_installed_cli_and_api_ignore_a_users_same_named_files(tmp_path):
    work = _shadow_dir(tmp_path)
    cli = Path(sys.executable).with_name("nvmlstm")
    assert cli.is_file(), f"the nvmlstm console script is not installed beside {sys.executable}"
    for cmd in ([str(cli)], [sys.executable, "-m", "nvmlstm"]):
        res = _run(
            [*cmd, "golden", "--config", str(REPO / "tests" / "missing.json"), "--random-weights", "--out", "o"],
            timeout=120,
            cwd=work,
        )
        # The config does not exist: the command ran (it is ours) and said so in one line.
        assert res.returncode == 2 and "missing.json" in res.stderr and "user's" not in res.stderr, res.stderr
    cfg = work / "cfg.json"
    cfg.write_text(
        '{"input_size": 3, "hidden_size": 4, "num_layers": 1, "output_size": 2, "weight_bits": 4, '
        '"dac_bits": 4, "adc_bits": 4, "array_rows": 8, "array_cols": 8}'
    )
    golden = "golden --config cfg.json --random-weights --sequences 2 --steps 3 --out vec".split()
    res = _run([str(cli), *golden], timeout=120, cwd=work)
    assert res.returncode == 0, res.stderr
    assert (work / "vec" / "vectors.npz").is_file()
    res = _run([sys.executable, "-c", API_SCRIPT % (SHADOW_NAMES,)], timeout=300, cwd=work)
    assert res.returncode == 0, res.stderr
    _check_api_output(res.stdout)


@pytest.mark.parametrize("name", (*SUBPACKAGES, "cli"))
def test_a_folder_imported_under_its_own_name_fails_loudly(name):
    """From the repository root every folder is importable by its own name: a second identity of each of
    its classes. Each refuses, naming the one import that is right."""
    res = _run([sys.executable, "-c", f"import {name}"], timeout=120, cwd=REPO)
    assert res.returncode == 1
    want = "nvmlstm" if name == "cli" else f"nvmlstm.{name}"
    assert f"ImportError: the {name}/ folder is the package {want}; import {want}, not {name}" in res.stderr


def test_wheel_holds_one_package_and_works_on_its_own(tmp_path):
    """The built wheel adds only ``nvmlstm`` to site-packages and carries its templates and data; installed
    alone (before the editable install on sys.path) it runs the API from a shadowing directory."""
    # Built from a copy: setuptools writes build/ and *.egg-info/ beside the sources.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "runs", "sim_build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"
        ),
    )
    wheels = tmp_path / "wheels"
    res = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        timeout=600,
    )
    if res.returncode != 0 and "No module named" in res.stderr and "setuptools" in res.stderr:
        pytest.skip("setuptools is not installed in this environment: `pip install 'setuptools>=77'`")
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = wheels.glob("nvm_lstm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"nvmlstm", f"nvm_lstm-{wheel.name.split('-')[1]}.dist-info"}, top
    for must in (
        "nvmlstm/golden/__init__.py",
        "nvmlstm/gen/templates/nvm_array_macro.v.j2",
        "nvmlstm/data/declaration.txt",
        "nvmlstm/data/cycles.csv",
        "nvmlstm/data/README.md",
        "nvmlstm/cli.py",
        "nvmlstm/__main__.py",
        "nvmlstm/sim/tb.py",
        "nvmlstm/train/ckernel.c",
        "nvmlstm/bench/__init__.py",
        "nvmlstm/bench/default_tech.toml",
        "nvmlstm/bench/literature.csv",
        *(f"nvmlstm/{name}/__init__.py" for name in SUBPACKAGES),
    ):
        assert must in names, must
    assert not any(n.startswith("nvmlstm/tests") or "/__pycache__/" in n for n in names)
    site = tmp_path / "site"
    res = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    work = _shadow_dir(tmp_path)
    env = _env() | {"PYTHONPATH": str(site)}
    res = _run(
        [sys.executable, "-c", "import nvmlstm.golden as g; print(g.__file__)\n" + API_SCRIPT % (SHADOW_NAMES,)],
        timeout=300,
        cwd=work,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == str(site / "nvmlstm" / "golden" / "__init__.py")
    _check_api_output(res.stdout)
